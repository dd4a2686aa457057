// What the dashboard knows about incidents across views: lifecycle, severity, which actions
// the current status allows, and which incidents arrived live and are still unseen.

export const STATUSES = [
  "reported",
  "filed",
  "dispatched",
  "handling",
  "feedback",
  "verified",
  "closed",
  "false_alarm",
];
export const CLOSED = new Set(["closed", "false_alarm"]);
export const TYPES = ["falling_object", "person_fall", "fire_lane", "garbage_pile"];
export const CRITICAL_TYPES = new Set(["falling_object", "person_fall"]);
export const DWELL_TYPES = new Set(["fire_lane", "garbage_pile"]);
export const TEAMS = [
  "property_management",
  "grid_officer",
  "community",
  "street_office",
  "fire_brigade",
];

export const FALSE_ALARM_CATEGORIES = [
  "lighting",
  "wrong_object",
  "authorised_activity",
  "test",
  "duplicate",
  "other",
];
export const EVIDENCE_ROLE_ORDER = ["before", "onset", "appeared", "latest", "closing", "after"];

const RANK = { viewer: 1, field: 2, operator: 3, admin: 4 };
// What a field worker may do with an order of their team.
const FIELD_ACTIONS = new Set(["handle", "feedback"]);

export function atLeast(user, role) {
  return (RANK[user?.role] ?? 0) >= RANK[role];
}

const ACTION_ORDER = [
  "ack",
  "dispatch",
  "handle",
  "feedback",
  "verify",
  "resolve",
  "false-alarm",
  "reopen",
];
const ADMIN_ACTIONS = new Set(["reopen"]);

/** What the lifecycle allows from `status`, when the server does not say (`allowed_actions`). */
function lifecycleActions(status) {
  if (CLOSED.has(status)) return ["reopen"];
  const next =
    {
      reported: ["ack", "dispatch"],
      filed: ["dispatch"],
      dispatched: ["handle", "dispatch"],
      handling: ["feedback"],
      feedback: ["verify"],
    }[status] ?? [];
  return [...next, "resolve", "false-alarm"];
}

/** The actions offered to `user` for an incident, in lifecycle order (URL spelling). */
export function actionsFor(incident, user) {
  if (!atLeast(user, "field")) return [];
  const field = !atLeast(user, "operator");
  const allowed = Array.isArray(incident.allowed_actions)
    ? incident.allowed_actions.map((action) => action.replace("_", "-"))
    : lifecycleActions(incident.status);
  return ACTION_ORDER.filter(
    (action) =>
      allowed.includes(action) &&
      (!ADMIN_ACTIONS.has(action) || atLeast(user, "admin")) &&
      (!field || FIELD_ACTIONS.has(action)),
  );
}

/** Not acknowledged in time (the server says so; for an older server, from the deadline). */
export function isOverdue(incident) {
  if (typeof incident.overdue === "boolean") return incident.overdue;
  return (
    incident.status === "reported" &&
    Boolean(incident.deadline_at) &&
    Date.parse(incident.deadline_at) < Date.now()
  );
}

/** Incidents whose new alert arrived live and that nobody has opened since: they flash once
 * (an unacknowledged incident stays highlighted anyway: that comes from the server). */
const unseen = new Set();
export const markUnseen = (id) => unseen.add(id);
export const markSeen = (id) => unseen.delete(id);
export const isUnseen = (id) => unseen.has(id);

/** The alert counts already known, to tell a new alert from a status change. */
const knownAlerts = new Map();

/** Remember `incident`; true when it brings an alert not seen before (new or grouped in). */
export function recordAlerts(incident) {
  const before = knownAlerts.get(incident.id);
  knownAlerts.set(incident.id, incident.alert_count ?? 1);
  return before === undefined || (incident.alert_count ?? 1) > before;
}

export function forgetAlertsExcept(incidents) {
  for (const incident of incidents) knownAlerts.set(incident.id, incident.alert_count ?? 1);
}
