"""The frame rules' analysis: what runs on the frames of a facade or a fall room before the
pure rules decide (edge.rules.falling_object, edge.rules.person_fall).

* `FacadeWatch`: the speck finder (edge.analysis.specks, OpenCV) on every frame of the facade
  zone, its specks handed to `FallingObjectRule`. Frames must be consecutive for the finder's
  three-frame differencing: after a break (time going back, a new picture size, a gap, a frame
  dropped on a busy box) it starts again from fresh frames. A frame that repeats the image
  before it (a slower camera stored at a higher rate) is not handed to the rule: the rule
  sees the distinct images at the times they first appeared.
* `PersonFallWatch`: at `analysis_fps`, a motion gate, the pose model on the zone's region (in
  this process, or the box's detection service), tracking with Norfair, and the poses handed
  to `FallMonitor`. With the box's service it asks for the next analysed frame while the one
  before is being run (`PIPELINE_DEPTH`), and settles them in order: a round trip longer than
  the analysis interval no longer costs the rule its analysis rate (in this process a run
  is over when it is asked for, so replay is unchanged).

Both are `FrameRule`s: the camera's lanes (edge.analysis.lanes) run them.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from common.config import CameraConfig, FallingObjectRuleConfig, PersonFallRuleConfig, ZoneConfig
from common.events import ModelInfo
from edge.analysis.detect.yolo import PoseDetection
from edge.analysis.pose import PoseEstimator, PosePending, submit_pose
from edge.analysis.specks import SpeckFinder, SpeckParams
from edge.analysis.track import ObjectTracker, TrackerParams
from edge.rules.base import RuleOutput
from edge.rules.falling_object import FallingObjectRule
from edge.rules.geometry import box_from_crop, polygon_bounds
from edge.rules.person_fall import KEYPOINTS_SHAPE, FallMonitor, FallParams, PersonPose
from edge.types import Box, Detection, Frame

logger = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]

MOTION_WIDTH = 160  # the motion gate compares frames this wide, in grey
MOTION_LEVEL = 25  # grey levels a pixel must change by to count as changed
TRACKED_RECHECK_S = 0.5  # with people in view but nothing moving, the model still runs this often
FRAME_STEPS = 15  # the camera's frame interval is the median of this many recent steps
GAP_FACTOR = 2.5  # analyses this many intervals apart: the ones between were missed
PIPELINE_DEPTH = 2  # a fall room's pose runs asked for and not yet settled, at most
ANSWER_TIMEOUT_S = 10.0  # a run not answered in this long is taken as not made


@dataclass(slots=True)
class _Look:
    """An analysed frame of a fall room whose pose run (None: the motion gate held it back)
    may still be running."""

    pts_s: float
    crop: Box  # the region the model was shown, normalised to the frame
    pending: PosePending | None


class FacadeWatch:
    """The `falling_object` rule as the camera's lane runs it (`FrameRule`): every frame."""

    def __init__(
        self,
        config: FallingObjectRuleConfig,
        zone: ZoneConfig,
        finder: SpeckFinder | None = None,
    ) -> None:
        self.rule = FallingObjectRule(config, zone)
        self.rule_id = config.id
        self.zone_id = zone.id
        self.clip_pre_s = config.clip_pre_s
        self.clip_post_s = config.clip_post_s
        self.finder = finder or SpeckFinder(
            list(zone.polygon),
            [list(area) for area in config.ignore_areas],
            SpeckParams(
                min_contrast=config.min_contrast,
                noise_factor=config.noise_factor,
                max_speck_px=config.max_speck_px,
                max_specks=config.max_specks,
                scale=config.analysis_scale,
            ),
        )
        self._last_index: int | None = None
        self.breaks = 0  # frames after which the finder started again (dropped frames included)

    @classmethod
    def from_config(
        cls, config: FallingObjectRuleConfig, zone: ZoneConfig, camera: CameraConfig
    ) -> FacadeWatch:
        del camera  # the zone and the rule's own keys say everything this rule needs
        return cls(config, zone)

    @property
    def model(self) -> ModelInfo | None:
        return self.rule.model

    @property
    def need_fps(self) -> float | None:
        return None  # every frame, consecutive

    def wants(self, pts_s: float) -> bool:
        del pts_s
        return True

    def on_frame(self, frame: Frame) -> list[RuleOutput]:
        dropped = self._last_index is not None and frame.index > self._last_index + 1
        if dropped or self.rule.breaks(frame.pts_s, frame.size_wh):
            self.finder.restart()  # the frames before are no reference for this one
            self.breaks += 1
        self._last_index = frame.index
        found = self.finder.find(frame.image, self.rule.frame_interval_s)
        if found.repeat:
            # the image before again (a 10 fps camera stored at 30 fps): the rule sees each
            # distinct image once, at the time it first appeared, so tracks and the frame
            # interval follow the camera's real cadence
            return []
        return self.rule.observe(frame.pts_s, frame.size_wh, found)


class PersonFallWatch:
    """The `person_fall` rule as the camera's lane runs it (`FrameRule`): the frames of its
    analysis slots in, decisions of the pure `FallMonitor` out; the pose model runs at
    `analysis_fps` on the zone's region."""

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
        self._steps: deque[float] = deque(maxlen=FRAME_STEPS)  # the camera's own frame interval
        self._last_looked: float | None = None  # the last analysis whose frame was looked at
        self._last_model_run = float("-inf")
        self._tracked: list[Box] = []
        self._previous: Image | None = None
        self._last_pts: float | None = None
        self.model_runs = 0
        self.analysed = 0
        self.model_errors = 0
        self.interruptions = 0  # analyses after a gap: the monitor held its judgement
        self._looks: deque[_Look] = deque()  # analysed frames not yet settled, in order

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
        elif self._offered_pts is not None and pts_s > self._offered_pts:
            self._steps.append(pts_s - self._offered_pts)
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
            outputs.extend(self._settle(everything=True))
            outputs.extend(self._restart(self._last_pts))
        self._last_pts = frame.pts_s
        if frame.pts_s < self._next_analysis - 1e-6:
            return outputs + self._settle()
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
        pending: PosePending | None = None
        if self._should_run(image, frame.pts_s, crop):
            x1, y1, x2, y2 = _pixels(crop, image)
            crop = (x1 / width, y1 / height, x2 / width, y2 / height)
            pending = submit_pose(self._estimator, np.ascontiguousarray(image[y1:y2, x1:x2]))
            self._last_model_run = frame.pts_s
        self._looks.append(_Look(frame.pts_s, crop, pending))
        return outputs + self._settle()

    def _settle(self, everything: bool = False) -> list[RuleOutput]:
        """Hand the monitor the analysed frames whose runs are over, in order: those answered,
        and the oldest ones beyond `PIPELINE_DEPTH` (waited for); `everything`: all of them."""
        outputs: list[RuleOutput] = []
        while self._looks:
            look = self._looks[0]
            must = everything or len(self._looks) > PIPELINE_DEPTH
            answered = look.pending is None or look.pending.wait(ANSWER_TIMEOUT_S if must else 0)
            if not answered and not must:
                break
            self._looks.popleft()
            outputs.extend(self._look_at(look))
        return outputs

    def _look_at(self, look: _Look) -> list[RuleOutput]:
        """One analysed frame, its run over: the people it found tracked and handed to the
        monitor. A run that was not made (the box's service declined, a model error) is
        reported and that frame is not looked at (not "nobody there", which would end a lying
        person's watch); a run of them is a gap the monitor is told about."""
        self._after_gap(look.pts_s)
        people: list[PersonPose] = []
        if look.pending is not None:
            try:
                found = look.pending.result()
            except Exception:  # onnxruntime raises its own untyped errors; the box's service
                # declines when busy. One failed inference must not end the camera's analysis
                self.model_errors += 1
                if self.model_errors <= 3 or self.model_errors % 100 == 0:
                    logger.exception(
                        "rule %s: the pose model failed on a frame (%d so far)",
                        self.rule_id,
                        self.model_errors,
                    )
                return []
            poses = [
                _uncrop(p, look.crop)
                for p in found
                if p.detection.score >= self.config.min_score and _sane(p)
            ]
            people = self._track(poses, look.pts_s)
            self.model_runs += 1
        self._last_looked = look.pts_s
        return self._monitor.step(look.pts_s, people)

    def _after_gap(self, now: float) -> None:
        """Tell the monitor when the frames since the last one looked at were not looked at
        (analyses missed on a busy box, inferences declined), beyond what the analysis rate and
        the camera's own frame rate leave between two analyses."""
        last = self._last_looked
        if last is None or now <= last:
            return
        step = statistics.median(self._steps) if self._steps else 0.0
        if now - last > GAP_FACTOR * max(self._interval, step):
            self._monitor.interrupt(now)
            self.interruptions += 1

    def _restart(self, last_s: float) -> list[RuleOutput]:
        """Stream time went back (a replay looped, a camera restarted without a continuous
        clock): the watched situations end and the analysis starts again from this frame."""
        self._tracker = ObjectTracker(TrackerParams(hit_counter_max=self._tracker_hits))
        self._next_analysis = float("-inf")
        self._last_model_run = float("-inf")
        self._tracked = []
        self._previous = None
        self._last_looked = None
        self._looks.clear()
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
