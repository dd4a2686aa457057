"""One camera's analysis: frame in, event messages out. The same code serves replay and live.

Per analysed frame (at `detect_fps`, by stream time): the scene model registers the frame and
measures motion; the detector runs only when something moved in the watched area, or at the
periodic re-check of a quiet scene; the tracker follows what the detector found; the scene
model finds what newly appeared and stays; each zone rule decides; decisions become events with
evidence.

Rules that must see every frame (falling objects, falling people) get every decoded frame
(`FrameRule.on_frame`); a short dense pre-event buffer lets their clips start seconds before
the fall. Their `new` messages wait until the clip's post-roll has been seen, and every later
message waits behind them, so messages leave in the order they were made.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import cv2
import numpy as np
import numpy.typing as npt

from common.config import (
    CameraConfig,
    FallingObjectRuleConfig,
    FireLaneRuleConfig,
    GarbagePileRuleConfig,
    PersonFallRuleConfig,
    PileClassifierConfig,
    SiteConfig,
)
from common.events import Event, Evidence, ModelInfo
from edge.analysis.detect.base import Detector
from edge.analysis.pose import load_pose_estimator
from edge.analysis.scene.model import SceneModel, SceneParams, to_analysis_gray
from edge.analysis.track import ObjectTracker
from edge.delivery.sequencer import EventSequencer
from edge.errors import ModelNotFoundError
from edge.evidence.clips import CONTENT_TYPE as CLIP_TYPE
from edge.evidence.clips import ClipError, decode_jpeg, encode_mp4
from edge.evidence.history import FrameHistory, PastFrame
from edge.evidence.privacy import RedactionError, RedactionRecord, Redactor
from edge.evidence.store import Annotation, EvidenceStore, annotate, encode_jpeg
from edge.rules.base import EXPLAINED_CLASSES, Content, FrameRule, Observation, Rule, RuleOutput
from edge.rules.fire_lane import FireLaneRule
from edge.rules.garbage_pile import GarbagePileRule
from edge.rules.geometry import box_from_crop, detection_roi, expand_box
from edge.types import Box, Detection, Frame, TrackedObject, box_iou

logger = logging.getLogger(__name__)
Image = npt.NDArray[np.uint8]

MOTION_HANGOVER_S = 1.0  # keep detecting this long after the last motion, to see things settle
MOVING_ACTIVITY = 0.2  # share of recent frames with motion that marks a tracked box as moving
WEAK_DETECTION_SCORE = 0.12  # people and vehicles this likely are still masked from the scene
CLIP_FPS = 10.0  # frames a second in the dense pre-event buffer of the frame rules' clips
ZONE_CLIP_PRE_S = 8.0  # a zone rule's clip: from this long before the onset...
ZONE_CLIP_POST_S = 8.0  # ...to this long after it (or the alert, if sooner)
HISTORY_SLACK_S = 30.0  # the sparse history reaches this far back beyond the longest dwell
MAX_HISTORY_S = 900.0
CLOSE_UP_SIDE = 0.2  # a close look at something small shows at least this much of the frame


class UnsupportedRuleError(ValueError):
    """A rule type the edge cannot run yet."""


@dataclass
class PipelineStats:
    frames_seen: int = 0
    frames_analysed: int = 0
    detector_runs: int = 0
    events: int = 0
    rule_errors: int = 0
    seconds: dict[str, float] = field(
        default_factory=lambda: {
            "scene": 0.0,
            "detect": 0.0,
            "track": 0.0,
            "rules": 0.0,
            "history": 0.0,
            "evidence": 0.0,
        }
    )


def build_rules(camera: CameraConfig) -> list[Rule]:
    """The camera's enabled zone rules (judged on the analysed frames)."""
    rules: list[Rule] = []
    for rule in camera.rules:
        if not rule.enabled:
            continue
        if isinstance(rule, FireLaneRuleConfig):
            rules.append(FireLaneRule(rule, camera.zone(rule.zone)))
        elif isinstance(rule, GarbagePileRuleConfig):
            rules.append(GarbagePileRule(rule, camera.zone(rule.zone)))
        elif not isinstance(rule, FallingObjectRuleConfig | PersonFallRuleConfig):
            raise UnsupportedRuleError(
                f"camera {camera.id}: rule {rule.id}: type {rule.type} is not supported by this "
                "edge version"
            )
    return rules


def build_frame_rules(camera: CameraConfig) -> list[FrameRule]:
    """The camera's enabled rules that watch every frame; loads the models they need (a
    missing model is refused here, at start-up)."""
    rules: list[FrameRule] = []
    for rule in camera.rules:
        if not rule.enabled:
            continue
        if isinstance(rule, FallingObjectRuleConfig):
            from edge.rules.falling_object import FallingObjectRule

            rules.append(FallingObjectRule.from_config(rule, camera.zone(rule.zone), camera))
        elif isinstance(rule, PersonFallRuleConfig):
            from edge.rules.person_fall import PersonFallRule

            rules.append(PersonFallRule.from_config(rule, camera.zone(rule.zone), camera))
    return rules


def load_classifiers(camera: CameraConfig) -> dict[str, Detector]:
    """The garbage detectors the camera's enabled pile rules name, loaded and verified (a
    missing model is refused here, at start-up)."""
    from edge.analysis.detect.onnx import OnnxDetector
    from edge.runtime.models import load_registry

    wanted = {
        rule.classifier.model: rule.classifier
        for rule in camera.rules
        if rule.enabled and isinstance(rule, GarbagePileRuleConfig) and rule.classifier
    }
    if not wanted:
        return {}
    registry = load_registry()
    return {
        name: OnnxDetector.load(
            registry[name], config.min_score, camera.detector.iou, camera.detector.providers
        )
        for name, config in wanted.items()
    }


def load_redactor(camera: CameraConfig) -> Redactor:
    """What redacts the camera's evidence. When faces are to be blurred, the face finder (the
    pose model) must load: a camera whose evidence would show faces it should hide is refused
    at start-up (ModelNotFoundError / ModelIntegrityError), never run with faces visible."""
    wants_faces = camera.privacy.blur_faces and any(
        rule.enabled and rule.evidence_faces == "blur" for rule in camera.rules
    )
    if not wants_faces:
        return Redactor.for_camera(camera)
    name = camera.privacy.face_model
    try:
        pose = load_pose_estimator(name)
    except KeyError as error:
        raise ModelNotFoundError(
            f"camera {camera.id}: privacy.face_model {name!r} is not in the model registry"
        ) from error
    return Redactor.for_camera(camera, pose)


@dataclass(slots=True)
class _Held:
    """An event waiting for the post-roll of its clip (or behind one that is)."""

    event: Event
    due_s: float
    clip: tuple[float, float] | None = None  # stream seconds the clip covers


def _watched_zones(camera: CameraConfig) -> dict[str, list[tuple[float, float]]]:
    """The zones the camera's enabled rules watch, by zone id."""
    zone_ids = {rule.zone for rule in camera.rules if rule.enabled}
    return {zone.id: list(zone.polygon) for zone in camera.zones if zone.id in zone_ids}


class CameraPipeline:
    """Stateful per-camera analysis. Not thread-safe: one analysis thread owns it."""

    def __init__(
        self,
        site: SiteConfig,
        camera: CameraConfig,
        detector: Detector,
        evidence: EvidenceStore | None,
        wall_clock: Callable[[Frame], datetime] | None = None,
        frame_rules: Sequence[FrameRule] | None = None,
        classifiers: dict[str, Detector] | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.site = site
        self.camera = camera
        self.detector = detector
        self.evidence = evidence
        self.rules = build_rules(camera)
        self.frame_rules = list(build_frame_rules(camera) if frame_rules is None else frame_rules)
        self._classifiers = load_classifiers(camera) if classifiers is None else classifiers
        self._image: Image | None = None  # the frame being analysed, for the classifiers
        self.stats = PipelineStats()
        self._zones = {zone.id: list(zone.polygon) for zone in camera.zones}
        self._masks = [list(mask) for mask in camera.privacy_masks]
        style = camera.privacy.mask_style
        # evidence is redacted before it is written: masks hidden, faces blurred
        # (edge.evidence.privacy)
        self._redactor = redactor or (
            load_redactor(camera) if evidence is not None else Redactor.for_camera(camera)
        )
        self._blur_faces = {rule.id: rule.evidence_faces == "blur" for rule in camera.rules}
        self._min_score = camera.detector.min_score
        self._interval = 1.0 / camera.detect_fps
        self._scene = SceneModel(_watched_zones(camera), SceneParams())
        self._pile_rules = {r.rule_id for r in self.rules if isinstance(r, GarbagePileRule)}
        self._history = (
            FrameHistory(self._masks, keep_s=_history_seconds(camera), style=style)
            if self.rules
            else None
        )
        longest = max((r.clip_pre_s + r.clip_post_s for r in self.frame_rules), default=0.0)
        self._recent = (
            FrameHistory(self._masks, keep_s=longest + 2.0, every_s=1.0 / CLIP_FPS, style=style)
            if self.frame_rules and evidence is not None
            else None
        )
        self._held: deque[_Held] = deque()
        self._pile_onsets: dict[str, tuple[bytes, RedactionRecord]] = {}  # 'appeared' pictures
        self._roi = detection_roi(list(_watched_zones(camera).values()))
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
        own_models = {rule.rule_id: rule.model for rule in self.frame_rules}
        self._events = EventSequencer(site.site.id, camera.id, rule_types, model, own_models)
        self._clip_windows = {r.rule_id: (r.clip_pre_s, r.clip_post_s) for r in self.frame_rules}
        if self.frame_rules:
            self.stats.seconds["frame_rules"] = 0.0

    def process(self, frame: Frame) -> list[Event]:
        """Analyse one decoded frame: the frame rules see every frame; the zone rules the
        frames of the analysis slots (the others only advance their clock)."""
        self.stats.frames_seen += 1
        events: list[Event] = []
        if self.frame_rules:
            events.extend(self._every_frame(frame))
        # the scene model and the detector serve the zone rules only: a camera with frame
        # rules alone (a facade) spends nothing on them
        if self.rules and frame.pts_s - self._last_analysis >= self._interval * 0.98:
            events.extend(self._analyse(frame))
        return self._release(events, frame.pts_s)

    def finish(self) -> list[Event]:
        """The stream ended: the messages still waiting for their clip's post-roll leave now,
        with the clip cut from what was seen."""
        return self._release([], float("inf"))

    def _every_frame(self, frame: Frame) -> list[Event]:
        if self._recent is not None:
            started = time.perf_counter()
            self._recent.put(frame.pts_s, frame.image, ())
            self.stats.seconds["history"] += time.perf_counter() - started
        started = time.perf_counter()
        outputs = [out for rule in self.frame_rules for out in self._frame_rule(rule, frame)]
        self.stats.seconds["frame_rules"] += time.perf_counter() - started
        return self._events_of(outputs, frame)

    def _frame_rule(self, rule: FrameRule, frame: Frame) -> list[RuleOutput]:
        """One frame rule on one frame. A rule that fails on a frame (a model error, a frame
        it cannot handle) is reported and skips that frame; the camera's other rules and the
        rule's own state carry on."""
        try:
            return rule.on_frame(frame)
        except Exception:  # the boundary between a rule and the camera's analysis
            self.stats.rule_errors += 1
            if self.stats.rule_errors <= 3 or self.stats.rule_errors % 1000 == 0:
                logger.exception(
                    "camera %s: rule %s failed on the frame at %.2fs (%d failures so far)",
                    self.camera.id,
                    rule.rule_id,
                    frame.pts_s,
                    self.stats.rule_errors,
                )
            return []

    def _analyse(self, frame: Frame) -> list[Event]:
        self._last_analysis = frame.pts_s
        self.stats.frames_analysed += 1
        observation = self._observe(frame)
        if self._history is not None:
            started = time.perf_counter()
            actors = [t.box for t in observation.tracks if t.label in EXPLAINED_CLASSES]
            people = [t.box for t in observation.tracks if t.label == "person"]
            self._history.put(frame.pts_s, frame.image, actors, people)
            self.stats.seconds["history"] += time.perf_counter() - started
        started = time.perf_counter()
        outputs = [out for rule in self.rules for out in rule.update(observation)]
        self.stats.seconds["rules"] += time.perf_counter() - started
        return self._events_of(outputs, frame)

    def _events_of(self, outputs: Sequence[RuleOutput], frame: Frame) -> list[Event]:
        """The outputs as event messages; one that cannot become a valid message (a rule's bug)
        is reported and dropped, and the camera carries on."""
        events = []
        for output in outputs:
            try:
                events.append(self._to_event(output, frame))
            except Exception:  # the boundary between a rule's decision and the camera
                self.stats.rule_errors += 1
                logger.exception(
                    "camera %s: rule %s: output %s at %.2fs could not become an event",
                    self.camera.id,
                    output.rule_id,
                    output.state,
                    output.pts_s,
                )
        return events

    def _release(self, made: list[Event], now_s: float) -> list[Event]:
        """Hold the frame rules' `new` messages until their clip's post-roll has been seen,
        and everything made after them behind them; give back what may leave now, in order."""
        out: list[Event] = []
        for event in made:
            window = self._clip_windows.get(event.rule_id)
            if event.state == "new" and window is not None and self._recent is not None:
                clip = (event.onset_pts_s - window[0], event.pts_s + window[1])
                self._held.append(_Held(event, clip[1], clip))
            elif self._held:
                self._held.append(_Held(event, float("-inf")))
            else:
                out.append(event)
        while self._held and self._held[0].due_s <= now_s:
            held = self._held.popleft()
            event = held.event
            if held.clip is not None and self._recent is not None:
                started = time.perf_counter()
                event = self._with_clip(event, self._recent.between(*held.clip))
                self.stats.seconds["evidence"] += time.perf_counter() - started
            out.append(event)
        self.stats.events += len(out)
        return [_with_privacy(event) for event in out]

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
        self._image = frame.image
        classify = self._classify if self._classifiers else None
        return Observation(
            now,
            tuple(self._tracks),
            scene.regions,
            ran,
            moving,
            classify,
            self._inspect,
            blind=scene.blind,
        )

    def _classify(self, box: Box, config: PileClassifierConfig) -> list[Content]:
        """What the configured garbage model finds in (and around) `box` on the current frame,
        as kinds of waste; only detections that overlap the box count."""
        detector = self._classifiers.get(config.model)
        if detector is None:
            return []
        kinds = {label: kind for kind, labels in config.classes.items() for label in labels}
        contents = [
            Content(kinds[d.label], d.label, d.score, d.box)
            for d in self._close_up(detector, box, 0.5, "classify")
            if d.label in kinds and d.score >= config.min_score and box_iou(d.box, box) > 0.0
        ]
        return sorted(contents, key=lambda c: -c.score)

    def _inspect(self, box: Box) -> list[Detection]:
        """The camera's detector on a close-up of `box` (grown to at least a fifth of the
        frame's side, so that it sees what stands around it): people and vehicles too small
        for the full frame are found there."""
        width, height = max(box[2] - box[0], 1e-3), max(box[3] - box[1], 1e-3)
        grow = max(1.0, (CLOSE_UP_SIDE / width - 1) / 2, (CLOSE_UP_SIDE / height - 1) / 2)
        found = self._close_up(self.detector, box, min(grow, 8.0), "inspect")
        return [d for d in found if d.score >= self._min_score]

    def _close_up(self, detector: Detector, box: Box, grow: float, stage: str) -> list[Detection]:
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
        found = detector.detect(np.ascontiguousarray(self._image[y1:y2, x1:x2]))
        self.stats.seconds[stage] = (
            self.stats.seconds.get(stage, 0.0) + time.perf_counter() - started
        )
        return [replace(d, box=box_from_crop(d.box, crop)) for d in found]

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
        started = time.perf_counter()
        ids = self._events.next_id(output)
        evidence = self._snapshot(output, frame, ids)
        if (
            output.state == "new"
            and self._history is not None
            and output.rule_id not in self._clip_windows
        ):
            start = output.onset_s - ZONE_CLIP_PRE_S
            end = min(output.onset_s + ZONE_CLIP_POST_S, output.pts_s)
            clip = self._clip(self._history.between(start, end), ids, output.rule_id)
            evidence.extend([clip] if clip is not None else [])
        self.stats.seconds["evidence"] += time.perf_counter() - started
        return self._events.make(output, self._wall_clock(frame), evidence, ids)

    def _with_clip(self, event: Event, frames: Sequence[PastFrame]) -> Event:
        clip = self._clip(frames, (event.event_id, event.seq), event.rule_id)
        if clip is None:
            return event
        return event.model_copy(update={"evidence": [*event.evidence, clip]})

    def _clip(
        self, frames: Sequence[PastFrame], ids: tuple[str, int], rule_id: str
    ) -> Evidence | None:
        """The kept (already masked) frames, faces blurred, as an MP4 evidence file; None when
        there is no store, no frame, or redaction or encoding failed (the event still goes out,
        with its pictures; nothing unredacted is ever written)."""
        if self.evidence is None or not frames:
            return None
        name = f"{ids[0]}-{ids[1]:04d}-clip.mp4"
        try:
            times = [f.pts_s for f in frames]
            images, record = self._redactor.frames(
                [decode_jpeg(f.jpeg) for f in frames], self._blur_faces.get(rule_id, True), times
            )
            data = encode_mp4(list(zip(times, images, strict=True)))
            stored = self.evidence.put(name, data, "clip", CLIP_TYPE, "clip")
            return _redacted(stored.model_copy(update={"start_pts_s": times[0]}), record)
        except (ClipError, RedactionError, OSError, cv2.error):
            logger.exception("camera %s: could not make the evidence clip %s", self.camera.id, name)
            return None

    def _snapshot(self, output: RuleOutput, frame: Frame, ids: tuple[str, int]) -> list[Evidence]:
        if self.evidence is None:  # no evidence kept in this run (a replay without a folder)
            return []
        role = {"new": "onset", "update": "latest", "end": "closing"}[output.state]
        caption = f"{self.camera.id} {output.rule_id} {output.state} t={output.pts_s:.1f}s"
        annotation = Annotation(
            self._zones.get(output.zone_id), output.highlight, caption, _paths(output)
        )
        blur = self._blur_faces.get(output.rule_id, True)
        people = [t.box for t in self._tracks if t.label == "person"]
        try:
            image, record = self._redactor.image(frame.image, blur, people)
            files = [(role, encode_jpeg(annotate(image, annotation)), record)]
            if self._history is not None and output.rule_id in self._pile_rules:
                files.extend(self._pile_evidence(output, caption, blur))
        except (ValueError, cv2.error):  # the face finder failed, or OpenCV could not handle
            # the frame: the event still goes out, without pictures (nothing unredacted written)
            logger.exception("camera %s: could not make the evidence snapshot", self.camera.id)
            return []
        evidence = []
        for file_role, data, file_record in files:
            name = f"{ids[0]}-{ids[1]:04d}-{file_role}.jpg"
            try:
                stored = self.evidence.put(name, data, "snapshot", "image/jpeg", file_role)
                evidence.append(_redacted(stored, file_record))
            except OSError:
                logger.exception("camera %s: could not write evidence %s", self.camera.id, name)
        return evidence

    def _pile_evidence(
        self, output: RuleOutput, caption: str, blur: bool
    ) -> list[tuple[str, bytes, RedactionRecord]]:
        """Enforcement evidence for a garbage pile: at `new`, the moment it appeared and the
        person or vehicle there just before (faces blurred, vehicles and plates kept); at
        `end`, the 'before' picture again beside the closing ('after') one."""
        assert self._history is not None  # noqa: S101
        if output.state == "end":
            before = self._pile_onsets.pop(output.rule_id, None)
            return [("before", *before)] if before is not None else []
        if output.state != "new":
            return []
        files: list[tuple[str, bytes, RedactionRecord]] = []
        appeared = self._history.at(output.onset_s)
        if appeared is not None:
            picture = self._annotated(appeared, [output.box], f"{caption} appeared", blur)
            files.append(("appeared", *picture))
            self._pile_onsets[output.rule_id] = picture
        actor = self._history.actor_before(output.onset_s, output.box)
        if actor is not None:
            past, box = actor
            files.append(("offender", *self._annotated(past, [box], f"{caption} before", blur)))
        return files

    def _annotated(
        self, past: PastFrame, boxes: Sequence[Box], caption: str, blur: bool
    ) -> tuple[bytes, RedactionRecord]:
        """A kept (already masked) frame with faces blurred (the people the detector saw then
        included), then boxes and a caption drawn."""
        image, record = self._redactor.image(decode_jpeg(past.jpeg), blur, past.people)
        return encode_jpeg(annotate(image, Annotation(None, tuple(boxes), caption))), record


def _history_seconds(camera: CameraConfig) -> float:
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


def _paths(output: RuleOutput) -> list[list[tuple[float, float]]]:
    """The trajectories an output carries (`details.trajectories` or `.trajectory`, as
    `[[pts_s, x, y], ...]`), as polylines to draw."""
    found = output.details.get("trajectories") or [output.details.get("trajectory") or []]
    paths = []
    for trajectory in found:
        points = [(float(p[1]), float(p[2])) for p in trajectory if len(p) >= 3]
        if points:
            paths.append(points)
    return paths


def _redacted(evidence: Evidence, record: RedactionRecord) -> Evidence:
    return evidence.model_copy(update={"redaction": record.as_details()})


def _with_privacy(event: Event) -> Event:
    """The event's `details.privacy`: which privacy masks were applied to its evidence, in
    which style, and how many faces were blurred (each file's own record is in its
    `evidence[].redaction`)."""
    records = [e.redaction for e in event.evidence if e.redaction is not None]
    if not records:
        return event
    masks = sorted({m for r in records for m in r.get("masks", [])})
    faces = [r.get("faces", {}) for r in records]
    privacy = {
        "masks": masks,
        "mask_style": records[0].get("mask_style"),
        "faces_blurred": max((f.get("blurred", 0) for f in faces), default=0),
        "faces_skipped": sorted({f["skipped"] for f in faces if "skipped" in f}),
    }
    return event.model_copy(update={"details": {**event.details, "privacy": privacy}})
