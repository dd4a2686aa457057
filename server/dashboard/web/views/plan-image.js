// A site plan image with camera pins at their normalised plan positions. Whether a site has a
// plan comes from the site directory, so a site without one is never asked for it (no 404).

import { get } from "../api.js";
import { h } from "../dom.js";
import { t } from "../i18n.js";
import { cameraName, hasPlan } from "../names.js";

const cache = new Map();

/** An object URL of the site's plan image, or null when none is uploaded. */
export async function loadPlanImage(siteId, { refresh = false } = {}) {
  if (!hasPlan(siteId)) return null;
  if (!refresh && cache.has(siteId)) return cache.get(siteId);
  const blob = await get(`/api/v1/sites/${encodeURIComponent(siteId)}/plan`);
  const url = URL.createObjectURL(blob);
  if (cache.get(siteId)) URL.revokeObjectURL(cache.get(siteId));
  cache.set(siteId, url);
  return url;
}

/** The plan with a pin per camera `{site_id, camera_id, online, plan_xy, highlight, alarm,
 * count}`: `alarm` (critical, high, normal) colours the pin by its worst open incident and an
 * unacknowledged one pulses; `onpin(camera)` is called when a pin is chosen. */
export function planFigure(imageUrl, cameras, { onclick, onpin, id } = {}) {
  const frame = h(
    "div",
    { class: `plan-frame${onclick ? " placing" : ""}`, id },
    h("img", { src: imageUrl, alt: t("plan.image_alt"), draggable: "false" }),
    cameras
      .filter((camera) => Array.isArray(camera.plan_xy))
      .map((camera) => {
        const name = cameraName(camera.site_id, camera.camera_id);
        const pin = h(
          onpin ? "button" : "span",
          {
            class: [
              "marker",
              camera.online === false ? "offline" : "online",
              camera.highlight ? "highlight" : "",
              camera.alarm ? `alarm alarm-${camera.alarm}` : "",
              camera.unacked ? "unacked" : "",
            ].join(" "),
            style: `left:${camera.plan_xy[0] * 100}%;top:${camera.plan_xy[1] * 100}%`,
            title: camera.camera_id,
            "aria-label": name,
            translate: "no",
            dataset: { camera: camera.camera_id },
            onclick: onpin
              ? (event) => {
                  event.stopPropagation();
                  onpin(camera);
                }
              : null,
          },
          camera.count ? h("span", { class: "marker-count" }, String(camera.count)) : null,
          h("span", { class: "marker-label", translate: "no" }, name),
        );
        return pin;
      }),
  );
  if (onclick) {
    frame.addEventListener("click", (event) => {
      const box = frame.getBoundingClientRect();
      const x = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
      const y = Math.min(1, Math.max(0, (event.clientY - box.top) / box.height));
      onclick(Number(x.toFixed(4)), Number(y.toFixed(4)));
    });
  }
  return h("figure", { class: "plan" }, frame);
}
