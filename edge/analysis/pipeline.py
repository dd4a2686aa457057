"""One camera's analysis: frame in, event messages out. The same code serves replay and live.

A camera's rules are analysed in lanes (edge.analysis.lanes): each frame rule in its own (every
frame, or its own rate), the zone rules together at `detect_fps` (edge.analysis.zones), and the
frame rules' pre-event buffer. Their decisions go to the recorder (edge.evidence.recorder),
which makes the event messages and their evidence and lets them leave in order.

`CameraPipeline` drives the lanes one after the other on each frame, in the calling thread:
`zhizhi edge replay`, `zhizhi eval`, the benches and the tests. The live box runs the same lanes
and recorder on threads of their own (edge.runtime.camera).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from common.config import (
    CameraConfig,
    FallingObjectRuleConfig,
    FireLaneRuleConfig,
    GarbagePileRuleConfig,
    PersonFallRuleConfig,
    SiteConfig,
)
from common.events import Event, ModelInfo
from edge.analysis.detect.base import Detector, Priority
from edge.analysis.detect.source import LOCAL_MODELS, ModelSource
from edge.analysis.frame_rules import FacadeWatch, PersonFallWatch
from edge.analysis.lanes import CLIP_FPS, ClipBufferLane, FrameRuleLane, Lane
from edge.analysis.stats import PipelineStats
from edge.analysis.zones import BUSY_HISTORY_S, WEAK_DETECTION_SCORE, ZoneLane, history_seconds
from edge.delivery.sequencer import EventSequencer
from edge.errors import ModelNotFoundError
from edge.evidence.history import FrameHistory
from edge.evidence.privacy import Redactor
from edge.evidence.recorder import Recorder
from edge.evidence.store import EvidenceStore
from edge.rules.base import FrameRule, Rule
from edge.rules.fire_lane import FireLaneRule
from edge.rules.garbage_pile import GarbagePileRule
from edge.types import Frame

logger = logging.getLogger(__name__)

__all__ = [
    "WEAK_DETECTION_SCORE",
    "CameraPipeline",
    "PipelineStats",
    "UnsupportedRuleError",
    "build_frame_rules",
    "build_rules",
    "load_classifiers",
    "load_redactor",
]


class UnsupportedRuleError(ValueError):
    """A rule type the edge cannot run yet."""


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


def build_frame_rules(camera: CameraConfig, models: ModelSource | None = None) -> list[FrameRule]:
    """The camera's enabled rules that watch every frame; loads the models they need from
    `models` (default: in this process; a missing model is refused here, at start-up)."""
    models = models or LOCAL_MODELS
    rules: list[FrameRule] = []
    for rule in camera.rules:
        if not rule.enabled:
            continue
        if isinstance(rule, FallingObjectRuleConfig):
            rules.append(FacadeWatch.from_config(rule, camera.zone(rule.zone), camera))
        elif isinstance(rule, PersonFallRuleConfig):
            pose = models.pose(rule.model, Priority.FRAME_RULE)
            rules.append(PersonFallWatch(rule, camera.zone(rule.zone), pose, pose.info))
    return rules


def load_classifiers(
    camera: CameraConfig, models: ModelSource | None = None
) -> dict[str, Detector]:
    """The garbage detectors the camera's enabled pile rules name, loaded and verified (a
    missing model is refused here, at start-up)."""
    models = models or LOCAL_MODELS
    wanted = {
        rule.classifier.model: rule.classifier
        for rule in camera.rules
        if rule.enabled and isinstance(rule, GarbagePileRuleConfig) and rule.classifier
    }
    if not wanted:
        return {}
    return {
        name: models.detector(
            name, config.min_score, camera.detector.iou, camera.detector.providers
        )
        for name, config in wanted.items()
    }


def load_redactor(
    camera: CameraConfig,
    models: ModelSource | None = None,
    priority: Priority = Priority.EVIDENCE,
) -> Redactor:
    """What redacts the camera's evidence. When faces are to be blurred, the face finders (the
    face detector and the pose model) must load: a camera whose evidence would show faces it
    should hide is refused at start-up (ModelNotFoundError / ModelIntegrityError), never run
    with faces visible."""
    wants_faces = camera.privacy.blur_faces and any(
        rule.enabled and rule.evidence_faces == "blur" for rule in camera.rules
    )
    if not wants_faces:
        return Redactor.for_camera(camera)
    source = models or LOCAL_MODELS
    name = camera.privacy.face_model
    try:
        pose = source.pose(name, priority)
    except KeyError as error:
        raise ModelNotFoundError(
            f"camera {camera.id}: privacy.face_model {name!r} is not in the model registry"
        ) from error
    detector = camera.privacy.face_detector
    try:
        faces = None if detector is None else source.faces(detector, priority)
    except KeyError as error:
        raise ModelNotFoundError(
            f"camera {camera.id}: privacy.face_detector {detector!r} is not in the model registry"
        ) from error
    return Redactor.for_camera(camera, pose, faces)


class CameraPipeline:
    """One camera's lanes and recorder, driven in the calling thread (see the module
    docstring). Not thread-safe."""

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
        models: ModelSource | None = None,
    ) -> None:
        self.site = site
        self.camera = camera
        self.detector = detector
        self.evidence = evidence
        self.stats = PipelineStats()
        self.rules = build_rules(camera)
        self.frame_rules = list(
            build_frame_rules(camera, models) if frame_rules is None else frame_rules
        )
        masks = [list(mask) for mask in camera.privacy_masks]
        style = camera.privacy.mask_style
        # evidence is redacted before it is written: masks hidden, faces blurred
        # (edge.evidence.privacy)
        self.redactor = redactor or (
            load_redactor(camera, models) if evidence is not None else Redactor.for_camera(camera)
        )
        # an alert's clip follows it: its faces are found when the box has time to spare
        clip_redactor = (
            load_redactor(camera, models, Priority.CLIPS)
            if redactor is None and evidence is not None
            else self.redactor
        )
        self.lanes: list[Lane] = []
        longest = max((r.clip_pre_s + r.clip_post_s for r in self.frame_rules), default=0.0)
        recent = None
        if self.frame_rules and evidence is not None:
            recent = FrameHistory(masks, keep_s=longest + 2.0, every_s=1.0 / CLIP_FPS, style=style)
            self.lanes.append(ClipBufferLane(recent, self.stats))
        self.lanes.extend(FrameRuleLane(rule, self.stats, camera.id) for rule in self.frame_rules)
        if self.frame_rules:
            self.stats.seconds["frame_rules"] = 0.0
        self.zones: ZoneLane | None = None
        history = None
        if self.rules:
            history = FrameHistory(
                masks, keep_s=history_seconds(camera), style=style, busy_every_s=BUSY_HISTORY_S
            )
            classifiers = load_classifiers(camera, models) if classifiers is None else classifiers
            self.zones = ZoneLane(camera, self.rules, detector, self.stats, history, classifiers)
            self.lanes.append(self.zones)
        info = detector.info
        model = ModelInfo(name=info.name, version=info.version, sha256=info.sha256)
        rule_types: dict[str, str] = {rule.id: rule.type for rule in camera.rules}
        own_models = {rule.rule_id: rule.model for rule in self.frame_rules}
        self.recorder = Recorder(
            site,
            camera,
            evidence,
            self.redactor,
            EventSequencer(site.site.id, camera.id, rule_types, model, own_models),
            self.stats,
            clip_windows={r.rule_id: (r.clip_pre_s, r.clip_post_s) for r in self.frame_rules},
            zone_history=history,
            recent=recent,
            pile_rules=self.zones.pile_rule_ids() if self.zones is not None else set(),
            model_info=lambda: self.detector.info,
            wall_clock=wall_clock,
            clip_redactor=clip_redactor,
        )

    def process(self, frame: Frame) -> list[Event]:
        """Analyse one decoded frame: each lane that wants it analyses it (the frame rules
        every frame, the zone rules at `detect_fps`); the messages that may leave now."""
        self.stats.frames_seen += 1
        for lane in self.lanes:
            if lane.wants(frame.pts_s):
                self.recorder.add(lane.process(frame))
        return self.recorder.release(frame.pts_s)

    def finish(self) -> list[Event]:
        """The stream ended: the messages still waiting for their clip's post-roll leave now,
        with the clip cut from what was seen."""
        return self.recorder.finish()
