// One incident: its actions first (on a phone, before the evidence), the facts, its place on
// the site plan, the latest alert's evidence (the older alerts folded below, a page at a
// time), the photos field workers took, the transition history and the messages.

import { ApiError, get, post, withToken } from "../api.js";
import { h, mount, svg } from "../dom.js";
import { ago, clock, dateTime, duration, lateBy, measure, score } from "../format.js";
import { label, t } from "../i18n.js";
import {
  CLOSED,
  DWELL_TYPES,
  EVIDENCE_ROLE_ORDER,
  FALSE_ALARM_CATEGORIES,
  TEAMS,
  actionsFor,
  atLeast,
  isOverdue,
  markSeen,
} from "../incidents.js";
import { cameraName, named, personName, ruleName, siteName, zoneName } from "../names.js";
import { PhotoUnreadable, preparePhoto, uploadPhoto } from "../photos.js";
import { loadPlanImage, planFigure } from "./plan-image.js";

const OLDER_PAGE = 10;
const PHOTO_LIMIT = 6;

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

function field(key, value, id) {
  return [h("dt", {}, t(key)), h("dd", { id }, value ?? "—")];
}

function summary(incident) {
  const { site_id: site, camera_id: cam } = incident;
  const late = lateBy(incident);
  const facts = [
    incident.type === "person_fall"
      ? field("incident.measure", h("strong", { id: "incident-measure" }, measure(incident) || "—"))
      : null,
    field(
      "incident.observed",
      `${dateTime(incident.first_observed_at)} (${ago(incident.first_observed_at)})`,
    ),
    late >= 60
      ? field("incident.received", [
          dateTime(incident.opened_at),
          " ",
          h("span", { class: "badge late" }, t("incident.late", { d: duration(late) })),
        ])
      : null,
    incident.alert_count > 1
      ? field("incident.last_alert", dateTime(incident.last_alert_at))
      : null,
    field("incident.site", named(siteName(site), site)),
    field("incident.camera", named(cameraName(site, cam), cam)),
    field("incident.zone", named(zoneName(site, cam, incident.zone_id), incident.zone_id)),
    field(
      "incident.rule",
      named(ruleName(site, cam, incident.rule_id, incident.type), incident.rule_id),
    ),
    field("incident.acked", dateTime(incident.acked_at)),
    field("incident.closed", dateTime(incident.closed_at)),
    field("incident.alerts", t("queue.alerts_value", { n: incident.alert_count ?? 1 })),
    field("incident.state", label("state", incident.state)),
    field("incident.score", score(incident.score)),
    field(
      "incident.assignee",
      incident.assignee ? label("team", incident.assignee) : t("queue.unassigned"),
      "incident-assignee",
    ),
    field("incident.deadline", [
      incident.deadline_at ? dateTime(incident.deadline_at) : "—",
      isOverdue(incident)
        ? h("span", { class: "badge overdue", id: "incident-overdue" }, t("incident.overdue"))
        : null,
    ]),
    field(
      "incident.escalation",
      incident.escalation_level
        ? t("incident.escalation_value", { n: incident.escalation_level })
        : t("incident.escalation_none"),
    ),
  ];
  if (DWELL_TYPES.has(incident.type) && incident.alert_count > 1) {
    facts.push(field("incident.latest_dwell", duration(incident.latest_dwell_s)));
  }
  if (incident.type === "falling_object") {
    const floor = incident.details?.origin_floor;
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
  if (DWELL_TYPES.has(incident.type)) {
    facts.unshift(
      field("incident.dwell", h("strong", { id: "incident-dwell" }, duration(incident.dwell_s))),
    );
  }
  return h("dl", { class: "facts" }, facts);
}

// Evidence ----------------------------------------------------------------------------------

function placeholder(state) {
  const key = state === "pending" ? "evidence.pending" : "evidence.missing";
  return h("div", { class: `evidence-missing state-${state}` }, h("span", {}, t(key)));
}

function image(file, alt, { thumb = false } = {}) {
  if (file.state && file.state !== "stored") return placeholder(file.state);
  const img = h("img", { src: withToken(file.url), alt, loading: thumb ? "lazy" : "eager" });
  img.addEventListener("error", () => img.replaceWith(placeholder("missing")), { once: true });
  return img;
}

function byRole(a, b) {
  const rank = (file) => {
    const index = EVIDENCE_ROLE_ORDER.indexOf(file.role || "");
    return index < 0 ? EVIDENCE_ROLE_ORDER.length : index;
  };
  return rank(a) - rank(b);
}

/** The incident's alerts (situations), newest first, each with its own evidence files and
 * trajectory; a file is shown once, with the alert that first sent it. */
function situations(detail) {
  const groups = new Map();
  const group = (key) => {
    if (!groups.has(key)) groups.set(key, { eventId: key, files: [], at: "", trajectory: null });
    return groups.get(key);
  };
  for (const event of detail.events || []) {
    const entry = group(event.event_id);
    if ((event.observed_at || "") > entry.at) entry.at = event.observed_at || "";
    if (Array.isArray(event.details?.trajectory)) entry.trajectory = event.details.trajectory;
  }
  for (const file of detail.evidence || []) {
    if (file.kind === "photo") continue;
    const entry = group(file.event_id || detail.event_id);
    entry.files.push(file);
    if (!entry.at) entry.at = file.observed_at || "";
  }
  return [...groups.values()].sort((a, b) => String(b.at).localeCompare(String(a.at)));
}

function situationFigures(detail, group) {
  const snapshots = group.files.filter((f) => f.kind === "snapshot").sort(byRole);
  const clips = group.files.filter((f) => f.kind === "clip");
  const trajectory = detail.type === "falling_object" ? group.trajectory : null;
  const poster =
    snapshots.find((f) => f.state === "stored" && f.role === "onset") ||
    snapshots.find((f) => f.state === "stored");
  return [
    snapshots.map((file) =>
      h(
        "figure",
        { class: "snapshot" },
        h(
          "div",
          { class: "frame" },
          image(file, t("incident.snapshot")),
          file.state === "stored" ? trajectoryOverlay(trajectory) : null,
        ),
        h("figcaption", {}, label("evidence_role", file.role || "snapshot")),
      ),
    ),
    clips.map((file) =>
      h(
        "figure",
        { class: "clip" },
        file.state && file.state !== "stored"
          ? placeholder(file.state)
          : h("video", {
              src: withToken(file.url),
              controls: true,
              preload: "metadata",
              playsinline: true,
              poster: poster ? withToken(poster.url) : null,
              type: file.content_type,
            }),
        h(
          "figcaption",
          {},
          t("incident.clip"),
          file.state === "stored"
            ? [" · ", h("a", { href: withToken(file.url), download: "" }, t("incident.download"))]
            : null,
        ),
      ),
    ),
  ];
}

function evidence(detail) {
  const groups = situations(detail);
  const latest = groups.find((entry) => entry.files.length);
  if (!latest) return h("p", { class: "muted" }, t("incident.no_evidence"));
  const older = groups.filter((entry) => entry !== latest);
  let shown = OLDER_PAGE;
  const list = h("div", { class: "older-alerts", id: "older-alerts" });
  const more = h("button", { class: "ghost", id: "older-more" }, t("incident.older_more"));
  function drawOlder() {
    mount(
      list,
      older.slice(0, shown).map((group) =>
        h(
          "div",
          { class: "older" },
          h("div", { class: "older-time" }, dateTime(group.at)),
          h(
            "div",
            { class: "thumbs" },
            group.files.length ? null : h("span", { class: "muted small" }, t("incident.no_files")),
            group.files
              .filter((f) => f.kind === "snapshot")
              .sort(byRole)
              .map((file) =>
                file.state === "stored"
                  ? h(
                      "a",
                      { href: withToken(file.url), target: "_blank", class: "thumb" },
                      image(file, label("evidence_role", file.role || "snapshot"), { thumb: true }),
                    )
                  : h("span", { class: "thumb" }, placeholder(file.state)),
              ),
            group.files.some((f) => f.kind === "clip")
              ? h("span", { class: "muted small" }, t("incident.has_clip"))
              : null,
          ),
        ),
      ),
    );
    more.hidden = shown >= older.length;
  }
  more.addEventListener("click", () => {
    shown += OLDER_PAGE;
    drawOlder();
  });
  drawOlder();
  return h(
    "div",
    {},
    h(
      "p",
      { class: "muted small" },
      groups.length > 1
        ? t("incident.latest_alert_of", { at: dateTime(latest.at), n: groups.length })
        : dateTime(latest.at),
    ),
    h("div", { class: "evidence", id: "latest-evidence" }, situationFigures(detail, latest)),
    older.length
      ? h(
          "details",
          { class: "older-wrap" },
          h("summary", { id: "older-summary" }, t("incident.older_alerts", { n: older.length })),
          list,
          more,
        )
      : null,
  );
}

function photos(detail, names) {
  const files = (detail.evidence || []).filter((file) => file.kind === "photo");
  if (!files.length) return null;
  return h(
    "div",
    { class: "panel", id: "incident-photos" },
    h("h3", {}, t("incident.photos", { n: files.length })),
    h(
      "div",
      { class: "evidence photos" },
      files.map((file) =>
        h(
          "figure",
          { class: "photo" },
          h("div", { class: "frame" }, image(file, t("incident.photo"))),
          h(
            "figcaption",
            {},
            label("photo_stage", file.role || "feedback"),
            " · ",
            named(names.get(file.by) || file.by || "—", file.by),
            " · ",
            clock(file.observed_at),
          ),
        ),
      ),
    ),
  );
}

// History -----------------------------------------------------------------------------------

function stepText(row) {
  const details = row.details || {};
  const parts = [label("action", row.action)];
  if (row.action === "dispatch" && details.team) parts.push(`→ ${label("team", details.team)}`);
  if (row.action === "escalate") {
    parts[0] = t("history.escalated_to", { n: details.level ?? "?" });
    parts.push(details.team ? `→ ${label("team", details.team)}` : t("history.no_chain"));
  }
  if (details.category) {
    parts.push(t("history.category", { category: label("false_alarm", details.category) }));
  }
  if (Array.isArray(details.photos) && details.photos.length) {
    parts.push(t("history.photos", { n: details.photos.length }));
  }
  if (details.quiet) parts.push(t(`history.quiet_${details.quiet}`));
  return parts.join(" ");
}

function history(detail) {
  const rows = detail.history || [];
  if (!rows.length) return h("p", { class: "muted" }, t("incident.no_history"));
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "history", id: "incident-history" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["history.at", "history.action", "history.change", "history.by", "history.note"].map(
            (k) => h("th", {}, t(k)),
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
            h("td", {}, stepText(row)),
            h(
              "td",
              {},
              row.from_status === row.to_status
                ? label("status", row.to_status)
                : `${label("status", row.from_status)} → ${label("status", row.to_status)}`,
            ),
            h("td", { class: "by" }, personName(row)),
            h("td", {}, row.note ? h("span", { translate: "no" }, row.note) : ""),
          ),
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
    { class: "messages panel" },
    h("summary", {}, t("incident.messages", { n: rows.length })),
    h(
      "div",
      { class: "table-wrap" },
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
    ),
  );
}

// Actions -----------------------------------------------------------------------------------

function falseAlarmDialog(onConfirm) {
  const note = h("textarea", {
    id: "false-alarm-note",
    rows: 2,
    placeholder: t("actions.note_placeholder_false"),
  });
  const error = h("p", { class: "form-error", id: "false-alarm-error", role: "alert" });
  const choices = FALSE_ALARM_CATEGORIES.map((value) =>
    h(
      "label",
      { class: "choice" },
      h("input", { type: "radio", name: "false-alarm-category", value }),
      label("false_alarm", value),
    ),
  );
  const dialog = h(
    "dialog",
    { class: "confirm", id: "false-alarm-dialog" },
    h(
      "form",
      { method: "dialog" },
      h("h3", {}, t("false_alarm.title")),
      h("p", { class: "muted" }, t("false_alarm.explain")),
      h("fieldset", { class: "choices" }, h("legend", {}, t("false_alarm.category")), choices),
      h("label", { for: "false-alarm-note" }, t("actions.note")),
      note,
      error,
      h(
        "div",
        { class: "buttons" },
        h(
          "button",
          { value: "cancel", class: "ghost", id: "false-alarm-cancel" },
          t("common.cancel"),
        ),
        h(
          "button",
          {
            class: "warn",
            id: "false-alarm-confirm",
            value: "confirm",
            onclick: (event) => {
              const chosen = dialog.querySelector("input[name=false-alarm-category]:checked");
              if (!chosen) {
                event.preventDefault();
                error.textContent = t("false_alarm.choose");
                return;
              }
              event.preventDefault();
              dialog.close();
              dialog.remove();
              onConfirm({ category: chosen.value, note: note.value.trim() || undefined });
            },
          },
          t("false_alarm.confirm"),
        ),
      ),
    ),
  );
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
}

function photoPicker(holder) {
  const chosen = [];
  const previews = h("div", { class: "photo-previews", id: "photo-previews" });
  const input = h("input", {
    type: "file",
    id: "photo-input",
    accept: "image/*",
    capture: "environment",
    multiple: true,
    class: "visually-hidden",
  });
  function draw() {
    mount(
      previews,
      chosen.map((item, index) =>
        h(
          "div",
          { class: "preview" },
          h("img", { src: item.url, alt: t("incident.photo") }),
          h(
            "button",
            {
              class: "ghost small",
              "aria-label": t("actions.photo_remove"),
              onclick: (event) => {
                event.preventDefault();
                URL.revokeObjectURL(item.url);
                chosen.splice(index, 1);
                draw();
              },
            },
            "×",
          ),
        ),
      ),
    );
  }
  input.addEventListener("change", async () => {
    for (const file of input.files) {
      if (chosen.length >= PHOTO_LIMIT) break;
      try {
        const blob = await preparePhoto(file);
        chosen.push({ blob, url: URL.createObjectURL(blob) });
      } catch (error) {
        holder.fail(
          error instanceof PhotoUnreadable ? t("actions.photo_unreadable") : error.message,
        );
      }
    }
    input.value = "";
    draw();
  });
  const element = h(
    "div",
    { class: "photo-picker" },
    h("label", { for: "photo-input", class: "button", id: "photo-add" }, t("actions.photo_add")),
    input,
    h("span", { class: "muted small" }, t("actions.photo_hint", { n: PHOTO_LIMIT })),
    previews,
  );
  return { element, chosen };
}

function actionPanel(incident, ctx, act) {
  const actions = actionsFor(incident, ctx.user);
  if (!actions.length) {
    return h(
      "p",
      { class: "muted", id: "actions-none" },
      CLOSED.has(incident.status)
        ? t("actions.done")
        : atLeast(ctx.user, "field")
          ? t("actions.waiting")
          : t("actions.none"),
    );
  }
  const message = h("p", { class: "form-error", id: "action-message", role: "alert" });
  const holder = {
    fail: (text) => {
      message.textContent = text;
      message.scrollIntoView({ block: "nearest" });
    },
  };
  const note = h("textarea", {
    id: "action-note",
    rows: 2,
    placeholder: actions.includes("feedback")
      ? t("actions.note_placeholder_feedback")
      : t("actions.note_placeholder"),
    oninput: () => (message.textContent = ""),
  });
  const team = h(
    "select",
    { id: "dispatch-team" },
    TEAMS.map((value) =>
      h("option", { value, selected: value === incident.assignee }, label("team", value)),
    ),
  );
  // photos of the result: the field worker's with 反馈, the center's own with 核查
  const picker =
    actions.includes("feedback") || actions.includes("verify") ? photoPicker(holder) : null;
  const noteValue = () => note.value.trim() || undefined;
  const bodies = {
    ack: () => ({ note: noteValue() }),
    dispatch: () => ({ team: team.value, note: noteValue() }),
    handle: () => ({ note: noteValue() }),
    verify: () => ({ note: noteValue() }),
    resolve: () => ({ note: noteValue() }),
    reopen: () => ({ note: noteValue() }),
  };
  const style = {
    ack: "primary",
    dispatch: "primary",
    handle: "primary",
    feedback: "primary",
    verify: "primary",
    resolve: "ok",
    "false-alarm": "warn",
  };
  const buttons = actions.map((action) =>
    h(
      "button",
      {
        class: style[action] || "",
        id: `action-${action}`,
        dataset: { action },
        onclick: async (event) => {
          message.textContent = "";
          const button = event.currentTarget;
          if (action === "false-alarm") {
            falseAlarmDialog((body) => act(action, body));
            return;
          }
          if (action === "feedback") {
            if (!note.value.trim()) {
              holder.fail(t("actions.feedback_needs_note"));
              note.focus();
              return;
            }
            button.disabled = true;
            await act("feedback", { note: note.value.trim() }, picker.chosen, holder);
            button.disabled = false;
            return;
          }
          button.disabled = true;
          if (action === "verify") {
            await act("verify", bodies.verify(), picker.chosen, holder);
            button.disabled = false;
            return;
          }
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
      ? h("label", { class: "inline", for: "dispatch-team" }, t("actions.team"), team)
      : null,
    h(
      "label",
      { for: "action-note" },
      actions.includes("feedback") ? t("actions.note_feedback") : t("actions.note"),
    ),
    note,
    picker ? picker.element : null,
    message,
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
    // the plan still shows without the pin
  }
  let image = null;
  try {
    image = await loadPlanImage(incident.site_id);
  } catch (error) {
    mount(holder, h("p", { class: "form-error" }, t("error.generic", { detail: error.message })));
    return;
  }
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
  const back =
    ctx.user.role === "field" ? ["#/orders", "nav.orders"] : ["#/incidents", "nav.incidents"];

  async function act(action, body, chosenPhotos = [], holder = null) {
    try {
      if (chosenPhotos.length) {
        const stored = [];
        for (const photo of chosenPhotos) {
          stored.push((await uploadPhoto(id, photo.blob, action)).sha256);
        }
        body = { ...body, photos: stored };
      }
      await post(`/api/v1/incidents/${id}/${action}`, body);
      ctx.toast(t("actions.done_toast", { action: t(`action.${action}`) }), "ok");
    } catch (error) {
      const key =
        error instanceof ApiError
          ? {
              409: "actions.conflict",
              403: "actions.forbidden",
              413: "actions.photo_too_large",
              415: "actions.photo_unreadable",
            }[error.status]
          : null;
      const text = key ? t(key) : t("error.generic", { detail: error.message });
      if (holder) holder.fail(text);
      ctx.toast(text, "error");
      if (holder) return;
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
        h("a", { href: back[0] }, `← ${t(back[1])}`),
        h("p", { class: "form-error" }, text),
      );
      return;
    }
    const names = new Map(
      (detail.history || []).filter((r) => r.by_name).map((r) => [r.by, r.by_name]),
    );
    const late = lateBy(detail);
    mount(
      view,
      h("a", { href: back[0], class: "back" }, `← ${t(back[1])}`),
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
        isOverdue(detail) ? h("span", { class: "badge overdue" }, t("incident.overdue")) : null,
        detail.silenced ? h("span", { class: "badge muted-badge" }, t("incident.silenced")) : null,
        detail.inhibited
          ? h(
              "span",
              { class: "badge inhibited", title: t("incident.inhibited_hint") },
              t("incident.inhibited"),
            )
          : null,
        late >= 60
          ? h("span", { class: "badge late" }, t("incident.late", { d: duration(late) }))
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
          { class: "panel actions-panel" },
          h("h3", {}, t("incident.actions")),
          actionPanel(detail, ctx, act),
        ),
        h(
          "div",
          { class: "panel facts-panel" },
          h("h3", {}, t("incident.summary")),
          summary(detail),
        ),
        h("div", { class: "panel plan-panel" }, h("h3", {}, t("incident.on_plan")), planHolder),
        h(
          "div",
          { class: "evidence-col" },
          photos(detail, names),
          h(
            "div",
            { class: "panel evidence-panel" },
            h("h3", {}, t("incident.evidence")),
            evidence(detail),
          ),
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
