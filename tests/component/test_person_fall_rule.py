"""The person-fall adapter on synthetic frames with a scripted pose model: the analysis
cadence, the region the model sees, boxes back in frame coordinates, and the motion gate."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from common.config import PersonFallRuleConfig, ZoneConfig
from common.events import ModelInfo
from edge.analysis.detect.yolo import PoseDetection
from edge.analysis.frame_rules import PersonFallWatch
from edge.analysis.lanes import FrameRuleLane
from edge.analysis.stats import PipelineStats
from edge.rules.base import FrameRule, RuleOutput
from edge.types import Frame
from tests.support.poses import keypoints, pose_detection

W, H, FPS = 400, 300, 25.0
# the zone fills the lower right of the view, so the region the model sees always reaches the
# right and bottom edges: a crop of w x h pixels starts at (W - w, H - h)
ZONE = ZoneConfig(id="floor", polygon=[(0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0)])
MODEL = ModelInfo(name="fake-pose", version="0", sha256="0" * 64)

People = Callable[[float], list[npt.NDArray[np.float32]]]  # keypoints in frame coordinates


class ScriptedPoseModel:
    """Answers with the people the script puts in the frame at `now`, seen in the crop."""

    def __init__(self, people: People, height: float) -> None:
        self.people = people
        self.height = height
        self.now = 0.0
        self.calls: list[tuple[float, tuple[int, int]]] = []

    @property
    def info(self) -> ModelInfo:
        return MODEL

    def detect_pose(self, image_bgr: npt.NDArray[np.uint8]) -> list[PoseDetection]:
        h, w = image_bgr.shape[:2]
        self.calls.append((self.now, (w, h)))
        x0, y0 = (W - w) / W, (H - h) / H
        sx, sy = W / w, H / h
        found = []
        for kp in self.people(self.now):
            local = kp.copy()
            local[:, 0] = (kp[:, 0] - x0) * sx
            local[:, 1] = (kp[:, 1] - y0) * sy
            found.append(pose_detection(local, self.height * sy))
        return found


def rule(model: ScriptedPoseModel, **overrides: float) -> PersonFallWatch:
    params: dict[str, float] = {"lying_s": 1.0, "roi_margin": 0.1}
    params.update(overrides)
    config = PersonFallRuleConfig(id="fall", type="person_fall", zone=ZONE.id, **params)
    return PersonFallWatch(config, ZONE, model, model.info)


def play(
    fall_rule: PersonFallWatch,
    model: ScriptedPoseModel,
    seconds: float,
    image: Callable[[float], npt.NDArray[np.uint8]] | None = None,
) -> list[RuleOutput]:
    outputs = []
    for index in range(int(seconds * FPS)):
        t = index / FPS
        model.now = t
        pixels = image(t) if image is not None else np.full((H, W, 3), 90, np.uint8)
        outputs.extend(fall_rule.on_frame(Frame(pixels, t, index, t)))
    return outputs


FEET, HEIGHT = (0.7, 0.9), 0.4


def standing(t: float) -> list[npt.NDArray[np.float32]]:
    del t
    return [keypoints(FEET, HEIGHT)]


def nobody(t: float) -> list[npt.NDArray[np.float32]]:
    del t
    return []


def falling(t: float) -> list[npt.NDArray[np.float32]]:
    angle = 90.0 * min(1.0, max(0.0, (t - 2.0) / 0.5))
    return [keypoints(FEET, HEIGHT, angle)]


def test_it_is_a_frame_rule_with_the_default_clip_window() -> None:
    fall_rule: FrameRule = rule(ScriptedPoseModel(standing, HEIGHT))
    assert (fall_rule.clip_pre_s, fall_rule.clip_post_s) == (5.0, 2.0)
    assert fall_rule.model == MODEL


def test_the_model_runs_at_analysis_fps_on_the_zone_region_grown_to_hold_the_person() -> None:
    model = ScriptedPoseModel(standing, HEIGHT)
    play(rule(model, analysis_fps=5.0, motion_min_changed=0.0), model, 4.0)
    assert len(model.calls) == pytest.approx(4.0 * 5.0, abs=1)
    first_size, later_size = model.calls[0][1], model.calls[-1][1]
    assert first_size == (round(0.6 * W), round(0.6 * H))  # zone bounds + 0.1 margin
    # the standing person reaches above the zone: the region grows to hold them
    head_top = FEET[1] - 0.93 * HEIGHT - 0.06 * HEIGHT - 0.1
    assert later_size[1] == pytest.approx((1.0 - head_top) * H, abs=3)


def drawn(people: People) -> Callable[[float], npt.NDArray[np.uint8]]:
    """Frames showing the script's people as thick lines from the feet to the head, so that
    the motion gate sees them move."""

    def image(t: float) -> npt.NDArray[np.uint8]:
        frame = np.full((H, W, 3), 90, np.uint8)
        for kp in people(t):
            feet = (round(float(kp[15, 0]) * W), round(float(kp[15, 1]) * H))
            head = (round(float(kp[0, 0]) * W), round(float(kp[0, 1]) * H))
            cv2.line(frame, feet, head, (30, 30, 30), 14)
        return frame

    return image


def test_a_fall_is_reported_with_the_person_box_in_frame_coordinates() -> None:
    model = ScriptedPoseModel(falling, HEIGHT)
    outputs = play(rule(model), model, 6.0, drawn(falling))
    assert [o.state for o in outputs] == ["new"]
    new = outputs[0]
    assert new.onset_s == pytest.approx(2.0, abs=0.25)
    lying = pose_detection(keypoints(FEET, HEIGHT, 90.0), HEIGHT).detection.box
    assert new.box == pytest.approx(lying, abs=0.01)
    assert new.highlight == (new.box,)


def test_an_empty_still_scene_runs_the_model_only_at_the_recheck_and_on_change() -> None:
    model = ScriptedPoseModel(nobody, HEIGHT)

    def image(t: float) -> npt.NDArray[np.uint8]:
        frame = np.full((H, W, 3), 90, np.uint8)
        if t >= 7.0:
            frame[200:280, 250:330] = 200  # something appears in the zone
        return frame

    play(rule(model, recheck_s=2.0), model, 8.0, image)
    times = [t for t, _ in model.calls]
    before = [t for t in times if t < 7.0]
    assert len(before) == pytest.approx(7.0 / 2.0 + 1, abs=1)  # the recheck only
    assert any(7.0 <= t < 7.2 for t in times)  # the change is looked at straight away


def test_with_the_gate_off_the_model_runs_on_every_analysed_frame() -> None:
    model = ScriptedPoseModel(nobody, HEIGHT)
    play(rule(model, motion_min_changed=0.0, analysis_fps=4.0), model, 5.0)
    assert len(model.calls) == pytest.approx(5.0 * 4.0, abs=1)


def test_a_person_standing_still_is_looked_at_twice_a_second_and_on_every_motion() -> None:
    model = ScriptedPoseModel(standing, HEIGHT)

    def image(t: float) -> npt.NDArray[np.uint8]:
        frame = np.full((H, W, 3), 90, np.uint8)
        if 3.0 <= t < 4.0 and int(t * FPS) % 2:  # something moves for a second
            frame[200:280, 250:330] = 200
        return frame

    play(rule(model, analysis_fps=8.0), model, 5.0, image)
    times = [t for t, _ in model.calls]
    still = [t for t in times if t < 3.0]
    assert len(still) == pytest.approx(3.0 / 0.5, abs=1)
    assert len([t for t in times if 3.0 <= t < 4.0]) >= 7  # every analysed frame


# broken streams and a misbehaving model ------------------------------------------------------


class GarbageThenScripted(ScriptedPoseModel):
    """Answers NaN keypoints, a degenerate box and a wrong keypoint count, then fails outright
    on some frames, besides the script's people."""

    def detect_pose(self, image_bgr: npt.NDArray[np.uint8]) -> list[PoseDetection]:
        found = super().detect_pose(image_bgr)
        frame = len(self.calls)
        if frame % 9 == 4:
            raise RuntimeError("onnxruntime: bad input")
        nan = keypoints(FEET, HEIGHT).copy()
        nan[:, :2] = np.nan
        flat = pose_detection(keypoints(FEET, HEIGHT), HEIGHT)
        box = flat.detection.box
        degenerate = PoseDetection(
            replace(flat.detection, box=(box[0], box[1], box[0], box[1])), flat.keypoints
        )
        short = PoseDetection(flat.detection, flat.keypoints[:5])
        return [*found, pose_detection(nan, HEIGHT), degenerate, short]


def test_garbage_from_the_pose_model_and_its_failures_neither_crash_nor_hide_a_fall() -> None:
    model = GarbageThenScripted(falling, HEIGHT)
    fall_rule = rule(model)
    outputs = play(fall_rule, model, 6.0, drawn(falling))
    assert [o.state for o in outputs] == ["new"]
    assert outputs[0].onset_s == pytest.approx(2.0, abs=0.3)
    assert fall_rule.model_errors > 0


def test_grey_frames_are_analysed_like_colour_ones() -> None:
    model = ScriptedPoseModel(falling, HEIGHT)
    colour = drawn(falling)

    def grey(t: float) -> npt.NDArray[np.uint8]:
        return np.ascontiguousarray(colour(t)[:, :, 0])

    outputs = play(rule(model), model, 6.0, grey)
    assert [o.state for o in outputs] == ["new"]
    assert all(size[0] > 0 for _, size in model.calls)


def test_time_going_back_ends_the_alert_and_the_rule_keeps_watching() -> None:
    """A replay that loops (or a stream whose clock restarts) must not blind the rule until
    its time catches up: the alerted fall ends at the break and the next fall is found."""
    model = ScriptedPoseModel(falling, HEIGHT)
    fall_rule = rule(model)
    first = play(fall_rule, model, 6.0, drawn(falling))
    again = play(fall_rule, model, 6.0, drawn(falling))  # from pts 0 again
    assert [o.state for o in first] == ["new"]
    assert [o.state for o in again] == ["end", "new"]
    assert again[0].details["end_reason"] == "stream_restarted"
    assert again[0].pts_s == pytest.approx(6.0 - 1 / FPS)
    assert again[1].onset_s == pytest.approx(2.0, abs=0.25)


class ResizedScript(ScriptedPoseModel):
    """The script's people in a stream that halves its size at 1 s: a crop of a small frame is
    answered as the same part of a full-size one (the rule's region is normalised)."""

    def detect_pose(self, image_bgr: npt.NDArray[np.uint8]) -> list[PoseDetection]:
        if self.now < 1.0:
            return super().detect_pose(image_bgr)
        h, w = image_bgr.shape[:2]
        return super().detect_pose(np.zeros((h * 2, w * 2, 3), np.uint8))


def test_a_picture_that_changes_size_mid_stream_is_followed() -> None:
    model = ResizedScript(falling, HEIGHT)
    colour = drawn(falling)

    def image(t: float) -> npt.NDArray[np.uint8]:
        frame = colour(t)
        return frame if t < 1.0 else np.asarray(cv2.resize(frame, (W // 2, H // 2)))

    outputs = play(rule(model), model, 6.0, image)
    assert [o.state for o in outputs] == ["new"]
    assert outputs[0].onset_s == pytest.approx(2.0, abs=0.25)
    assert any(t >= 1.0 for t, _ in model.calls)  # the model ran on the smaller frames


# the box's shared pose model: answers come later than the next analysed frame -----------------


class LatePending:
    """A run the service answers once the stream has gone on `delay_s` (or when waited for)."""

    def __init__(self, model: LateScriptedPoseModel, found: list[PoseDetection]) -> None:
        self.model, self.found, self.asked = model, found, model.now

    def wait(self, timeout_s: float) -> bool:
        answered = self.model.now - self.asked >= self.model.delay_s
        if not answered and timeout_s > 0:
            self.model.blocked += 1  # the watch had to wait for it
        return answered or timeout_s > 0

    def result(self) -> list[PoseDetection]:
        return self.found


class LateScriptedPoseModel(ScriptedPoseModel):
    """The script's people, answered `delay_s` of stream time after the run was asked for,
    as the box's detection service does (`RemotePose.submit_pose`)."""

    def __init__(self, people: People, height: float, delay_s: float) -> None:
        super().__init__(people, height)
        self.delay_s = delay_s
        self.blocked = 0

    def submit_pose(self, image_bgr: npt.NDArray[np.uint8]) -> LatePending:
        return LatePending(self, self.detect_pose(image_bgr))


def test_runs_answered_late_are_settled_in_order_and_decide_as_answered_at_once() -> None:
    # a round trip of 0.3 s, longer than the 0.125 s between analyses: the watch asks for the
    # next frames while the service runs one, and hands the monitor every frame in order
    now_model = ScriptedPoseModel(falling, HEIGHT)
    at_once = play(rule(now_model, analysis_fps=8.0), now_model, 6.0, drawn(falling))
    late_model = LateScriptedPoseModel(falling, HEIGHT, delay_s=0.3)
    watch = rule(late_model, analysis_fps=8.0)
    lane = FrameRuleLane(watch, PipelineStats(), "room")
    findings = []
    for index in range(int(6.0 * FPS)):
        t = index / FPS
        late_model.now = t
        if lane.wants(t):
            findings.extend(lane.process(Frame(drawn(falling)(t), t, index, t)))
    late = [finding.output for finding in findings]
    assert [(o.state, o.onset_s, o.pts_s) for o in late] == [
        (o.state, o.onset_s, o.pts_s) for o in at_once
    ]
    assert late and late[0].state == "new"
    # the alert's snapshot is the frame it was decided on, not the one in hand when it came
    assert [f.frame.pts_s for f in findings] == [o.pts_s for o in late]
    # at most PIPELINE_DEPTH runs outstanding: the oldest is waited for beyond that
    assert late_model.blocked > 0
    assert watch.interruptions == 0 and watch.model_errors == 0
