// Times, durations and numbers in the current language.

import { locale, t } from "./i18n.js";

export function dateTime(value) {
  if (!value) return "—";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return new Intl.DateTimeFormat(locale(), {
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hour12: false,
  }).format(date);
}

/** "3 min 20 s" style duration; "—" for a missing value. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(Number(seconds))) return "—";
  let rest = Math.max(0, Math.round(Number(seconds)));
  const hours = Math.floor(rest / 3600);
  rest -= hours * 3600;
  const minutes = Math.floor(rest / 60);
  const secs = rest - minutes * 60;
  if (hours) return t("duration.hm", { h: hours, m: minutes });
  if (minutes) return t("duration.ms", { m: minutes, s: secs });
  return t("duration.s", { s: secs });
}

/** "5 min ago" from an RFC 3339 time. */
export function ago(value, now = Date.now()) {
  if (!value) return "—";
  const then = new Date(value).getTime();
  if (Number.isNaN(then)) return String(value);
  return t("time.ago", { d: duration((now - then) / 1000) });
}

export function percent(rate) {
  if (rate === null || rate === undefined) return "—";
  return new Intl.NumberFormat(locale(), { style: "percent", maximumFractionDigits: 1 }).format(
    rate,
  );
}

export function score(value) {
  return value === null || value === undefined ? "—" : Number(value).toFixed(2);
}

/** A number in the current language, with at most `digits` decimals; "—" when missing. */
export function number(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return "—";
  return new Intl.NumberFormat(locale(), { maximumFractionDigits: digits }).format(Number(value));
}

/** "HH:MM" of a time in the current language. */
export function clock(value) {
  if (!value) return "—";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return "—";
  return new Intl.DateTimeFormat(locale(), {
    hour: "2-digit",
    minute: "2-digit",
    hour12: false,
  }).format(date);
}

/** YYYY-MM-DD of a Date in the browser's time zone (for <input type=date>). */
export function dayValue(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

/** The start of a local day (YYYY-MM-DD) as an RFC 3339 UTC time; `plusDays` later. */
export function dayStart(value, plusDays = 0) {
  if (!value) return undefined;
  const [year, month, day] = value.split("-").map(Number);
  return new Date(year, month - 1, day + plusDays).toISOString();
}

/** Seconds between an alert being observed and the server having it (sent late). */
export function lateBy(incident) {
  const observed = Date.parse(incident.first_observed_at);
  const opened = Date.parse(incident.opened_at);
  if (Number.isNaN(observed) || Number.isNaN(opened)) return 0;
  return Math.max(0, (opened - observed) / 1000);
}

/** What matters most about a situation, in words: a lane's or pile's time blocked (all its
 * alerts together), a thrown object's floor, a fallen person's time down and people beside. */
export function measure(incident) {
  const details = incident.details || {};
  if (incident.type === "fire_lane" || incident.type === "garbage_pile") {
    if (incident.dwell_s === null || incident.dwell_s === undefined) return "";
    const key = incident.type === "fire_lane" ? "measure.blocked" : "measure.present";
    const text = t(key, { d: duration(incident.dwell_s) });
    return (incident.alert_count ?? 1) > 1
      ? `${text} ${t("measure.times", { n: incident.alert_count })}`
      : text;
  }
  if (incident.type === "falling_object") {
    const floor = details.origin_floor;
    return floor === undefined || floor === null
      ? t("incident.floor_unknown_short")
      : t("incident.floor_value", { floor });
  }
  if (incident.type === "person_fall") {
    const parts = [];
    if (details.lying_s !== undefined && details.lying_s !== null) {
      parts.push(t("measure.lying", { d: duration(details.lying_s) }));
    }
    if (Number(details.people_beside) > 0) {
      parts.push(t("measure.beside", { n: details.people_beside }));
    } else if (details.people_beside === 0) {
      parts.push(t("measure.alone"));
    }
    return parts.join(" · ");
  }
  return "";
}
