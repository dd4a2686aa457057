// Site plan: the plan of a site with a pin per camera, coloured live by the camera's worst
// open incident (an unacknowledged one pulses, the count on the pin); choosing a pin shows the
// camera's state, its latest snapshot and its open incidents. An admin uploads the plan and
// places cameras (a mode of its own, so a stray click never moves one).

import { ApiError, get, put, request, withToken } from "../api.js";
import { h, mount } from "../dom.js";
import { ago, dateTime, measure } from "../format.js";
import { label, t } from "../i18n.js";
import { CLOSED, atLeast } from "../incidents.js";
import { cameraName, loadDirectory, named, notePlan, siteIds, siteName } from "../names.js";
import { loadPlanImage, planFigure } from "./plan-image.js";

const IMAGE_TYPES = ["image/png", "image/jpeg"];
const SEVERITY_RANK = { critical: 0, high: 1, normal: 2 };

function key(siteId, cameraId) {
  return `${siteId}/${cameraId}`;
}

export function render(container, params, ctx) {
  const admin = atLeast(ctx.user, "admin");
  let cameras = [];
  const open = new Map(); // incident id → incident (open ones of the shown site)
  let siteId = params.query?.site || "";
  let placing = "";
  let editing = false;
  let chosen = params.query?.camera || "";
  let image = null;
  const siteSelect = h("select", { id: "plan-site", onchange: () => show(siteSelect.value) });
  const stage = h("div", { id: "plan-stage" }, h("p", { class: "muted" }, t("common.loading")));
  const side = h("aside", { class: "panel plan-side", id: "plan-side" });
  const hint = h("p", { class: "muted", id: "plan-hint" });
  const upload = h("input", { type: "file", id: "plan-upload", accept: IMAGE_TYPES.join(",") });
  upload.addEventListener("change", async () => {
    const [file] = upload.files;
    if (!file) return;
    if (!IMAGE_TYPES.includes(file.type)) {
      ctx.toast(t("plan.wrong_type"), "error");
      return;
    }
    try {
      await request("PUT", `/api/v1/sites/${encodeURIComponent(siteId)}/plan`, {
        body: file,
        contentType: file.type,
      });
      notePlan(siteId);
      ctx.toast(t("plan.uploaded"), "ok");
      image = await loadPlanImage(siteId, { refresh: true });
      draw();
    } catch (error) {
      ctx.toast(t("error.generic", { detail: error.message }), "error");
    }
    upload.value = "";
  });

  async function place(x, y) {
    if (!placing) {
      ctx.toast(t("plan.choose_camera"), "error");
      return;
    }
    try {
      const path = `/api/v1/sites/${encodeURIComponent(siteId)}/cameras/${encodeURIComponent(placing)}/plan-position`;
      await put(path, { x, y });
      ctx.toast(t("plan.placed", { camera: cameraName(siteId, placing) }), "ok");
      await refreshCameras();
      draw();
    } catch (error) {
      const text =
        error instanceof ApiError && error.status === 403 ? t("actions.forbidden") : error.message;
      ctx.toast(t("error.generic", { detail: text }), "error");
    }
  }

  function pins() {
    const byCamera = new Map();
    for (const incident of open.values()) {
      const k = key(incident.site_id, incident.camera_id);
      if (!byCamera.has(k)) byCamera.set(k, []);
      byCamera.get(k).push(incident);
    }
    return cameras
      .filter((camera) => camera.site_id === siteId)
      .map((camera) => {
        const incidents = byCamera.get(key(camera.site_id, camera.camera_id)) || [];
        const worst = incidents
          .map((i) => i.severity)
          .sort((a, b) => (SEVERITY_RANK[a] ?? 3) - (SEVERITY_RANK[b] ?? 3))[0];
        return {
          ...camera,
          alarm: worst || null,
          unacked: incidents.some((i) => i.status === "reported"),
          count: incidents.length,
          highlight: camera.camera_id === chosen,
        };
      });
  }

  function drawSide() {
    const camera = cameras.find((c) => c.site_id === siteId && c.camera_id === chosen);
    if (!camera) {
      mount(side, h("p", { class: "muted" }, t("plan.choose_pin")));
      return;
    }
    const incidents = [...open.values()]
      .filter((i) => i.site_id === siteId && i.camera_id === chosen)
      .sort((a, b) => (SEVERITY_RANK[a.severity] ?? 3) - (SEVERITY_RANK[b.severity] ?? 3));
    const snapshot = camera.latest_snapshot;
    mount(
      side,
      h("h3", {}, named(cameraName(siteId, chosen), chosen)),
      h(
        "p",
        {},
        h("span", { class: `dot ${camera.online ? "online" : "offline"}` }),
        camera.online ? t("cameras.online") : t("cameras.offline"),
        camera.online ? null : [" · ", label("camera_reason", camera.reason_code || "unknown")],
      ),
      snapshot
        ? h(
            "figure",
            { class: "latest-snapshot", id: "plan-snapshot" },
            h("img", { src: withToken(snapshot.url), alt: t("plan.latest_snapshot") }),
            h(
              "figcaption",
              { class: "muted small" },
              t("plan.latest_snapshot_at", {
                at: dateTime(snapshot.observed_at),
                ago: ago(snapshot.observed_at),
              }),
            ),
          )
        : h("p", { class: "muted" }, t("plan.no_snapshot")),
      h("h3", {}, t("plan.open_incidents", { n: incidents.length })),
      incidents.length
        ? h(
            "ul",
            { class: "pin-incidents" },
            incidents.map((incident) =>
              h(
                "li",
                {},
                h(
                  "a",
                  { href: `#/incidents/${incident.id}`, class: `sev-${incident.severity}` },
                  h(
                    "span",
                    { class: `badge sev sev-${incident.severity}` },
                    label("severity", incident.severity),
                  ),
                  label("type", incident.type),
                  ` #${incident.id} · `,
                  label("status", incident.status),
                  measure(incident) ? ` · ${measure(incident)}` : "",
                ),
              ),
            ),
          )
        : h("p", { class: "muted" }, t("plan.no_open")),
    );
  }

  function draw() {
    const siteCameras = cameras.filter((camera) => camera.site_id === siteId);
    const unplaced = siteCameras.filter((camera) => !camera.plan_xy);
    mount(
      stage,
      admin
        ? h(
            "div",
            { class: "toolbar" },
            h(
              "button",
              {
                class: editing ? "primary" : "",
                id: "plan-edit",
                "aria-pressed": String(editing),
                onclick: () => {
                  editing = !editing;
                  placing = "";
                  hint.textContent = editing ? t("plan.admin_hint") : "";
                  draw();
                },
              },
              editing ? t("plan.edit_done") : t("plan.edit"),
            ),
            editing ? [h("label", { for: "plan-upload" }, t("plan.upload")), upload] : null,
          )
        : null,
      editing && siteCameras.length
        ? h(
            "fieldset",
            { class: "camera-picker", id: "plan-cameras" },
            h("legend", {}, t("plan.place_camera")),
            siteCameras.map((camera) =>
              h(
                "label",
                { class: "inline" },
                h("input", {
                  type: "radio",
                  name: "plan-camera",
                  value: camera.camera_id,
                  checked: camera.camera_id === placing,
                  onchange: () => {
                    placing = camera.camera_id;
                    hint.textContent = t("plan.click_to_place", {
                      camera: cameraName(siteId, placing),
                    });
                  },
                }),
                named(cameraName(siteId, camera.camera_id), camera.camera_id),
                camera.plan_xy ? " ✓" : "",
              ),
            ),
          )
        : null,
      hint,
      h(
        "div",
        { class: "plan-layout" },
        image
          ? planFigure(image, pins(), {
              id: "plan-frame",
              onclick: editing ? place : null,
              onpin: editing
                ? null
                : (camera) => {
                    chosen = camera.camera_id;
                    draw();
                  },
            })
          : h("p", { class: "empty" }, t("plan.none")),
        image ? side : null,
      ),
      image && unplaced.length && !editing
        ? h("p", { class: "muted small" }, t("plan.unplaced", { n: unplaced.length }))
        : null,
    );
    drawSide();
  }

  async function refreshCameras() {
    cameras = (await get("/api/v1/cameras")).items || [];
  }

  async function refreshIncidents() {
    const page = await get("/api/v1/incidents", { open: true, site_id: siteId, limit: 500 });
    open.clear();
    for (const incident of page.items) open.set(incident.id, incident);
  }

  async function show(site) {
    siteId = site;
    placing = "";
    try {
      [image] = await Promise.all([loadPlanImage(siteId), refreshIncidents()]);
    } catch (error) {
      mount(stage, h("p", { class: "form-error" }, t("error.generic", { detail: error.message })));
      return;
    }
    draw();
  }

  async function start() {
    try {
      await Promise.all([refreshCameras(), loadDirectory()]);
    } catch (error) {
      mount(stage, h("p", { class: "form-error" }, t("error.generic", { detail: error.message })));
      return;
    }
    const sites = [...new Set([...siteIds(), ...cameras.map((c) => c.site_id)])].sort();
    mount(
      siteSelect,
      sites.map((site) => h("option", { value: site, selected: site === siteId }, siteName(site))),
    );
    if (!sites.length) {
      mount(stage, h("p", { class: "empty" }, t("plan.no_sites")));
      return;
    }
    await show(sites.includes(siteId) ? siteId : sites[0]);
  }

  container.append(
    h(
      "section",
      { class: "plan-view" },
      h("div", { class: "view-head" }, h("h2", {}, t("plan.title"))),
      h("div", { class: "toolbar" }, h("label", { for: "plan-site" }, t("plan.site")), siteSelect),
      stage,
    ),
  );
  const stopIncidents = ctx.feed.on("incident", (incident) => {
    if (incident.site_id !== siteId) return;
    if (CLOSED.has(incident.status)) open.delete(incident.id);
    else open.set(incident.id, incident);
    if (image) draw();
  });
  const stopCameras = ctx.feed.on("camera", (camera) => {
    const index = cameras.findIndex(
      (c) => c.site_id === camera.site_id && c.camera_id === camera.camera_id,
    );
    if (index >= 0) cameras[index] = { ...cameras[index], ...camera };
    else cameras.push(camera);
    if (image && camera.site_id === siteId) draw();
  });
  start();
  return () => {
    stopIncidents();
    stopCameras();
  };
}
