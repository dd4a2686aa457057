"""One camera's analysis: frame in, event messages out. The same code serves replay and live.

Per analysed frame (at `detect_fps`, by stream time): the scene model registers the frame and
measures motion; the detector runs only when something moved in the watched area, or at the
periodic re-check of a quiet scene; the tracker follows what the detector found; the scene
model finds what newly appeared and stays; each rule decides; decisions become events with
evidence.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import cv2
import numpy as np
import numpy.typing as npt

from common.config import (
    VEHICLE_CLASSES,
    CameraConfig,
    FireLaneRuleConfig,
    GarbagePileRuleConfig,
    SiteConfig,
)
from common.events import Event, Evidence, ModelInfo
from edge.detect.base import Detector
from edge.events import EventSequencer
from edge.evidence import Annotation, EvidenceStore, annotate, encode_jpeg, snapshot
from edge.history import FrameHistory
from edge.rules.base import Observation, Rule, RuleOutput
from edge.rules.fire_lane import FireLaneRule
from edge.rules.garbage_pile import GarbagePileRule
from edge.rules.geometry import box_from_crop, detection_roi
from edge.scene import SceneModel, SceneParams, to_analysis_gray
from edge.track import ObjectTracker
from edge.types import Box, Detection, Frame, TrackedObject

logger = logging.getLogger(__name__)
Image = npt.NDArray[np.uint8]

EXPLAINED_CLASSES = frozenset(
    {"person", *VEHICLE_CLASSES, "bird", "cat", "dog", "horse", "sheep", "cow"}
)
MOTION_HANGOVER_S = 1.0  # keep detecting this long after the last motion, to see things settle
MOVING_ACTIVITY = 0.2  # share of recent frames with motion that marks a tracked box as moving
WEAK_DETECTION_SCORE = 0.12  # people and vehicles this likely are still masked from the scene


class UnsupportedRuleError(ValueError):
    """A rule type the edge cannot run yet."""


@dataclass
class PipelineStats:
    frames_seen: int = 0
    frames_analysed: int = 0
    detector_runs: int = 0
    events: int = 0
    seconds: dict[str, float] = field(
        default_factory=lambda: {"scene": 0.0, "detect": 0.0, "track": 0.0, "rules": 0.0}
    )


def build_rules(camera: CameraConfig) -> list[Rule]:
    rules: list[Rule] = []
    for rule in camera.rules:
        if not rule.enabled:
            continue
        if isinstance(rule, FireLaneRuleConfig):
            rules.append(FireLaneRule(rule, camera.zone(rule.zone)))
        elif isinstance(rule, GarbagePileRuleConfig):
            rules.append(GarbagePileRule(rule, camera.zone(rule.zone)))
        else:
            raise UnsupportedRuleError(
                f"camera {camera.id}: rule {rule.id}: type {rule.type} is not supported by this "
                "edge version"
            )
    return rules


def _watched_zones(camera: CameraConfig) -> list[list[tuple[float, float]]]:
    zone_ids = {rule.zone for rule in camera.rules if rule.enabled}
    return [list(zone.polygon) for zone in camera.zones if zone.id in zone_ids]


class CameraPipeline:
    """Stateful per-camera analysis. Not thread-safe: one analysis thread owns it."""

    def __init__(
        self,
        site: SiteConfig,
        camera: CameraConfig,
        detector: Detector,
        evidence: EvidenceStore | None,
        wall_clock: Callable[[Frame], datetime] | None = None,
    ) -> None:
        self.site = site
        self.camera = camera
        self.detector = detector
        self.evidence = evidence
        self.rules = build_rules(camera)
        self.stats = PipelineStats()
        self._zones = {zone.id: list(zone.polygon) for zone in camera.zones}
        self._masks = [list(mask) for mask in camera.privacy_masks]
        self._min_score = camera.detector.min_score
        self._interval = 1.0 / camera.detect_fps
        self._scene = SceneModel(_watched_zones(camera), SceneParams())
        self._pile_rules = {r.rule_id for r in self.rules if isinstance(r, GarbagePileRule)}
        self._history = FrameHistory(self._masks) if self._pile_rules else None
        self._pile_onsets: dict[str, bytes] = {}  # rule id -> 'appeared' snapshot of its pile
        self._roi = detection_roi(_watched_zones(camera))
        self._tracker = ObjectTracker()
        self._tracks: list[TrackedObject] = []
        self._weak: list[Box] = []  # low-score people and vehicles of the last detection
        self._last_analysis = float("-inf")
        self._last_detect = float("-inf")
        self._last_motion = float("-inf")
        self._wall_clock = wall_clock or (lambda frame: datetime.fromtimestamp(frame.wall_s, UTC))
        info = detector.info
        model = ModelInfo(name=info.name, version=info.version, sha256=info.sha256)
        rule_types: dict[str, str] = {rule.id: rule.type for rule in camera.rules}
        self._events = EventSequencer(site.site.id, camera.id, rule_types, model)

    def process(self, frame: Frame) -> list[Event]:
        """Analyse one decoded frame (frames between analysis slots only advance the clock)."""
        self.stats.frames_seen += 1
        if frame.pts_s - self._last_analysis < self._interval * 0.98:
            return []
        self._last_analysis = frame.pts_s
        self.stats.frames_analysed += 1
        observation = self._observe(frame)
        if self._history is not None:
            actors = [t.box for t in observation.tracks if t.label in EXPLAINED_CLASSES]
            self._history.put(frame.pts_s, frame.image, actors)
        started = time.perf_counter()
        outputs = [out for rule in self.rules for out in rule.update(observation)]
        events = [self._to_event(output, frame) for output in outputs]
        self.stats.seconds["rules"] += time.perf_counter() - started
        self.stats.events += len(events)
        return events

    def _observe(self, frame: Frame) -> Observation:
        now = frame.pts_s
        started = time.perf_counter()
        gray = to_analysis_gray(frame.image)
        motion = self._scene.observe(gray, now)
        self.stats.seconds["scene"] += time.perf_counter() - started
        if motion >= self.camera.motion.min_changed:
            self._last_motion = now
        ran = self._should_detect(now)
        if ran:
            started = time.perf_counter()
            found = self._detect(frame.image)
            detections = [d for d in found if d.score >= self._min_score]
            self._weak = [
                d.box for d in found if d.score < self._min_score and d.label in EXPLAINED_CLASSES
            ]
            self.stats.seconds["detect"] += time.perf_counter() - started
            started = time.perf_counter()
            self._tracks = self._tracker.update(detections, now)
            self.stats.seconds["track"] += time.perf_counter() - started
            self._last_detect = now
            self.stats.detector_runs += 1
        started = time.perf_counter()
        scene = self._scene.update(now, [*self._explained(self._tracks), *self._weak])
        self.stats.seconds["scene"] += time.perf_counter() - started
        moving = frozenset(
            t.track_id for t in self._tracks if self._scene.activity(t.box) > MOVING_ACTIVITY
        )
        return Observation(now, tuple(self._tracks), scene.regions, ran, moving)

    def _detect(self, image: Image) -> list[Detection]:
        """The detector on the region around the zones only: small lanes in a wide view get
        more of the model's input resolution, and nothing outside them is looked at."""
        if self._roi is None:
            return self.detector.detect(image)
        h, w = image.shape[:2]
        x1, y1 = int(self._roi[0] * w), int(self._roi[1] * h)
        x2, y2 = math.ceil(self._roi[2] * w), math.ceil(self._roi[3] * h)
        crop = (x1 / w, y1 / h, x2 / w, y2 / h)
        return [
            replace(d, box=box_from_crop(d.box, crop))
            for d in self.detector.detect(np.ascontiguousarray(image[y1:y2, x1:x2]))
        ]

    def _should_detect(self, now: float) -> bool:
        motion = self.camera.motion
        if not motion.enabled:
            return True
        return (
            now - self._last_motion <= MOTION_HANGOVER_S
            or now - self._last_detect >= motion.recheck_s
        )

    def _explained(self, tracks: Sequence[TrackedObject]) -> list[Box]:
        """Boxes of people, animals and vehicles: what moves by itself is never a 'left
        object'. Any other class (a bag, a box the detector calls a laptop) is not masked."""
        return [t.box for t in tracks if t.label in EXPLAINED_CLASSES]

    def _to_event(self, output: RuleOutput, frame: Frame) -> Event:
        ids = self._events.next_id(output)
        evidence = self._snapshot(output, frame, ids)
        return self._events.make(output, self._wall_clock(frame), evidence, ids)

    def _snapshot(self, output: RuleOutput, frame: Frame, ids: tuple[str, int]) -> list[Evidence]:
        if self.evidence is None:  # no evidence kept in this run (a replay without a folder)
            return []
        role = {"new": "onset", "update": "latest", "end": "closing"}[output.state]
        caption = f"{self.camera.id} {output.rule_id} {output.state} t={output.pts_s:.1f}s"
        annotation = Annotation(self._zones.get(output.zone_id), output.highlight, caption)
        try:
            files = [(role, snapshot(frame.image, self._masks, annotation))]
            if self._history is not None and output.rule_id in self._pile_rules:
                files.extend(self._pile_evidence(output, caption))
        except ValueError:  # an image OpenCV could not encode: the event still goes out
            logger.exception("camera %s: could not make the evidence snapshot", self.camera.id)
            return []
        evidence = []
        for file_role, data in files:
            name = f"{ids[0]}-{ids[1]:04d}-{file_role}.jpg"
            try:
                evidence.append(self.evidence.put(name, data, "snapshot", "image/jpeg", file_role))
            except OSError:
                logger.exception("camera %s: could not write evidence %s", self.camera.id, name)
        return evidence

    def _pile_evidence(self, output: RuleOutput, caption: str) -> list[tuple[str, bytes]]:
        """Enforcement evidence for a garbage pile: at `new`, the moment it appeared and the
        person or vehicle there just before; at `end`, the 'before' picture again beside the
        closing ('after') one."""
        assert self._history is not None  # noqa: S101
        if output.state == "end":
            before = self._pile_onsets.pop(output.rule_id, None)
            return [("before", before)] if before is not None else []
        if output.state != "new":
            return []
        files: list[tuple[str, bytes]] = []
        appeared = self._history.at(output.onset_s)
        if appeared is not None:
            data = _annotated(appeared.jpeg, [output.box], f"{caption} appeared")
            files.append(("appeared", data))
            self._pile_onsets[output.rule_id] = data
        actor = self._history.actor_before(output.onset_s, output.box)
        if actor is not None:
            past, box = actor
            files.append(("offender", _annotated(past.jpeg, [box], f"{caption} before")))
        return files


def _annotated(jpeg: bytes, boxes: Sequence[Box], caption: str) -> bytes:
    """A kept (already masked) JPEG with boxes and a caption drawn on it."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    return encode_jpeg(annotate(image, Annotation(None, tuple(boxes), caption)))
