// The incident queue: most urgent first (open, unacknowledged, critical, overdue, escalated,
// latest alert), filtered, searched, sorted by any column, updated live; operators select
// rows to acknowledge them together. Unacknowledged rows stay marked after a reload (the
// server says so); a new alert flashes its row and, when the row is out of view, says so.

import { ApiError, get, post } from "../api.js";
import { h, mount } from "../dom.js";
import { ago, dateTime, dayStart, duration, lateBy, measure } from "../format.js";
import { label, t } from "../i18n.js";
import { CLOSED, STATUSES, TYPES, atLeast, isOverdue, isUnseen, markSeen } from "../incidents.js";
import { cameraName, camerasOf, named, placeOf, siteIds, siteName } from "../names.js";

const PAGE = 50;
const LATE_S = 60; // an alert that reached the server this much after it was seen is "late"
const QUICK = {
  unacked: { status: "reported" },
  urgent: { severity: "critical", open: "true" },
  overdue: { overdue: "true" },
  alarming: { status: "reported", severity: "critical" },
};
const SORTS = {
  type: "severity",
  place: "camera",
  status: "status",
  observed: "observed",
  alerts: "alerts",
};
const COLUMNS = [
  ["type", "queue.col.type"],
  ["place", "queue.col.place"],
  ["status", "queue.col.status"],
  ["observed", "queue.col.observed"],
  ["alerts", "queue.col.alerts"],
  ["measure", "queue.col.measure"],
  ["assignee", "queue.col.assignee"],
];

function badges(incident) {
  const late = lateBy(incident);
  return [
    incident.silenced ? h("span", { class: "badge muted-badge" }, t("incident.silenced")) : null,
    incident.inhibited
      ? h(
          "span",
          { class: "badge inhibited", title: t("incident.inhibited_hint") },
          t("incident.inhibited"),
        )
      : null,
    late >= LATE_S
      ? h(
          "span",
          { class: "badge late", title: t("incident.late_hint") },
          t("incident.late", { d: duration(late) }),
        )
      : null,
  ];
}

function assigneeCell(incident) {
  return [
    incident.assignee
      ? h("span", {}, label("team", incident.assignee))
      : h(
          "span",
          { class: CLOSED.has(incident.status) ? "muted" : "unassigned" },
          t("queue.unassigned"),
        ),
    incident.escalation_level
      ? h(
          "span",
          { class: "badge escalated" },
          t("incident.escalation_value", { n: incident.escalation_level }),
        )
      : null,
    isOverdue(incident) ? h("span", { class: "badge overdue" }, t("incident.overdue")) : null,
  ];
}

function row(incident, ctx, selection, onSelect) {
  const place = placeOf(incident);
  const operator = atLeast(ctx.user, "operator");
  const open = () => {
    markSeen(incident.id);
    ctx.navigate(`#/incidents/${incident.id}`);
  };
  const box = operator
    ? h("input", {
        type: "checkbox",
        class: "pick",
        "aria-label": t("queue.select_one", { id: incident.id }),
        checked: selection.has(incident.id),
        disabled: incident.status !== "reported",
        onclick: (event) => event.stopPropagation(),
        onchange: (event) => onSelect(incident.id, event.target.checked),
      })
    : null;
  return h(
    "tr",
    {
      class: [
        "incident-row",
        `sev-${incident.severity || "normal"}`,
        `status-${incident.status}`,
        incident.status === "reported" ? "unacked" : "",
        isUnseen(incident.id) ? "unseen" : "",
        CLOSED.has(incident.status) ? "is-closed" : "",
      ].join(" "),
      dataset: { id: incident.id, status: incident.status, type: incident.type },
      tabindex: 0,
      onclick: open,
      onkeydown: (event) => {
        if (event.key === "Enter") open();
      },
    },
    operator ? h("td", { class: "pick-cell" }, box) : null,
    h(
      "td",
      { class: "cell-type" },
      h(
        "span",
        { class: `badge sev sev-${incident.severity || "normal"}` },
        label("severity", incident.severity),
      ),
      h("strong", { class: "type" }, label("type", incident.type)),
      h("span", { class: "muted small id" }, ` #${incident.id}`),
      badges(incident),
    ),
    h("td", { class: "cell-place" }, h("div", {}, place.camera), h("div", {}, place.where)),
    h(
      "td",
      { class: "cell-status" },
      h(
        "span",
        { class: `badge status status-${incident.status}` },
        label("status", incident.status),
      ),
    ),
    h(
      "td",
      { class: "cell-time" },
      h("div", {}, dateTime(incident.first_observed_at || incident.opened_at)),
      h("div", { class: "muted small" }, ago(incident.first_observed_at || incident.opened_at)),
    ),
    h(
      "td",
      { class: "num cell-alerts", title: t("queue.col.alerts") },
      t("queue.alerts_value", { n: incident.alert_count ?? 1 }),
    ),
    h("td", { class: "cell-measure" }, measure(incident)),
    h("td", { class: "cell-assignee" }, assigneeCell(incident)),
  );
}

const SEVERITY_RANK = { critical: 0, high: 1, normal: 2 };

/** The server's urgency order, for placing a live arrival before the server re-reads. */
function urgencyKey(incident) {
  return [
    CLOSED.has(incident.status) ? 1 : 0,
    incident.status === "reported" ? 0 : 1,
    SEVERITY_RANK[incident.severity] ?? 3,
    isOverdue(incident) ? 0 : 1,
    -(incident.escalation_level || 0),
    -Date.parse(incident.last_alert_at || incident.opened_at),
  ];
}

function byUrgency(a, b) {
  const [x, y] = [urgencyKey(a), urgencyKey(b)];
  for (let i = 0; i < x.length; i += 1) if (x[i] !== y[i]) return x[i] - y[i];
  return b.id - a.id;
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

export function render(container, params, ctx) {
  const query = params.query || {};
  const quick = QUICK[query.quick] ? query.quick : "";
  const filters = {
    status: query.status || "",
    type: query.type || "",
    site_id: query.site_id || "",
    camera_id: query.camera_id || "",
    from: query.from || "",
    to: query.to || "",
    q: query.q || "",
  };
  const sorting = { sort: query.sort || "urgency", order: query.order || "desc" };
  const operator = atLeast(ctx.user, "operator");
  let items = [];
  let total = 0;
  let shown = PAGE;
  const selection = new Set();
  const body = h("tbody", { id: "queue-body" });
  const summary = h("p", { class: "muted", id: "queue-summary" });
  const notice = h("div", { class: "new-alert-notice", id: "new-alert", hidden: true });
  const bulkBar = h("div", { class: "bulk-bar", id: "bulk-bar", hidden: true });
  const more = h(
    "button",
    {
      class: "ghost",
      id: "queue-more",
      onclick: () => {
        shown += PAGE;
        load();
      },
    },
    t("queue.more"),
  );
  const head = h("thead", {});

  function serverQuery() {
    const status = filters.status === "open" ? "" : filters.status;
    return {
      ...QUICK[quick],
      status: status || QUICK[quick]?.status,
      open: filters.status === "open" ? "true" : QUICK[quick]?.open,
      type: filters.type,
      site_id: filters.site_id,
      camera_id: filters.camera_id,
      since: dayStart(filters.from),
      until: dayStart(filters.to, 1),
      q: filters.q.trim(),
      sort: sorting.sort,
      order: sorting.order,
    };
  }

  function drawHead() {
    mount(
      head,
      h(
        "tr",
        {},
        operator
          ? h(
              "th",
              { class: "pick-cell" },
              h("input", {
                type: "checkbox",
                id: "pick-all",
                "aria-label": t("queue.select_all"),
                onchange: (event) => {
                  for (const item of items) {
                    if (item.status !== "reported") continue;
                    if (event.target.checked) selection.add(item.id);
                    else selection.delete(item.id);
                  }
                  draw();
                },
              }),
            )
          : null,
        COLUMNS.map(([key, text]) => {
          const sortKey = SORTS[key];
          if (!sortKey) return h("th", {}, t(text));
          const active = sorting.sort === sortKey;
          const arrow = active ? (sorting.order === "asc" ? " ↑" : " ↓") : "";
          return h(
            "th",
            { "aria-sort": active ? (sorting.order === "asc" ? "ascending" : "descending") : null },
            h(
              "button",
              {
                class: `sort${active ? " active" : ""}`,
                id: `sort-${key}`,
                onclick: () => {
                  if (active) sorting.order = sorting.order === "asc" ? "desc" : "asc";
                  else Object.assign(sorting, { sort: sortKey, order: "desc" });
                  drawHead();
                  load();
                },
              },
              t(text),
              arrow,
            ),
          );
        }),
      ),
    );
  }

  function drawBulk() {
    bulkBar.hidden = !operator || selection.size === 0;
    if (bulkBar.hidden) return;
    mount(
      bulkBar,
      h("span", {}, t("queue.selected", { n: selection.size })),
      h(
        "button",
        { class: "primary", id: "bulk-ack", onclick: bulkAck },
        t("queue.bulk_ack", { n: selection.size }),
      ),
      h(
        "button",
        {
          class: "ghost",
          onclick: () => {
            selection.clear();
            draw();
          },
        },
        t("queue.clear_selection"),
      ),
    );
  }

  function draw() {
    for (const id of [...selection]) {
      if (!items.some((item) => item.id === id && item.status === "reported")) selection.delete(id);
    }
    mount(
      body,
      items.map((incident) =>
        row(incident, ctx, selection, (id, on) => {
          if (on) selection.add(id);
          else selection.delete(id);
          drawBulk();
        }),
      ),
    );
    if (!items.length) {
      body.append(
        h(
          "tr",
          {},
          h(
            "td",
            { colspan: COLUMNS.length + (operator ? 1 : 0), class: "empty" },
            t("queue.empty"),
          ),
        ),
      );
    }
    summary.textContent = t("queue.summary", { shown: items.length, total });
    more.hidden = items.length >= total;
    drawBulk();
  }

  async function bulkAck() {
    const ids = [...selection];
    try {
      const answer = await post("/api/v1/incidents/bulk-ack", { ids });
      const done = answer.items.filter((item) => item.ok).length;
      const failed = answer.items.length - done;
      ctx.toast(
        failed ? t("queue.bulk_partial", { n: done, failed }) : t("queue.bulk_done", { n: done }),
        failed ? "error" : "ok",
      );
    } catch (error) {
      ctx.toast(t("error.generic", { detail: error.message }), "error");
    }
    selection.clear();
    load();
  }

  async function load() {
    try {
      const page = await get("/api/v1/incidents", { ...serverQuery(), limit: shown, offset: 0 });
      items = page.items;
      total = page.total;
      draw();
    } catch (error) {
      const detail = error instanceof ApiError ? error.message : String(error);
      ctx.toast(t("error.generic", { detail }), "error");
    }
  }

  let reloadTimer = null;
  function reloadSoon() {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(load, 300);
  }

  function setFilter(key) {
    return (value) => {
      filters[key] = value;
      if (key === "site_id") filters.camera_id = "";
      drawToolbar();
      load();
    };
  }

  const toolbar = h("div", { class: "toolbar filters" });
  function drawToolbar() {
    const sites = siteIds();
    const cameraSites = filters.site_id ? [filters.site_id] : sites;
    const cameraOptions = cameraSites.flatMap((site) =>
      camerasOf(site).map(([id, name]) => [
        id,
        sites.length > 1 ? `${siteName(site)} · ${name}` : name,
      ]),
    );
    const search = h("input", {
      type: "search",
      id: "filter-q",
      value: filters.q,
      placeholder: t("queue.search_placeholder"),
      oninput: () => {
        filters.q = search.value;
        reloadSoon();
      },
    });
    mount(
      toolbar,
      h(
        "label",
        { class: "field" },
        h("span", {}, t("queue.filter.status")),
        select(
          "filter-status",
          filters.status,
          [
            ["", t("queue.filter.all")],
            ["open", t("queue.filter.open")],
            ...STATUSES.map((s) => [s, label("status", s)]),
          ],
          setFilter("status"),
        ),
      ),
      h(
        "label",
        { class: "field" },
        h("span", {}, t("queue.filter.type")),
        select(
          "filter-type",
          filters.type,
          [["", t("queue.filter.all")], ...TYPES.map((s) => [s, label("type", s)])],
          setFilter("type"),
        ),
      ),
      sites.length > 1
        ? h(
            "label",
            { class: "field" },
            h("span", {}, t("queue.filter.site")),
            select(
              "filter-site",
              filters.site_id,
              [["", t("queue.filter.all")], ...sites.map((s) => [s, siteName(s)])],
              setFilter("site_id"),
            ),
          )
        : null,
      h(
        "label",
        { class: "field" },
        h("span", {}, t("queue.filter.camera")),
        select(
          "filter-camera",
          filters.camera_id,
          [["", t("queue.filter.all")], ...cameraOptions],
          setFilter("camera_id"),
        ),
      ),
      h(
        "label",
        { class: "field" },
        h("span", {}, t("queue.filter.from")),
        h("input", {
          type: "date",
          id: "filter-from",
          value: filters.from,
          onchange: (event) => setFilter("from")(event.target.value),
        }),
      ),
      h(
        "label",
        { class: "field" },
        h("span", {}, t("queue.filter.to")),
        h("input", {
          type: "date",
          id: "filter-to",
          value: filters.to,
          onchange: (event) => setFilter("to")(event.target.value),
        }),
      ),
      h("label", { class: "field grow" }, h("span", {}, t("queue.filter.search")), search),
    );
  }

  function quickBar() {
    return h(
      "div",
      { class: "quick", role: "group", "aria-label": t("queue.quick") },
      [
        ["", "queue.quick_all"],
        ...Object.keys(QUICK).map((key) => [key, `queue.quick_${key}`]),
      ].map(([key, text]) =>
        h(
          "a",
          {
            class: `chip${key === quick ? " active" : ""}`,
            id: `quick-${key || "all"}`,
            href: key ? `#/incidents?quick=${key}` : "#/incidents",
          },
          t(text),
        ),
      ),
    );
  }

  function showNotice(incident) {
    const target = body.querySelector(`tr[data-id="${incident.id}"]`);
    if (!target) return;
    const box = target.getBoundingClientRect();
    if (box.top >= 0 && box.bottom <= window.innerHeight) return; // in view: it flashes
    mount(
      notice,
      h(
        "span",
        {},
        t("queue.new_alert", { type: label("type", incident.type), id: incident.id }),
        " ",
        named(cameraName(incident.site_id, incident.camera_id), incident.camera_id),
      ),
      h(
        "button",
        {
          class: "primary",
          id: "new-alert-show",
          onclick: () => {
            body.querySelector(`tr[data-id="${incident.id}"]`)?.scrollIntoView({ block: "center" });
            notice.hidden = true;
          },
        },
        t("queue.show_row"),
      ),
      h("button", { class: "ghost", onclick: () => (notice.hidden = true) }, t("common.close")),
    );
    notice.hidden = false;
  }

  drawHead();
  drawToolbar();
  container.append(
    h(
      "section",
      { class: "queue-view" },
      h("div", { class: "view-head" }, h("h2", {}, t("queue.title")), summary),
      quickBar(),
      h(
        "details",
        {
          class: "filter-box",
          open: window.innerWidth > 800 || Object.values(filters).some(Boolean),
        },
        h("summary", { id: "filter-toggle" }, t("queue.filters")),
        toolbar,
      ),
      notice,
      bulkBar,
      h("div", { class: "table-wrap" }, h("table", { class: "queue", id: "queue" }, head, body)),
      more,
    ),
  );

  /** Whether a live incident belongs in this list by the filters the page can judge itself
   * (a search or dates leave it to the server). */
  function fits(incident) {
    const wanted = serverQuery();
    if (wanted.q || wanted.since || wanted.until || wanted.overdue) return false;
    if (wanted.status && incident.status !== wanted.status) return false;
    if (wanted.open && CLOSED.has(incident.status)) return false;
    for (const name of ["type", "site_id", "camera_id", "severity"]) {
      if (wanted[name] && incident[name] !== wanted[name]) return false;
    }
    return true;
  }

  const stopFeed = ctx.feed.on("incident", (incident) => {
    const index = items.findIndex((item) => item.id === incident.id);
    const newAlert = index >= 0 && (incident.alert_count ?? 1) > (items[index].alert_count ?? 1);
    if (index >= 0) {
      items[index] = incident;
      draw();
    } else if (fits(incident)) {
      // shown at once where the server will put it; the re-read below confirms the order
      items.push(incident);
      if (sorting.sort === "urgency") items.sort(byUrgency);
      else items.unshift(items.pop());
      total += 1;
      draw();
    }
    reloadSoon(); // the server places it (order, filters) and counts the total
    if (newAlert || index < 0) setTimeout(() => showNotice(incident), 400);
  });
  const clock = setInterval(draw, 30_000);
  load();
  return () => {
    stopFeed();
    clearInterval(clock);
    clearTimeout(reloadTimer);
  };
}
