"""The box's runtime with real processes, the real detection service and real models: a camera
that crashes is restarted alone, and a live box finds what replay finds."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import pytest
import yaml

from common.config import SiteConfig, load_site_config
from common.events import BoxLoad, CameraLoad, Event
from edge.offline import falling_synthetic
from edge.offline.falling_synthetic import FacadeScene
from edge.offline.replay import replay_events
from edge.offline.synthetic import LANE, LaneScene, frames, write_frames, write_video
from edge.runtime.supervisor import BoxOptions, Supervisor
from edge.runtime.worker import EdgeOptions, run_edge
from edge.types import Frame

pytestmark = pytest.mark.integration

LEFT = LaneScene(seconds=24.0, drop_s=4.0, clear_s=None, seed=5)  # a box left at 4 s, stays
TRAFFIC = LaneScene(seconds=24.0, drop_s=None, clear_s=None, seed=11)
FACADE = FacadeScene(seconds=8.0, release_s=3.0, release_floor=9, object_px=4.0)


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


def site(folder: Path) -> SiteConfig:
    write_video(LEFT, str(folder / "left.mp4"))
    write_video(TRAFFIC, str(folder / "traffic.mp4"))
    write_frames(falling_synthetic.frames(FACADE), str(folder / "facade.mp4"), FACADE.fps)
    polygon = ", ".join(f"[{x}, {y}]" for x, y in LANE)
    floors = ", ".join(f"{{floor: {k}, line: {FACADE.floor_line(k)}}}" for k in (1, 6, 12))
    lanes = "".join(
        f"""
  - id: {name}
    source: {name}.mp4
    zones: [{{id: lane, polygon: [{polygon}]}}]
    rules: [{{id: {name}-blocked, type: fire_lane, zone: lane, dwell_s: 8, clear_s: 5}}]
    privacy: {{blur_faces: false}}
"""
        for name in ("left", "traffic")
    )
    text = f"""site: {{id: box-test}}
cameras:{lanes}
  - id: facade
    source: facade.mp4
    zones: [{{id: facade, polygon: [[0.02, 0.02], [0.98, 0.02], [0.98, 0.96], [0.02, 0.96]]}}]
    rules: [{{id: facade-throw, type: falling_object, zone: facade, floors: [{floors}]}}]
    privacy: {{blur_faces: false}}
"""
    path = folder / "site.yaml"
    path.write_text(text)
    return load_site_config(path)


def news(events: list[Event]) -> list[tuple[str, str, float]]:
    return sorted((e.camera_id, e.rule_id, e.onset_pts_s) for e in events if e.state == "new")


def test_the_live_box_finds_what_replay_finds(models_dir: Path, tmp_path: Path) -> None:
    config = site(tmp_path)
    replayed: list[Event] = []
    for camera in config.cameras:
        source = Path(str(config.resolve_source(camera)))
        replayed += [e for e in replay_events(config, camera, source) if isinstance(e, Event)]
    assert [(c, r) for c, r, _ in news(replayed)] == [
        ("facade", "facade-throw"),
        ("left", "left-blocked"),
    ]
    out = tmp_path / "live.jsonl"
    options = EdgeOptions(
        evidence_dir=tmp_path / "evidence",
        events_out=out,
        metrics_listen=None,
        loop_files=False,  # each file once, then the camera ends
        report_every_s=2.0,
    )
    run_edge(config, [], options, install_signals=False)
    live = [Event.model_validate_json(line) for line in out.read_text().splitlines()]
    assert [(c, r) for c, r, _ in news(live)] == [(c, r) for c, r, _ in news(replayed)]
    for (_, _, onset_live), (_, _, onset_replay) in zip(news(live), news(replayed), strict=True):
        assert onset_live == pytest.approx(onset_replay, abs=0.5)
    assert all(e.evidence for e in live if e.state == "new")  # snapshots (and clips) written


def test_a_crashed_camera_is_restarted_alone_and_the_others_go_on(
    models_dir: Path, tmp_path: Path
) -> None:
    config = site(tmp_path)
    statuses: list[tuple[str, bool, str]] = []
    reports: list[dict[str, CameraLoad]] = []

    def on_load(cameras: dict[str, CameraLoad], box: BoxLoad) -> None:
        reports.append(cameras)

    supervisor = Supervisor(
        config,
        ["left", "traffic"],
        BoxOptions(evidence_dir=None, report_every_s=1.0, restart_initial_s=0.5, restart_max_s=1.0),
        on_event=lambda _event: None,
        on_status=lambda camera, online, _reason, code: statuses.append((camera, online, code)),
        on_load=on_load,
    )
    stop = threading.Event()
    supervisor.start()
    runner = threading.Thread(target=supervisor.run, args=(stop,), daemon=True)
    runner.start()
    try:
        cameras = supervisor.cameras
        wait_until(lambda: all(c.state == "running" for c in cameras.values()), 60, "both cameras")
        victim = cameras["left"]
        before = cameras["traffic"].latest
        assert victim.pid is not None and before is not None
        os.kill(victim.pid, signal.SIGSEGV)  # a decoder that crashes takes its process down
        wait_until(lambda: victim.restarts == 1, 20, "the crashed camera to be noticed")
        assert ("left", False, "worker_restarting") in statuses
        wait_until(lambda: victim.state == "running", 60, "the crashed camera to run again")
        assert cameras["traffic"].restarts == 0
        after = cameras["traffic"].latest
        assert after is not None and after.frames_read > before.frames_read  # it went on
        wait_until(lambda: any(r["left"].restarts == 1 for r in reports), 10, "the report")
    finally:
        stop.set()
        runner.join(30)
        supervisor.close()


def test_a_camera_that_floods_the_box_costs_the_facade_nothing(
    models_dir: Path, tmp_path: Path
) -> None:
    """A 4K camera at 60 frames a second (more than this box decodes) beside a facade: the
    facade keeps every frame and finds its throw; the flood is reported once, with its rates."""
    config = site(tmp_path)
    flood = tmp_path / "flood.mp4"
    big = LaneScene(seconds=4.0, drop_s=None, clear_s=None, fps=60.0, seed=3)

    def upscaled() -> Iterator[Frame]:
        for frame in frames(big):
            image = cv2.resize(frame.image, (3840, 2160), interpolation=cv2.INTER_NEAREST)
            yield Frame(image, frame.pts_s, frame.index, frame.wall_s)

    write_frames(upscaled(), str(flood), big.fps)
    polygon = [list(p) for p in LANE]
    raw = yaml.safe_load((tmp_path / "site.yaml").read_text())
    raw["cameras"].append(
        {
            "id": "flood",
            "source": "flood.mp4",
            "zones": [{"id": "lane", "polygon": polygon}],
            "rules": [{"id": "flood-blocked", "type": "fire_lane", "zone": "lane"}],
            "privacy": {"blur_faces": False},
        }
    )
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(raw))
    config = load_site_config(tmp_path / "site.yaml")
    events: list[Event] = []
    loads: list[dict[str, CameraLoad]] = []
    supervisor = Supervisor(
        config,
        ["facade", "flood"],
        BoxOptions(evidence_dir=tmp_path / "evidence", report_every_s=2.0),
        on_event=events.append,
        on_status=lambda *_args: None,
        on_load=lambda cameras, _box: loads.append(cameras),
    )
    stop = threading.Event()
    supervisor.start()
    runner = threading.Thread(target=supervisor.run, args=(stop,), daemon=True)
    runner.start()
    try:
        wait_until(
            lambda: any(e.camera_id == "facade" and e.state == "new" for e in events),
            60,
            "the facade's throw",
        )
        wait_until(lambda: len(loads) >= 4, 30, "load reports")
    finally:
        stop.set()
        runner.join(30)
        supervisor.close()
    (throw,) = [e for e in events if e.camera_id == "facade" and e.state == "new"]
    assert throw.onset_pts_s == pytest.approx(FACADE.release_s, abs=0.5)
    steady = loads[1:]  # the first report covers the processes' start
    flood_problems = {p.code for report in steady for p in report["flood"].problems}
    assert "source_flooding" in flood_problems
    facade_problems = {p.code for report in steady for p in report["facade"].problems}
    assert "frame_rules_behind" not in facade_problems
    assert all(r["facade"].coverage["facade-throw"].coverage >= 0.95 for r in steady)
