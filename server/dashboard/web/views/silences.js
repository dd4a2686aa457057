// Silences (maintenance windows): the active and coming ones (and, on request, the ended),
// a form for operators to set one for a site, camera, rule or type, and a button to end one.
// Incidents a silence covers are still recorded and shown, without the alarm or escalation.

import { ApiError, get, request } from "../api.js";
import { h, mount } from "../dom.js";
import { dateTime } from "../format.js";
import { label, t } from "../i18n.js";
import { TYPES, atLeast } from "../incidents.js";
import {
  cameraName,
  camerasOf,
  loadDirectory,
  named,
  ruleName,
  rulesOf,
  siteIds,
  siteName,
} from "../names.js";

const HOURS = [1, 4, 8, 24];

function localInput(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

function scope(silence) {
  const parts = [];
  parts.push(
    silence.site_id ? named(siteName(silence.site_id), silence.site_id) : t("silences.any_site"),
  );
  if (silence.camera_id) {
    parts.push(" · ", named(cameraName(silence.site_id, silence.camera_id), silence.camera_id));
  }
  if (silence.rule_id) {
    parts.push(
      " · ",
      named(ruleName(silence.site_id, silence.camera_id, silence.rule_id), silence.rule_id),
    );
  }
  if (silence.type) parts.push(" · ", label("type", silence.type));
  return parts;
}

export function render(container, _params, ctx) {
  const operator = atLeast(ctx.user, "operator");
  let showEnded = false;
  const list = h("div", { id: "silence-list" }, h("p", { class: "muted" }, t("common.loading")));
  const form = h("form", { class: "panel silence-form", id: "silence-form" });

  async function load() {
    try {
      const answer = await get("/api/v1/silences", { expired: showEnded ? "true" : "" });
      const rows = answer.items;
      mount(
        list,
        rows.length
          ? h(
              "div",
              { class: "table-wrap" },
              h(
                "table",
                { class: "silences", id: "silences" },
                h(
                  "thead",
                  {},
                  h(
                    "tr",
                    {},
                    [
                      "silences.col.scope",
                      "silences.col.when",
                      "silences.col.comment",
                      "silences.col.by",
                      "",
                    ].map((k) => h("th", {}, k ? t(k) : "")),
                  ),
                ),
                h(
                  "tbody",
                  {},
                  rows.map((silence) =>
                    h(
                      "tr",
                      { class: silence.active ? "active" : "", dataset: { id: silence.id } },
                      h("td", {}, scope(silence)),
                      h(
                        "td",
                        {},
                        h(
                          "span",
                          { class: `badge ${silence.active ? "status-handling" : "muted-badge"}` },
                          silence.active
                            ? t("silences.active")
                            : Date.parse(silence.starts_at) > Date.now()
                              ? t("silences.coming")
                              : t("silences.ended"),
                        ),
                        h(
                          "div",
                          { class: "small" },
                          `${dateTime(silence.starts_at)} → ${dateTime(silence.ends_at)}`,
                        ),
                      ),
                      h("td", {}, h("span", { translate: "no" }, silence.comment || "—")),
                      h("td", {}, named(silence.created_by, silence.created_by)),
                      h(
                        "td",
                        {},
                        operator && Date.parse(silence.ends_at) > Date.now()
                          ? h(
                              "button",
                              {
                                class: "ghost",
                                id: `end-silence-${silence.id}`,
                                onclick: () => end(silence.id),
                              },
                              t("silences.end"),
                            )
                          : null,
                      ),
                    ),
                  ),
                ),
              ),
            )
          : h("p", { class: "empty" }, t("silences.empty")),
      );
    } catch (error) {
      mount(list, h("p", { class: "form-error" }, t("error.generic", { detail: error.message })));
    }
  }

  async function end(id) {
    try {
      await request("DELETE", `/api/v1/silences/${id}`);
      ctx.toast(t("silences.ended_toast"), "ok");
    } catch (error) {
      ctx.toast(t("error.generic", { detail: error.message }), "error");
    }
    load();
  }

  function drawForm() {
    if (!operator) {
      form.hidden = true;
      return;
    }
    const sites = siteIds();
    const site = h(
      "select",
      { id: "silence-site", required: true },
      sites.map((s) => h("option", { value: s }, siteName(s))),
    );
    const camera = h("select", { id: "silence-camera" });
    const rule = h("select", { id: "silence-rule" });
    const type = h(
      "select",
      { id: "silence-type" },
      h("option", { value: "" }, t("silences.any_type")),
      TYPES.map((value) => h("option", { value }, label("type", value))),
    );
    const fillCameras = () => {
      mount(
        camera,
        h("option", { value: "" }, t("silences.any_camera")),
        camerasOf(site.value).map(([id, name]) => h("option", { value: id }, name)),
      );
      fillRules();
    };
    const fillRules = () => {
      mount(
        rule,
        h("option", { value: "" }, t("silences.any_rule")),
        camera.value
          ? rulesOf(site.value, camera.value).map(([id, name]) => h("option", { value: id }, name))
          : null,
      );
    };
    site.addEventListener("change", fillCameras);
    camera.addEventListener("change", fillRules);
    fillCameras();
    const now = new Date();
    const starts = h("input", {
      type: "datetime-local",
      id: "silence-starts",
      value: localInput(now),
    });
    const ends = h("input", {
      type: "datetime-local",
      id: "silence-ends",
      required: true,
      value: localInput(new Date(now.getTime() + 4 * 3600_000)),
    });
    const comment = h("input", {
      id: "silence-comment",
      maxlength: 1000,
      placeholder: t("silences.comment_placeholder"),
    });
    const error = h("p", { class: "form-error", id: "silence-error", role: "alert" });
    mount(
      form,
      h("h3", {}, t("silences.new")),
      h(
        "div",
        { class: "form-grid" },
        h("label", { class: "field" }, h("span", {}, t("queue.filter.site")), site),
        h("label", { class: "field" }, h("span", {}, t("queue.filter.camera")), camera),
        h("label", { class: "field" }, h("span", {}, t("silences.rule")), rule),
        h("label", { class: "field" }, h("span", {}, t("queue.filter.type")), type),
        h("label", { class: "field" }, h("span", {}, t("silences.starts")), starts),
        h("label", { class: "field" }, h("span", {}, t("silences.ends")), ends),
      ),
      h(
        "div",
        { class: "chips" },
        HOURS.map((hours) =>
          h(
            "button",
            {
              type: "button",
              class: "chip",
              onclick: () => {
                const from = starts.value ? new Date(starts.value) : new Date();
                ends.value = localInput(new Date(from.getTime() + hours * 3600_000));
              },
            },
            t("silences.for_hours", { n: hours }),
          ),
        ),
      ),
      h("label", { class: "field" }, h("span", {}, t("silences.comment")), comment),
      error,
      h("button", { type: "submit", class: "primary", id: "silence-submit" }, t("silences.create")),
    );
    form.onsubmit = async (event) => {
      event.preventDefault();
      error.textContent = "";
      const body = {
        site_id: site.value || null,
        camera_id: camera.value || null,
        rule_id: rule.value || null,
        type: type.value || null,
        starts_at: starts.value ? new Date(starts.value).toISOString() : null,
        ends_at: ends.value ? new Date(ends.value).toISOString() : null,
        comment: comment.value.trim(),
      };
      if (!body.ends_at || (body.starts_at && body.ends_at <= body.starts_at)) {
        error.textContent = t("silences.ends_after");
        return;
      }
      try {
        await request("POST", "/api/v1/silences", { json: body });
        ctx.toast(t("silences.created"), "ok");
        comment.value = "";
        load();
      } catch (failure) {
        error.textContent =
          failure instanceof ApiError && failure.status === 403
            ? t("actions.forbidden")
            : t("error.generic", { detail: failure.message });
      }
    };
  }

  const toggle = h(
    "label",
    { class: "inline" },
    h("input", {
      type: "checkbox",
      id: "silences-ended",
      onchange: (event) => {
        showEnded = event.target.checked;
        load();
      },
    }),
    t("silences.show_ended"),
  );
  container.append(
    h(
      "section",
      { class: "silences-view" },
      h("div", { class: "view-head" }, h("h2", {}, t("silences.title"))),
      h("p", { class: "muted" }, t("silences.explain")),
      form,
      h("div", { class: "toolbar" }, toggle),
      list,
    ),
  );
  loadDirectory()
    .catch(() => null)
    .then(() => {
      drawForm();
      load();
    });
}
