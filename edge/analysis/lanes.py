"""Lanes: the independent analyses of one camera, each fed the frames it needs.

A camera's analysis is split by what each part needs of the stream, so that on a busy box one
part never starves another (issue 13):

* a `FrameRuleLane` per frame rule: falling objects need every frame, consecutive; person falls
  the frames of their own analysis rate;
* a `ClipBufferLane`: the dense pre-event buffer the frame rules' clips start from;
* the `ZoneLane` (edge.analysis.zones): the zone rules' analysis at `detect_fps`, with the
  scene model, the detector and the tracker.

Each lane says which frames it `wants` and turns a frame into `Finding`s: a rule's decision
with the frame it was made on, from which the recorder (edge.evidence.recorder) makes the event
and its evidence. Replay drives the lanes one after the other on every frame
(`CameraPipeline`); the live box gives each lane its own thread and queue (edge.runtime.camera),
with the same code deciding.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from edge.analysis.stats import PipelineStats
from edge.evidence.history import FrameHistory
from edge.rules.base import FrameRule, RuleOutput
from edge.types import Box, Frame

logger = logging.getLogger(__name__)

RECENT_FRAMES = 4  # frames a frame-rule lane keeps to find the one an output was decided on
CLIP_FPS = 10.0  # frames a second in the dense pre-event buffer of the frame rules' clips


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule's decision, with the frame it was made on and the people known in it (whose
    faces the evidence blurs)."""

    output: RuleOutput
    frame: Frame
    people: tuple[Box, ...] = ()


class Lane(Protocol):
    """One analysis of a camera (see the module docstring)."""

    @property
    def name(self) -> str: ...

    @property
    def rule_ids(self) -> tuple[str, ...]: ...

    @property
    def need_fps(self) -> float | None:
        """Frames a second the lane needs (None: every frame the camera sends)."""
        ...

    @property
    def starved(self) -> int:
        """Analyses on which the lane's rules held their judgement for want of looks."""
        ...

    def wants(self, pts_s: float) -> bool:
        """Whether the frame at `pts_s` is one the lane analyses. Asked once per frame, in
        order, by whoever hands out the frames, before the frame is converted (so it may keep
        the state of its own choice)."""
        ...

    def process(self, frame: Frame) -> list[Finding]:
        """Analyse one frame the lane wanted."""
        ...


class FrameRuleLane:
    """One frame rule (falling_object, person_fall): every frame it wants, in order."""

    def __init__(self, rule: FrameRule, stats: PipelineStats, camera_id: str) -> None:
        self.rule = rule
        self.name = f"frame:{rule.rule_id}"
        self.rule_ids = (rule.rule_id,)
        self._stats = stats
        self._camera_id = camera_id
        self.errors = 0
        # the frames handed over lately: a rule that settles its analyses later (a fall room
        # waiting for the box's pose model) decides on an earlier frame than the one in hand
        self._recent: deque[Frame] = deque(maxlen=RECENT_FRAMES)

    @property
    def need_fps(self) -> float | None:
        return self.rule.need_fps

    @property
    def starved(self) -> int:
        return int(getattr(self.rule, "interruptions", 0))

    def wants(self, pts_s: float) -> bool:
        return self.rule.wants(pts_s)

    def process(self, frame: Frame) -> list[Finding]:
        """One frame rule on one frame. A rule that fails on a frame (a model error, a frame
        it cannot handle) is reported and skips that frame; the camera's other rules and the
        rule's own state carry on."""
        started = time.perf_counter()
        try:
            outputs = self.rule.on_frame(frame)
        except Exception:  # the boundary between a rule and the camera's analysis
            self.errors += 1
            self._stats.rule_errors += 1
            if self.errors <= 3 or self.errors % 1000 == 0:
                logger.exception(
                    "camera %s: rule %s failed on the frame at %.2fs (%d failures so far)",
                    self._camera_id,
                    self.rule.rule_id,
                    frame.pts_s,
                    self.errors,
                )
            outputs = []
        self._stats.add_seconds("frame_rules", time.perf_counter() - started)
        self._recent.append(frame)
        return [Finding(output, self._frame_at(output.pts_s)) for output in outputs]

    def _frame_at(self, pts_s: float) -> Frame:
        """The recent frame an output was decided on (its evidence snapshot)."""
        return min(reversed(self._recent), key=lambda f: abs(f.pts_s - pts_s))


class ClipBufferLane:
    """The frame rules' pre-event buffer: masked JPEGs at `CLIP_FPS`, for their clips."""

    name = "clip-buffer"
    rule_ids: tuple[str, ...] = ()
    need_fps: float | None = CLIP_FPS
    starved = 0

    def __init__(self, history: FrameHistory, stats: PipelineStats) -> None:
        self.history = history
        self._stats = stats
        self._last = float("-inf")

    def wants(self, pts_s: float) -> bool:
        # the history's own choice (one frame every 1 / CLIP_FPS), made here, before the frame
        # is handed over, so a busy box does not queue frames the buffer would not keep
        if pts_s - self._last < 1.0 / CLIP_FPS:
            return False
        self._last = pts_s
        return True

    def process(self, frame: Frame) -> list[Finding]:
        started = time.perf_counter()
        self.history.put(frame.pts_s, frame.image, ())
        self._stats.add_seconds("history", time.perf_counter() - started)
        return []
