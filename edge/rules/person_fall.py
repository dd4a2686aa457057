"""Person fall (跌倒): a fast drop of the body, then lying on the ground.

Two parts. `FallMonitor` is the pure decision: per tracked person, body measurements from the
pose keypoints (head, hips, feet, torso angle, box) over stream time. A fall is the head (or the
box top) dropping fast by a good part of the person's standing height, with the hips dropping
too (bending over keeps them up) but not the feet (a body moving down the view as a whole is
walking), followed by lying: a torso far from upright (or a wide box when the torso is not
seen), for `lying_s`, without getting up. Sitting, crouching and bending end upright or keep
the hips up; lying down slowly is not a fast drop. A person the model loses once on the floor
(a lying body is hard for it) is still down until someone upright is seen there again.

`edge.analysis.frame_rules.PersonFallWatch` is the adapter the camera's lane calls on every
frame: it picks frames at `analysis_fps`, skips the model on a still, empty scene, runs the pose
model on the zone's region (grown to hold the people tracked), tracks people with the project's
Norfair tracker and feeds the monitor the poses (`PersonPose`). When analyses were missed (a busy
box), the monitor is `interrupt`ed: no drop is measured across the gap, so a person seen standing
before it and lying after it is never taken for a fall. docs/person-fall.md explains every
parameter and how to tune it.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from common.config import PersonFallRuleConfig
from edge.rules.base import RuleOutput, State
from edge.rules.geometry import bottom_center, point_in_polygon
from edge.types import Box, box_iou

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

    def interrupt(self, now: float) -> None:
        """Nothing was seen until `now` (analyses missed on a busy box): a drop is never
        measured across the gap, a fall not yet confirmed must be seen lying again after it,
        and one already alerted is held (the gap is not time out of view)."""
        for history in self._history.values():
            history.clear()
        for fallen in self._fallen:
            if fallen.alerted:
                fallen.last_seen_s = max(fallen.last_seen_s, now)
            else:
                fallen.lying_since = None

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
