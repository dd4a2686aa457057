// The live incident queue: newest first, filtered, updated in place from the live feed.

import { get } from "../api.js";
import { h, mount } from "../dom.js";
import { ago, dateTime, duration } from "../format.js";
import { label, t } from "../i18n.js";
import { CLOSED, DWELL_TYPES, STATUSES, TYPES, isUnseen } from "../incidents.js";

const PAGE = 50;

function matches(incident, filters) {
  if (filters.status && incident.status !== filters.status) return false;
  if (filters.type && incident.type !== filters.type) return false;
  if (filters.site_id && incident.site_id !== filters.site_id) return false;
  return true;
}

function newestFirst(a, b) {
  return String(b.opened_at).localeCompare(String(a.opened_at)) || b.id - a.id;
}

function measure(incident) {
  if (
    DWELL_TYPES.has(incident.type) &&
    incident.dwell_s !== null &&
    incident.dwell_s !== undefined
  ) {
    return t("queue.dwell", { d: duration(incident.dwell_s) });
  }
  const floor = incident.details?.origin_floor;
  if (floor !== undefined && floor !== null) return t("incident.floor_value", { floor });
  return "";
}

function row(incident, navigate) {
  const overdue =
    incident.deadline_at &&
    !CLOSED.has(incident.status) &&
    Date.parse(incident.deadline_at) < Date.now();
  return h(
    "tr",
    {
      class: [
        "incident-row",
        `sev-${incident.severity || "normal"}`,
        `status-${incident.status}`,
        isUnseen(incident.id) ? "unseen" : "",
        CLOSED.has(incident.status) ? "is-closed" : "",
      ].join(" "),
      dataset: { id: incident.id, status: incident.status, type: incident.type },
      tabindex: 0,
      onclick: () => navigate(`#/incidents/${incident.id}`),
      onkeydown: (event) => {
        if (event.key === "Enter") navigate(`#/incidents/${incident.id}`);
      },
    },
    h(
      "td",
      {},
      h(
        "span",
        { class: `badge sev sev-${incident.severity || "normal"}` },
        label("severity", incident.severity),
      ),
      " ",
      h("strong", { class: "type" }, label("type", incident.type)),
      incident.silenced ? h("span", { class: "badge muted-badge" }, t("incident.silenced")) : null,
    ),
    h(
      "td",
      {},
      h("div", {}, incident.camera_id),
      h("div", { class: "muted small" }, `${incident.site_id} · ${incident.zone_id}`),
    ),
    h(
      "td",
      {},
      h(
        "span",
        { class: `badge status status-${incident.status}` },
        label("status", incident.status),
      ),
    ),
    h(
      "td",
      {},
      h("div", {}, dateTime(incident.opened_at)),
      h("div", { class: "muted small" }, ago(incident.opened_at)),
    ),
    h("td", { class: "num" }, incident.alert_count ?? 1),
    h("td", {}, measure(incident)),
    h(
      "td",
      {},
      incident.assignee ? label("team", incident.assignee) : "—",
      incident.escalation_level
        ? h(
            "span",
            { class: "badge escalated" },
            t("incident.escalation_value", { n: incident.escalation_level }),
          )
        : null,
      overdue ? h("span", { class: "badge overdue" }, t("incident.overdue")) : null,
    ),
  );
}

function select(id, value, options, onchange) {
  const el = h(
    "select",
    { id, onchange: () => onchange(el.value) },
    options.map(([optionValue, text]) =>
      h("option", { value: optionValue, selected: optionValue === value }, text),
    ),
  );
  return el;
}

export function render(container, _params, ctx) {
  const filters = { status: "", type: "", site_id: "" };
  let items = [];
  let total = 0;
  const body = h("tbody", { id: "queue-body" });
  const summary = h("p", { class: "muted", id: "queue-summary" });
  const more = h("button", { class: "ghost", onclick: () => load(items.length) }, t("queue.more"));
  const sites = (ctx.user.sites || []).filter((site) => site !== "*");

  function draw() {
    items.sort(newestFirst);
    mount(
      body,
      items.map((incident) => row(incident, ctx.navigate)),
    );
    if (!items.length)
      body.append(h("tr", {}, h("td", { colspan: 7, class: "empty" }, t("queue.empty"))));
    summary.textContent = t("queue.summary", { shown: items.length, total });
    more.hidden = items.length >= total;
  }

  async function load(offset = 0) {
    try {
      const page = await get("/api/v1/incidents", {
        status: filters.status,
        type: filters.type,
        site_id: filters.site_id,
        limit: PAGE,
        offset,
      });
      const fetched = page.items;
      items = offset ? [...items, ...fetched] : fetched;
      total = page.total;
      draw();
    } catch (error) {
      ctx.toast(t("error.generic", { detail: error.message }), "error");
    }
  }

  function setFilter(key) {
    return (value) => {
      filters[key] = value;
      load();
    };
  }

  const toolbar = h(
    "div",
    { class: "toolbar" },
    h("label", { for: "filter-status" }, t("queue.filter.status")),
    select(
      "filter-status",
      filters.status,
      [["", t("queue.filter.all")], ...STATUSES.map((s) => [s, label("status", s)])],
      setFilter("status"),
    ),
    h("label", { for: "filter-type" }, t("queue.filter.type")),
    select(
      "filter-type",
      filters.type,
      [["", t("queue.filter.all")], ...TYPES.map((s) => [s, label("type", s)])],
      setFilter("type"),
    ),
    sites.length > 1
      ? [
          h("label", { for: "filter-site" }, t("queue.filter.site")),
          select(
            "filter-site",
            filters.site_id,
            [["", t("queue.filter.all")], ...sites.map((s) => [s, s])],
            setFilter("site_id"),
          ),
        ]
      : null,
  );

  container.append(
    h(
      "section",
      { class: "queue-view" },
      h("div", { class: "view-head" }, h("h2", {}, t("queue.title")), summary),
      toolbar,
      h(
        "table",
        { class: "queue", id: "queue" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            [
              "queue.col.type",
              "queue.col.place",
              "queue.col.status",
              "queue.col.opened",
              "queue.col.alerts",
              "queue.col.measure",
              "queue.col.assignee",
            ].map((key) => h("th", {}, t(key))),
          ),
        ),
        body,
      ),
      more,
    ),
  );

  const stopFeed = ctx.feed.on("incident", (incident) => {
    const index = items.findIndex((item) => item.id === incident.id);
    if (matches(incident, filters)) {
      if (index >= 0) items[index] = incident;
      else {
        items.unshift(incident);
        total += 1;
      }
    } else if (index >= 0) {
      items.splice(index, 1);
      total = Math.max(0, total - 1);
    }
    draw();
  });
  const clock = setInterval(draw, 30_000);
  load();
  return () => {
    stopFeed();
    clearInterval(clock);
  };
}
