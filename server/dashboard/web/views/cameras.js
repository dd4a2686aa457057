// Devices: each edge box with its load (CPU, memory, the shared detector) and, per camera,
// whether it is online (the reason translated from its code) and how well it is analysed:
// rule coverage, frames read / analysed / dropped, lag and detector wait; an overloaded camera
// is red, a degraded one amber, with its problems in words. Live from the edges' status.

import { currentUser, get } from "../api.js";
import { h, mount } from "../dom.js";
import { ago, dateTime, number, percent } from "../format.js";
import { label, t } from "../i18n.js";
import { cameraName, loadDirectory, named, ruleName, siteName } from "../names.js";

const OUTBOX_KEYS = [
  "pending",
  "pending_evidence",
  "failed_evidence",
  "shed_events",
  "shed_evidence",
  "late_acks",
];
const MEMBER_STATES = ["live", "late", "stopped", "left", "removed"];
const PROBLEM_PARAMS = {
  rule: (value, camera) => ruleName(camera.site_id, camera.camera_id, String(value)),
  rules: (value, camera) =>
    String(value)
      .split(",")
      .filter(Boolean)
      .map((id) => ruleName(camera.site_id, camera.camera_id, id))
      .join(t("common.list_sep")),
  dropped: (value) => t("unit.frames", { n: value }),
  analyses: (value) => t("unit.times", { n: value }),
  coverage: (value) => percent(value),
  need_fps: (value) => t("unit.fps", { n: number(value) }),
  got_fps: (value) => t("unit.fps", { n: number(value) }),
  dropped_fps: (value) => t("unit.fps", { n: number(value) }),
  fps: (value) => t("unit.fps", { n: number(value) }),
  lag_s: (value) => t("unit.s", { n: number(value) }),
  gap_s: (value) => t("unit.s", { n: number(value) }),
  max_gap_s: (value) => t("unit.s", { n: number(value) }),
  wait_ms: (value) => t("unit.ms", { n: number(value, 0) }),
  restarts: (value) => t("unit.times", { n: value }),
};

function key(camera) {
  return `${camera.site_id}/${camera.edge_id}/${camera.camera_id}`;
}

/** Trouble first: offline, overloaded, degraded, then the rest by name. */
function trouble(camera) {
  if (!camera.online) return 0;
  return { overloaded: 1, degraded: 2 }[camera.load?.state] ?? 3;
}

function metric(name, value, attrs = {}) {
  return h(
    "div",
    { class: "metric", ...attrs },
    h("span", { class: "muted small" }, t(name)),
    h("strong", {}, value),
  );
}

/** A problem in words: its code translated, the figures behind it after (names as data). */
function problemText(problem, camera) {
  const details = Object.entries(problem.params || {})
    .filter(([name]) => name in PROBLEM_PARAMS)
    .map(([name, value]) => {
      const shown = PROBLEM_PARAMS[name](value, camera);
      return [
        `${t(`problem_param.${name}`)} `,
        name === "rule" || name === "rules" ? named(shown, String(value)) : shown,
      ];
    });
  if (!details.length) return label("problem", problem.code);
  const [open, close] = t("problem.params", { list: "\u0000" }).split("\u0000");
  const list = details.flatMap((part, index) => (index ? [t("common.list_sep"), ...part] : part));
  return [label("problem", problem.code), open, ...list, close];
}

function coverage(camera, load) {
  const rules = Object.entries(load.coverage || {});
  if (!rules.length) return null;
  return h(
    "div",
    { class: "coverage" },
    rules.map(([ruleId, item]) => {
      const level = item.coverage >= 0.95 ? "ok" : item.coverage >= 0.6 ? "degraded" : "overloaded";
      return h(
        "div",
        { class: `coverage-row level-${level}`, dataset: { rule: ruleId } },
        h(
          "span",
          { class: "coverage-name" },
          named(ruleName(camera.site_id, camera.camera_id, ruleId), ruleId),
        ),
        h(
          "div",
          { class: "hbar", title: t("cameras.coverage_hint") },
          h("div", { class: "hbar-fill", style: `width:${Math.min(1, item.coverage) * 100}%` }),
        ),
        h("strong", { class: "coverage-value" }, percent(item.coverage)),
        h(
          "span",
          { class: "muted small" },
          t("cameras.coverage_detail", {
            got: number(item.got_fps),
            need: number(item.need_fps),
            gap: number(item.max_gap_s),
          }),
          item.holding ? [" · ", h("span", { class: "holding" }, t("cameras.holding"))] : null,
        ),
      );
    }),
  );
}

function cameraCard(camera) {
  const load = camera.online ? camera.load : null;
  const state = load?.state || (camera.online ? "unknown" : "offline");
  const reason = camera.reason_code || (camera.reason ? "other" : null);
  return h(
    "article",
    {
      class: `camera-card load-${state} ${camera.online ? "online" : "offline"}`,
      dataset: { camera: camera.camera_id, state },
    },
    h(
      "header",
      {},
      h("span", { class: `dot ${camera.online ? "online" : "offline"}` }),
      h("strong", {}, named(cameraName(camera.site_id, camera.camera_id), camera.camera_id)),
      h(
        "span",
        { class: "camera-state" },
        camera.online ? t("cameras.online") : t("cameras.offline"),
      ),
      load
        ? h("span", { class: `badge load load-${load.state}` }, label("load_state", load.state))
        : null,
    ),
    reason && !(camera.online && reason === "frames_arriving")
      ? h("p", { class: "reason", title: camera.reason || null }, label("camera_reason", reason))
      : null,
    load
      ? [
          coverage(camera, load),
          h(
            "div",
            { class: "metrics" },
            metric("cameras.frames_read", t("unit.fps", { n: number(load.camera_fps) })),
            metric(
              "cameras.frames_analysed",
              load.analysis_fps === null || load.analysis_fps === undefined
                ? "—"
                : load.target_analysis_fps
                  ? t("cameras.of_target", {
                      n: number(load.analysis_fps),
                      target: number(load.target_analysis_fps),
                    })
                  : t("unit.fps", { n: number(load.analysis_fps) }),
            ),
            load.frame_rule_fps !== null && load.frame_rule_fps !== undefined
              ? metric("cameras.frames_every", t("unit.fps", { n: number(load.frame_rule_fps) }))
              : null,
            metric("cameras.frames_dropped", t("unit.fps", { n: number(load.dropped_fps) }), {
              class: `metric${load.dropped_fps > 0 ? " warn" : ""}`,
            }),
            metric("cameras.detections", t("unit.fps", { n: number(load.detection_fps) })),
            metric("cameras.lag", t("unit.s", { n: number(load.lag_s) }), {
              class: `metric${load.lag_s >= 2 ? " warn" : ""}`,
            }),
            metric("cameras.detector_wait", t("unit.ms", { n: number(load.detector_wait_ms, 0) })),
            metric("cameras.cpu", percent(load.cpu)),
            load.restarts ? metric("cameras.restarts", String(load.restarts)) : null,
          ),
          (load.problems || []).length
            ? h(
                "ul",
                { class: "problems" },
                load.problems.map((problem) =>
                  h(
                    "li",
                    { title: problem.detail || null, dataset: { code: problem.code } },
                    problemText(problem, camera),
                  ),
                ),
              )
            : null,
        ]
      : camera.online
        ? h("p", { class: "muted small" }, t("cameras.no_load"))
        : null,
    h(
      "footer",
      { class: "muted small" },
      camera.last_seen
        ? t("cameras.last_seen", { at: `${dateTime(camera.last_seen)} (${ago(camera.last_seen)})` })
        : t("cameras.never_online"),
      " · ",
      camera.plan_xy ? t("cameras.placed") : t("cameras.not_placed"),
    ),
  );
}

function boxLoad(box) {
  if (!box) return h("p", { class: "muted small" }, t("cameras.no_box_load"));
  const detector = box.detector || {};
  return h(
    "div",
    { class: `box-load${box.overloaded ? " overloaded" : ""}` },
    box.overloaded
      ? h("span", { class: "badge load load-overloaded" }, t("cameras.box_overloaded"))
      : null,
    h(
      "div",
      { class: "metrics" },
      metric(
        "cameras.box_cpu",
        t("cameras.box_cpu_value", { p: percent(box.cpu), cores: box.cores }),
        {
          class: `metric${box.cpu >= 0.9 ? " warn" : ""}`,
        },
      ),
      metric("cameras.box_process", t("unit.cores", { n: number(box.process_cpu) })),
      metric(
        "cameras.box_memory",
        box.memory_available_mb !== null && box.memory_available_mb !== undefined
          ? t("cameras.memory_value", {
              used: number(box.memory_mb, 0),
              free: number(box.memory_available_mb, 0),
            })
          : t("unit.mb", { n: number(box.memory_mb, 0) }),
      ),
      box.load1 !== null && box.load1 !== undefined
        ? metric("cameras.box_load1", number(box.load1, 2))
        : null,
      metric("cameras.detector_busy", percent(detector.busy), {
        class: `metric${detector.busy >= 0.9 ? " warn" : ""}`,
      }),
      metric("cameras.detector_runs", t("unit.per_s", { n: number(detector.runs_per_s) })),
      metric("cameras.detector_queue", String(detector.queue ?? 0)),
      metric("cameras.detector_wait_p95", t("unit.ms", { n: number(detector.wait_p95_ms, 0) })),
      metric("cameras.detector_batch", number(detector.batch_mean, 1)),
      metric("cameras.detector_shed", String(detector.shed ?? 0), {
        class: `metric${detector.shed ? " warn" : ""}`,
      }),
    ),
  );
}

function outbox(values) {
  const known = OUTBOX_KEYS.filter((name) => name in (values || {}));
  if (!known.length) return null;
  return h(
    "span",
    { class: "muted small outbox" },
    known.map((name) => t(`outbox.${name}`, { n: values[name] })).join(" · "),
  );
}

/** The server processes of the shared group (issue 18), for admins of every site: who takes
 * the events, each one's heartbeat and share; gone ones removed after the grace. */
function serverMembers(list) {
  if (!list) return null;
  return h(
    "section",
    { class: "panel server-members", id: "server-members" },
    h("h3", {}, t("servers.title")),
    h("p", { class: "muted small" }, t("servers.hint", { grace: number(list.grace_s, 0) })),
    list.items.map((member) => {
      const state = member.late ? "late" : member.state;
      return h(
        "div",
        { class: "server-member", dataset: { member: member.client_id, state } },
        h(
          "header",
          {},
          h("span", { class: `dot ${state === "live" ? "online" : "offline"}` }),
          h("strong", { translate: "no" }, member.client_id),
          " ",
          h(
            "span",
            { class: `badge member-${MEMBER_STATES.includes(state) ? state : "live"}` },
            label("member_state", state),
          ),
          member.ended_by && state === "removed"
            ? h(
                "span",
                { class: "muted small" },
                ` ${t("servers.removed_by", { by: member.ended_by })}`,
              )
            : null,
        ),
        h(
          "div",
          { class: "metrics" },
          metric("servers.host", h("span", { translate: "no" }, `${member.host} · ${member.pid}`)),
          metric("servers.heartbeat", ago(member.heartbeat_at)),
          metric("servers.taken", String(member.events_taken)),
          metric("servers.stored", String(member.events_stored)),
        ),
      );
    }),
  );
}

export function render(container, _params, ctx) {
  let cameras = new Map();
  let edges = [];
  let members = null;
  const servers = h("div", { id: "server-members-slot" });
  const body = h("div", { id: "camera-health" }, h("p", { class: "muted" }, t("common.loading")));
  const counts = h("p", { class: "muted", id: "camera-counts" });

  function draw() {
    const list = [...cameras.values()].sort((a, b) => key(a).localeCompare(key(b)));
    const offline = list.filter((camera) => !camera.online).length;
    const strained = list.filter(
      (c) => c.online && ["overloaded", "degraded"].includes(c.load?.state),
    ).length;
    counts.textContent = t("cameras.counts", { total: list.length, offline, strained });
    const groups = new Map();
    for (const camera of list) {
      const group = `${camera.site_id}/${camera.edge_id}`;
      if (!groups.has(group)) groups.set(group, []);
      groups.get(group).push(camera);
    }
    mount(servers, serverMembers(members));
    const edgeInfo = new Map(edges.map((edge) => [`${edge.site_id}/${edge.edge_id}`, edge]));
    if (!list.length) {
      mount(body, h("p", { class: "empty" }, t("cameras.empty")));
      return;
    }
    mount(
      body,
      [...groups.entries()].map(([group, members]) => {
        const edge = edgeInfo.get(group);
        const [siteId, edgeId] = group.split("/");
        return h(
          "section",
          { class: "panel edge", dataset: { edge: edgeId } },
          h(
            "h3",
            {},
            h("span", { class: `dot ${edge ? (edge.online ? "online" : "offline") : "unknown"}` }),
            named(siteName(siteId), siteId),
            " · ",
            t("cameras.edge_box"),
            " ",
            named(edgeId, edgeId),
            edge
              ? h(
                  "span",
                  { class: "muted small" },
                  ` ${t("cameras.edge_seen", { at: ago(edge.last_seen) })}`,
                )
              : null,
          ),
          edge ? outbox(edge.outbox) : null,
          boxLoad(edge?.box),
          h(
            "div",
            { class: "camera-grid" },
            [...members]
              .sort(
                (a, b) =>
                  trouble(a) - trouble(b) ||
                  cameraName(a.site_id, a.camera_id).localeCompare(
                    cameraName(b.site_id, b.camera_id),
                  ),
              )
              .map(cameraCard),
          ),
        );
      }),
    );
  }

  async function load() {
    try {
      const admin = currentUser()?.role === "admin";
      const [cameraList, edgeList, memberList] = await Promise.all([
        get("/api/v1/cameras"),
        get("/api/v1/edges").catch(() => ({ items: [] })),
        admin ? get("/api/v1/server-members").catch(() => null) : null,
        loadDirectory().catch(() => null),
      ]);
      members = memberList;
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
      servers,
      body,
    ),
  );
  let edgesTimer = null;
  const stopFeed = ctx.feed.on("camera", (camera) => {
    if (camera && camera.camera_id && camera.site_id && camera.edge_id) {
      cameras.set(key(camera), { ...cameras.get(key(camera)), ...camera });
      draw();
      clearTimeout(edgesTimer); // the box's load came with the same status message
      edgesTimer = setTimeout(async () => {
        edges = (await get("/api/v1/edges").catch(() => ({ items: edges }))).items || edges;
        draw();
      }, 300);
    } else {
      load();
    }
  });
  const clock = setInterval(load, 60_000);
  load();
  return () => {
    stopFeed();
    clearInterval(clock);
    clearTimeout(edgesTimer);
  };
}
