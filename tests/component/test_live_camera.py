"""One camera live (edge.runtime.camera.LiveCamera): each lane on its own thread, fed in real
time; a slow detector never costs a frame rule its frames, and a lane that falls behind drops
its own frames (counted) without holding up the others."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from common.config import SiteConfig
from common.events import Event, ModelInfo
from edge.analysis.detect.base import Done, Need, Pending
from edge.analysis.pipeline import CameraPipeline
from edge.capture.sources import SourceStats
from edge.evidence.privacy import Redactor
from edge.evidence.store import DirectoryStore
from edge.offline.synthetic import LANE, LaneScene, frames
from edge.rules.base import RuleOutput
from edge.runtime.camera import LiveCamera
from edge.types import Detection, Frame

Image = npt.NDArray[np.uint8]
FPS = 25.0
SCENE = LaneScene(seconds=3.0, drop_s=None, clear_s=None, passers_every_s=1e9, fps=FPS)
INFO = ModelInfo(name="fake", version="0", sha256="0" * 64)


class Recording:
    """A frame rule that records the frames it is shown, taking `cost_s` of work on each."""

    rule_id = "facade-throw"
    zone_id = "lane"
    clip_pre_s = 1.0
    clip_post_s = 1.0
    need_fps = None  # every frame
    model = None

    def __init__(self, cost_s: float = 0.0) -> None:
        self.cost_s = cost_s
        self.seen: list[float] = []

    def wants(self, pts_s: float) -> bool:
        return True

    def on_frame(self, frame: Frame) -> list[RuleOutput]:
        self.seen.append(frame.pts_s)
        if self.cost_s:
            time.sleep(self.cost_s)
        return []


class _Later:
    """An answer that comes `delay_s` after it was asked for."""

    def __init__(self, delay_s: float) -> None:
        self._ready = threading.Event()
        threading.Timer(delay_s, self._ready.set).start()

    def wait(self, timeout_s: float) -> bool:
        return self._ready.wait(timeout_s)

    def result(self) -> list[Detection] | None:
        return []


class SharedDetector:
    """The box's detection service as a camera sees it on a busy box: every answer late."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.asked = 0

    @property
    def info(self) -> ModelInfo:
        return INFO

    @property
    def names(self) -> Sequence[str]:
        return ()

    def detect(self, image: Image) -> list[Detection]:
        time.sleep(self.delay_s)
        return []

    def submit(self, image: Image, need: Need) -> Pending:
        self.asked += 1
        return _Later(self.delay_s) if self.delay_s else Done([])


def site() -> SiteConfig:
    camera: dict[str, Any] = {
        "id": "cam-1",
        "source": 0,
        "zones": [{"id": "lane", "polygon": [list(p) for p in LANE]}],
        "rules": [
            {"id": "lane-blocked", "type": "fire_lane", "zone": "lane", "dwell_s": 5},
            {"id": "facade-throw", "type": "falling_object", "zone": "lane"},
        ],
        "privacy": {"blur_faces": False},
        "detect_fps": 5,
    }
    return SiteConfig.model_validate({"site": {"id": "test-site"}, "cameras": [camera]})


def play(live: LiveCamera, scene: LaneScene) -> list[Frame]:
    """Hand the scene's frames to the camera at their real pace, as its reader thread would."""
    fed = []
    started = time.monotonic()
    for index, frame in enumerate(frames(scene)):
        time.sleep(max(0.0, started + index / FPS - time.monotonic()))
        if live.wants(frame.pts_s):
            live.put(Frame(frame.image, frame.pts_s, frame.index, time.time()))
        fed.append(frame)
    return fed


def run(
    rule: Recording, detector: SharedDetector, queue_fps: float = FPS
) -> tuple[list[Frame], Any, list[Event]]:
    config = site()
    pipeline = CameraPipeline(config, config.cameras[0], detector, None, frame_rules=[rule])
    events: list[Event] = []
    live = LiveCamera(pipeline, events.append, fps_hint=queue_fps)
    live.start()
    fed = play(live, SCENE)
    stats = SourceStats(len(fed), 0, 0, True, time.time())
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:  # what is still queued is analysed
        lanes = live.counters(stats, []).lanes.values()
        if all(lane.processed + lane.dropped == lane.offered for lane in lanes):
            break
        time.sleep(0.05)
    live.stop()
    return fed, live.counters(stats, []), events


def test_a_slow_shared_detector_never_costs_the_frame_rule_a_frame() -> None:
    rule = Recording()
    detector = SharedDetector(delay_s=0.6)  # three analysis slots late, every time
    fed, counters, _ = run(rule, detector)
    assert rule.seen == [f.pts_s for f in fed]  # every frame, in order
    frames_lane = counters.lanes["frame:facade-throw"]
    assert frames_lane.dropped == 0 and frames_lane.processed == len(fed)
    zones = counters.lanes["zones"]
    assert zones.processed >= 0.8 * SCENE.seconds * 5  # its slots analysed meanwhile
    assert detector.asked < zones.processed  # one look in flight at a time, not one per slot


def test_a_lane_that_falls_behind_drops_its_own_oldest_frames_and_nobody_elses() -> None:
    rule = Recording(cost_s=2.5 / FPS)  # 2.5 times slower than the camera
    fed, counters, _ = run(rule, SharedDetector(delay_s=0.0), queue_fps=10.0)
    frames_lane = counters.lanes["frame:facade-throw"]
    assert frames_lane.dropped > 0
    assert frames_lane.processed + frames_lane.dropped == frames_lane.offered == len(fed)
    assert rule.seen == sorted(rule.seen)  # in order, the newest kept
    zones = counters.lanes["zones"]
    assert zones.dropped == 0 and zones.processed >= 0.8 * SCENE.seconds * 5


class StallingDetector(SharedDetector):
    """Answers at once, but takes `stall_s` over its first look (a model that hangs once)."""

    def __init__(self, stall_s: float) -> None:
        super().__init__(delay_s=0.0)
        self.stall_s = stall_s

    def submit(self, image: Image, need: Need) -> Pending:
        self.asked += 1
        return _Later(self.stall_s) if self.asked == 1 else Done([])


def test_a_detector_that_takes_2_s_for_one_look_stalls_nobody() -> None:
    rule = Recording()
    fed, counters, _ = run(rule, StallingDetector(stall_s=2.0))
    assert rule.seen == [f.pts_s for f in fed]
    zones = counters.lanes["zones"]
    assert zones.dropped == 0  # its analyses went on meanwhile, judged without that look
    assert zones.processed >= 0.8 * SCENE.seconds * 5


class Alerting(Recording):
    """Raises a short fall situation (`new`, then `end` a second later) at each of `at`."""

    def __init__(self, at: Sequence[float]) -> None:
        super().__init__()
        self.at = list(at)

    def on_frame(self, frame: Frame) -> list[RuleOutput]:
        previous = self.seen[-1] if self.seen else float("-inf")
        self.seen.append(frame.pts_s)
        outputs = []
        for index, alert_s in enumerate(self.at):
            for at, state in ((alert_s, "new"), (alert_s + 1.0, "end")):
                if previous < at <= frame.pts_s:
                    outputs.append(
                        RuleOutput(
                            self.rule_id,
                            self.zone_id,
                            state,  # type: ignore[arg-type]
                            alert_s - 0.5,
                            frame.pts_s,
                            (0.4, 0.2, 0.6, 0.8),
                            0.9,
                            {"situation": index},
                        )
                    )
        return outputs


class SlowClips(Redactor):
    """Redacts as the camera's own does, but takes `seconds` over every clip."""

    def __init__(self, camera: Any, seconds: float) -> None:
        super().__init__(camera.privacy_masks, camera.privacy)
        self.seconds = seconds

    def frames(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(self.seconds)
        return super().frames(*args, **kwargs)


def test_an_alert_never_waits_for_the_clip_of_the_one_before(tmp_path: Path) -> None:
    config = site()
    camera = config.cameras[0]
    rule = Alerting(at=[0.5, 2.0])  # the second while the first's clip is being cut
    pipeline = CameraPipeline(
        config,
        camera,
        SharedDetector(0.0),
        DirectoryStore(tmp_path),
        frame_rules=[rule],
        redactor=SlowClips(camera, seconds=2.5),
    )
    sent: list[tuple[float, Event]] = []
    live = LiveCamera(pipeline, lambda e: sent.append((time.monotonic(), e)), fps_hint=FPS)
    live.start()
    started = time.monotonic()
    play(live, replace(SCENE, seconds=4.0))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(sent) < 6:
        time.sleep(0.1)
    live.stop()
    news = [(at - started, e) for at, e in sent if e.state == "new"]
    clips = [(at - started, e) for at, e in sent if e.details.get("update_reason") == "clip"]
    assert len(news) == 2 and len(clips) == 2
    # each alert left within a moment of its frame, though the first clip (due at 1.5 s) took
    # until 4 s to cut: cut in line, the second alert would have waited for it
    assert news[0][0] < 1.5 and news[1][0] < 3.0
    assert clips[0][0] > 3.5 and clips[0][0] > news[1][0]
    # and every situation's messages in order: new, its clip, end
    for index in range(2):
        states = [e.state for _, e in sent if e.details.get("situation") == index]
        assert states == ["new", "update", "end"]


def test_a_zone_analysis_that_falls_behind_judges_fresh_frames_not_a_backlog() -> None:
    """A starved zone lane (here 2.5 times slower than its 5 analyses a second) keeps only
    `ZONE_QUEUE_S` of frames: what it judges is never much older than live, so its alerts are
    not held back by a backlog (a 1.5 s queue kept them 1.5 s behind)."""
    config = site()
    pipeline = CameraPipeline(config, config.cameras[0], SharedDetector(0.0), None, [Recording()])
    (zones,) = [lane for lane in pipeline.lanes if lane.name == "zones"]
    ages: list[float] = []
    analyse = zones.process

    def slow(frame: Frame) -> Any:
        ages.append(time.time() - frame.wall_s)
        time.sleep(2.5 / 5)
        return analyse(frame)

    zones.process = slow  # type: ignore[method-assign]
    live = LiveCamera(pipeline, lambda _event: None, fps_hint=FPS)
    live.start()
    play(live, SCENE)
    live.stop()
    counters = live.counters(SourceStats(0, 0, 0, True, time.time()), [])
    assert counters.lanes["zones"].dropped > 0
    assert len(ages) >= 4
    # the newest frame only: under a frame interval (0.2 s) old when its turn comes, 0.15 s
    # measured (two frames: 0.35 s; a 1.5 s queue: 1.6 s)
    assert max(ages) < 0.27
