// Names from the site directory (GET /api/v1/sites): the dashboard shows a site's, camera's,
// zone's and rule's name from the config, the id only as a tooltip. Names and ids are data,
// not interface text: they carry translate="no" (the untranslated-text check skips them).

import { get } from "./api.js";
import { h } from "./dom.js";
import { label, t } from "./i18n.js";

let sites = new Map();
let loaded = null;

/** Load (once, or again with `force`) the caller's sites with their names and plan flag. */
export function loadDirectory(force = false) {
  if (!loaded || force) {
    loaded = Promise.all([get("/api/v1/sites"), get("/api/v1/cameras")])
      .then(([answer, cameras]) => {
        sites = new Map((answer.items || []).map((site) => [site.site_id, site]));
        // cameras that report status but were never named still belong in the pickers
        for (const camera of cameras.items || []) {
          if (!sites.has(camera.site_id)) {
            sites.set(camera.site_id, {
              site_id: camera.site_id,
              name: null,
              cameras: {},
              has_plan: false,
            });
          }
          const entry = sites.get(camera.site_id);
          entry.cameras ??= {};
          entry.cameras[camera.camera_id] ??= { name: null, zones: {}, rules: {} };
        }
        return sites;
      })
      .catch((error) => {
        loaded = null;
        throw error;
      });
  }
  return loaded;
}

export function siteIds() {
  return [...sites.keys()];
}

export function hasPlan(siteId) {
  return Boolean(sites.get(siteId)?.has_plan);
}

export function notePlan(siteId) {
  const site = sites.get(siteId);
  if (site) site.has_plan = true;
  else sites.set(siteId, { site_id: siteId, name: null, cameras: {}, has_plan: true });
}

function camera(siteId, cameraId) {
  return sites.get(siteId)?.cameras?.[cameraId];
}

export function siteName(siteId) {
  return sites.get(siteId)?.name || siteId;
}

export function cameraName(siteId, cameraId) {
  return camera(siteId, cameraId)?.name || cameraId;
}

export function zoneName(siteId, cameraId, zoneId) {
  return camera(siteId, cameraId)?.zones?.[zoneId] || zoneId;
}

/** A rule's name, or its type and zone ("消防通道占用 · 北侧消防通道") when it has none. */
export function ruleName(siteId, cameraId, ruleId, type) {
  const rule = camera(siteId, cameraId)?.rules?.[ruleId];
  if (rule?.name) return rule.name;
  const kind = rule?.type || type;
  const zone = rule?.zone ? zoneName(siteId, cameraId, rule.zone) : null;
  if (kind && zone) return `${label("type", kind)} · ${zone}`;
  return kind ? label("type", kind) : ruleId;
}

/** The cameras the directory names for a site: [[id, name], ...] by name. */
export function camerasOf(siteId) {
  const entries = Object.entries(sites.get(siteId)?.cameras || {});
  return entries
    .map(([id, entry]) => [id, entry.name || id])
    .sort((a, b) => a[1].localeCompare(b[1], "zh-CN"));
}

export function rulesOf(siteId, cameraId) {
  return Object.entries(camera(siteId, cameraId)?.rules || {}).map(([id, rule]) => [
    id,
    ruleName(siteId, cameraId, id, rule.type),
  ]);
}

/** A name as data: translate="no", the id as its tooltip. */
export function named(text, id, attrs = {}) {
  return h(
    "span",
    { class: "name", translate: "no", title: id && id !== text ? id : null, ...attrs },
    text,
  );
}

/** "camera" and "site · zone" of an incident, as elements. */
export function placeOf(incident) {
  const { site_id: site, camera_id: cam, zone_id: zone } = incident;
  return {
    camera: named(cameraName(site, cam), cam),
    where: h(
      "span",
      { class: "muted small" },
      named(siteName(site), site),
      " · ",
      named(zoneName(site, cam, zone), zone),
    ),
  };
}

/** The name of a person from a history row: display name, or 系统 for the server itself. */
export function personName(row) {
  if (row.system) return h("span", {}, t("history.system"));
  return named(row.by_name || row.by, row.by);
}
