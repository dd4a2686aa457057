// 我的工单: the orders dispatched to the field worker's team, as cards for a phone: what and
// where, since when, the status, the deadline; 开始处置 on the card, the rest in the order.

import { get, post } from "../api.js";
import { h, mount } from "../dom.js";
import { ago, dateTime, measure } from "../format.js";
import { label, t } from "../i18n.js";
import { CLOSED, actionsFor, isOverdue } from "../incidents.js";
import { placeOf } from "../names.js";

const LIMIT = 100;

function card(order, ctx, reload) {
  const place = placeOf(order);
  const canStart = actionsFor(order, ctx.user).includes("handle");
  return h(
    "article",
    {
      class: `order-card sev-${order.severity || "normal"} status-${order.status}`,
      dataset: { id: order.id, status: order.status },
    },
    h(
      "a",
      { class: "order-main", href: `#/incidents/${order.id}` },
      h(
        "div",
        { class: "order-title" },
        h("strong", {}, label("type", order.type)),
        h("span", { class: "muted small" }, ` #${order.id}`),
        h("span", { class: `badge status status-${order.status}` }, label("status", order.status)),
        isOverdue(order) ? h("span", { class: "badge overdue" }, t("incident.overdue")) : null,
      ),
      h("div", { class: "order-place" }, place.camera, " ", place.where),
      h("div", { class: "order-measure" }, measure(order)),
      h(
        "div",
        { class: "muted small" },
        t("orders.since", {
          at: dateTime(order.first_observed_at),
          ago: ago(order.first_observed_at),
        }),
      ),
    ),
    h(
      "div",
      { class: "order-actions" },
      canStart
        ? h(
            "button",
            {
              class: "primary",
              id: `start-${order.id}`,
              onclick: async (event) => {
                event.currentTarget.disabled = true;
                try {
                  await post(`/api/v1/incidents/${order.id}/handle`, {});
                  ctx.toast(t("actions.done_toast", { action: t("action.handle") }), "ok");
                } catch (error) {
                  ctx.toast(t("error.generic", { detail: error.message }), "error");
                }
                reload();
              },
            },
            t("action.handle"),
          )
        : null,
      h("a", { class: "button", href: `#/incidents/${order.id}` }, t("orders.open")),
    ),
  );
}

export function render(container, _params, ctx) {
  const list = h(
    "div",
    { class: "orders", id: "orders" },
    h("p", { class: "muted" }, t("common.loading")),
  );
  const done = h("div", { class: "orders done", id: "orders-done" });
  const summary = h("p", { class: "muted", id: "orders-summary" });
  const team = ctx.user.team;

  async function load() {
    try {
      const [open, closed] = await Promise.all([
        get("/api/v1/incidents", { open: true, team, sort: "urgency", limit: LIMIT }),
        get("/api/v1/incidents", { open: false, team, sort: "opened", limit: 10 }),
      ]);
      const working = open.items.filter((order) => order.status !== "reported");
      summary.textContent = t("orders.summary", { n: working.length, team: label("team", team) });
      mount(
        list,
        working.length
          ? working.map((order) => card(order, ctx, load))
          : h("p", { class: "empty" }, t("orders.empty")),
      );
      mount(
        done,
        closed.items.length ? h("h3", {}, t("orders.recent_done")) : null,
        closed.items.filter((o) => CLOSED.has(o.status)).map((order) => card(order, ctx, load)),
      );
    } catch (error) {
      mount(list, h("p", { class: "form-error" }, t("error.generic", { detail: error.message })));
    }
  }

  container.append(
    h(
      "section",
      { class: "orders-view" },
      h("div", { class: "view-head" }, h("h2", {}, t("orders.title")), summary),
      list,
      done,
    ),
  );
  const stopFeed = ctx.feed.on("incident", () => load());
  load();
  return stopFeed;
}
