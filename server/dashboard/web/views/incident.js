// One incident: evidence (snapshots, clip, a thrown object's trajectory), its place on the site
// plan, the one-click actions of its work order, the transition history and its messages.

import { ApiError, get, post, withToken } from "../api.js";
import { h, mount, svg } from "../dom.js";
import { ago, dateTime, duration, score } from "../format.js";
import { label, t } from "../i18n.js";
import { CLOSED, DWELL_TYPES, TEAMS, actionsFor, markSeen } from "../incidents.js";
import { loadPlanImage, planFigure } from "./plan-image.js";

/** An SVG over a snapshot: the trajectory `[[pts_s, x, y], ...]` (normalised) and its origin. */
export function trajectoryOverlay(trajectory) {
  const points = (trajectory || [])
    .filter((p) => Array.isArray(p) && p.length >= 3)
    .map(([, x, y]) => [Number(x), Number(y)])
    .filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  if (points.length < 2) return null;
  const [first] = points;
  const last = points[points.length - 1];
  return svg(
    "svg",
    {
      class: "overlay trajectory",
      viewBox: "0 0 1 1",
      preserveAspectRatio: "none",
      "aria-label": t("incident.trajectory"),
    },
    svg("polyline", { points: points.map(([x, y]) => `${x},${y}`).join(" "), class: "path" }),
    svg("circle", { cx: first[0], cy: first[1], r: 0.012, class: "origin" }),
    svg("circle", { cx: last[0], cy: last[1], r: 0.008, class: "landing" }),
  );
}

function field(key, value) {
  return [h("dt", {}, t(key)), h("dd", {}, value ?? "—")];
}

function summary(incident) {
  const overdue =
    incident.deadline_at &&
    !CLOSED.has(incident.status) &&
    Date.parse(incident.deadline_at) < Date.now();
  const facts = [
    field("incident.site", incident.site_id),
    field("incident.camera", incident.camera_id),
    field("incident.zone", incident.zone_id),
    field("incident.rule", incident.rule_id),
    field("incident.opened", `${dateTime(incident.opened_at)} (${ago(incident.opened_at)})`),
    field("incident.updated", dateTime(incident.updated_at)),
    field("incident.acked", dateTime(incident.acked_at)),
    field("incident.closed", dateTime(incident.closed_at)),
    field("incident.alerts", incident.alert_count ?? 1),
    field("incident.state", label("state", incident.state)),
    field("incident.score", score(incident.score)),
    field("incident.assignee", incident.assignee ? label("team", incident.assignee) : null),
    field(
      "incident.deadline",
      incident.deadline_at
        ? [
            dateTime(incident.deadline_at),
            overdue ? h("span", { class: "badge overdue" }, t("incident.overdue")) : null,
          ]
        : null,
    ),
    field(
      "incident.escalation",
      incident.escalation_level
        ? t("incident.escalation_value", { n: incident.escalation_level })
        : "0",
    ),
  ];
  if (DWELL_TYPES.has(incident.type)) {
    facts.unshift(
      field("incident.dwell", h("strong", { id: "incident-dwell" }, duration(incident.dwell_s))),
    );
  }
  const floor = incident.details?.origin_floor;
  if (incident.type === "falling_object") {
    facts.unshift(
      field(
        "incident.origin_floor",
        h(
          "strong",
          { id: "incident-floor" },
          floor === undefined || floor === null
            ? t("incident.floor_unknown")
            : t("incident.floor_value", { floor }),
        ),
      ),
    );
  }
  return h("dl", { class: "facts" }, facts);
}

function evidence(incident) {
  const files = incident.evidence || [];
  const trajectory = incident.type === "falling_object" ? incident.details?.trajectory : null;
  const snapshots = files.filter((file) => file.kind === "snapshot");
  const clips = files.filter((file) => file.kind === "clip");
  if (!files.length) return h("p", { class: "muted" }, t("incident.no_evidence"));
  return h(
    "div",
    { class: "evidence" },
    snapshots.map((file) =>
      h(
        "figure",
        { class: "snapshot" },
        h(
          "div",
          { class: "frame" },
          h("img", { src: withToken(file.url), alt: t("incident.snapshot"), loading: "lazy" }),
          trajectoryOverlay(trajectory),
        ),
        h("figcaption", {}, label("evidence_role", file.role || "snapshot")),
      ),
    ),
    clips.map((file) =>
      h(
        "figure",
        { class: "clip" },
        h("video", {
          src: withToken(file.url),
          controls: true,
          preload: "metadata",
          type: file.content_type,
        }),
        h(
          "figcaption",
          {},
          t("incident.clip"),
          " · ",
          h("a", { href: withToken(file.url), download: "" }, t("incident.download")),
        ),
      ),
    ),
  );
}

function history(detail) {
  const rows = detail.history || [];
  if (!rows.length) return h("p", { class: "muted" }, t("incident.no_history"));
  return h(
    "table",
    { class: "history", id: "incident-history" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["history.at", "history.action", "history.change", "history.by", "history.note"].map((k) =>
          h("th", {}, t(k)),
        ),
      ),
    ),
    h(
      "tbody",
      {},
      rows.map((row) =>
        h(
          "tr",
          { dataset: { action: row.action } },
          h("td", {}, dateTime(row.at)),
          h("td", {}, label("action", row.action)),
          h("td", {}, `${label("status", row.from_status)} → ${label("status", row.to_status)}`),
          h("td", {}, row.by || "—"),
          h("td", {}, row.note || ""),
        ),
      ),
    ),
  );
}

function messages(detail) {
  const rows = detail.events || [];
  if (!rows.length) return null;
  return h(
    "details",
    { class: "messages" },
    h("summary", {}, t("incident.messages", { n: rows.length })),
    h(
      "table",
      {},
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["event.seq", "event.state", "event.observed", "event.pts", "event.score"].map((k) =>
            h("th", {}, t(k)),
          ),
        ),
      ),
      h(
        "tbody",
        {},
        rows.map((event) =>
          h(
            "tr",
            {},
            h("td", { class: "num" }, event.seq),
            h("td", {}, label("state", event.state)),
            h("td", {}, dateTime(event.observed_at)),
            h("td", { class: "num" }, Number(event.pts_s).toFixed(1)),
            h("td", { class: "num" }, score(event.score)),
          ),
        ),
      ),
    ),
  );
}

function actionPanel(incident, ctx, act) {
  const actions = actionsFor(incident, ctx.user);
  if (!actions.length) {
    return h(
      "p",
      { class: "muted" },
      CLOSED.has(incident.status) ? t("actions.done") : t("actions.none"),
    );
  }
  const note = h("textarea", {
    id: "action-note",
    rows: 2,
    placeholder: t("actions.note_placeholder"),
  });
  const team = h(
    "select",
    { id: "dispatch-team" },
    TEAMS.map((value) =>
      h("option", { value, selected: value === incident.assignee }, label("team", value)),
    ),
  );
  const noteValue = () => note.value.trim() || undefined;
  const bodies = {
    ack: () => ({}),
    dispatch: () => ({ team: team.value, note: noteValue() }),
    handle: () => ({}),
    feedback: () => ({ note: note.value.trim() }),
    verify: () => ({}),
    resolve: () => ({ note: noteValue() }),
    "false-alarm": () => ({ note: noteValue() }),
    reopen: () => ({}),
  };
  const style = { ack: "primary", dispatch: "primary", resolve: "ok", "false-alarm": "warn" };
  const buttons = actions.map((action) =>
    h(
      "button",
      {
        class: style[action] || "",
        id: `action-${action}`,
        dataset: { action },
        onclick: async (event) => {
          if (action === "feedback" && !note.value.trim()) {
            ctx.toast(t("actions.feedback_needs_note"), "error");
            note.focus();
            return;
          }
          event.currentTarget.disabled = true;
          await act(action, bodies[action]());
        },
      },
      t(`action.${action}`),
    ),
  );
  return h(
    "div",
    { class: "actions" },
    actions.includes("dispatch")
      ? h("label", { class: "inline" }, t("actions.team"), " ", team)
      : null,
    h("label", { for: "action-note" }, t("actions.note")),
    note,
    h("div", { class: "buttons" }, buttons),
  );
}

async function placeOnPlan(incident, holder) {
  let camera = null;
  try {
    const cameras = await get("/api/v1/cameras");
    camera = (cameras.items || []).find(
      (c) => c.site_id === incident.site_id && c.camera_id === incident.camera_id,
    );
  } catch {
    // the plan still shows without the marker
  }
  const image = await loadPlanImage(incident.site_id);
  if (!image) {
    mount(holder, h("p", { class: "muted" }, t("plan.none")));
    return;
  }
  const markers = camera?.plan_xy ? [{ ...camera, highlight: true }] : [];
  mount(
    holder,
    planFigure(image, markers),
    camera?.plan_xy ? null : h("p", { class: "muted" }, t("plan.camera_not_placed")),
  );
}

export function render(container, params, ctx) {
  const id = Number(params.id);
  const view = h(
    "section",
    { class: "incident-view", id: "incident-view" },
    h("p", { class: "muted" }, t("common.loading")),
  );
  const planHolder = h(
    "div",
    { class: "plan-holder" },
    h("p", { class: "muted" }, t("common.loading")),
  );
  container.append(view);
  let planShown = false;
  markSeen(id);

  async function act(action, body) {
    try {
      await post(`/api/v1/incidents/${id}/${action}`, body);
      ctx.toast(t("actions.done_toast", { action: t(`action.${action}`) }), "ok");
    } catch (error) {
      const key =
        error instanceof ApiError
          ? { 409: "actions.conflict", 403: "actions.forbidden" }[error.status]
          : null;
      ctx.toast(key ? t(key) : t("error.generic", { detail: error.message }), "error");
    }
    await load();
  }

  async function load() {
    let detail;
    try {
      detail = await get(`/api/v1/incidents/${id}`);
    } catch (error) {
      const text =
        error instanceof ApiError && error.status === 404
          ? t("incident.not_found")
          : t("error.generic", { detail: error.message });
      mount(
        view,
        h("a", { href: "#/incidents" }, `← ${t("nav.incidents")}`),
        h("p", { class: "form-error" }, text),
      );
      return;
    }
    mount(
      view,
      h("a", { href: "#/incidents", class: "back" }, `← ${t("nav.incidents")}`),
      h(
        "div",
        { class: "view-head" },
        h("h2", {}, `${label("type", detail.type)} #${detail.id}`),
        h(
          "span",
          { class: `badge sev sev-${detail.severity || "normal"}` },
          label("severity", detail.severity),
        ),
        h(
          "span",
          {
            class: `badge status status-${detail.status}`,
            id: "incident-status",
            dataset: { status: detail.status },
          },
          label("status", detail.status),
        ),
        detail.silenced ? h("span", { class: "badge muted-badge" }, t("incident.silenced")) : null,
        detail.inhibited
          ? h(
              "span",
              { class: "badge muted-badge", title: t("incident.inhibited_hint") },
              t("incident.inhibited"),
            )
          : null,
        detail.legal_hold
          ? h("span", { class: "badge escalated" }, t("incident.legal_hold"))
          : null,
      ),
      h(
        "div",
        { class: "incident-grid" },
        h(
          "div",
          { class: "panel evidence-panel" },
          h("h3", {}, t("incident.evidence")),
          evidence(detail),
        ),
        h(
          "div",
          { class: "side" },
          h(
            "div",
            { class: "panel" },
            h("h3", {}, t("incident.actions")),
            actionPanel(detail, ctx, act),
          ),
          h("div", { class: "panel" }, h("h3", {}, t("incident.summary")), summary(detail)),
          h("div", { class: "panel" }, h("h3", {}, t("incident.on_plan")), planHolder),
        ),
      ),
      h("div", { class: "panel" }, h("h3", {}, t("incident.history")), history(detail)),
      messages(detail),
    );
    if (!planShown) {
      planShown = true;
      placeOnPlan(detail, planHolder);
    }
  }

  const stopFeed = ctx.feed.on("incident", (incident) => {
    if (incident.id === id) load();
  });
  load();
  return stopFeed;
}
