// Site plan: the plan image of a site with its cameras; an admin uploads the image and places
// a camera by choosing it and clicking its spot on the plan.

import { ApiError, get, put, request } from "../api.js";
import { h, mount } from "../dom.js";
import { t } from "../i18n.js";
import { atLeast } from "../incidents.js";
import { loadPlanImage, planFigure } from "./plan-image.js";

const IMAGE_TYPES = ["image/png", "image/jpeg"];

export function render(container, _params, ctx) {
  const admin = atLeast(ctx.user, "admin");
  let cameras = [];
  let siteId = "";
  let placing = "";
  const siteSelect = h("select", { id: "plan-site", onchange: () => show(siteSelect.value) });
  const stage = h("div", { id: "plan-stage" }, h("p", { class: "muted" }, t("common.loading")));
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
      ctx.toast(t("plan.uploaded"), "ok");
      await draw({ refresh: true });
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
      ctx.toast(t("plan.placed", { camera: placing }), "ok");
      await refreshCameras();
      await draw();
    } catch (error) {
      const text =
        error instanceof ApiError && error.status === 403 ? t("actions.forbidden") : error.message;
      ctx.toast(t("error.generic", { detail: text }), "error");
    }
  }

  function cameraPicker(siteCameras) {
    if (!admin || !siteCameras.length) return null;
    return h(
      "fieldset",
      { class: "camera-picker", id: "plan-cameras" },
      h("legend", {}, t("plan.place_camera")),
      siteCameras.map((camera) => {
        const input = h("input", {
          type: "radio",
          name: "plan-camera",
          value: camera.camera_id,
          checked: camera.camera_id === placing,
          onchange: () => {
            placing = camera.camera_id;
            hint.textContent = t("plan.click_to_place", { camera: placing });
          },
        });
        return h("label", { class: "inline" }, input, camera.camera_id, camera.plan_xy ? " ✓" : "");
      }),
    );
  }

  async function draw({ refresh = false } = {}) {
    const siteCameras = cameras.filter((camera) => camera.site_id === siteId);
    let image = null;
    try {
      image = await loadPlanImage(siteId, { refresh });
    } catch (error) {
      mount(stage, h("p", { class: "form-error" }, t("error.generic", { detail: error.message })));
      return;
    }
    mount(
      stage,
      admin
        ? h(
            "div",
            { class: "toolbar" },
            h("label", { for: "plan-upload" }, t("plan.upload")),
            upload,
          )
        : null,
      cameraPicker(siteCameras),
      hint,
      image
        ? planFigure(
            image,
            siteCameras,
            admin ? { onclick: place, id: "plan-frame" } : { id: "plan-frame" },
          )
        : h("p", { class: "empty" }, t("plan.none")),
    );
  }

  async function refreshCameras() {
    cameras = (await get("/api/v1/cameras")).items || [];
  }

  async function show(site) {
    siteId = site;
    placing = "";
    hint.textContent = admin ? t("plan.admin_hint") : "";
    await draw();
  }

  async function start() {
    try {
      await refreshCameras();
    } catch (error) {
      mount(stage, h("p", { class: "form-error" }, t("error.generic", { detail: error.message })));
      return;
    }
    const own = (ctx.user.sites || []).filter((site) => site !== "*");
    const sites = [...new Set([...own, ...cameras.map((camera) => camera.site_id)])].sort();
    mount(
      siteSelect,
      sites.map((site) => h("option", { value: site }, site)),
    );
    if (!sites.length) {
      mount(stage, h("p", { class: "empty" }, t("plan.no_sites")));
      return;
    }
    await show(sites[0]);
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
  start();
}
