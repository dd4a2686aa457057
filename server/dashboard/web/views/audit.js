// The audit log (admin of every site): who saw or did what, when, from where; filtered by
// person and by action, a page at a time.

import { get } from "../api.js";
import { h, mount } from "../dom.js";
import { dateTime } from "../format.js";
import { label, t } from "../i18n.js";
import { cameraName, named, siteName } from "../names.js";

const PAGE = 100;
export const AUDIT_ACTIONS = [
  "login",
  "login_failed",
  "logout",
  "view_evidence",
  "download_evidence",
  "ack",
  "dispatch",
  "handle",
  "feedback",
  "verify",
  "resolve",
  "false_alarm",
  "reopen",
  "hold",
  "release_hold",
  "upload_photo",
  "create_silence",
  "end_silence",
  "upload_plan",
  "place_camera",
  "register_site",
  "replay_dead_letter",
  "discard_dead_letter",
  "remove_server_member",
];

/** "incident 12", "camera site/cam", "site x", "evidence sha": the kind in words, the name. */
function target(text) {
  const [kind, rest = ""] = String(text).split(/ (.*)/s);
  if (!["incident", "evidence", "camera", "site", "silence", "auth"].includes(kind)) {
    return h("span", { translate: "no" }, text);
  }
  let what = rest;
  if (kind === "camera") {
    const [site, camera] = rest.split("/");
    what = camera ? `${siteName(site)} · ${cameraName(site, camera)}` : rest;
  } else if (kind === "site") {
    what = siteName(rest);
  } else if (kind === "evidence") {
    what = rest.slice(0, 12);
  } else if (kind === "incident") {
    return [t("audit_target.incident"), " ", h("a", { href: `#/incidents/${rest}` }, `#${rest}`)];
  }
  return [t(`audit_target.${kind}`), what ? [" ", named(what, rest)] : null];
}

function detailText(details) {
  const parts = [];
  if (details.team) parts.push(label("team", details.team));
  if (details.category) parts.push(label("false_alarm", details.category));
  if (details.stage) parts.push(label("photo_stage", details.stage));
  if (details.note) parts.push(details.note);
  return parts.join(" · ");
}

export function render(container, _params, ctx) {
  const filters = { actor: "", action: "" };
  let offset = 0;
  const body = h("div", { id: "audit-body" }, h("p", { class: "muted" }, t("common.loading")));
  const pager = h("div", { class: "toolbar", id: "audit-pager" });

  async function load() {
    let page;
    try {
      page = await get("/api/v1/audit", { ...filters, limit: PAGE, offset });
    } catch (error) {
      mount(body, h("p", { class: "form-error" }, t("error.generic", { detail: error.message })));
      return;
    }
    mount(
      body,
      page.items.length
        ? h(
            "div",
            { class: "table-wrap" },
            h(
              "table",
              { class: "audit", id: "audit" },
              h(
                "thead",
                {},
                h(
                  "tr",
                  {},
                  [
                    "audit.col.at",
                    "audit.col.actor",
                    "audit.col.action",
                    "audit.col.target",
                    "audit.col.details",
                    "audit.col.ip",
                  ].map((k) => h("th", {}, t(k))),
                ),
              ),
              h(
                "tbody",
                {},
                page.items.map((entry) =>
                  h(
                    "tr",
                    { dataset: { action: entry.action } },
                    h("td", {}, dateTime(entry.at)),
                    h(
                      "td",
                      {},
                      named(entry.actor_name || entry.actor, entry.actor),
                      h("span", { class: "muted small" }, ` · ${label("role", entry.role)}`),
                    ),
                    h("td", {}, label("audit_action", entry.action)),
                    h("td", { class: "small" }, target(entry.target)),
                    h(
                      "td",
                      { class: "small" },
                      h("span", { translate: "no" }, detailText(entry.details || {})),
                    ),
                    h("td", { class: "small" }, h("span", { translate: "no" }, entry.client_ip)),
                  ),
                ),
              ),
            ),
          )
        : h("p", { class: "empty" }, t("audit.empty")),
    );
    mount(
      pager,
      h(
        "span",
        { class: "muted" },
        t("audit.summary", {
          from: page.total ? offset + 1 : 0,
          to: offset + page.items.length,
          total: page.total,
        }),
      ),
      offset > 0
        ? h(
            "button",
            {
              class: "ghost",
              onclick: () => {
                offset = Math.max(0, offset - PAGE);
                load();
              },
            },
            t("audit.newer"),
          )
        : null,
      offset + page.items.length < page.total
        ? h(
            "button",
            {
              class: "ghost",
              id: "audit-older",
              onclick: () => {
                offset += PAGE;
                load();
              },
            },
            t("audit.older"),
          )
        : null,
    );
  }

  const actor = h("input", {
    id: "audit-actor",
    type: "search",
    placeholder: t("audit.actor_placeholder"),
  });
  let timer = null;
  actor.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      filters.actor = actor.value.trim();
      offset = 0;
      load();
    }, 300);
  });
  const action = h(
    "select",
    {
      id: "audit-action",
      onchange: () => {
        filters.action = action.value;
        offset = 0;
        load();
      },
    },
    h("option", { value: "" }, t("queue.filter.all")),
    AUDIT_ACTIONS.map((value) => h("option", { value }, label("audit_action", value))),
  );
  container.append(
    h(
      "section",
      { class: "audit-view" },
      h("div", { class: "view-head" }, h("h2", {}, t("audit.title"))),
      h(
        "div",
        { class: "toolbar filters" },
        h("label", { class: "field" }, h("span", {}, t("audit.actor")), actor),
        h("label", { class: "field" }, h("span", {}, t("audit.action")), action),
      ),
      body,
      pager,
    ),
  );
  void ctx;
  load();
  return () => clearTimeout(timer);
}
