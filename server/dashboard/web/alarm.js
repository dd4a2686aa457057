// The header's counters (未处理, 紧急, 已超时) and the alarm: while a critical incident is not
// acknowledged, the alarm sounds again every ALARM_REPEAT_S seconds, on every page and after a
// reload (the server says which incidents are alarming; nothing is kept in the browser).

import { get } from "./api.js";
import { alertBeep } from "./sound.js";

const REPEAT_KEY = "zhizhi.alarm_repeat_s";
const DEFAULT_REPEAT_S = 20;
const REFRESH_MS = 30_000;

let counters = { unacknowledged: 0, urgent: 0, overdue: 0, alarming: [], my_orders: null };
const listeners = new Set();
let timers = [];
let pending = null;
let known = new Set();

export function repeatSeconds() {
  const value = Number(localStorage.getItem(REPEAT_KEY));
  return Number.isFinite(value) && value > 0 ? value : DEFAULT_REPEAT_S;
}

export function current() {
  return counters;
}

/** Call `listener(counters)` on every change; returns the unsubscribe function. */
export function onCounters(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

async function refresh() {
  try {
    counters = await get("/api/v1/counters");
  } catch {
    return; // signed out, or the server is away: the next refresh tries again
  }
  known = new Set(counters.alarming);
  for (const listener of listeners) listener(counters);
}

/** Refresh soon (several live changes in a burst make one request). */
export function refreshSoon() {
  if (pending) return;
  pending = setTimeout(() => {
    pending = null;
    refresh();
  }, 250);
}

function ring() {
  if (counters.alarming.length) alertBeep("repeat");
}

/** Start counting and ringing for the signed-in user; stopAlarm() on sign-out. */
export function startAlarm() {
  stopAlarm();
  refresh();
  timers = [setInterval(refresh, REFRESH_MS), setInterval(ring, repeatSeconds() * 1000)];
}

export function stopAlarm() {
  for (const timer of timers) clearInterval(timer);
  timers = [];
  counters = { unacknowledged: 0, urgent: 0, overdue: 0, alarming: [], my_orders: null };
  known = new Set();
}

/** Whether the server already counted this incident as alarming. */
export function isAlarming(id) {
  return known.has(id);
}
