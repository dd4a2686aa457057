// Statistics: incidents per type and day (stacked bars), time to acknowledge and to close
// (p50/p90), false-alarm rate per camera and rule. Plain CSS bars, no chart library.

import { get } from "../api.js";
import { h, mount } from "../dom.js";
import { duration, percent } from "../format.js";
import { label, t } from "../i18n.js";
import { TYPES } from "../incidents.js";
import { cameraName, loadDirectory, named, ruleName, siteIds, siteName } from "../names.js";

/** The UTC days (YYYY-MM-DD) of the last `count` days up to today, as the server counts them. */
export function periodDays(count, now = new Date()) {
  const days = [];
  for (let back = count - 1; back >= 0; back -= 1) {
    days.push(new Date(now.getTime() - back * 86_400_000).toISOString().slice(0, 10));
  }
  return days;
}

function daysChart(perTypeDay, period) {
  if (!perTypeDay.length) return h("p", { class: "empty" }, t("stats.no_incidents"));
  const days = [...new Set([...periodDays(period), ...perTypeDay.map((row) => row.day)])].sort();
  const types = [...new Set([...TYPES, ...perTypeDay.map((row) => row.type)])];
  const count = (day, type) =>
    perTypeDay
      .filter((row) => row.day === day && row.type === type)
      .reduce((sum, row) => sum + row.count, 0);
  const totals = days.map((day) => types.reduce((sum, type) => sum + count(day, type), 0));
  const max = Math.max(1, ...totals);
  return h(
    "div",
    { class: "chart", id: "stats-per-day" },
    h(
      "div",
      { class: "bars", role: "img", "aria-label": t("stats.per_day") },
      days.map((day, i) =>
        h(
          "div",
          { class: "bar-col", title: `${day}: ${totals[i]}` },
          h(
            "div",
            { class: "bar-area" },
            h("span", { class: "bar-total" }, totals[i] || ""),
            h(
              "div",
              { class: "bar-stack", style: `height:${(totals[i] / max) * 100}%` },
              types
                .filter((type) => count(day, type) > 0)
                .map((type) =>
                  h("div", {
                    class: `seg type-${type}`,
                    style: `flex-grow:${count(day, type)}`,
                    title: `${label("type", type)}: ${count(day, type)}`,
                  }),
                ),
            ),
          ),
          h("span", { class: "bar-label" }, days.length <= 31 || i % 7 === 0 ? day.slice(5) : ""),
        ),
      ),
    ),
    h(
      "ul",
      { class: "legend" },
      types.map((type) =>
        h("li", {}, h("span", { class: `swatch type-${type}` }), label("type", type)),
      ),
    ),
  );
}

function percentiles(titleKey, value, id) {
  return h(
    "div",
    { class: "panel tile", id },
    h("h3", {}, t(titleKey)),
    h(
      "div",
      { class: "tile-values" },
      h(
        "div",
        {},
        h("span", { class: "muted" }, `${t("stats.p50")} `),
        h("strong", {}, duration(value?.p50)),
      ),
      h(
        "div",
        {},
        h("span", { class: "muted" }, `${t("stats.p90")} `),
        h("strong", {}, duration(value?.p90)),
      ),
    ),
  );
}

function falseAlarms(rows, siteOf) {
  if (!rows.length) return h("p", { class: "empty" }, t("stats.no_incidents"));
  const sorted = [...rows].sort((a, b) => b.rate - a.rate || b.incidents - a.incidents);
  return h(
    "table",
    { class: "false-alarms", id: "stats-false-alarms" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        [
          "stats.col.camera",
          "stats.col.rule",
          "stats.col.incidents",
          "stats.col.false_alarms",
          "stats.col.rate",
        ].map((k) => h("th", {}, t(k))),
      ),
    ),
    h(
      "tbody",
      {},
      sorted.map((row) =>
        h(
          "tr",
          {},
          h("td", {}, named(cameraName(siteOf(row), row.camera_id), row.camera_id)),
          h("td", {}, named(ruleName(siteOf(row), row.camera_id, row.rule_id), row.rule_id)),
          h("td", { class: "num" }, row.incidents),
          h("td", { class: "num" }, row.false_alarms),
          h(
            "td",
            { class: "rate" },
            h(
              "div",
              { class: "hbar" },
              h("div", { class: "hbar-fill", style: `width:${Math.min(1, row.rate) * 100}%` }),
            ),
            percent(row.rate),
          ),
        ),
      ),
    ),
  );
}

export function render(container, params, ctx) {
  start(container, params, ctx);
}

async function start(container, _params, _ctx) {
  const query = { days: 7, site_id: "" };
  const body = h("div", { id: "stats-body" }, h("p", { class: "muted" }, t("common.loading")));
  let sites = [];
  const siteOf = (row) => row.site_id;

  async function load() {
    try {
      const stats = await get("/api/v1/stats", query);
      mount(
        body,
        h(
          "div",
          { class: "panel" },
          h("h3", {}, t("stats.per_day")),
          daysChart(stats.per_type_day || [], query.days),
        ),
        h(
          "div",
          { class: "tiles" },
          percentiles("stats.time_to_ack", stats.time_to_ack_s, "stats-ack"),
          percentiles("stats.time_to_close", stats.time_to_close_s, "stats-close"),
        ),
        h(
          "div",
          { class: "panel" },
          h("h3", {}, t("stats.false_alarm_rate")),
          falseAlarms(stats.false_alarm_rate || [], siteOf),
        ),
      );
    } catch (error) {
      mount(body, h("p", { class: "form-error" }, t("error.generic", { detail: error.message })));
    }
  }

  const days = h(
    "select",
    {
      id: "stats-days",
      onchange: () => {
        query.days = Number(days.value);
        load();
      },
    },
    [7, 30, 90].map((n) =>
      h("option", { value: n, selected: n === query.days }, t("stats.days", { n })),
    ),
  );
  await loadDirectory().catch(() => null);
  sites = siteIds();
  const site =
    sites.length > 1
      ? h(
          "select",
          {
            id: "stats-site",
            onchange: () => {
              query.site_id = site.value;
              load();
            },
          },
          h("option", { value: "" }, t("queue.filter.all")),
          sites.map((s) => h("option", { value: s }, siteName(s))),
        )
      : null;
  container.append(
    h(
      "section",
      { class: "stats-view" },
      h("div", { class: "view-head" }, h("h2", {}, t("stats.title"))),
      h(
        "div",
        { class: "toolbar" },
        h("label", { for: "stats-days" }, t("stats.period")),
        days,
        site ? [h("label", { for: "stats-site" }, t("queue.filter.site")), site] : null,
      ),
      body,
    ),
  );
  load();
}
