"""Person fall (跌倒): a fast drop of the body, then lying on the ground.

Two parts. `FallMonitor` is the pure decision: per tracked person, body measurements from the
pose keypoints (head, hips, feet, torso angle, box) over stream time. A fall is the head (or the
box top) dropping fast by a good part of the person's standing height, with the hips dropping
too (bending over keeps them up) but not the feet (a body moving down the view as a whole is
walking), followed by lying: a torso far from upright (or a wide box when the torso is not
seen), for `lying_s`, without getting up. Sitting, crouching and bending end upright or keep
the hips up; lying down slowly is not a fast drop. A person the model loses once on the floor
(a lying body is hard for it) is still down until someone upright is seen there again.

`PersonFallRule` is the thin adapter the pipeline calls on every frame: it picks frames at
`analysis_fps`, skips the model on a still, empty scene, runs the pose model on the zone's region
(grown to hold the people tracked), tracks people with the project's Norfair tracker and feeds
the monitor. docs/person-fall.md explains every parameter and how to tune it.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Self

import cv2
import numpy as np
import numpy.typing as npt

from common.config import PersonFallRuleConfig, ZoneConfig
from common.events import ModelInfo
from edge.analysis.detect.yolo import PoseDetection
from edge.analysis.pose import PoseEstimator
from edge.analysis.track import ObjectTracker, TrackerParams
from edge.rules.base import RuleOutput, State
from edge.rules.geometry import bottom_center, box_from_crop, point_in_polygon, polygon_bounds
from edge.types import Box, Detection, Frame, box_iou

logger = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]
Keypoints = npt.NDArray[np.float32]
KEYPOINTS_SHAPE = (17, 3)  # COCO keypoints: x, y, visibility

HEAD = (0, 1, 2, 3, 4)  # COCO: nose, eyes, ears
SHOULDERS = (5, 6)
HIPS = (11, 12)
ANKLES = (15, 16)
MAX_FEET_SHARE = 0.5  # a drop where the feet came down by this share of the head's is a move
HISTORY_S = 4.0  # body measurements kept per track (the standing height is read from them)
ONSET_TOLERANCE = 0.05  # the fall starts when the head leaves its top by this much of the height
NEAR_IOU = 0.15  # a person this much over a fallen one's box is "at the spot"
LYING_ASPECT = 1.3  # without a torso: a box this much wider than high (in pixels) is lying
UPRIGHT_ASPECT = 0.6  # without a torso: a box this narrow is upright
UPRIGHT_MAX_ASPECT = 0.8  # with an upright torso: a box wider than this is not standing
UPRIGHT_HEAD_AT = 0.3  # with an upright torso: the head within this top part of the box
EDGE_MARGIN = 0.01  # a box this close to the frame's edge may be leaving the view
MOTION_WIDTH = 160  # the motion gate compares frames this wide, in grey
MOTION_LEVEL = 25  # grey levels a pixel must change by to count as changed
TRACKED_RECHECK_S = 0.5  # with people in view but nothing moving, the model still runs this often


class Posture(Enum):
    LYING = "lying"
    UPRIGHT = "upright"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class FallParams:
    """The decision's thresholds (from `PersonFallRuleConfig`; see docs/person-fall.md)."""

    lying_s: float = 2.0
    clear_s: float = 10.0
    keypoint_min_conf: float = 0.5
    fall_window_s: float = 1.5
    min_drop: float = 0.4
    min_drop_speed: float = 0.7
    min_hip_drop: float = 0.15
    lying_angle_deg: float = 60.0
    upright_angle_deg: float = 30.0
    recover_s: float = 0.5
    upright_s: float = 2.0
    update_interval_s: float | None = None

    @classmethod
    def from_config(cls, config: PersonFallRuleConfig) -> Self:
        names = cls.__dataclass_fields__
        return cls(**{name: getattr(config, name) for name in names})


@dataclass(frozen=True, slots=True)
class PersonPose:
    """One tracked person in one analysed frame; `keypoints` None when the tracker only
    predicted the box (no detection this frame)."""

    track_id: int
    box: Box
    score: float
    keypoints: Keypoints | None  # (17, 3): x, y normalised to the frame, visibility


@dataclass(frozen=True, slots=True)
class Body:
    """What the keypoints say about a body at one instant (y normalised, angles in degrees)."""

    t: float
    box: Box
    score: float
    head_y: float  # head keypoints, else shoulders, else the box top
    hip_y: float | None
    ankle_y: float | None
    torso_deg: float | None  # 0 upright, 90 horizontal, 180 head down; None: torso not seen
    aspect_wh: float  # box width / height in pixels
    posture: Posture
    visible: int  # keypoints at or above the visibility threshold
    head_seen: bool = True  # False: `head_y` is the top of a box cut by the frame's top edge

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


def measure_body(t: float, pose: PersonPose, aspect: float, params: FallParams) -> Body | None:
    """Body measurements of one detected person; None without keypoints.

    `aspect` is the frame's width / height, so that angles are measured in pixels (a portrait
    phone video and a landscape camera give the same angle for the same pose).
    """
    if pose.keypoints is None:
        return None
    kp = pose.keypoints
    seen = kp[:, 2] >= params.keypoint_min_conf
    x1, y1, x2, y2 = pose.box
    aspect_wh = (x2 - x1) * aspect / max(y2 - y1, 1e-6)
    head = _mean_y(kp, seen, HEAD)
    if head is None:
        head = _mean_y(kp, seen, SHOULDERS)
    torso = torso_angle(kp, seen, aspect)
    return Body(
        t=t,
        box=pose.box,
        score=pose.score,
        head_y=y1 if head is None else head,
        hip_y=_mean_y(kp, seen, HIPS),
        ankle_y=_mean_y(kp, seen, ANKLES),
        torso_deg=torso,
        aspect_wh=aspect_wh,
        posture=classify_posture(torso, aspect_wh, params, head_in_box(head, pose.box)),
        visible=int(seen.sum()),
        head_seen=head is not None or y1 >= EDGE_MARGIN,
    )


def torso_angle(kp: Keypoints, seen: npt.NDArray[np.bool_], aspect: float) -> float | None:
    """Angle of the hips→shoulders line from straight up, in degrees: 0 standing, 90 lying
    across the view, 180 head down (also lying, seen from above with the head nearest the
    bottom). None unless a shoulder and a hip are seen.

    >>> kp = np.zeros((17, 3), np.float32); kp[:, 2] = 1
    >>> kp[5:7, :2] = (0.5, 0.2); kp[11:13, :2] = (0.5, 0.5)
    >>> torso_angle(kp, kp[:, 2] > 0.5, 1.0)
    0.0
    """
    shoulders = [i for i in SHOULDERS if seen[i]]
    hips = [i for i in HIPS if seen[i]]
    if not shoulders or not hips:
        return None
    dx = (float(kp[shoulders, 0].mean()) - float(kp[hips, 0].mean())) * aspect
    dy = float(kp[shoulders, 1].mean()) - float(kp[hips, 1].mean())
    if math.hypot(dx, dy) < 1e-3:
        return None
    return math.degrees(math.atan2(abs(dx), -dy))


def head_in_box(head_y: float | None, box: Box) -> float | None:
    """Where the head is down the box: 0 at its top, 1 at its bottom; None without a head."""
    if head_y is None or box[3] <= box[1]:
        return None
    return (head_y - box[1]) / (box[3] - box[1])


def classify_posture(
    torso_deg: float | None, aspect_wh: float, params: FallParams, head_at: float | None = None
) -> Posture:
    """Lying, upright or unknown, from the torso when it is seen, else from the box.

    Upright needs a torso near vertical in a narrow box with the head near its top (`head_at`,
    see `head_in_box`), so a body on the floor with an upright-looking torso is not "up".
    """
    if torso_deg is not None:
        if torso_deg >= params.lying_angle_deg:
            return Posture.LYING
        head_high = head_at is None or head_at <= UPRIGHT_HEAD_AT
        if torso_deg <= params.upright_angle_deg and aspect_wh < UPRIGHT_MAX_ASPECT and head_high:
            return Posture.UPRIGHT
        return Posture.UNKNOWN
    if aspect_wh >= LYING_ASPECT:
        return Posture.LYING
    if aspect_wh <= UPRIGHT_ASPECT:
        return Posture.UPRIGHT
    return Posture.UNKNOWN


def _mean_y(kp: Keypoints, seen: npt.NDArray[np.bool_], indices: Sequence[int]) -> float | None:
    picked = [i for i in indices if seen[i]]
    return float(kp[picked, 1].mean()) if picked else None


@dataclass(frozen=True, slots=True)
class Drop:
    """A fast drop of the body: when it began, how far (in standing heights) and how fast."""

    onset_s: float
    detected_s: float
    head_top_y: float  # where the head was before the drop
    height: float  # the standing height it is measured against (normalised)
    ratio: float  # head drop / standing height
    speed: float  # standing heights per second, onset to detection
    hip_ratio: float | None  # hip drop / standing height, when the hips were seen at both ends


def detect_drop(history: Sequence[Body], params: FallParams) -> Drop | None:
    """A fall's drop ending at the last body of `history` (oldest first), or None.

    The head's highest point in the last `fall_window_s` is where the drop starts; the onset is
    the last moment the head was still near it. The drop counts when the head came down by
    `min_drop` standing heights at `min_drop_speed` or faster, the hips came down by
    `min_hip_drop` (when seen; bending over keeps them up) and the feet did not come down with
    the head (when seen; a body moving down the view as a whole is walking, not falling).
    """
    if len(history) < 2:
        return None
    now = history[-1]
    window = [b for b in history if now.t - b.t <= params.fall_window_s]
    tops = [b for b in window if b.head_seen]  # someone coming in at the top is not falling
    if not tops:
        return None
    top = min(tops, key=lambda b: b.head_y)
    before = [b for b in history if b.t <= top.t]
    height = max(b.height for b in before)
    if top is now or height <= 0:
        return None
    near_top = [
        b for b in window if b.t >= top.t and b.head_y <= top.head_y + ONSET_TOLERANCE * height
    ]
    onset = near_top[-1]
    ratio = (now.head_y - top.head_y) / height
    duration = max(now.t - onset.t, 1e-3)
    speed = ratio / duration
    if ratio < params.min_drop or speed < params.min_drop_speed:
        return None
    hip_ratio = _hip_drop(window, onset, now, height)
    if hip_ratio is not None and hip_ratio < params.min_hip_drop:
        return None
    if onset.ankle_y is not None and now.ankle_y is not None:
        feet = now.ankle_y - onset.ankle_y
        if feet > MAX_FEET_SHARE * (now.head_y - top.head_y):
            return None  # the whole body moved down the view (walking towards the camera)
    return Drop(onset.t, now.t, top.head_y, height, ratio, speed, hip_ratio)


def _hip_drop(window: Sequence[Body], onset: Body, now: Body, height: float) -> float | None:
    """Hip drop from the onset (or the nearest body with hips before it) to now."""
    if now.hip_y is None:
        return None
    start = [b for b in window if b.t <= onset.t and b.hip_y is not None]
    if not start:
        return None
    start_hip = start[-1].hip_y
    assert start_hip is not None  # noqa: S101 - filtered above
    return (now.hip_y - start_hip) / height


@dataclass
class Fallen:
    """One person after a fast drop: confirmed once down for `lying_s`, ended once up."""

    situation: int
    track_id: int
    drop: Drop
    box: Box
    score: float
    lying_since: float | None = None  # first seen lying in the zone
    unseen_since: float | None = None  # lost after the drop, and never seen other than lying
    seen_not_lying: bool = False  # seen after the drop in another posture than lying
    upright_since: float | None = None  # first and last upright body since the last body
    upright_last: float | None = None  # seen in another posture
    last_seen_s: float = 0.0
    alerted: bool = False
    last_sent_s: float = float("-inf")
    lying_samples: int = 0
    seen_samples: int = 0
    helpers: int = 0  # most other people seen beside them at once
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def down_since(self) -> float | None:
        """Since when the person has been down (seen lying, or lost after the drop)."""
        times = [t for t in (self.lying_since, self.unseen_since) if t is not None]
        return min(times, default=None)


class FallMonitor:
    """The pure decision over tracked poses, time passed in: `step` once per analysed frame."""

    def __init__(
        self,
        rule_id: str,
        zone_id: str,
        polygon: Sequence[tuple[float, float]],
        params: FallParams,
        aspect: float = 1.0,
    ) -> None:
        self.rule_id = rule_id
        self.zone_id = zone_id
        self.params = params
        self.aspect = aspect  # frame width / height
        self._polygon = list(polygon)
        self._history: dict[int, deque[Body]] = {}
        self._last_seen: dict[int, float] = {}
        self._fallen: list[Fallen] = []
        self._next_situation = 1

    @property
    def active(self) -> bool:
        """Somebody is being watched after a drop (the adapter keeps the model running)."""
        return bool(self._fallen)

    def restart(self, last_s: float) -> list[RuleOutput]:
        """The stream broke (its time went back): every alerted situation ends at `last_s`,
        the last time seen before the break (`end_reason` "stream_restarted"), and everything
        else is forgotten; the people seen after the break are new."""
        outputs = []
        for fallen in list(self._fallen):
            if fallen.alerted:
                outputs.extend(self._end(fallen, last_s, "stream_restarted"))
        self._fallen.clear()
        self._history.clear()
        self._last_seen.clear()
        return outputs

    def step(self, now: float, people: Sequence[PersonPose]) -> list[RuleOutput]:
        bodies = self._measure(now, people)
        outputs: list[RuleOutput] = []
        claimed: set[int] = set()
        for fallen in list(self._fallen):
            outputs.extend(self._follow(fallen, now, people, bodies, claimed))
        for track_id, body in bodies.items():
            if track_id in claimed or any(f.track_id == track_id for f in self._fallen):
                continue
            drop = detect_drop(self._history[track_id], self.params)
            if drop is not None:
                self._start(track_id, body, drop)
        return outputs

    def _measure(self, now: float, people: Sequence[PersonPose]) -> dict[int, Body]:
        bodies: dict[int, Body] = {}
        for pose in people:
            body = measure_body(now, pose, self.aspect, self.params)
            if body is None:
                continue
            history = self._history.setdefault(pose.track_id, deque())
            history.append(body)
            while history and now - history[0].t > HISTORY_S:
                history.popleft()
            bodies[pose.track_id] = body
            self._last_seen[pose.track_id] = now
        for track_id, seen in list(self._last_seen.items()):
            if now - seen > HISTORY_S:
                del self._last_seen[track_id], self._history[track_id]
        return bodies

    def _start(self, track_id: int, body: Body, drop: Drop) -> None:
        fallen = Fallen(self._next_situation, track_id, drop, body.box, body.score)
        fallen.last_seen_s = body.t
        fallen.evidence = {"fall_speed": round(drop.speed, 2), "drop_ratio": round(drop.ratio, 2)}
        self._next_situation += 1
        self._fallen.append(fallen)
        self._observe(fallen, body)

    def _follow(
        self,
        fallen: Fallen,
        now: float,
        people: Sequence[PersonPose],
        bodies: dict[int, Body],
        claimed: set[int],
    ) -> list[RuleOutput]:
        body = self._body_of(fallen, bodies, claimed)
        others = sum(
            1 for p in people if p.track_id != fallen.track_id and _beside(p.box, fallen.box)
        )
        fallen.helpers = max(fallen.helpers, others)
        if body is not None:
            claimed.add(fallen.track_id)
            self._observe(fallen, body)
        else:
            self._lost(fallen)
        return self._watch(fallen, now) if fallen.alerted else self._confirm(fallen, now)

    def _lost(self, fallen: Fallen) -> None:
        """Not seen in this frame. Lost after the drop inside the view (not walked out of it),
        and not seen since in another posture than lying, counts as down: a body on the floor
        is hard for the model to see."""
        if fallen.seen_not_lying or fallen.unseen_since is not None:
            return
        if self._in_zone(fallen.box) and not _at_edge(fallen.box):
            fallen.unseen_since = fallen.drop.detected_s

    def _body_of(self, fallen: Fallen, bodies: dict[int, Body], claimed: set[int]) -> Body | None:
        """Its own track's body, else (the tracker lost them) a new track's on the same spot."""
        if fallen.track_id in bodies:
            return bodies[fallen.track_id]
        spot = [
            (box_iou(body.box, fallen.box), track_id)
            for track_id, body in bodies.items()
            if track_id not in claimed and not any(f.track_id == track_id for f in self._fallen)
        ]
        best = max(spot, default=(0.0, -1))
        if best[0] < NEAR_IOU:
            return None
        fallen.track_id = best[1]
        return bodies[best[1]]

    def _observe(self, fallen: Fallen, body: Body) -> None:
        fallen.last_seen_s = body.t
        fallen.seen_samples += 1
        if body.posture is Posture.UPRIGHT:
            if fallen.upright_since is None:
                fallen.upright_since = body.t
            fallen.upright_last = body.t
        else:
            fallen.upright_since = fallen.upright_last = None
        if body.posture is Posture.LYING:
            fallen.lying_samples += 1
            fallen.box = body.box
            fallen.score = max(fallen.score, body.score)
            if fallen.lying_since is None and self._in_zone(body.box):
                fallen.lying_since = body.t
            if body.torso_deg is not None:
                fallen.evidence["torso_angle_deg"] = round(body.torso_deg, 1)
            return
        if body.t > fallen.drop.detected_s:
            fallen.unseen_since = None  # seen again, and not lying
            fallen.seen_not_lying = True
        if body.posture is not Posture.UPRIGHT:
            fallen.box = body.box

    def _in_zone(self, box: Box) -> bool:
        return point_in_polygon(bottom_center(box), self._polygon)

    def _confirm(self, fallen: Fallen, now: float) -> list[RuleOutput]:
        p = self.params
        got_up = _upright_for(fallen) >= p.recover_s
        down = fallen.down_since
        never_down = down is None and now - fallen.drop.detected_s > p.fall_window_s
        if got_up or never_down:
            self._fallen.remove(fallen)
            return []
        if down is None or now - down < p.lying_s:
            return []
        fallen.alerted = True
        fallen.last_sent_s = now
        return [self._output(fallen, "new", now)]

    def _watch(self, fallen: Fallen, now: float) -> list[RuleOutput]:
        p = self.params
        if _upright_for(fallen) >= p.upright_s:
            reason = "helped_up" if fallen.helpers else "got_up"
            return self._end(fallen, now, reason)
        if now - fallen.last_seen_s >= p.clear_s:
            return self._end(fallen, now, "helped_away" if fallen.helpers else "out_of_view")
        if p.update_interval_s is not None and now - fallen.last_sent_s >= p.update_interval_s:
            fallen.last_sent_s = now
            return [self._output(fallen, "update", now)]
        return []

    def _end(self, fallen: Fallen, now: float, reason: str) -> list[RuleOutput]:
        self._fallen.remove(fallen)
        output = self._output(fallen, "end", now)
        output.details["end_reason"] = reason
        return [output]

    def _output(self, fallen: Fallen, state: State, now: float) -> RuleOutput:
        drop = fallen.drop
        down = fallen.down_since
        lying_since = down if down is not None else now
        details: dict[str, Any] = {
            "situation": fallen.situation,
            "track_id": fallen.track_id,
            **fallen.evidence,
            "hip_drop_ratio": None if drop.hip_ratio is None else round(drop.hip_ratio, 2),
            "fall_detected_pts_s": round(drop.detected_s, 3),
            "lying_since_pts_s": round(lying_since, 3),
            "lying_s": round(now - lying_since, 2),
            "lying_share": round(fallen.lying_samples / max(fallen.seen_samples, 1), 2),
            "last_seen_pts_s": round(fallen.last_seen_s, 3),
            "people_beside": fallen.helpers,
        }
        return RuleOutput(
            rule_id=self.rule_id,
            zone_id=self.zone_id,
            state=state,
            onset_s=drop.onset_s,
            pts_s=now,
            box=fallen.box,
            score=fallen.score,
            details=details,
            highlight=(fallen.box,) if state != "end" else (),
        )


def _upright_for(fallen: Fallen) -> float:
    """How long the person has been seen upright, from the first to the last upright body
    (frames without a detection in between neither break nor extend it)."""
    if fallen.upright_since is None or fallen.upright_last is None:
        return 0.0
    return fallen.upright_last - fallen.upright_since


def _at_edge(box: Box) -> bool:
    return min(box[0], box[1], 1.0 - box[2], 1.0 - box[3]) < EDGE_MARGIN


def _beside(box: Box, fallen: Box) -> bool:
    """Another person close to a fallen one: boxes overlapping once grown by half their size."""
    w, h = fallen[2] - fallen[0], fallen[3] - fallen[1]
    grown = (fallen[0] - w / 2, fallen[1] - h / 2, fallen[2] + w / 2, fallen[3] + h / 2)
    return box_iou(box, grown) > 0.0


class PersonFallRule:
    """The `person_fall` rule as the pipeline runs it (`FrameRule`): every decoded frame in,
    decisions out; the pose model runs at `analysis_fps` on the zone's region."""

    def __init__(
        self,
        config: PersonFallRuleConfig,
        zone: ZoneConfig,
        estimator: PoseEstimator,
        model: ModelInfo | None = None,
    ) -> None:
        self.config = config
        self.rule_id = config.id
        self.zone_id = zone.id
        self.clip_pre_s = config.clip_pre_s
        self.clip_post_s = config.clip_post_s
        self._estimator = estimator
        self._model = model
        polygon = [(float(x), float(y)) for x, y in zone.polygon]
        self._zone_bounds = polygon_bounds(polygon)
        self._monitor = FallMonitor(config.id, zone.id, polygon, FallParams.from_config(config))
        self._tracker_hits = max(2, round(config.analysis_fps / 2))
        self._tracker = ObjectTracker(TrackerParams(hit_counter_max=self._tracker_hits))
        self._interval = 1.0 / config.analysis_fps
        self._next_analysis = float("-inf")
        self._next_offer = float("-inf")  # `wants`: the same choice, made before handing over
        self._offered_pts: float | None = None
        self._last_model_run = float("-inf")
        self._tracked: list[Box] = []
        self._previous: Image | None = None
        self._last_pts: float | None = None
        self.model_runs = 0
        self.analysed = 0
        self.model_errors = 0

    @property
    def model(self) -> ModelInfo | None:
        return self._model

    @property
    def need_fps(self) -> float | None:
        return self.config.analysis_fps

    def wants(self, pts_s: float) -> bool:
        """The frames of the analysis slots (what `on_frame` analyses), and a frame whose time
        went back (`on_frame` restarts on it)."""
        if self._offered_pts is not None and pts_s < self._offered_pts - 1e-3:
            self._next_offer = float("-inf")
        self._offered_pts = pts_s
        if pts_s < self._next_offer - 1e-6:
            return False
        self._next_offer += self._interval
        if self._next_offer <= pts_s:
            self._next_offer = pts_s + self._interval
        return True

    def on_frame(self, frame: Frame) -> list[RuleOutput]:
        outputs: list[RuleOutput] = []
        if self._last_pts is not None and frame.pts_s < self._last_pts - 1e-3:
            outputs.extend(self._restart(self._last_pts))
        self._last_pts = frame.pts_s
        if frame.pts_s < self._next_analysis - 1e-6:
            return outputs
        # analysis slots every `_interval` of stream time; after a gap, restart from this frame
        self._next_analysis += self._interval
        if self._next_analysis <= frame.pts_s:
            self._next_analysis = frame.pts_s + self._interval
        self.analysed += 1
        image = frame.image
        if image.ndim == 2:  # a grey stream: the model and the motion gate take BGR
            image = np.asarray(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), np.uint8)
        height, width = image.shape[:2]
        self._monitor.aspect = width / height
        crop = self._region()
        people: list[PersonPose] = []
        if self._should_run(image, frame.pts_s, crop):
            try:
                found = self._detect(image, crop)
            except Exception:  # onnxruntime raises its own untyped errors
                # one failed inference must not end the camera's analysis: this frame is
                # not looked at (not "nobody there", which would end a lying person's watch)
                self.model_errors += 1
                logger.exception("rule %s: the pose model failed on a frame", self.rule_id)
                return outputs
            people = self._track(found, frame.pts_s)
            self._last_model_run = frame.pts_s
            self.model_runs += 1
        return outputs + self._monitor.step(frame.pts_s, people)

    def _restart(self, last_s: float) -> list[RuleOutput]:
        """Stream time went back (a replay looped, a camera restarted without a continuous
        clock): the watched situations end and the analysis starts again from this frame."""
        self._tracker = ObjectTracker(TrackerParams(hit_counter_max=self._tracker_hits))
        self._next_analysis = float("-inf")
        self._last_model_run = float("-inf")
        self._tracked = []
        self._previous = None
        return self._monitor.restart(last_s)

    def _region(self) -> Box:
        """The zone's bounds grown by `roi_margin`, and by the people tracked (a standing
        person's head may be above a floor zone), clamped to the frame."""
        m = self.config.roi_margin
        boxes = [self._zone_bounds, *self._tracked]
        x1, y1 = min(b[0] for b in boxes) - m, min(b[1] for b in boxes) - m
        x2, y2 = max(b[2] for b in boxes) + m, max(b[3] for b in boxes) + m
        return (max(0.0, x1), max(0.0, y1), min(1.0, x2), min(1.0, y2))

    def _should_run(self, image: Image, now: float, crop: Box) -> bool:
        """The model runs on every analysed frame while someone is watched after a drop, and
        otherwise when the region changed: a still scene is looked at again every
        `TRACKED_RECHECK_S` while people are in it (a fall starts with motion), every
        `recheck_s` when nobody is."""
        small = _small_gray(image, crop)
        previous, self._previous = self._previous, small
        if self._monitor.active or self.config.motion_min_changed <= 0:
            return True
        recheck = TRACKED_RECHECK_S if self._tracked else self.config.recheck_s
        if now - self._last_model_run >= recheck - 1e-6:
            return True
        if previous is None or previous.shape != small.shape:
            return True
        changed = cv2.absdiff(previous, small) > MOTION_LEVEL
        return float(changed.mean()) >= self.config.motion_min_changed

    def _detect(self, image: Image, crop: Box) -> list[PoseDetection]:
        h, w = image.shape[:2]
        x1, y1, x2, y2 = _pixels(crop, image)
        found = self._estimator.detect_pose(np.ascontiguousarray(image[y1:y2, x1:x2]))
        exact = (x1 / w, y1 / h, x2 / w, y2 / h)
        return [
            _uncrop(p, exact)
            for p in found
            if p.detection.score >= self.config.min_score and _sane(p)
        ]

    def _track(self, found: Sequence[PoseDetection], now: float) -> list[PersonPose]:
        by_box = {p.detection.box: p for p in found}
        tracks = self._tracker.update([p.detection for p in found], now)
        # people found but not yet reported by the tracker keep the model running too
        self._tracked = [t.box for t in tracks] + [p.detection.box for p in found]
        people = []
        for track in tracks:
            pose = by_box.get(track.box)
            keypoints = pose.keypoints if pose is not None else None
            people.append(PersonPose(track.track_id, track.box, track.score, keypoints))
        return people


def _sane(pose: PoseDetection) -> bool:
    """A detection the rule can measure: a finite box with a positive size and 17 finite
    keypoints (a model fed something odd may answer NaN or a degenerate box)."""
    x1, y1, x2, y2 = pose.detection.box
    kp = np.asarray(pose.keypoints)
    return (
        all(math.isfinite(v) for v in (x1, y1, x2, y2))
        and x2 > x1
        and y2 > y1
        and kp.shape == KEYPOINTS_SHAPE
        and bool(np.isfinite(kp).all())
    )


def _uncrop(pose: PoseDetection, crop: Box) -> PoseDetection:
    """A pose found in a crop, normalised to the whole frame."""
    d = pose.detection
    box = box_from_crop(d.box, crop)
    kp = pose.keypoints.copy()
    kp[:, 0] = crop[0] + kp[:, 0] * (crop[2] - crop[0])
    kp[:, 1] = crop[1] + kp[:, 1] * (crop[3] - crop[1])
    return PoseDetection(Detection(d.label, d.class_id, d.score, box), kp)


def _pixels(crop: Box, image: Image) -> tuple[int, int, int, int]:
    """The normalised region in pixels of `image`, at least one pixel of it (a zone on the
    picture's edge, or thinner than a pixel, still gives the model something to look at)."""
    h, w = image.shape[:2]
    x1, y1 = min(w - 1, max(0, int(crop[0] * w))), min(h - 1, max(0, int(crop[1] * h)))
    x2, y2 = min(w, math.ceil(crop[2] * w)), min(h, math.ceil(crop[3] * h))
    return x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)


def _small_gray(image: Image, crop: Box) -> Image:
    """The region, grey and small, for the motion gate."""
    x1, y1, x2, y2 = _pixels(crop, image)
    region = image[y1:y2, x1:x2]
    scale = MOTION_WIDTH / max(region.shape[1], 1)
    size = (MOTION_WIDTH, max(1, round(region.shape[0] * scale)))
    gray = cv2.cvtColor(cv2.resize(region, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    return np.asarray(cv2.GaussianBlur(gray, (5, 5), 0), dtype=np.uint8)
