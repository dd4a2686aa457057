"""The zone rules' analysis of one camera (fire lanes, garbage piles): the `ZoneLane`.

Per analysed frame (at `detect_fps`, by stream time): the scene model registers the frame and
measures motion; the detector runs when something moved in the watched area, or at the periodic
re-check of a quiet scene; the tracker follows what the detector found; the scene model finds
what newly appeared and stays; each zone rule decides on the `Observation`.

On a busy box the detector is shared (edge.runtime.detection) and may decline a run: the
analysis then goes on with what it last saw, and tells the rules how long it has gone without a
look (`Observation.unseen_s`, `Observation.detect_age_s`); a rule that has not seen enough holds its
judgement (edge.rules.base.starved).
"""

from __future__ import annotations

import math
import statistics
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from common.config import (
    CameraConfig,
    FireLaneRuleConfig,
    GarbagePileRuleConfig,
    PileClassifierConfig,
)
from edge.analysis.detect.base import Detector, Need, Pending, Priority, detect_with, submit
from edge.analysis.lanes import Finding
from edge.analysis.scene.model import SceneModel, SceneParams, to_analysis_gray
from edge.analysis.stats import PipelineStats
from edge.analysis.track import ObjectTracker
from edge.evidence.history import FrameHistory
from edge.rules.base import EXPLAINED_CLASSES, Content, Observation, Rule
from edge.rules.garbage_pile import GarbagePileRule
from edge.rules.geometry import box_from_crop, detection_roi, expand_box
from edge.types import Box, Detection, Frame, TrackedObject, box_iou

Image = npt.NDArray[np.uint8]

MOTION_HANGOVER_S = 1.0  # keep detecting this long after the last motion, to see things settle
MOVING_ACTIVITY = 0.2  # share of recent frames with motion that marks a tracked box as moving
WEAK_DETECTION_SCORE = 0.12  # people and vehicles this likely are still masked from the scene
CLOSE_UP_SIDE = 0.2  # a close look at something small shows at least this much of the frame
CLOSE_LOOK_TIMEOUT_S = 5.0  # a close look not answered in this long (a busy box) is not had
HISTORY_SLACK_S = 30.0  # the sparse history reaches this far back beyond the longest dwell
MAX_HISTORY_S = 900.0
# while people or vehicles are in view, the sparse history keeps a frame this often (the zone
# rules' clips show the minutes-long situations at 2.5 frames a second; a JPEG of every
# analysed frame of a busy 720p camera cost 2-3 % of a core)
BUSY_HISTORY_S = 0.4
FRAME_STEPS = 15  # the camera's frame interval is the median of this many recent steps
# On a busy box: the zone rules need a look by the detector at least this often while something
# moves (a vehicle is judged at rest from several looks within `rest_s`)...
DETECT_NEED_S = 1.0
# ...and a look that would come later than this is worth nothing any more (the next frame's
# look is asked for instead)
DETECT_EXPIRES_S = 1.5
ANSWER_WAIT = 0.6  # share of the analysis interval the lane waits for the shared detector


def watched_zones(camera: CameraConfig) -> dict[str, list[tuple[float, float]]]:
    """The zones the camera's enabled rules watch, by zone id."""
    zone_ids = {rule.zone for rule in camera.rules if rule.enabled}
    return {zone.id: list(zone.polygon) for zone in camera.zones if zone.id in zone_ids}


def history_seconds(camera: CameraConfig) -> float:
    """How far back the sparse history must reach: the longest dwell of the camera's zone
    rules, so the frame of the moment something appeared is still there at the alert."""
    dwell = max(
        (
            r.dwell_s
            for r in camera.rules
            if r.enabled and isinstance(r, FireLaneRuleConfig | GarbagePileRuleConfig)
        ),
        default=0.0,
    )
    return min(MAX_HISTORY_S, max(60.0, dwell + HISTORY_SLACK_S))


class ZoneLane:
    """Scene model, detector and tracker for the zone rules of one camera. Not thread-safe:
    one thread owns it (`wants` may be called from the thread that hands out frames)."""

    name = "zones"

    def __init__(
        self,
        camera: CameraConfig,
        rules: Sequence[Rule],
        detector: Detector,
        stats: PipelineStats,
        history: FrameHistory,
        classifiers: dict[str, Detector] | None = None,
    ) -> None:
        self.camera = camera
        self.rules = list(rules)
        self.rule_ids = tuple(rule.rule_id for rule in self.rules)
        self.detector = detector
        self.history = history
        self._stats = stats
        self._classifiers = classifiers or {}
        self._min_score = camera.detector.min_score
        self._interval = 1.0 / camera.detect_fps
        self._scene = SceneModel(watched_zones(camera), SceneParams())
        self._roi = detection_roi(list(watched_zones(camera).values()))
        self._tracker = ObjectTracker()
        self.tracks: list[TrackedObject] = []
        self._weak: list[Box] = []  # low-score people and vehicles of the last detection
        self._image: Image | None = None  # the frame being analysed, for the close looks
        self._last_offered = float("-inf")
        self._last_frame: float | None = None  # of the frames offered, for the camera's rate
        self._steps: deque[float] = deque(maxlen=FRAME_STEPS)
        self._last_analysis = float("-inf")
        self._last_detect = float("-inf")
        self._last_motion = float("-inf")
        self._wanted_since: float | None = None  # a look wanted and not had, since
        self._pending: tuple[Pending, Box | None, float] | None = None  # (answer, crop, pts)
        self._declined = False  # the shared detector declined a look since the last one had

    @property
    def need_fps(self) -> float | None:
        return self.camera.detect_fps

    def wants(self, pts_s: float) -> bool:
        if self._last_frame is not None and pts_s > self._last_frame:
            self._steps.append(pts_s - self._last_frame)
        self._last_frame = pts_s
        if pts_s - self._last_offered < self._interval * 0.98:
            return False
        self._last_offered = pts_s
        return True

    def _expected_gap(self) -> float:
        """The time between two analyses when none is missed: the analysis interval, or the
        camera's own frame interval when it sends fewer frames (a 1 fps NVR stream)."""
        step = statistics.median(self._steps) if self._steps else 0.0
        return max(self._interval, step)

    @property
    def starved(self) -> int:
        return self._stats.starved

    @property
    def people(self) -> tuple[Box, ...]:
        return tuple(t.box for t in self.tracks if t.label == "person")

    def process(self, frame: Frame) -> list[Finding]:
        gap = frame.pts_s - self._last_analysis
        self._last_analysis = frame.pts_s
        self._stats.frames_analysed += 1
        observation = self._observe(frame, gap)
        if observation.starved:
            self._stats.starved += 1
        started = time.perf_counter()
        actors = [t.box for t in observation.tracks if t.label in EXPLAINED_CLASSES]
        self.history.put(frame.pts_s, frame.image, actors, self.people)
        self._stats.add_seconds("history", time.perf_counter() - started)
        started = time.perf_counter()
        outputs = [out for rule in self.rules for out in rule.update(observation)]
        self._stats.add_seconds("rules", time.perf_counter() - started)
        people = self.people
        return [Finding(output, frame, people) for output in outputs]

    def _observe(self, frame: Frame, gap: float) -> Observation:
        now = frame.pts_s
        started = time.perf_counter()
        gray = to_analysis_gray(frame.image)
        motion = self._scene.observe(gray, now)
        self._stats.add_seconds("scene", time.perf_counter() - started)
        if motion >= self.camera.motion.min_changed:
            self._last_motion = now
        ran = self._collect(0.0)  # a look asked for earlier may have come meanwhile
        need = self._need(now)
        if need is not None and self._pending is None:
            self._ask(frame.image, now, need)
            # the answer of a detector of the camera's own is there at once; the box's shared
            # detector gets most of the time until the next analysis is due, so an idle box
            # judges this very frame with its detections (as replay does) and a busy one goes
            # on without them (they are taken in when they come)
            ran = self._collect(ANSWER_WAIT * self._interval) or ran
        if need is not None and not ran and self._wanted_since is None:
            self._wanted_since = now
        started = time.perf_counter()
        scene = self._scene.update(now, [*self._explained(self.tracks), *self._weak])
        self._stats.add_seconds("scene", time.perf_counter() - started)
        moving = frozenset(
            t.track_id for t in self.tracks if self._scene.activity(t.box) > MOVING_ACTIVITY
        )
        self._image = frame.image
        classify = self._classify if self._classifiers else None
        return Observation(
            now,
            tuple(self.tracks),
            scene.regions,
            ran,
            moving,
            classify,
            self._inspect,
            blind=scene.blind,
            unseen_s=max(0.0, gap - 1.5 * self._expected_gap()) if math.isfinite(gap) else 0.0,
            detect_age_s=0.0 if self._wanted_since is None else now - self._last_detect,
        )

    def _need(self, now: float) -> Need | None:
        """Whether the detector should look at this frame, and how much it matters: while
        something moves (and a little after), or at the periodic re-check of a quiet scene."""
        motion = self.camera.motion
        moving = not motion.enabled or now - self._last_motion <= MOTION_HANGOVER_S
        recheck = now - self._last_detect >= motion.recheck_s
        if not moving and not recheck:
            return None
        if now - self._last_detect >= DETECT_NEED_S and (moving or self._wanted_since is not None):
            return Need(Priority.DUE)
        if self._declined:
            return None  # a busy box: only the looks the rules need, until one is had
        if moving:
            return Need(Priority.ROUTINE, DETECT_EXPIRES_S)
        return Need(Priority.RECHECK, DETECT_EXPIRES_S)

    def _classify(self, box: Box, config: PileClassifierConfig) -> list[Content]:
        """What the configured garbage model finds in (and around) `box` on the current frame,
        as kinds of waste; only detections that overlap the box count."""
        detector = self._classifiers.get(config.model)
        if detector is None:
            return []
        kinds = {label: kind for kind, labels in config.classes.items() for label in labels}
        contents = [
            Content(kinds[d.label], d.label, d.score, d.box)
            for d in self._close_up(detector, box, 0.5, "classify") or []
            if d.label in kinds and d.score >= config.min_score and box_iou(d.box, box) > 0.0
        ]
        return sorted(contents, key=lambda c: -c.score)

    def _inspect(self, box: Box) -> list[Detection] | None:
        """The camera's detector on a close-up of `box` (grown to at least a fifth of the
        frame's side, so that it sees what stands around it): people and vehicles too small
        for the full frame are found there. None when the box's detector declined."""
        width, height = max(box[2] - box[0], 1e-3), max(box[3] - box[1], 1e-3)
        grow = max(1.0, (CLOSE_UP_SIDE / width - 1) / 2, (CLOSE_UP_SIDE / height - 1) / 2)
        found = self._close_up(self.detector, box, min(grow, 8.0), "inspect")
        if found is None:
            return None
        return [d for d in found if d.score >= self._min_score]

    def _close_up(
        self, detector: Detector, box: Box, grow: float, stage: str
    ) -> list[Detection] | None:
        """`detector` on the current frame's part around `box` (grown by `grow` of its size on
        every side), its boxes in frame coordinates; the time goes to `stats.seconds[stage]`."""
        if self._image is None:
            return []
        started = time.perf_counter()
        h, w = self._image.shape[:2]
        region = expand_box(box, grow)
        x1, y1 = int(region[0] * w), int(region[1] * h)
        x2, y2 = max(x1 + 1, math.ceil(region[2] * w)), max(y1 + 1, math.ceil(region[3] * h))
        crop = (x1 / w, y1 / h, x2 / w, y2 / h)
        image = np.ascontiguousarray(self._image[y1:y2, x1:x2])
        # an alert waits on its close look or its garbage model (bounded: a close look per rule
        # every LOOK_AGAIN_S, a classification every `recheck_s`, at most)
        need = Need(Priority.EVIDENCE)
        found = detect_with(detector, image, need, timeout_s=CLOSE_LOOK_TIMEOUT_S)
        self._stats.add_seconds(stage, time.perf_counter() - started)
        if found is None:
            return None
        return [replace(d, box=box_from_crop(d.box, crop)) for d in found]

    def _ask(self, image: Image, now: float, need: Need) -> None:
        """Ask the detector to look at the region around the zones only (small lanes in a wide
        view get more of the model's input resolution, nothing outside them is looked at)."""
        started = time.perf_counter()
        crop: Box | None = None
        if self._roi is not None:
            h, w = image.shape[:2]
            x1, y1 = int(self._roi[0] * w), int(self._roi[1] * h)
            x2, y2 = math.ceil(self._roi[2] * w), math.ceil(self._roi[3] * h)
            crop = (x1 / w, y1 / h, x2 / w, y2 / h)
            image = np.ascontiguousarray(image[y1:y2, x1:x2])
        self._pending = (submit(self.detector, image, need), crop, now)
        self._stats.add_seconds("detect", time.perf_counter() - started)

    def _collect(self, wait_s: float) -> bool:
        """Take the answer to the look asked for, if it has come within `wait_s`: the tracker
        follows what was found (at the time of the frame it was found on). True when a look
        was taken in."""
        if self._pending is None:
            return False
        pending, crop, asked = self._pending
        started = time.perf_counter()
        answered = pending.wait(wait_s)
        self._stats.add_seconds("detect", time.perf_counter() - started)
        if not answered:
            return False
        self._pending = None
        found = pending.result()
        if found is None:  # the box's detector declined: go on with what was last seen
            self._stats.detections_missed += 1
            self._declined = True
            return False
        if crop is not None:
            found = [replace(d, box=box_from_crop(d.box, crop)) for d in found]
        detections = [d for d in found if d.score >= self._min_score]
        self._weak = [
            d.box for d in found if d.score < self._min_score and d.label in EXPLAINED_CLASSES
        ]
        started = time.perf_counter()
        self.tracks = self._tracker.update(detections, asked)
        self._stats.add_seconds("track", time.perf_counter() - started)
        self._last_detect = asked
        self._wanted_since = None
        self._declined = False
        self._stats.detector_runs += 1
        return True

    @staticmethod
    def _explained(tracks: Sequence[TrackedObject]) -> list[Box]:
        """Boxes of people, animals and vehicles: what moves by itself is never a 'left
        object'. Any other class (a bag, a box the detector calls a laptop) is not masked."""
        return [t.box for t in tracks if t.label in EXPLAINED_CLASSES]

    def pile_rule_ids(self) -> set[str]:
        return {r.rule_id for r in self.rules if isinstance(r, GarbagePileRule)}
