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
