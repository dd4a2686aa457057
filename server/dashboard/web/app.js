// The dashboard's shell: sign-in, header (navigation, live state, sound, language, user),
// hash routes to the views, and the one live feed that every view listens to.

import { clearSession, get, post, setSession, setUnauthorizedHandler, token } from "./api.js";
import { h, mount } from "./dom.js";
import { LOCALES, initI18n, locale, onLocaleChange, setLocale, t } from "./i18n.js";
import {
  CLOSED,
  CRITICAL_TYPES,
  forgetAlertsExcept,
  markUnseen,
  recordAlerts,
} from "./incidents.js";
import { LiveFeed } from "./live.js";
import { alertBeep, muted, setMuted, unlockAudio } from "./sound.js";
import * as cameras from "./views/cameras.js";
import * as incident from "./views/incident.js";
import * as login from "./views/login.js";
import * as plan from "./views/plan.js";
import * as queue from "./views/queue.js";
import * as stats from "./views/stats.js";

const LOCALE_CHOSEN_KEY = "zhizhi.locale";
const ROUTES = [
  {
    pattern: /^#\/incidents\/(\d+)$/,
    view: incident,
    nav: "incidents",
    params: (m) => ({ id: m[1] }),
  },
  { pattern: /^#\/incidents$/, view: queue, nav: "incidents" },
  { pattern: /^#\/cameras$/, view: cameras, nav: "cameras" },
  { pattern: /^#\/stats$/, view: stats, nav: "stats" },
  { pattern: /^#\/plan$/, view: plan, nav: "plan" },
];
const NAV = [
  ["incidents", "#/incidents"],
  ["cameras", "#/cameras"],
  ["stats", "#/stats"],
  ["plan", "#/plan"],
];

const root = document.getElementById("app");
const feed = new LiveFeed();
let user = null;
let cleanup = null;
let liveState = "closed";

function toast(message, kind = "info") {
  const holder = document.getElementById("toasts");
  const item = h(
    "div",
    { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" },
    message,
  );
  holder.append(item);
  setTimeout(() => item.remove(), 5000);
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
  const button = h("button", {
    id: "mute-toggle",
    class: muted() ? "muted" : "",
    "aria-pressed": String(muted()),
    title: t("header.sound_hint"),
    onclick: () => {
      setMuted(!muted());
      unlockAudio();
      drawHeader();
    },
  });
  button.textContent = muted() ? t("header.sound_off") : t("header.sound_on");
  return button;
}

function drawHeader(active) {
  const header = document.getElementById("topbar");
  const current = active ?? header.dataset.active;
  header.dataset.active = current || "";
  document.title = t("app.name");
  mount(
    header,
    h(
      "div",
      { class: "brand" },
      h("span", { class: "logo" }, "智治"),
      h("span", {}, t("app.title")),
    ),
    user
      ? h(
          "nav",
          {},
          NAV.map(([name, hash]) =>
            h(
              "a",
              { href: hash, id: `nav-${name}`, class: name === current ? "active" : "" },
              t(`nav.${name}`),
            ),
          ),
        )
      : h("span"),
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
            user.display_name || user.username,
            h("span", { class: "muted small" }, ` · ${t(`role.${user.role}`)}`),
          )
        : null,
      user
        ? h("button", { class: "ghost", id: "logout", onclick: logout }, t("header.logout"))
        : null,
    ),
  );
}

function route() {
  if (cleanup) cleanup();
  cleanup = null;
  const view = document.getElementById("view");
  view.replaceChildren();
  if (!user) {
    drawHeader("");
    login.render(view, {}, ctx);
    return;
  }
  const hash = location.hash || "#/incidents";
  const match = ROUTES.map((r) => [r, hash.match(r.pattern)]).find(([, m]) => m);
  if (!match) {
    location.hash = "#/incidents";
    return;
  }
  const [chosen, m] = match;
  drawHeader(chosen.nav);
  cleanup = chosen.view.render(view, chosen.params ? chosen.params(m) : {}, ctx) || null;
}

function onIncident(incidentJson) {
  // A new incident, or a new alert grouped into one, is highlighted; critical types beep.
  if (!recordAlerts(incidentJson) || CLOSED.has(incidentJson.status)) return;
  markUnseen(incidentJson.id);
  if (CRITICAL_TYPES.has(incidentJson.type)) alertBeep(incidentJson.type);
}

async function seedKnownAlerts() {
  try {
    const page = await get("/api/v1/incidents", { limit: 200 });
    forgetAlertsExcept(page.items);
  } catch {
    // the queue reports its own errors
  }
}

async function signedIn(newUser) {
  user = newUser;
  if (!localStorage.getItem(LOCALE_CHOSEN_KEY) && LOCALES.includes(newUser.locale)) {
    await setLocale(newUser.locale);
  }
  await seedKnownAlerts();
  feed.connect();
  if (!location.hash || location.hash === "#/login") location.hash = "#/incidents";
  else route();
}

function signedOut(message) {
  feed.close();
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
  });
  onLocaleChange(() => route());
  window.addEventListener("hashchange", route);
  document.addEventListener("click", unlockAudio, { once: true });
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
