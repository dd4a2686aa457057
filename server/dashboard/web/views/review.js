// Review: what happened at one camera over a date range, on a time line (a mark per incident,
// coloured by type, where it was first observed) and as a list with thumbnails, like the
// review pages of NVRs; choosing a mark brings its card into view.

import { get, withToken } from "../api.js";
import { h, mount } from "../dom.js";
import { clock, dateTime, dayStart, dayValue, measure } from "../format.js";
import { label, t } from "../i18n.js";
import { TYPES } from "../incidents.js";
import { cameraName, camerasOf, loadDirectory, named, siteIds, siteName } from "../names.js";

const LIMIT = 500;

function thumbnail(incident) {
  const snapshot = (incident.evidence || []).find(
    (file) => file.kind === "snapshot" && file.state === "stored",
  );
  if (!snapshot) return h("div", { class: "thumb empty-thumb" }, t("review.no_thumb"));
  return h("img", {
    class: "thumb",
    src: withToken(snapshot.url),
    alt: t("incident.snapshot"),
    loading: "lazy",
  });
}

function axis(items, since, until, onpick) {
  const start = Date.parse(since);
  const end = Date.parse(until);
  const span = Math.max(1, end - start);
  const days = Math.round(span / 86_400_000);
  const ticks = [];
  const hourly = days <= 2;
  const step = hourly ? days * 3 * 3600_000 : 86_400_000 * Math.ceil(days / 7);
  for (let at = start; at <= end; at += step) ticks.push(at);
  return h(
    "div",
    { class: "timeline", id: "review-timeline", role: "list", "aria-label": t("review.timeline") },
    h("div", { class: "timeline-line" }),
    ticks.map((at) =>
      h(
        "span",
        { class: "tick", style: `left:${((at - start) / span) * 100}%` },
        hourly && new Date(at).getHours() !== 0
          ? clock(new Date(at).toISOString())
          : dayValue(new Date(at)).slice(5),
      ),
    ),
    items.map((incident) => {
      const at = Date.parse(incident.first_observed_at);
      const left = Math.min(100, Math.max(0, ((at - start) / span) * 100));
      return h("button", {
        class: `mark type-${incident.type}`,
        role: "listitem",
        style: `left:${left}%`,
        title: `${label("type", incident.type)} ${dateTime(incident.first_observed_at)}`,
        "aria-label": `${label("type", incident.type)} #${incident.id}`,
        dataset: { id: incident.id },
        onclick: () => onpick(incident.id),
      });
    }),
  );
}

export function render(container, params, ctx) {
  const query = params.query || {};
  const today = new Date();
  const state = {
    site: query.site || "",
    camera: query.camera || "",
    from: query.from || dayValue(new Date(today.getTime() - 86_400_000)),
    to: query.to || dayValue(today),
  };
  const toolbar = h("div", { class: "toolbar filters" });
  const body = h("div", { id: "review-body" }, h("p", { class: "muted" }, t("common.loading")));

  function drawToolbar() {
    const sites = siteIds();
    if (!state.site || !sites.includes(state.site)) state.site = sites[0] || "";
    const cameras = camerasOf(state.site);
    if (!cameras.some(([id]) => id === state.camera))
      state.camera = cameras[0]?.[0] || state.camera;
    const change = (name) => (event) => {
      state[name] = event.target.value;
      if (name === "site") state.camera = "";
      drawToolbar();
      load();
    };
    mount(
      toolbar,
      sites.length > 1
        ? h(
            "label",
            { class: "field" },
            h("span", {}, t("queue.filter.site")),
            h(
              "select",
              { id: "review-site", onchange: change("site") },
              sites.map((s) => h("option", { value: s, selected: s === state.site }, siteName(s))),
            ),
          )
        : null,
      h(
        "label",
        { class: "field" },
        h("span", {}, t("queue.filter.camera")),
        h(
          "select",
          { id: "review-camera", onchange: change("camera") },
          cameras.map(([id, name]) =>
            h("option", { value: id, selected: id === state.camera }, name),
          ),
        ),
      ),
      h(
        "label",
        { class: "field" },
        h("span", {}, t("queue.filter.from")),
        h("input", {
          type: "date",
          id: "review-from",
          value: state.from,
          onchange: change("from"),
        }),
      ),
      h(
        "label",
        { class: "field" },
        h("span", {}, t("queue.filter.to")),
        h("input", { type: "date", id: "review-to", value: state.to, onchange: change("to") }),
      ),
    );
  }

  async function load() {
    if (!state.camera) {
      mount(body, h("p", { class: "empty" }, t("review.no_cameras")));
      return;
    }
    const since = dayStart(state.from);
    const until = dayStart(state.to, 1);
    let page;
    try {
      page = await get("/api/v1/incidents", {
        site_id: state.site,
        camera_id: state.camera,
        since,
        until,
        sort: "observed",
        order: "asc",
        limit: LIMIT,
      });
    } catch (error) {
      mount(body, h("p", { class: "form-error" }, t("error.generic", { detail: error.message })));
      return;
    }
    const items = page.items;
    const counts = TYPES.map((type) => [type, items.filter((i) => i.type === type).length]).filter(
      ([, n]) => n,
    );
    const cards = h(
      "ol",
      { class: "review-list", id: "review-list" },
      [...items]
        .reverse()
        .map((incident) =>
          h(
            "li",
            { class: `review-card sev-${incident.severity}`, dataset: { id: incident.id } },
            h(
              "a",
              { href: `#/incidents/${incident.id}` },
              thumbnail(incident),
              h(
                "div",
                { class: "review-text" },
                h("div", {}, h("strong", {}, label("type", incident.type)), ` #${incident.id}`),
                h("div", { class: "muted small" }, dateTime(incident.first_observed_at)),
                h(
                  "div",
                  {},
                  h(
                    "span",
                    { class: `badge status status-${incident.status}` },
                    label("status", incident.status),
                  ),
                  measure(incident),
                ),
                h(
                  "div",
                  { class: "muted small" },
                  (incident.alert_count ?? 1) > 1
                    ? t("review.alerts", { n: incident.alert_count })
                    : "",
                ),
              ),
            ),
          ),
        ),
    );
    mount(
      body,
      h(
        "p",
        { class: "muted", id: "review-summary" },
        t("review.summary", { n: page.total }),
        " ",
        named(cameraName(state.site, state.camera), state.camera),
        counts.length
          ? ` · ${counts.map(([type, n]) => `${label("type", type)} ${n}`).join(" · ")}`
          : "",
      ),
      h(
        "div",
        { class: "panel" },
        axis(items, since, until, (id) => {
          const target = cards.querySelector(`li[data-id="${id}"]`);
          target?.scrollIntoView({ block: "center" });
          target?.classList.add("picked");
          setTimeout(() => target?.classList.remove("picked"), 1500);
        }),
        h(
          "ul",
          { class: "legend" },
          TYPES.map((type) =>
            h("li", {}, h("span", { class: `swatch type-${type}` }), label("type", type)),
          ),
        ),
      ),
      items.length ? cards : h("p", { class: "empty" }, t("review.empty")),
      page.total > items.length
        ? h("p", { class: "muted" }, t("review.truncated", { n: items.length }))
        : null,
    );
  }

  container.append(
    h(
      "section",
      { class: "review-view" },
      h("div", { class: "view-head" }, h("h2", {}, t("review.title"))),
      toolbar,
      body,
    ),
  );
  loadDirectory()
    .then(() => {
      drawToolbar();
      load();
    })
    .catch((error) =>
      mount(body, h("p", { class: "form-error" }, t("error.generic", { detail: error.message }))),
    );
}
