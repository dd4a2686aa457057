// Dead letters (admins, issue 14): MQTT messages the server refused for good, with why, from
// which site and box, and their text; replay one once its cause is fixed, or discard it.

import { get, post } from "../api.js";
import { h, mount } from "../dom.js";
import { dateTime } from "../format.js";
import { t } from "../i18n.js";

const STATUSES = ["held", "replayed", "discarded"];
const BASE = "/api/v1/dead-letters";

export function render(container, _params, ctx) {
  let status = "held";
  const body = h("div", { id: "dead-letters-body" }, h("p", { class: "muted" }, t("common.loading")));
  const count = h("span", { class: "muted", id: "dead-letters-held" });

  async function act(letter, action) {
    try {
      const result = await post(`${BASE}/${letter.id}/${action}`);
      if (action === "discard") ctx.toast(t("dead_letters.discarded"));
      else ctx.toast(t(result.stored ? "dead_letters.replayed" : "dead_letters.replayed_duplicate"));
    } catch (error) {
      ctx.toast(t("dead_letters.refused", { detail: error.message }), "error");
    }
    load();
  }

  async function show(letter, holder) {
    let detail;
    try {
      detail = await get(`${BASE}/${letter.id}`);
    } catch (error) {
      mount(holder, h("p", { class: "form-error" }, t("error.generic", { detail: error.message })));
      return;
    }
    mount(
      holder,
      h("pre", { class: "payload", translate: "no" }, detail.payload_text),
      detail.truncated ? h("p", { class: "muted small" }, t("dead_letters.truncated")) : null,
    );
  }

  function row(letter) {
    const payload = h("div", { class: "payload-holder" });
    const held = letter.status === "held";
    return h(
      "tr",
      { dataset: { reason: letter.reason, id: String(letter.id) } },
      h("td", {}, dateTime(letter.last_at), letter.times > 1 ? ` ×${letter.times}` : ""),
      h("td", { class: "small" }, h("span", { translate: "no" }, letter.topic)),
      h(
        "td",
        {},
        h("code", { translate: "no" }, letter.reason),
        h("div", { class: "muted small", translate: "no" }, letter.detail),
      ),
      h(
        "td",
        { class: "small" },
        letter.event_id ? h("span", { translate: "no" }, `${letter.event_id} / ${letter.seq}`) : "-",
      ),
      h(
        "td",
        {},
        h("button", { class: "ghost", onclick: () => show(letter, payload) }, t("dead_letters.show")),
        held
          ? h("button", { class: "primary", onclick: () => act(letter, "replay") }, t("dead_letters.replay"))
          : null,
        held
          ? h("button", { class: "ghost", onclick: () => act(letter, "discard") }, t("dead_letters.discard"))
          : h("span", { class: "muted small" }, letter.handled_by || ""),
        payload,
      ),
    );
  }

  async function load() {
    let page;
    try {
      page = await get(BASE, { status, limit: 200 });
    } catch (error) {
      mount(body, h("p", { class: "form-error" }, t("error.generic", { detail: error.message })));
      return;
    }
    count.textContent = t("dead_letters.held_count", { count: page.held });
    mount(
      body,
      page.items.length
        ? h(
            "div",
            { class: "table-wrap" },
            h(
              "table",
              { class: "dead-letters", id: "dead-letters" },
              h(
                "thead",
                {},
                h(
                  "tr",
                  {},
                  [
                    "dead_letters.col.received",
                    "dead_letters.col.topic",
                    "dead_letters.col.reason",
                    "dead_letters.col.event",
                    "dead_letters.col.actions",
                  ].map((key) => h("th", {}, t(key))),
                ),
              ),
              h("tbody", {}, page.items.map(row)),
            ),
          )
        : h("p", { class: "empty" }, t("dead_letters.empty")),
    );
  }

  const filter = h(
    "select",
    {
      id: "dead-letters-status",
      onchange: () => {
        status = filter.value;
        load();
      },
    },
    STATUSES.map((value) => h("option", { value }, t(`dead_letters.status.${value}`))),
  );
  container.append(
    h(
      "section",
      { class: "dead-letters-view" },
      h("div", { class: "view-head" }, h("h2", {}, t("dead_letters.title")), count),
      h("p", { class: "muted" }, t("dead_letters.intro")),
      h("div", { class: "toolbar filters" }, h("label", { class: "field" }, filter)),
      body,
    ),
  );
  load();
  return () => {};
}
