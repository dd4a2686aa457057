"""One camera's analysis end to end, with a scripted fake detector on synthetic frames."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from common.config import SiteConfig
from common.events import Event, ModelInfo
from edge.analysis.detect.base import Done, Need, Pending, Priority
from edge.analysis.pipeline import CameraPipeline, build_frame_rules, build_rules
from edge.evidence.clips import probe_mp4
from edge.evidence.store import DirectoryStore
from edge.offline.synthetic import LANE, WEATHER, LaneScene, frames, with_weather
from edge.rules.base import RuleOutput
from edge.types import Box, Detection, Frame, box_iou, clamp_box

Image = npt.NDArray[np.uint8]
Script = Callable[[float], list[Detection]]

QUIET = LaneScene(seconds=14.0, drop_s=None, clear_s=None, passers_every_s=1e9, light_swing=0.0)
TRAFFIC = LaneScene(seconds=12.0, drop_s=None, clear_s=None, passers_every_s=4.0)
PARKED: Box = (0.55, 0.62, 0.75, 0.85)  # ground point (0.65, 0.85): in the lane
ARRIVE_S, STOP_S = 4.0, 5.0
MASK = [(0.0, 0.0), (0.3, 0.0), (0.3, 0.3), (0.0, 0.3)]  # windows on the wall


class ScriptedDetector:
    """A detector whose answers are scripted by stream time (set `now` before each frame)."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.now = 0.0
        self.calls: list[float] = []

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(name="fake", version="0", sha256="0" * 64)

    @property
    def names(self) -> Sequence[str]:
        return ("person", "bicycle", "car")

    def detect(self, image: Image) -> list[Detection]:
        self.calls.append(self.now)
        return self.script(self.now)


def site(**camera: Any) -> SiteConfig:
    settings: dict[str, Any] = {
        "id": "cam-1",
        "source": 0,
        "zones": [{"id": "lane", "polygon": [list(p) for p in LANE]}],
        "privacy_masks": [MASK],
        "rules": [{"id": "lane-blocked", "type": "fire_lane", "zone": "lane", "dwell_s": 5}],
        # no face finder in these tests (it needs the pose model: tests/integration covers it)
        "privacy": {"blur_faces": False},
    }
    settings.update(camera)
    return SiteConfig.model_validate({"site": {"id": "test-site"}, "cameras": [settings]})


@functools.cache
def scene_frames(scene: LaneScene) -> tuple[Frame, ...]:
    return tuple(frames(scene))


def paint(image: Image, box: Box) -> Image:
    out = image.copy()
    h, w = out.shape[:2]
    p1 = (round(box[0] * w), round(box[1] * h))
    p2 = (round(box[2] * w), round(box[3] * h))
    cv2.rectangle(out, p1, p2, (40, 40, 160), -1)
    cv2.rectangle(out, p1, p2, (10, 10, 10), 2)
    return out


def car(box: Box, score: float = 0.9) -> Detection:
    return Detection(label="car", class_id=2, score=score, box=clamp_box(box))


def arriving_car(t: float) -> Box | None:
    """Drives in from the left from ARRIVE_S and stops at PARKED at STOP_S, then stays."""
    if t < ARRIVE_S:
        return None
    dx = -0.6 * max(0.0, STOP_S - t)
    return (PARKED[0] + dx, PARKED[1], PARKED[2] + dx, PARKED[3])


def crossing_car(t: float) -> Box | None:
    """Drives across the lane again and again, never stopping (0.4 of the width a second)."""
    x = -0.15 + (0.4 * t) % 1.3
    return (x, 0.62, x + 0.2, 0.85) if x < 0.95 else None


def run(
    pipeline: CameraPipeline,
    detector: ScriptedDetector,
    scene_frames: Iterable[Frame],
    car_at: Callable[[float], Box | None] | None = None,
) -> list[Event]:
    events: list[Event] = []
    for frame in scene_frames:
        box = car_at(frame.pts_s) if car_at else None
        if box is not None:
            frame = replace(frame, image=paint(frame.image, box))
        detector.now = frame.pts_s
        events.extend(pipeline.process(frame))
    return events


def no_detections(t: float) -> list[Detection]:
    return []


def script_for(car_at: Callable[[float], Box | None]) -> Script:
    def script(t: float) -> list[Detection]:
        box = car_at(t)
        return [] if box is None else [car(box)]

    return script


# A parked car --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parked_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Event], Path]:
    folder = tmp_path_factory.mktemp("evidence")
    config = site()
    detector = ScriptedDetector(script_for(arriving_car))
    pipeline = CameraPipeline(config, config.cameras[0], detector, DirectoryStore(folder))
    scene = QUIET
    return run(pipeline, detector, scene_frames(scene), arriving_car), folder


def test_a_parked_car_raises_one_new_event_after_dwell(
    parked_run: tuple[list[Event], Path],
) -> None:
    events, _ = parked_run
    # the alert, then at once the message that brings its clip (the same situation's next)
    assert [e.state for e in events] == ["new", "update"]
    event, follow_up = events
    assert (follow_up.event_id, follow_up.seq) == (event.event_id, 1)
    assert follow_up.details["update_reason"] == "clip"
    assert event.type == "fire_lane"
    assert (event.site_id, event.camera_id, event.zone_id, event.rule_id) == (
        "test-site",
        "cam-1",
        "lane",
        "lane-blocked",
    )
    assert event.onset_pts_s == pytest.approx(STOP_S, abs=0.5)
    assert event.pts_s == pytest.approx(event.onset_pts_s + 5.0, abs=0.25)
    assert event.bbox == pytest.approx(PARKED, abs=0.01)
    assert event.seq == 0
    assert event.model == ModelInfo(name="fake", version="0", sha256="0" * 64)
    assert event.observed_at == datetime.fromtimestamp(1.7e9 + event.pts_s, UTC)
    (blocker,) = event.details["blockers"]  # the painted car is not also a left object
    assert (blocker["kind"], blocker["label"]) == ("vehicle", "car")


def test_the_event_carries_its_snapshot_and_the_next_its_clip(
    parked_run: tuple[list[Event], Path],
) -> None:
    events, folder = parked_run
    (evidence,) = events[0].evidence
    (clip,) = events[1].evidence
    assert (clip.kind, clip.content_type, clip.role) == ("clip", "video/mp4", "clip")
    # every file says what was hidden in it, and the event sums it up
    assert evidence.redaction is not None and evidence.redaction["masks"] == [0]
    assert clip.redaction is not None and clip.redaction["masks"] == [0]
    privacy = events[0].details["privacy"]
    assert (privacy["masks"], privacy["mask_style"]) == ([0], "black")
    assert privacy["faces_skipped"] == ["blur_faces is off for this camera"]
    # the clip shows the car arriving: from 8 s before it came to rest up to the alert
    _, duration, _, _ = probe_mp4(Path(clip.url).read_bytes())
    assert duration == pytest.approx(events[0].pts_s - max(0.0, events[0].onset_pts_s - 8), abs=1)
    path = Path(evidence.url)
    assert path.is_absolute() and path.parent == folder.resolve()
    assert path.name == f"{events[0].event_id}-0000-onset.jpg"
    assert (evidence.kind, evidence.content_type, evidence.role) == (
        "snapshot",
        "image/jpeg",
        "onset",
    )
    data = path.read_bytes()
    assert evidence.sha256 == hashlib.sha256(data).hexdigest()
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (QUIET.height, QUIET.width, 3)
    # the privacy mask is applied (well inside it and below the caption: black) and the car
    # is outlined in red
    h, w = image.shape[:2]
    assert image[round(0.15 * h) : round(0.27 * h), round(0.03 * w) : round(0.27 * w)].max() < 40
    x1, y1, x2 = round(PARKED[0] * w), round(PARKED[1] * h), round(PARKED[2] * w)
    top_edge = image[y1 - 1 : y1 + 2, x1 + 10 : x2 - 10].astype(int)
    assert top_edge[..., 2].mean() > 150 and top_edge[..., 1].mean() < 100


def test_without_an_evidence_store_the_event_has_no_evidence() -> None:
    config = site()
    detector = ScriptedDetector(script_for(arriving_car))
    pipeline = CameraPipeline(config, config.cameras[0], detector, None)
    events = run(pipeline, detector, scene_frames(QUIET), arriving_car)
    assert [(e.state, e.evidence) for e in events] == [("new", [])]


def test_a_car_driving_through_raises_nothing(tmp_path: Path) -> None:
    config = site()
    detector = ScriptedDetector(script_for(crossing_car))
    pipeline = CameraPipeline(config, config.cameras[0], detector, DirectoryStore(tmp_path))
    events = run(pipeline, detector, scene_frames(QUIET), crossing_car)
    assert events == []
    assert pipeline.stats.detector_runs >= 0.9 * pipeline.stats.frames_analysed  # it moved
    assert list(tmp_path.iterdir()) == []


def test_a_low_score_parked_car_raises_nothing(tmp_path: Path) -> None:
    config = site()

    def script(t: float) -> list[Detection]:
        box = arriving_car(t)
        return [] if box is None else [car(box, score=0.2)]  # under detector.min_score 0.25

    detector = ScriptedDetector(script)
    pipeline = CameraPipeline(config, config.cameras[0], detector, DirectoryStore(tmp_path))
    assert run(pipeline, detector, scene_frames(QUIET), arriving_car) == []


# Motion gating and frame skipping ------------------------------------------------------------


def quiet_scene_runs(motion: dict[str, Any]) -> tuple[CameraPipeline, ScriptedDetector]:
    config = site(motion=motion)
    detector = ScriptedDetector(no_detections)
    pipeline = CameraPipeline(config, config.cameras[0], detector, None)
    run(pipeline, detector, scene_frames(QUIET))
    return pipeline, detector


@pytest.mark.parametrize("recheck_s", [1.0, 2.0, 4.0])
def test_on_a_quiet_scene_the_detector_runs_only_at_the_recheck(recheck_s: float) -> None:
    pipeline, detector = quiet_scene_runs({"recheck_s": recheck_s})
    assert pipeline.stats.frames_analysed == pytest.approx(QUIET.seconds * 5, abs=2)
    # the one passer of the scene crosses in the first 1.5 s; after that, nothing moves
    settled = [t for t in detector.calls if t >= 3.0]
    gaps = np.diff(settled)
    assert gaps.min() >= recheck_s - 0.01
    assert gaps.max() <= recheck_s + 0.21
    assert len(settled) == pytest.approx((QUIET.seconds - 3.0) / recheck_s, abs=1.5)
    assert pipeline.stats.detector_runs < 0.5 * pipeline.stats.frames_analysed


def test_without_motion_gating_the_detector_runs_on_every_analysed_frame() -> None:
    pipeline, _ = quiet_scene_runs({"enabled": False})
    assert pipeline.stats.detector_runs == pipeline.stats.frames_analysed


def passer_in_lane(scene: LaneScene, t: float) -> bool:
    phase = (t % scene.passers_every_s) / 1.5
    x = -0.2 + 1.4 * phase
    return phase <= 1.0 and x + 0.18 > 0.2 and x < 0.8


def test_with_passers_the_detector_runs_while_they_move() -> None:
    config = site()
    detector = ScriptedDetector(no_detections)
    pipeline = CameraPipeline(config, config.cameras[0], detector, None)
    run(pipeline, detector, scene_frames(TRAFFIC))
    analysed = [f.pts_s for f in scene_frames(TRAFFIC) if f.index % 2 == 0]
    moving = [t for t in analysed if passer_in_lane(TRAFFIC, t)]
    assert len(moving) >= 10
    ran = set(np.round(detector.calls, 3))
    assert sum(round(t, 3) in ran for t in moving) >= 0.9 * len(moving)
    quiet = [t for t in analysed if not passer_in_lane(TRAFFIC, t)]
    assert sum(round(t, 3) in ran for t in quiet) < 0.8 * len(quiet)


@pytest.mark.parametrize("detect_fps", [2.0, 5.0, 10.0])
def test_frames_between_analysis_slots_are_skipped(detect_fps: float) -> None:
    config = site(detect_fps=detect_fps, motion={"enabled": False})
    detector = ScriptedDetector(no_detections)
    pipeline = CameraPipeline(config, config.cameras[0], detector, None)
    run(pipeline, detector, scene_frames(QUIET))
    assert pipeline.stats.frames_seen == QUIET.seconds * QUIET.fps
    assert pipeline.stats.frames_analysed == pytest.approx(QUIET.seconds * detect_fps, abs=1)
    assert np.diff(detector.calls).min() >= 1.0 / detect_fps - 0.01


# Rules that watch every frame ----------------------------------------------------------------

FALL_RULE = {"id": "facade-throw", "type": "falling_object", "zone": "lane"}
FALL_MODEL = ModelInfo(name="none", version="0", sha256="f" * 64)


class ScriptedFrameRule:
    """A frame rule whose decisions are scripted: `new` at `alert_s` about a fall that began at
    `onset_s`, `end` at `end_s`; it records every frame it was shown."""

    rule_id = "facade-throw"
    zone_id = "lane"
    clip_pre_s = 3.0
    clip_post_s = 2.0

    def __init__(self, onset_s: float, alert_s: float, end_s: float) -> None:
        self.onset_s, self.alert_s, self.end_s = onset_s, alert_s, end_s
        self.seen: list[float] = []

    @property
    def model(self) -> ModelInfo | None:
        return FALL_MODEL

    need_fps = None  # every frame

    def wants(self, pts_s: float) -> bool:
        return True

    def on_frame(self, frame: Frame) -> list[RuleOutput]:
        previous = self.seen[-1] if self.seen else float("-inf")
        self.seen.append(frame.pts_s)
        for at, state in ((self.alert_s, "new"), (self.end_s, "end")):
            if previous < at <= frame.pts_s:
                trajectory = [[self.onset_s, 0.5, 0.2], [self.alert_s, 0.52, 0.8]]
                return [
                    RuleOutput(
                        self.rule_id,
                        self.zone_id,
                        state,  # type: ignore[arg-type]
                        self.onset_s,
                        frame.pts_s,
                        (0.45, 0.2, 0.55, 0.8),
                        0.9,
                        {"trajectory": trajectory},
                    )
                ]
        return []


def test_a_frame_rule_sees_every_frame_and_its_clip_follows_the_alert_after_the_post_roll(
    tmp_path: Path,
) -> None:
    config = site(rules=[FALL_RULE], privacy_masks=[])
    rule = ScriptedFrameRule(onset_s=5.0, alert_s=6.5, end_s=7.0)
    detector = ScriptedDetector(no_detections)
    pipeline = CameraPipeline(
        config, config.cameras[0], detector, DirectoryStore(tmp_path), frame_rules=[rule]
    )
    released: list[tuple[float, Event]] = []
    for frame in scene_frames(QUIET):
        detector.now = frame.pts_s
        released.extend((frame.pts_s, e) for e in pipeline.process(frame))
    assert len(rule.seen) == pipeline.stats.frames_seen == QUIET.seconds * QUIET.fps
    # no zone rule: neither the scene model nor the detector ran
    assert pipeline.stats.frames_analysed == 0 and detector.calls == []
    assert [e.state for _, e in released] == ["new", "update", "end"]
    (new_at, new), (clip_at, follow_up), (end_at, end) = released
    # the alert leaves at once; its clip once the post-roll (2 s after 6.5 s) was seen, in the
    # situation's next message; the end waits behind it
    assert new_at == pytest.approx(6.5, abs=0.1)
    assert 8.5 <= clip_at < 8.5 + 2 / QUIET.fps and end_at == clip_at
    assert new.pts_s == pytest.approx(6.5, abs=0.1) and new.onset_pts_s == 5.0
    assert follow_up.details["update_reason"] == "clip" and follow_up.seq == 1
    assert new.model == FALL_MODEL and end.event_id == new.event_id and end.seq == 2
    assert all(e.kind == "snapshot" for e in new.evidence)
    clip = next(e for e in follow_up.evidence if e.kind == "clip")
    data = Path(clip.url).read_bytes()
    assert clip.content_type == "video/mp4" and hashlib.sha256(data).hexdigest() == clip.sha256
    count, duration, size, codec = probe_mp4(data)
    assert codec == "h264" and size == (QUIET.width, QUIET.height)
    # from onset - 3 s to alert + 2 s, at most the buffer's 10 frames a second
    assert duration == pytest.approx(6.5 + 2.0 - (5.0 - 3.0), abs=0.15)
    assert min(QUIET.fps, 10) / 2 * duration <= count <= 10 * duration + 1
    # the trajectory is drawn on the snapshot (magenta), from origin to last point
    snap = cv2.imread(next(e.url for e in new.evidence if e.kind == "snapshot"))
    assert snap is not None
    x, y = round(0.51 * QUIET.width), round(0.5 * QUIET.height)
    b, g, r = (int(v) for v in snap[y - 3 : y + 4, x - 3 : x + 4].reshape(-1, 3).max(axis=0))
    assert b > 200 and r > 200 and min(b, r) - g > 100


def test_messages_still_waiting_at_the_end_of_the_stream_leave_with_what_was_seen(
    tmp_path: Path,
) -> None:
    config = site(rules=[FALL_RULE], privacy_masks=[])
    rule = ScriptedFrameRule(onset_s=12.0, alert_s=13.5, end_s=99.0)
    detector = ScriptedDetector(no_detections)
    pipeline = CameraPipeline(
        config, config.cameras[0], detector, DirectoryStore(tmp_path), frame_rules=[rule]
    )
    # the alert left at once; its clip's end (15.5 s) is past the stream's 14 s
    assert [e.state for e in run(pipeline, detector, scene_frames(QUIET))] == ["new"]
    (follow_up,) = pipeline.finish()
    clip = next(e for e in follow_up.evidence if e.kind == "clip")
    _, duration, _, _ = probe_mp4(Path(clip.url).read_bytes())
    assert duration == pytest.approx(14.0 - 9.0, abs=0.25)  # to the last 10-fps frame
    assert pipeline.finish() == []


def test_a_frame_rule_without_an_evidence_store_is_not_delayed() -> None:
    config = site(rules=[FALL_RULE], privacy_masks=[])
    rule = ScriptedFrameRule(onset_s=5.0, alert_s=6.5, end_s=7.0)
    detector = ScriptedDetector(no_detections)
    pipeline = CameraPipeline(config, config.cameras[0], detector, None, frame_rules=[rule])
    released = []
    for frame in scene_frames(QUIET):
        detector.now = frame.pts_s
        released.extend((frame.pts_s, e.state) for e in pipeline.process(frame))
    assert [state for _, state in released] == ["new", "end"]
    assert released[0][0] == pytest.approx(6.5, abs=0.1)


def test_a_disabled_frame_rule_is_not_built() -> None:
    config = site(rules=[{**FALL_RULE, "enabled": False}])
    assert build_rules(config.cameras[0]) == []
    assert build_frame_rules(config.cameras[0]) == []


DUMPED = LaneScene(seconds=40.0, drop_s=12.0, clear_s=30.0)
PILE_RULE = {
    "id": "no-dumping",
    "type": "garbage_pile",
    "zone": "lane",
    "dwell_s": 5,
    "clear_s": 4,
    "min_area": 0.002,
}


def test_a_dumped_object_is_a_garbage_pile_with_its_onset_and_end(tmp_path: Path) -> None:
    config = site(rules=[PILE_RULE])
    detector = ScriptedDetector(no_detections)
    pipeline = CameraPipeline(config, config.cameras[0], detector, DirectoryStore(tmp_path))
    events = run(pipeline, detector, scene_frames(DUMPED))
    assert [(e.type, e.state) for e in events] == [
        ("garbage_pile", "new"),
        ("garbage_pile", "update"),
        ("garbage_pile", "end"),
    ]
    new, follow_up, end = events
    assert new.event_id == end.event_id and abs(new.onset_pts_s - 12.0) <= 1.0
    assert 17.0 <= new.pts_s <= 19.0 and 33.5 <= end.pts_s <= 36.0
    assert new.details["area"] > 0.002
    # nobody was there before; the clip, in the next message, runs from 8 s before the onset
    assert {e.role for e in new.evidence} == {"onset", "appeared"}
    (clip,) = follow_up.evidence
    _, duration, _, codec = probe_mp4(Path(clip.url).read_bytes())
    assert codec == "h264" and duration >= 8.0
    assert {e.role for e in end.evidence} == {"closing", "before"}
    x1, y1, x2, y2 = new.bbox
    ox, oy = (DUMPED.object_box[0] + DUMPED.object_box[2]) / 2, DUMPED.object_box[3] - 0.02
    assert x1 < ox < x2 and y1 < oy < y2


class QueuedDetector(ScriptedDetector):
    """The box's shared detector (answers at once here): records how much each look mattered."""

    def __init__(self, script: Script) -> None:
        super().__init__(script)
        self.needs: list[tuple[float, Priority]] = []

    def submit(self, image: Image, need: Need) -> Pending:
        self.needs.append((self.now, need.priority))
        return Done(self.detect(image))


def test_the_close_look_an_alert_waits_on_goes_first_on_the_shared_detector() -> None:
    """An object left in a lane (found by the scene alone) is looked at closer before the
    alert: that look is asked at evidence priority, ahead of every zone's routine and due looks
    (behind them a busy box's lane alert waited half a second), and only around the alert."""
    config = site(rules=[{"id": "lane-blocked", "type": "fire_lane", "zone": "lane", "dwell_s": 5}])
    detector = QueuedDetector(no_detections)
    pipeline = CameraPipeline(config, config.cameras[0], detector, None)
    events = run(pipeline, detector, scene_frames(DUMPED))
    (new,) = [e for e in events if e.state == "new"]
    looks = [t for t, priority in detector.needs if priority == Priority.EVIDENCE]
    assert looks and all(new.pts_s - 0.5 <= t <= new.pts_s for t in looks)
    routine = [p for _, p in detector.needs if p != Priority.EVIDENCE]
    assert routine and all(p > Priority.EVIDENCE for p in routine)


def test_a_garbage_pile_carries_who_was_there_and_before_after_pictures(tmp_path: Path) -> None:
    """A person stands by the spot just before the object appears (scripted detections): the
    `new` event carries the 'appeared' picture and the 'offender' picture of that person; the
    `end` event carries 'before' (appeared) and the closing ('after') picture."""
    person: Box = (0.5, 0.35, 0.6, 0.75)

    def script(t: float) -> list[Detection]:
        if 9.0 <= t < 11.5:
            return [Detection("person", 0, 0.9, person)]
        return []

    config = site(rules=[PILE_RULE])
    detector = ScriptedDetector(script)
    pipeline = CameraPipeline(config, config.cameras[0], detector, DirectoryStore(tmp_path))
    events = run(
        pipeline, detector, scene_frames(DUMPED), lambda t: person if 9.0 <= t < 11.5 else None
    )
    new, follow_up, end = events
    roles = {e.role: e for e in new.evidence}
    assert set(roles) == {"onset", "appeared", "offender"}
    assert [e.role for e in follow_up.evidence] == ["clip"]
    assert {e.role for e in end.evidence} == {"closing", "before"}
    offender = cv2.imread(roles["offender"].url)
    assert offender is not None and offender.shape[:2] == (DUMPED.height, DUMPED.width)
    # the masked wall windows stay black in every kept picture (below the caption line)
    for item in [e for e in [*new.evidence, *end.evidence] if e.kind == "snapshot"]:
        image = cv2.imread(item.url)
        assert image is not None and int(image[60:100, 10:150].max()) <= 40


def test_a_pile_growing_under_changing_light_is_one_situation_with_growth_updates(
    tmp_path: Path,
) -> None:
    """Ground truth by construction: dumped at 5 s, the pile's side grows 3 % a second (its
    area doubles in about 14 s) while the light swings by ±25 %."""
    growing = LaneScene(
        seconds=30.0, drop_s=5.0, clear_s=None, growth_per_s=0.03, light_swing=0.25, seed=3
    )
    config = site(rules=[{**PILE_RULE, "update_interval_s": 600}])
    detector = ScriptedDetector(no_detections)
    pipeline = CameraPipeline(config, config.cameras[0], detector, None)
    events = run(pipeline, detector, scene_frames(growing))
    assert [e.state for e in events][:2] == ["new", "update"], events
    assert {e.event_id for e in events} == {events[0].event_id}
    assert abs(events[0].onset_pts_s - 5.0) <= 1.0
    updates = [e for e in events if e.state == "update"]
    assert all(u.details["growth"] >= 1.5 for u in updates)
    assert updates[0].details["area"] > 1.5 * events[0].details["area"]


# What outdoor cameras do (edge.offline.synthetic.with_weather) is never a pile, and hides none --

WEATHER_BAG = LaneScene(seconds=36.0, drop_s=12.0, clear_s=30.0)


@pytest.mark.parametrize("kind", WEATHER)
def test_weather_alone_is_no_pile(kind: str) -> None:
    config = site(rules=[PILE_RULE])
    detector = ScriptedDetector(no_detections)
    pipeline = CameraPipeline(config, config.cameras[0], detector, None)
    empty = replace(WEATHER_BAG, drop_s=None, clear_s=None)
    assert run(pipeline, detector, with_weather(iter(scene_frames(empty)), kind)) == []


@pytest.mark.parametrize("kind", WEATHER)
def test_a_pile_is_found_and_ended_whatever_the_weather(kind: str) -> None:
    """The bag is dumped at 12 s and taken at 30 s; the weather may delay the alert (a cloud's
    shadow over the bag; a fade to black from 10 to 18 s hides the drop) but not lose it."""
    config = site(rules=[PILE_RULE])
    detector = ScriptedDetector(no_detections)
    pipeline = CameraPipeline(config, config.cameras[0], detector, None)
    events = run(pipeline, detector, with_weather(iter(scene_frames(WEATHER_BAG)), kind))
    assert [e.state for e in events] == ["new", "end"], events
    new, end = events
    bag = WEATHER_BAG.object_box
    assert box_iou(new.bbox, bag) > 0.6 and 12.0 <= new.onset_pts_s <= 19.0
    assert new.pts_s <= 25.0 and 30.0 <= end.pts_s <= 36.0


def test_a_pile_already_reported_outlives_a_fade_to_black() -> None:
    early = LaneScene(seconds=30.0, drop_s=4.0, clear_s=None)  # reported at about 9 s
    config = site(rules=[PILE_RULE])  # clear_s 4: shorter than the dark (10 to 18 s)
    detector = ScriptedDetector(no_detections)
    pipeline = CameraPipeline(config, config.cameras[0], detector, None)
    events = run(pipeline, detector, with_weather(iter(scene_frames(early)), "fade_to_black"))
    assert [e.state for e in events] == ["new"] and events[0].pts_s < 10.0


# A garbage model confirming and classifying the pile ------------------------------------------


def _bag_after(start_s: float, label: str = "garbage_bag") -> Script:
    def script(t: float) -> list[Detection]:
        if t < start_s:
            return []
        # the model sees a crop around the pile (half its size again on every side), so a box
        # over the middle of the crop lies on the pile
        return [Detection(label, 0, 0.8, (0.3, 0.3, 0.7, 0.7))]

    return script


def _classified_run(
    classifier: dict[str, Any], script: Script, tmp_path: Path
) -> tuple[list[Event], ScriptedDetector]:
    config = site(rules=[{**PILE_RULE, "classifier": {"model": "garbage-test", **classifier}}])
    detector = ScriptedDetector(no_detections)
    model = ScriptedDetector(script)
    pipeline = CameraPipeline(
        config,
        config.cameras[0],
        detector,
        DirectoryStore(tmp_path),
        classifiers={"garbage-test": model},
    )
    events = []
    for frame in scene_frames(DUMPED):
        detector.now = model.now = frame.pts_s
        events.extend(pipeline.process(frame))
    return events, model


def test_a_required_garbage_model_holds_the_alert_until_it_finds_waste(tmp_path: Path) -> None:
    events, model = _classified_run({"require": True, "recheck_s": 2.0}, _bag_after(22.0), tmp_path)
    new = events[0]
    assert new.state == "new" and 22.0 <= new.pts_s <= 24.5  # dwell passed at ~17 s
    assert abs(new.onset_pts_s - 12.0) <= 1.0  # the clock kept running from the onset
    (content,) = new.details["contents"]
    assert (content["kind"], content["label"]) == ("bag", "garbage_bag")
    assert new.details["classified_by"] == "garbage-test"
    # asked only at the recheck interval while unconfirmed, not on every frame
    assert 3 <= len(model.calls) <= 5


def test_a_required_garbage_model_that_finds_nothing_keeps_the_alert_back(
    tmp_path: Path,
) -> None:
    events, _ = _classified_run({"require": True}, no_detections, tmp_path)
    assert events == []


def test_an_optional_garbage_model_classifies_but_the_scene_decides(tmp_path: Path) -> None:
    events, _ = _classified_run({}, _bag_after(0.0, "suitcase"), tmp_path)
    assert [e.state for e in events] == ["new", "update", "end"]  # the update: its clip
    assert events[0].details["contents"][0]["kind"] == "bag"
    events, _ = _classified_run({}, no_detections, tmp_path / "none")
    assert [e.state for e in events] == ["new", "update", "end"]
    assert events[0].details["contents"] == []


def test_labels_outside_the_configured_classes_are_not_waste(tmp_path: Path) -> None:
    events, _ = _classified_run(
        {"require": True, "recheck_s": 1.0}, _bag_after(0.0, "person"), tmp_path
    )
    assert events == []


class _FailingFrameRule(ScriptedFrameRule):
    """Fails on the frames between 2 and 3 s (a model error), decides as scripted otherwise."""

    def on_frame(self, frame: Frame) -> list[RuleOutput]:
        if 2.0 <= frame.pts_s < 3.0:
            raise RuntimeError("onnxruntime: invalid input")
        return super().on_frame(frame)


def test_a_frame_rule_failing_on_some_frames_skips_them_and_carries_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = site(rules=[FALL_RULE], privacy_masks=[])
    rule = _FailingFrameRule(onset_s=5.0, alert_s=6.5, end_s=7.0)
    detector = ScriptedDetector(no_detections)
    pipeline = CameraPipeline(config, config.cameras[0], detector, None, frame_rules=[rule])
    events = run(pipeline, detector, scene_frames(QUIET))
    assert [e.state for e in events] == ["new", "end"]
    assert pipeline.stats.rule_errors == QUIET.fps  # one second of frames
    failures = [r for r in caplog.records if "failed on the frame" in r.getMessage()]
    assert len(failures) == 3  # the first few are logged, not every frame
