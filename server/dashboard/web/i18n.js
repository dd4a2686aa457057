// Message catalogues (i18n/zh-CN.json first, i18n/en.json) and the remembered language choice.

export const LOCALES = ["zh-CN", "en"];
const STORAGE_KEY = "zhizhi.locale";
const catalogues = {};
let current = LOCALES[0];
const listeners = new Set();

function preferred() {
  const stored = localStorage.getItem(STORAGE_KEY);
  return LOCALES.includes(stored) ? stored : LOCALES[0];
}

async function load(locale) {
  if (!catalogues[locale]) {
    const response = await fetch(new URL(`./i18n/${locale}.json`, import.meta.url));
    if (!response.ok) throw new Error(`catalogue ${locale}: HTTP ${response.status}`);
    catalogues[locale] = await response.json();
  }
  return catalogues[locale];
}

/** Load the remembered (or default zh-CN) catalogue; call once before rendering. */
export async function initI18n() {
  current = preferred();
  await load(current);
  document.documentElement.lang = current;
}

export function locale() {
  return current;
}

/** Switch language, remember it, and notify the views so they re-render. */
export async function setLocale(next) {
  if (!LOCALES.includes(next)) return;
  await load(next);
  current = next;
  localStorage.setItem(STORAGE_KEY, next);
  document.documentElement.lang = next;
  for (const listener of listeners) listener(next);
}

export function onLocaleChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** The message for `key` with `{name}` placeholders filled from `vars`; the key if missing. */
export function t(key, vars = {}) {
  const message = catalogues[current]?.[key] ?? catalogues[LOCALES[0]]?.[key] ?? key;
  return message.replace(/\{(\w+)\}/g, (whole, name) =>
    name in vars ? String(vars[name]) : whole,
  );
}

/** t() for a value from a closed set (status, type, severity…), falling back to the raw value. */
export function label(group, value) {
  if (value === null || value === undefined || value === "") return "—";
  const key = `${group}.${value}`;
  const text = t(key);
  return text === key ? String(value) : text;
}
