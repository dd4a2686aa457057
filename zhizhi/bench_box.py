"""`zhizhi bench box`: the edge box live, as an installer runs it, measured against replay.

Every camera of a site config runs through the box's own runtime (edge.runtime: a process per
camera, the shared detection service) on its file source, played at the file's real pace and
looped, for `seconds`. Before that, each camera's file is replayed once (`edge replay`, every
frame, no hurry) and its alerts are what every loop of the live run must find: a live alert
matches a replayed one of the same rule whose onset lies within the rule type's tolerance
(contract section 6) in the same loop. The result, per camera: loops played, alerts expected,
found, missed and unexpected (false alarms that replay does not raise), frames read, analysed
and dropped per second, the lowest rule coverage seen, whether a rule held its judgement, and
the CPU of its process; for the box: CPU, memory and the detector's load. With `server`, an
embedded broker and server (SQLite) store the events as the edge sends them, and the alert
latency from its frame (when the rule decided) to the server's store is measured (p50, p95).

`zhizhi bench capacity` runs the box with 1, 2, ... copies of one kind of camera (facade, fall
room, fire lane, garbage) and reports the most that still find everything replay finds, raise
nothing else and keep their coverage: the capacity table of docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import yaml

from common.config import EvidenceFaces, SiteConfig, load_site_config
from common.events import BoxLoad, CameraLoad, Event
from edge.offline.replay import replay_events
from edge.runtime import procfs
from edge.runtime.supervisor import BoxOptions, Supervisor

logger = logging.getLogger(__name__)

TOLERANCE_S = {"falling_object": 1.0, "person_fall": 2.0, "fire_lane": 5.0, "garbage_pile": 5.0}
WARMUP_S = 5.0  # the first reports (processes starting, models warming) are not counted
CACHE = Path.home() / ".cache" / "zhizhi" / "bench-box"


@dataclass(frozen=True, slots=True)
class Alert:
    rule_id: str
    type: str
    onset_s: float


@dataclass
class CameraResult:
    camera_id: str
    kinds: tuple[str, ...]
    size: str
    fps: float
    period_s: float  # one loop of its file, in stream seconds
    replayed: list[Alert]
    live: list[Alert] = field(default_factory=list)
    loads: list[CameraLoad] = field(default_factory=list)
    loops: int = 0
    found: int = 0
    missed: int = 0
    unexpected: list[Alert] = field(default_factory=list)

    @property
    def expected(self) -> int:
        return len(self.replayed) * self.loops

    def judge(self, seconds_played: float) -> None:
        """Match the live alerts to the replayed ones, loop by loop."""
        self.loops = int(seconds_played // self.period_s) if self.period_s > 0 else 0
        matched: set[tuple[int, int]] = set()
        for alert in self.live:
            loop = int(alert.onset_s // self.period_s) if self.period_s > 0 else 0
            onset = alert.onset_s - loop * self.period_s
            hit = None
            for index, wanted in enumerate(self.replayed):
                near = abs(onset - wanted.onset_s) <= TOLERANCE_S.get(wanted.type, 1.0)
                # an onset just past a loop's end belongs to the next loop's start, and back
                wrapped = abs(abs(onset - wanted.onset_s) - self.period_s) <= TOLERANCE_S.get(
                    wanted.type, 1.0
                )
                if wanted.rule_id == alert.rule_id and (near or wrapped):
                    hit = (loop, index)
                    break
            if hit is None:
                self.unexpected.append(alert)
            elif hit[0] < self.loops:
                matched.add(hit)
        self.found = len(matched)
        self.missed = self.expected - self.found

    def steady(self) -> list[CameraLoad]:
        return [load for load in self.loads if load.state not in ("starting", "restarting")]

    def mean(self, pick: Callable[[CameraLoad], float | None]) -> float:
        values = [v for v in (pick(load) for load in self.steady()) if v is not None]
        return statistics.fmean(values) if values else 0.0

    @property
    def min_coverage(self) -> float:
        values = [c.coverage for load in self.steady() for c in load.coverage.values()]
        return min(values, default=1.0)

    @property
    def held(self) -> int:
        return sum(1 for load in self.steady() for c in load.coverage.values() if c.holding)

    @property
    def overloaded(self) -> int:
        return sum(1 for load in self.steady() if load.state == "overloaded")

    @property
    def replay_quality(self) -> bool:
        return self.missed == 0 and not self.unexpected

    def row(self) -> str:
        analysed = self.mean(
            lambda x: x.frame_rule_fps if x.frame_rule_fps is not None else x.analysis_fps
        )
        return (
            f"| {self.camera_id} | {'+'.join(self.kinds)} | {self.size} @ {self.fps:.0f} | "
            f"{self.loops} | {self.found}/{self.expected} | {len(self.unexpected)} | "
            f"{self.mean(lambda x: x.camera_fps):.1f} | {analysed:.1f} | "
            f"{self.mean(lambda x: x.dropped_fps):.2f} | {self.min_coverage:.2f} | "
            f"{self.held} | {self.overloaded}/{len(self.steady())} | "
            f"{self.mean(lambda x: x.cpu) * 100:.0f} % |"
        )


@dataclass
class BoxResult:
    seconds: float
    cameras: dict[str, CameraResult]
    boxes: list[BoxLoad]
    latencies: list[tuple[str, float]] = field(default_factory=list)  # (alert type, seconds)
    models: str = ""

    @property
    def latencies_s(self) -> list[float]:
        return [seconds for _, seconds in self.latencies]

    @property
    def replay_quality(self) -> bool:
        return all(camera.replay_quality for camera in self.cameras.values())

    def latency(self, share: float) -> float | None:
        return _quantile(self.latencies_s, share)

    def _latency_by_type(self) -> list[str]:
        parts = []
        for kind in sorted({t for t, _ in self.latencies}):
            values = [seconds for t, seconds in self.latencies if t == kind]
            p50, p95 = _quantile(values, 0.5) or 0.0, _quantile(values, 0.95) or 0.0
            parts.append(f"{kind} {p50 * 1000:.0f} / {p95 * 1000:.0f} ms ({len(values)})")
        return parts

    def markdown(self) -> str:
        header = (
            "| camera | rules | picture | loops | alerts found / expected | unexpected | "
            "frames in /s | analysed /s | dropped /s | lowest coverage | reports holding | "
            "reports overloaded | CPU |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        )
        rows = "\n".join(camera.row() for camera in self.cameras.values())
        boxes = self.boxes[1:] or self.boxes
        cpu = statistics.fmean(b.cpu for b in boxes) if boxes else 0.0
        memory = max((b.memory_mb for b in boxes), default=0.0)
        busy = statistics.fmean(b.detector.busy for b in boxes) if boxes else 0.0
        wait = max((b.detector.wait_p95_ms for b in boxes), default=0.0)
        lines = [
            header + rows,
            "",
            f"Box: CPU {cpu * 100:.0f} % of {procfs.cores()} cores, memory {memory:.0f} MB "
            f"(all its processes), detector busy {busy * 100:.0f} %, worst p95 wait "
            f"{wait:.0f} ms; replay quality: " + ("**yes**" if self.replay_quality else "**no**"),
        ]
        for camera in self.cameras.values():
            for alert in camera.unexpected:
                loop = int(alert.onset_s // camera.period_s) if camera.period_s > 0 else 0
                lines.append(
                    f"Unexpected: {camera.camera_id} {alert.rule_id} ({alert.type}), onset "
                    f"{alert.onset_s:.1f} s (loop {loop}, "
                    f"{alert.onset_s - loop * camera.period_s:.1f} s into it)"
                )
        p50, p95 = self.latency(0.5), self.latency(0.95)
        if p50 is not None and p95 is not None:
            lines.append(
                f"Alert latency, from the frame the rule decided on to the server's store: "
                f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms ({len(self.latencies_s)} "
                "alerts); by type, p50 / p95: " + ", ".join(self._latency_by_type())
            )
        return "\n".join(lines)

    def append_to(self, path: Path, command: str, load: str) -> None:
        when = datetime.now(UTC).strftime("%Y-%m-%d")
        machine = f"{platform.machine()}, {procfs.cores()} cores"
        block = (
            f"\n### Box live, {len(self.cameras)} cameras, {self.seconds:.0f} s "
            f"({when}, {machine}, load before {load})\n\n```\nzhizhi {command}\n```\n\n"
            f"{self.markdown()}\n"
        )
        with path.open("a", encoding="utf-8") as stream:
            stream.write(block)


# -- the replayed reference ---------------------------------------------------------------------


def _file_facts(path: Path) -> tuple[int, int, float, int]:
    capture = cv2.VideoCapture(str(path))
    try:
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(capture.get(cv2.CAP_PROP_FPS)) or 25.0
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    return width, height, fps, count


def replayed_alerts(site: SiteConfig, camera_id: str) -> list[Alert]:
    """The camera's alerts when its file is replayed once (cached by file and config)."""
    camera = site.camera(camera_id)
    source = Path(str(site.resolve_source(camera)))
    key = hashlib.sha256(
        json.dumps(
            [
                str(source),
                source.stat().st_mtime,
                source.stat().st_size,
                camera.model_dump(mode="json", exclude={"id", "name"}),
            ],
            sort_keys=True,
        ).encode()
    ).hexdigest()[:24]
    cached = CACHE / f"{key}.json"
    if cached.is_file():
        return [Alert(**item) for item in json.loads(cached.read_text())]
    alerts = [
        Alert(item.rule_id, item.type, item.onset_pts_s)
        for item in replay_events(site, camera, source)
        if isinstance(item, Event) and item.state == "new"
    ]
    CACHE.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps([dataclasses.asdict(a) for a in alerts]))
    return alerts


# -- the live run -----------------------------------------------------------------------------


@contextlib.contextmanager
def _embedded_server(folder: Path) -> Iterator[tuple[str, Any]]:
    """An embedded broker and the server on SQLite (MQTT ingestion only): the broker's URL
    and the server's session factory."""
    from server.db.session import make_session_factory
    from server.main import build_server
    from server.settings import ServerSettings
    from zhizhi.embedded_broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        settings = ServerSettings(
            db_url=f"sqlite:///{folder / 'bench.db'}",
            mqtt_url=broker.url,
            media_dir=folder / "media",
            mqtt_client_id="zhizhi-bench-box",
        )
        runtime = build_server(settings, shared=False, mqtt_version="3.1.1")
        runtime.start_consumer()
        try:
            yield broker.url, make_session_factory(runtime.engine)
        finally:
            runtime.stop()


def _quantile(values: Sequence[float], share: float) -> float | None:
    """The `share` quantile (nearest rank below) of `values`; None when there are none."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _latencies(session_factory: Any) -> list[tuple[str, float]]:
    """Seconds from each alert's frame (`observed_at`: when the rule decided) to its storage
    on the server (the alert does not wait for its clip: that follows in an `update`)."""
    from sqlalchemy import select

    from server.db.models import EventRow

    with session_factory() as session:
        rows = session.scalars(select(EventRow).where(EventRow.state == "new")).all()
        return [(row.type, (row.received_at - row.observed_at).total_seconds()) for row in rows]


def with_evidence_faces(site: SiteConfig, faces: EvidenceFaces | None) -> SiteConfig:
    """The site with `evidence_faces` set on every rule (None: as configured). A bench loop
    raises an alert per camera every loop, hundreds of times a site's rate, and blurring
    every clip's faces then takes most of the box: `keep` measures the cameras alone."""
    if faces is None:
        return site
    cameras = [
        camera.model_copy(
            update={"rules": [r.model_copy(update={"evidence_faces": faces}) for r in camera.rules]}
        )
        for camera in site.cameras
    ]
    return site.model_copy(update={"cameras": cameras})


def run_box_bench(
    site: SiteConfig,
    camera_ids: Sequence[str],
    seconds: float,
    *,
    server: bool = False,
    faces: EvidenceFaces | None = None,
    report_every_s: float = 5.0,
    on_report: Callable[[dict[str, CameraLoad], BoxLoad], None] | None = None,
) -> BoxResult:
    """Replay each camera once for its reference, then run the box live for `seconds`;
    with `faces`, every rule's evidence_faces set so (`with_evidence_faces`)."""
    site = with_evidence_faces(site, faces)
    ids = list(camera_ids) or [c.id for c in site.cameras if c.enabled]
    results: dict[str, CameraResult] = {}
    for camera_id in ids:
        camera = site.camera(camera_id)
        width, height, fps, count = _file_facts(Path(str(site.resolve_source(camera))))
        results[camera_id] = CameraResult(
            camera_id,
            tuple(sorted({r.type for r in camera.rules if r.enabled})),
            f"{width}x{height}",
            fps,
            count / fps + 1.0 / fps,  # a loop: the file, then the reopening's one-frame gap
            replayed_alerts(site, camera_id),
        )
    boxes: list[BoxLoad] = []
    lock = threading.Lock()
    started = time.monotonic()

    def on_load(cameras: dict[str, CameraLoad], box: BoxLoad) -> None:
        with lock:
            if time.monotonic() - started >= WARMUP_S:
                boxes.append(box)
                for camera_id, load in cameras.items():
                    results[camera_id].loads.append(load)
        if on_report is not None:
            on_report(cameras, box)

    folder = Path(tempfile.mkdtemp(prefix="zhizhi-bench-box-"))
    with contextlib.ExitStack() as stack:
        sink = None
        factory = None
        if server:
            from edge.delivery.mqtt import MqttSink
            from edge.delivery.outbox import Outbox

            url, factory = stack.enter_context(_embedded_server(folder))
            sink = MqttSink(url, site.site.id, "bench-box", Outbox(folder / "outbox.sqlite"))
            stack.callback(sink.close)

        def on_event(event: Event) -> None:
            if event.state == "new" and event.camera_id in results:
                with lock:
                    results[event.camera_id].live.append(
                        Alert(event.rule_id, event.type, event.onset_pts_s)
                    )
            if sink is not None:
                sink.send(event)

        supervisor = Supervisor(
            site,
            ids,
            BoxOptions(evidence_dir=folder / "evidence", report_every_s=report_every_s),
            on_event=on_event,
            on_status=lambda *_args: None,
            on_load=on_load,
        )
        stop = threading.Event()
        try:
            supervisor.start()
            started = time.monotonic()
            timer = threading.Timer(seconds, stop.set)
            timer.start()
            supervisor.run(stop)
            timer.cancel()
        finally:
            supervisor.close()
        played = time.monotonic() - started
        latencies: list[tuple[str, float]] = []
        if factory is not None and sink is not None:
            time.sleep(2.0)  # what was published last is stored
            latencies = _latencies(factory)
    for result in results.values():
        result.judge(played)
    models = ", ".join(sorted({site.camera(i).detector.model for i in ids}))
    return BoxResult(played, results, boxes, latencies, models)


# -- capacity ---------------------------------------------------------------------------------


def copies(template: dict[str, Any], count: int, model: str | None) -> dict[str, Any]:
    """A site of `count` copies of the one camera of `template` (a site config as YAML data),
    each with its own id; with `model`, its detector runs that registry model."""
    (camera,) = template["cameras"]
    cameras = []
    for index in range(count):
        copy = json.loads(json.dumps(camera))
        copy["id"] = f"{camera['id']}-{index + 1}"
        if model is not None:
            copy.setdefault("detector", {})["model"] = model
        cameras.append(copy)
    return {**template, "cameras": cameras}


def capacity(
    template_path: Path,
    model: str | None,
    seconds: float,
    start: int,
    most: int,
    on_try: Callable[[int, BoxResult], None] | None = None,
    step: int = 1,
    faces: EvidenceFaces | None = None,
) -> tuple[int, list[tuple[int, BoxResult]]]:
    """The most copies of the template's camera one box runs with replay quality (every
    expected alert, no other, no rule holding its judgement), trying `start`, `start + step`,
    ... up to `most` and stopping at the first that fails; with `step` > 1, the counts between
    the last good try and the failed one are tried one by one."""
    raw = yaml.safe_load(template_path.read_text())
    tries: list[tuple[int, BoxResult]] = []
    best = 0
    counts = list(range(start, most + 1, max(1, step)))
    while counts:
        count = counts.pop(0)
        path = template_path.parent / f".capacity-{count}.yaml"
        path.write_text(yaml.safe_dump(copies(raw, count, model)))
        try:
            site = load_site_config(path)
        finally:
            path.unlink(missing_ok=True)
        result = run_box_bench(site, [], seconds, faces=faces)
        tries.append((count, result))
        if on_try is not None:
            on_try(count, result)
        held = sum(c.held for c in result.cameras.values())
        if not result.replay_quality or held:
            if step > 1 and count - 1 > best:
                counts = list(range(best + 1, count))  # between the last good and this one
                step = 1
                continue
            break
        best = count
    return best, sorted(tries, key=lambda item: item[0])


def capacity_markdown(
    kind: str, model: str, best: int, tries: Sequence[tuple[int, BoxResult]]
) -> str:
    rows = []
    for count, result in tries:
        cameras = list(result.cameras.values())
        found = sum(c.found for c in cameras)
        expected = sum(c.expected for c in cameras)
        unexpected = sum(len(c.unexpected) for c in cameras)
        coverage = min((c.min_coverage for c in cameras), default=1.0)
        held = sum(c.held for c in cameras)
        cpu = statistics.fmean(b.cpu for b in result.boxes) if result.boxes else math.nan
        rows.append(
            f"| {count} | {found}/{expected} | {unexpected} | {coverage:.2f} | {held} | "
            f"{cpu * 100:.0f} % |"
        )
    return (
        f"{kind} with {model}: **{best}** camera(s) with replay quality\n\n"
        "| cameras | alerts found / expected | unexpected | lowest coverage | reports holding "
        "| box CPU |\n|---|---|---|---|---|---|\n" + "\n".join(rows)
    )
