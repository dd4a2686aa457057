// The dashboard's shell: sign-in, header (counters, navigation, live state, sound, language,
// user), the alarm banner, toasts, hash routes to the views, and the one live feed.

import { current as counters, onCounters, refreshSoon, startAlarm, stopAlarm } from "./alarm.js";
import { clearSession, get, post, setSession, setUnauthorizedHandler, token } from "./api.js";
import { h, mount } from "./dom.js";
import { LOCALES, initI18n, locale, onLocaleChange, setLocale, t } from "./i18n.js";
import { CLOSED, CRITICAL_TYPES, atLeast, markUnseen, recordAlerts } from "./incidents.js";
import { LiveFeed } from "./live.js";
import { loadDirectory } from "./names.js";
import { alertBeep, audioBlocked, muted, setMuted, unlockAudio } from "./sound.js";
import * as audit from "./views/audit.js";
import * as cameras from "./views/cameras.js";
import * as deadLetters from "./views/dead-letters.js";
import * as incident from "./views/incident.js";
import * as login from "./views/login.js";
import * as orders from "./views/orders.js";
import * as plan from "./views/plan.js";
import * as queue from "./views/queue.js";
import * as review from "./views/review.js";
import * as silences from "./views/silences.js";
import * as stats from "./views/stats.js";

const LOCALE_CHOSEN_KEY = "zhizhi.locale";
const TOAST_LIMIT = 1; // one message at a time: the newest replaces the last
const TOAST_MS = 5000;
const ROUTES = [
  { pattern: /^\/incidents\/(\d+)$/, view: incident, nav: null, params: (m) => ({ id: m[1] }) },
  { pattern: /^\/incidents$/, view: queue, nav: "incidents" },
  { pattern: /^\/orders$/, view: orders, nav: "orders" },
  { pattern: /^\/plan$/, view: plan, nav: "plan" },
  { pattern: /^\/review$/, view: review, nav: "review" },
  { pattern: /^\/cameras$/, view: cameras, nav: "cameras" },
  { pattern: /^\/stats$/, view: stats, nav: "stats" },
  { pattern: /^\/silences$/, view: silences, nav: "silences" },
  { pattern: /^\/audit$/, view: audit, nav: "audit" },
  { pattern: /^\/dead_letters$/, view: deadLetters, nav: "dead_letters" },
];

const root = document.getElementById("app");
const feed = new LiveFeed();
let user = null;
let cleanup = null;
let liveState = "closed";
let menuOpen = false;

/** The navigation a user gets: field workers their orders and the plan; the center all. */
function navFor(who) {
  if (!who) return [];
  if (who.role === "field") return ["orders", "plan"];
  const items = ["incidents", "plan", "review", "cameras", "stats", "silences"];
  if (who.team) items.splice(1, 0, "orders");
  if (atLeast(who, "admin") && (who.sites || []).includes("*")) items.push("audit");
  if (atLeast(who, "admin")) items.push("dead_letters");
  return items;
}

function home() {
  return user?.role === "field" ? "#/orders" : "#/incidents";
}

function toast(message, kind = "info") {
  const holder = document.getElementById("toasts");
  while (holder.children.length >= TOAST_LIMIT) holder.firstElementChild.remove();
  const item = h(
    "div",
    { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" },
    h("span", {}, message),
    h(
      "button",
      {
        class: "ghost toast-close",
        "aria-label": t("common.close"),
        onclick: () => item.remove(),
      },
      "×",
    ),
  );
  holder.append(item);
  setTimeout(() => item.remove(), kind === "error" ? TOAST_MS * 2 : TOAST_MS);
}

function clearToasts() {
  document.getElementById("toasts")?.replaceChildren();
}

function parseHash() {
  const raw = (location.hash || "").replace(/^#/, "");
  const [path, search = ""] = raw.split("?");
  return { path: path || "", query: Object.fromEntries(new URLSearchParams(search)) };
}

const ctx = {
  feed,
  toast,
  navigate: (hash) => {
    if (location.hash === hash) route();
    else location.hash = hash;
  },
  signedIn,
  get user() {
    return user;
  },
};

function languageSwitch() {
  return h(
    "div",
    { class: "lang", role: "group", "aria-label": t("header.language") },
    LOCALES.map((code) =>
      h(
        "button",
        {
          class: code === locale() ? "active" : "",
          id: `lang-${code}`,
          lang: code,
          "aria-pressed": String(code === locale()),
          onclick: () => setLocale(code),
        },
        t(`lang.${code}`),
      ),
    ),
  );
}

function muteButton() {
  return h(
    "button",
    {
      id: "mute-toggle",
      class: muted() ? "muted" : "",
      "aria-pressed": String(muted()),
      title: t("header.sound_hint"),
      onclick: () => {
        setMuted(!muted());
        unlockAudio();
        drawHeader();
      },
    },
    muted() ? t("header.sound_off") : t("header.sound_on"),
  );
}

function counterPills() {
  const found = counters();
  if (!user) return null;
  if (user.role === "field") {
    return h(
      "div",
      { class: "counters", id: "counters" },
      h(
        "a",
        { class: "counter", id: "count-orders", href: "#/orders" },
        t("counter.my_orders"),
        h("strong", {}, String(found.my_orders ?? 0)),
      ),
    );
  }
  const pill = (id, key, value, quick, hot) =>
    h(
      "a",
      {
        class: `counter${hot && value ? " hot" : ""}`,
        id,
        href: `#/incidents?quick=${quick}`,
        title: t(`counter.${key}_hint`),
      },
      t(`counter.${key}`),
      h("strong", {}, String(value)),
    );
  return h(
    "div",
    { class: "counters", id: "counters" },
    pill("count-unacked", "unacked", found.unacknowledged, "unacked", true),
    pill("count-urgent", "urgent", found.urgent, "urgent", true),
    pill("count-overdue", "overdue", found.overdue, "overdue", true),
  );
}

function alarmBanner() {
  const banner = document.getElementById("alarm-banner");
  const alarming = user && user.role !== "field" ? counters().alarming : [];
  banner.hidden = !alarming.length;
  if (!alarming.length) {
    banner.replaceChildren();
    return;
  }
  mount(
    banner,
    h("span", { class: "alarm-icon", "aria-hidden": "true" }, "!"),
    h("span", {}, t("alarm.banner", { n: alarming.length })),
    h(
      "a",
      { class: "button primary", href: "#/incidents?quick=alarming", id: "alarm-open" },
      t("alarm.open"),
    ),
    muted() ? h("span", { class: "small" }, t("alarm.muted")) : null,
    !muted() && audioBlocked()
      ? h("span", { class: "small", id: "alarm-sound-blocked" }, t("alarm.click_for_sound"))
      : null,
  );
}

function drawHeader(active) {
  const header = document.getElementById("topbar");
  const current = active ?? header.dataset.active;
  header.dataset.active = current || "";
  const alarming = counters().alarming?.length || 0;
  document.title = alarming ? `(${alarming}) ${t("app.name")}` : t("app.name");
  const nav = navFor(user);
  header.classList.toggle("menu-open", menuOpen);
  mount(
    header,
    h(
      "div",
      { class: "brand" },
      h("span", { class: "logo", translate: "no" }, "智治"),
      h("span", { class: "title" }, t("app.title")),
    ),
    counterPills(),
    user
      ? h(
          "button",
          {
            class: "ghost menu-toggle",
            id: "menu-toggle",
            "aria-expanded": String(menuOpen),
            onclick: () => {
              menuOpen = !menuOpen;
              drawHeader();
            },
          },
          menuOpen ? t("header.menu_close") : t("header.menu"),
        )
      : null,
    h(
      "div",
      { class: "drawer" },
      user
        ? h(
            "nav",
            {},
            nav.map((name) =>
              h(
                "a",
                {
                  href: `#/${name}`,
                  id: `nav-${name}`,
                  class: name === current ? "active" : "",
                },
                t(`nav.${name}`),
              ),
            ),
          )
        : null,
      h(
        "div",
        { class: "tools" },
        user
          ? h("span", { class: `live live-${liveState}`, id: "live-state" }, t(`live.${liveState}`))
          : null,
        user ? muteButton() : null,
        languageSwitch(),
        user
          ? h(
              "span",
              { class: "user", id: "current-user" },
              h("span", { translate: "no" }, user.display_name || user.username),
              h("span", { class: "muted small" }, ` · ${t(`role.${user.role}`)}`),
            )
          : null,
        user
          ? h("button", { class: "ghost", id: "logout", onclick: logout }, t("header.logout"))
          : null,
      ),
    ),
  );
  alarmBanner();
}

function route() {
  if (cleanup) cleanup();
  cleanup = null;
  menuOpen = false;
  clearToasts();
  const view = document.getElementById("view");
  view.replaceChildren();
  if (!user) {
    drawHeader("");
    login.render(view, {}, ctx);
    return;
  }
  const { path, query } = parseHash();
  const match = ROUTES.map((r) => [r, path.match(r.pattern)]).find(([, m]) => m);
  const allowed = match && (match[0].nav === null || navFor(user).includes(match[0].nav));
  if (!allowed) {
    location.hash = home();
    return;
  }
  const [chosen, m] = match;
  drawHeader(chosen.nav ?? (user.role === "field" ? "orders" : "incidents"));
  window.scrollTo(0, 0);
  const params = { ...(chosen.params ? chosen.params(m) : {}), query };
  cleanup = chosen.view.render(view, params, ctx) || null;
}

function onIncident(incidentJson) {
  refreshSoon();
  // A new incident, or a new alert grouped into one, flashes; critical types beep at once
  // (the alarm then repeats until someone acknowledges it).
  if (!recordAlerts(incidentJson) || CLOSED.has(incidentJson.status)) return;
  markUnseen(incidentJson.id);
  const quiet = incidentJson.silenced || incidentJson.inhibited;
  if (CRITICAL_TYPES.has(incidentJson.type) && !quiet && user?.role !== "field") {
    alertBeep(incidentJson.type);
  }
}

async function seedKnownAlerts() {
  try {
    const page = await get("/api/v1/incidents", { limit: 200, open: true });
    for (const item of page.items) recordAlerts(item);
  } catch {
    // the views report their own errors
  }
}

async function signedIn(newUser) {
  user = newUser;
  if (!localStorage.getItem(LOCALE_CHOSEN_KEY) && LOCALES.includes(newUser.locale)) {
    await setLocale(newUser.locale);
  }
  await Promise.all([seedKnownAlerts(), loadDirectory(true).catch(() => null)]);
  feed.connect();
  startAlarm();
  if (!location.hash || location.hash === "#/login") location.hash = home();
  else route();
}

function signedOut(message) {
  feed.close();
  stopAlarm();
  clearSession();
  user = null;
  route();
  if (message) toast(message, "error");
}

async function logout() {
  try {
    await post("/api/v1/auth/logout");
  } catch {
    // the token is forgotten here either way
  }
  signedOut();
}

async function boot() {
  await initI18n();
  mount(
    root,
    h("header", { class: "topbar", id: "topbar" }),
    h("div", { class: "alarm-banner", id: "alarm-banner", role: "alert", hidden: true }),
    h("main", { id: "view" }),
    h("div", { class: "toasts", id: "toasts", "aria-live": "polite" }),
  );
  feed.on("incident", onIncident);
  feed.on("state", (state) => {
    liveState = state;
    const badge = document.getElementById("live-state");
    if (badge) {
      badge.className = `live live-${state}`;
      badge.textContent = t(`live.${state}`);
    }
    if (state === "open") refreshSoon(); // what changed while the feed was down
  });
  onCounters(() => drawHeader());
  onLocaleChange(() => route());
  window.addEventListener("hashchange", route);
  // browsers hold sound back until the page is clicked (after a reload too): say so, then not
  document.addEventListener("click", () => {
    unlockAudio();
    setTimeout(alarmBanner, 100);
  });
  let me = null;
  if (token()) {
    try {
      me = await get("/api/v1/me"); // the tab kept its token over a reload: is it still valid?
      setSession(token(), me);
    } catch {
      clearSession();
    }
  }
  setUnauthorizedHandler(() => signedOut(t("login.expired")));
  if (me) await signedIn(me);
  else route();
}

boot();
