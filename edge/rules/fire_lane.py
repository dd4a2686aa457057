"""Fire lane (消防通道占用): a vehicle at rest, or an object left standing, blocks the lane.

Occupancy is judged on the lane, not on a tracker id: the lane's clock starts when the first
blocker came to rest and keeps running through short gaps (a missed detection, an id switch,
a moment of occlusion) up to `clear_s`, as long as what is seen after the gap was at rest
before it (its own clock says so); a blocker that came to rest after the lane was last seen
blocked starts the clock again. Moving traffic and people are never blockers.

What the scene model alone found (an object left standing, no detector class) is looked at
again before the alert: the camera's detector on a close-up of it (`CloseLook`) holds the
alert while it finds a person, an animal or a vehicle there (people standing far away, too
small for the full frame), or when the look could not be had.

An analysis that has not seen enough of the lane (`Observation.starved`: a busy box analysed it
too seldom, or its detector could not look) holds the rule's judgement: no alert is raised on
it, an alerted blockage is not ended by it, and the rest clocks start again after it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from common.config import (
    DEFAULT_MIN_OBJECT_AREA,
    DEFAULT_MIN_OBJECT_SIZE_M,
    FireLaneRuleConfig,
    ZoneConfig,
)
from edge.rules.base import CloseLook, LookedAt, Observation, RuleOutput, Situation, State
from edge.rules.geometry import (
    bottom_center,
    box_diagonal,
    boxes_overlap,
    distance,
    point_in_polygon,
    width_in_metres,
)
from edge.types import Box, StaticRegion, TrackedObject, box_area, box_iou

_HISTORY_S = 600.0  # how far back a track's positions are kept to find when it came to rest
BORDER = 0.01  # a box edge this close to the frame's edge is cut by it
SCENE_OBJECT = "object"  # the label of what the scene model alone found left in the lane


@dataclass(frozen=True, slots=True)
class Blocker:
    kind: str  # "vehicle" or "object"
    label: str
    box: Box
    since_s: float  # when it came to rest in the lane
    score: float
    cut: bool = False  # found by the scene alone, cut by the edge of what it judges


class RestClock:
    """When did each tracked object come to rest? Boxes per track id, time passed in.

    At rest means its ground point stayed within `tolerance` of its box's size. A box cut by
    the frame's edge (a vehicle partly out of view) says nothing of where the vehicle's ground
    point is: it is at rest only while every edge of its box stays within `tolerance` of its
    shorter side (a truck driving out of the view keeps one edge on the border, but its other
    edge moves).

    A track that disappears (occlusion, missed detections) keeps its clock for `keep_s`: when
    it comes back, or when a new track id appears on the same spot (an id switch), the clock
    goes on from where it was instead of starting again.
    """

    def __init__(self, tolerance: float, keep_s: float) -> None:
        self._tolerance = tolerance
        self._keep_s = keep_s
        self._history: dict[int, deque[tuple[float, Box]]] = {}
        self._boxes: dict[int, Box] = {}
        self._lost: dict[int, float] = {}  # track id -> when it was last seen

    def update(self, tracks: Sequence[TrackedObject], now_s: float) -> dict[int, float]:
        """Record positions; return, per track id, the time since which it has not moved."""
        rest_since: dict[int, float] = {}
        for track in tracks:
            history = self._history.get(track.track_id)
            if history is None:
                history = self._history[track.track_id] = self._inherit(track.box, now_s)
            self._lost.pop(track.track_id, None)
            self._boxes[track.track_id] = track.box
            history.append((now_s, track.box))
            while history and now_s - history[0][0] > _HISTORY_S:
                history.popleft()
            rest_since[track.track_id] = self._since(history, track.box)
        self._forget(set(rest_since), now_s)
        return rest_since

    def _since(self, history: deque[tuple[float, Box]], box: Box) -> float:
        since = history[-1][0]
        for t, past in reversed(history):
            if self._moved(past, box):
                break
            since = t
        return since

    def _moved(self, past: Box, now: Box) -> bool:
        if _at_border(past) or _at_border(now):
            side = min(now[2] - now[0], now[3] - now[1])
            return max(abs(a - b) for a, b in zip(past, now, strict=True)) > self._tolerance * side
        radius = self._tolerance * box_diagonal(now)
        return distance(bottom_center(past), bottom_center(now)) > radius

    def _inherit(self, box: Box, now_s: float) -> deque[tuple[float, Box]]:
        """A new id on the spot of a lost track takes over that track's positions."""
        for lost_id, lost_at in sorted(self._lost.items(), key=lambda item: -item[1]):
            if now_s - lost_at <= self._keep_s and box_iou(box, self._boxes[lost_id]) >= 0.5:
                history = self._history.pop(lost_id)
                del self._lost[lost_id], self._boxes[lost_id]
                return history
        return deque()

    def interrupt(self, now_s: float) -> None:
        """The lane went unwatched until `now_s` (a busy box): where a track was before proves
        nothing about where it was in between, so every rest clock starts again from now."""
        for history in self._history.values():
            if history:
                last = history[-1][1]
                history.clear()
                history.append((now_s, last))

    def _forget(self, seen: set[int], now_s: float) -> None:
        for track_id in set(self._history) - seen:
            lost_at = self._lost.setdefault(track_id, now_s)
            if now_s - lost_at > self._keep_s:
                del self._history[track_id], self._lost[track_id], self._boxes[track_id]


@dataclass(frozen=True, slots=True)
class ObjectSize:
    """The smallest left object that blocks a lane: in metres across the lane where the zone's
    width is known (`min_object_size_m` with the zone's `lane_width_m`), else as a share of the
    frame. An explicit `min_object_area` wins over the zone's width."""

    polygon: tuple[tuple[float, float], ...]
    min_area: float | None  # share of the frame; None: judged in metres
    min_size_m: float = DEFAULT_MIN_OBJECT_SIZE_M
    lane_width_m: float = 0.0

    @classmethod
    def of(cls, config: FireLaneRuleConfig, zone: ZoneConfig) -> ObjectSize:
        polygon = tuple((float(x), float(y)) for x, y in zone.polygon)
        if config.min_object_area is not None or zone.lane_width_m is None:
            return cls(polygon, config.min_object_area or DEFAULT_MIN_OBJECT_AREA)
        size = config.min_object_size_m or DEFAULT_MIN_OBJECT_SIZE_M
        return cls(polygon, None, size, zone.lane_width_m)

    def blocks(self, region: StaticRegion) -> bool:
        """Whether a region found by the scene model is large enough to block the lane."""
        if self.min_area is not None:
            return region.area >= self.min_area
        width = width_in_metres(region.box, self.polygon, self.lane_width_m)
        return width is not None and width >= self.min_size_m


class FireLaneRule:
    """Raises `new` once the lane has been blocked for `dwell_s`, `update` every
    `update_interval_s` while blocked, and `end` once it has been clear for `clear_s`."""

    def __init__(self, config: FireLaneRuleConfig, zone: ZoneConfig) -> None:
        self.config = config
        self.rule_id = config.id
        self.zone_id = zone.id
        self._polygon = [tuple(p) for p in zone.polygon]
        self._vehicles = set(config.vehicle_classes)
        self._objects = set(config.object_classes)
        self._size = ObjectSize.of(config, zone)
        self._rest = RestClock(config.rest_tolerance, keep_s=config.clear_s)
        self._situation = Situation(config.dwell_s, config.clear_s, config.update_interval_s)
        self._last_blockers: list[Blocker] = []
        self._last_present_s = float("-inf")  # when a blocker was last seen (not held)
        self._look = CloseLook()

    @property
    def is_open(self) -> bool:
        return self._situation.alerted

    def in_lane(self, box: Box) -> bool:
        return point_in_polygon(bottom_center(box), self._polygon)  # type: ignore[arg-type]

    def blockers(self, observation: Observation) -> list[Blocker]:
        """What blocks the lane in this frame: resting vehicles and left objects."""
        cfg = self.config
        rest_since = self._rest.update(observation.tracks, observation.pts_s)
        found: list[Blocker] = []
        for track in observation.tracks:
            kind = _kind(track.label, self._vehicles, self._objects)
            if kind is None or track.score < cfg.min_score or not self.in_lane(track.box):
                continue
            if track.track_id in observation.moving:
                continue  # its pixels keep changing: traffic creeping by, not a parked vehicle
            since = rest_since[track.track_id]
            if observation.pts_s - since >= cfg.rest_s:
                found.append(Blocker(kind, track.label, track.box, since, track.score))
        if cfg.detect_left_objects:
            found.extend(self._left_objects(observation.regions, found))
        return found

    def _left_objects(
        self, regions: Sequence[StaticRegion], already: Sequence[Blocker]
    ) -> list[Blocker]:
        objects = []
        for region in regions:
            if self.zone_id not in region.zones or not self._size.blocks(region):
                continue
            if any(box_iou(region.box, b.box) > 0.3 for b in already):
                continue  # the same thing, already found by the detector
            objects.append(
                Blocker(
                    "object", SCENE_OBJECT, region.box, region.since_s, region.score, region.cut
                )
            )
        return objects

    def update(self, observation: Observation) -> list[RuleOutput]:
        now = observation.pts_s
        if observation.starved:
            # not seen enough of the lane to judge (a busy box): traffic sampled too sparsely
            # looks parked, so nothing is raised or ended on it; the rest clocks start again
            self._rest.interrupt(now)
            if self._situation.alerted:
                self._situation.hold(now)
            else:  # the close look's answer stays good (a slow look must not bring another)
                self._situation.reset()
            return []
        blockers = self.blockers(observation)
        if blockers:
            since = min(b.since_s for b in blockers)
            if not self._situation.alerted and self._elsewhere(blockers, since):
                # all that blocks now came to rest after the lane was last seen blocked, and
                # elsewhere: a new blockage, not the last one going on (two passers-by who each
                # stood still a moment, 20 s apart, are not 20 s of blocking)
                self._forget()
            self._last_present_s = now
            self._last_blockers = blockers
            state = self._situation.seen(now, since, lambda: self._confirmed(observation))
            return [self._output(state, now)] if state is not None else []
        if observation.blind:
            self._situation.hold(now)  # the camera sees nothing now: not a cleared lane
            return []
        if self._situation.over(now):
            outputs = [self._output("end", now)] if self._situation.alerted else []
            self._forget()
            self._last_blockers = []
            return outputs
        return []

    def _elsewhere(self, blockers: Sequence[Blocker], since: float) -> bool:
        """Did all of `blockers` come to rest after the lane was last seen blocked, and where
        nothing blocked it then? (The same spot goes on: an id switch, a missed detection.)"""
        if since <= self._last_present_s:
            return False
        return not any(
            boxes_overlap(b.box, before.box) for b in blockers for before in self._last_blockers
        )

    def _forget(self) -> None:
        self._situation.reset()
        self._look.forget()

    def _confirmed(self, observation: Observation) -> bool:
        """Asked once the dwell has passed: may the alert go out? When all that blocks was
        found in the scene alone (objects left standing, no detector class), not while the
        camera's detector, looking closer, finds a person, an animal or a vehicle there
        (people standing far away, too small for the full frame), nor when it could not look."""
        found_in_scene = [b for b in self._last_blockers if b.label == SCENE_OBJECT]
        if len(found_in_scene) < len(self._last_blockers):
            return True  # a vehicle at rest, or an object the detector names
        return not self._look.occupied(
            observation, [LookedAt(b.box, box_area(b.box), b.cut) for b in found_in_scene]
        )

    def _output(self, state: State, now: float) -> RuleOutput:
        onset = self._situation.onset_s
        assert onset is not None  # noqa: S101
        blockers = sorted(self._last_blockers, key=lambda b: b.since_s)
        main = blockers[0]
        details = {
            "blocked_s": round(now - onset, 2),
            "dwell_s": self.config.dwell_s,
            "blockers": [
                {
                    "kind": b.kind,
                    "label": b.label,
                    "bbox": [round(v, 4) for v in b.box],
                    "since_pts_s": round(b.since_s, 3),
                    "score": round(b.score, 3),
                }
                for b in blockers
            ],
        }
        if state == "end":
            details["cleared_pts_s"] = round(now, 3)
            details["last_blocked_pts_s"] = round(self._situation.last_seen_s, 3)
        return RuleOutput(
            rule_id=self.rule_id,
            zone_id=self.zone_id,
            state=state,
            onset_s=onset,
            pts_s=now,
            box=main.box,
            score=max(b.score for b in blockers),
            details=details,
            highlight=tuple(b.box for b in blockers) if state != "end" else (),
        )


def _at_border(box: Box) -> bool:
    """A box this close to the frame's edge is cut by it (what is beyond is unseen)."""
    return min(box[0], box[1], 1.0 - box[2], 1.0 - box[3]) < BORDER


def _kind(label: str, vehicles: set[str], objects: set[str]) -> str | None:
    if label in vehicles:
        return "vehicle"
    if label in objects:
        return "object"
    return None
