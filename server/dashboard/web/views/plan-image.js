// A site plan image with camera markers at their normalised plan positions.

import { ApiError, get } from "../api.js";
import { h } from "../dom.js";
import { t } from "../i18n.js";

const cache = new Map();

/** An object URL of the site's plan image, or null when none is uploaded (404). */
export async function loadPlanImage(siteId, { refresh = false } = {}) {
  if (!refresh && cache.has(siteId)) return cache.get(siteId);
  let url = null;
  try {
    const blob = await get(`/api/v1/sites/${encodeURIComponent(siteId)}/plan`);
    url = URL.createObjectURL(blob);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) throw error;
  }
  if (cache.has(siteId) && cache.get(siteId)) URL.revokeObjectURL(cache.get(siteId));
  cache.set(siteId, url);
  return url;
}

/** The plan with a marker per camera `{camera_id, online, plan_xy, highlight}`. */
export function planFigure(imageUrl, cameras, { onclick, id } = {}) {
  const frame = h(
    "div",
    { class: `plan-frame${onclick ? " placing" : ""}`, id },
    h("img", { src: imageUrl, alt: t("plan.image_alt"), draggable: "false" }),
    cameras
      .filter((camera) => Array.isArray(camera.plan_xy))
      .map((camera) =>
        h(
          "span",
          {
            class: [
              "marker",
              camera.online === false ? "offline" : "online",
              camera.highlight ? "highlight" : "",
            ].join(" "),
            style: `left:${camera.plan_xy[0] * 100}%;top:${camera.plan_xy[1] * 100}%`,
            title: camera.camera_id,
            dataset: { camera: camera.camera_id },
          },
          h("span", { class: "marker-label" }, camera.camera_id),
        ),
      ),
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
