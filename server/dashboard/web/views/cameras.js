// Camera and edge health: each camera's online state, reason and last report, live.

import { get } from "../api.js";
import { h, mount } from "../dom.js";
import { ago, dateTime } from "../format.js";
import { t } from "../i18n.js";

function key(camera) {
  return `${camera.site_id}/${camera.edge_id}/${camera.camera_id}`;
}

export function render(container, _params, ctx) {
  let cameras = new Map();
  let edges = [];
  const body = h("div", { id: "camera-health" }, h("p", { class: "muted" }, t("common.loading")));
  const counts = h("p", { class: "muted", id: "camera-counts" });

  function draw() {
    const list = [...cameras.values()].sort((a, b) => key(a).localeCompare(key(b)));
    const offline = list.filter((camera) => !camera.online).length;
    counts.textContent = t("cameras.counts", { total: list.length, offline });
    const groups = new Map();
    for (const camera of list) {
      const group = `${camera.site_id} · ${camera.edge_id}`;
      if (!groups.has(group)) groups.set(group, []);
      groups.get(group).push(camera);
    }
    const edgeInfo = new Map(edges.map((edge) => [`${edge.site_id} · ${edge.edge_id}`, edge]));
    if (!list.length) {
      mount(body, h("p", { class: "empty" }, t("cameras.empty")));
      return;
    }
    mount(
      body,
      [...groups.entries()].map(([group, members]) => {
        const edge = edgeInfo.get(group);
        return h(
          "div",
          { class: "panel edge" },
          h(
            "h3",
            {},
            h("span", { class: `dot ${edge ? (edge.online ? "online" : "offline") : "unknown"}` }),
            group,
            edge
              ? h(
                  "span",
                  { class: "muted small" },
                  ` ${t("cameras.edge_seen", { at: ago(edge.last_seen) })}`,
                )
              : null,
            edge?.outbox && Object.keys(edge.outbox).length
              ? h(
                  "span",
                  { class: "muted small" },
                  ` · ${t("cameras.outbox")}: ${Object.entries(edge.outbox)
                    .map(([k, v]) => `${k} ${v}`)
                    .join(", ")}`,
                )
              : null,
          ),
          h(
            "table",
            { class: "cameras" },
            h(
              "thead",
              {},
              h(
                "tr",
                {},
                [
                  "cameras.col.camera",
                  "cameras.col.state",
                  "cameras.col.reason",
                  "cameras.col.last_seen",
                  "cameras.col.plan",
                ].map((k) => h("th", {}, t(k))),
              ),
            ),
            h(
              "tbody",
              {},
              members.map((camera) =>
                h(
                  "tr",
                  {
                    class: camera.online ? "online" : "offline",
                    dataset: { camera: camera.camera_id },
                  },
                  h("td", {}, camera.camera_id),
                  h(
                    "td",
                    {},
                    h("span", { class: `dot ${camera.online ? "online" : "offline"}` }),
                    camera.online ? t("cameras.online") : t("cameras.offline"),
                  ),
                  h("td", {}, camera.reason || "—"),
                  h(
                    "td",
                    {},
                    camera.last_seen
                      ? `${dateTime(camera.last_seen)} (${ago(camera.last_seen)})`
                      : "—",
                  ),
                  h("td", {}, camera.plan_xy ? t("cameras.placed") : t("cameras.not_placed")),
                ),
              ),
            ),
          ),
        );
      }),
    );
  }

  async function load() {
    try {
      const [cameraList, edgeList] = await Promise.all([
        get("/api/v1/cameras"),
        get("/api/v1/edges").catch(() => ({ items: [] })),
      ]);
      cameras = new Map(cameraList.items.map((camera) => [key(camera), camera]));
      edges = edgeList.items || [];
      draw();
    } catch (error) {
      mount(body, h("p", { class: "form-error" }, t("error.generic", { detail: error.message })));
    }
  }

  container.append(
    h(
      "section",
      { class: "cameras-view" },
      h("div", { class: "view-head" }, h("h2", {}, t("cameras.title")), counts),
      body,
    ),
  );
  const stopFeed = ctx.feed.on("camera", (camera) => {
    if (camera && camera.camera_id && camera.site_id && camera.edge_id) {
      cameras.set(key(camera), { ...cameras.get(key(camera)), ...camera });
      draw();
    } else {
      load();
    }
  });
  const clock = setInterval(load, 60_000);
  load();
  return () => {
    stopFeed();
    clearInterval(clock);
  };
}
