"""What rules receive and return: pure values, time passed in (stream seconds)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from common.config import VEHICLE_CLASSES, PileClassifierConfig
from common.events import ModelInfo
from edge.rules.geometry import covered_share, union_box
from edge.types import Box, Detection, Frame, StaticRegion, TrackedObject, box_iou

State = Literal["new", "update", "end"]

EXPLAINED_CLASSES = frozenset(
    {"person", *VEHICLE_CLASSES, "bird", "cat", "dog", "horse", "sheep", "cow"}
)
"""Detector classes that move by themselves: never a left object, a pile or a blockage of the
scene model's kind (a person standing, a parked van are judged as what they are)."""


@dataclass(frozen=True, slots=True)
class Content:
    """What a model found inside a region: `kind` of waste (config classes), detector label."""

    kind: str
    label: str
    score: float
    box: Box


Classifier = Callable[[Box, PileClassifierConfig], Sequence[Content]]
"""Asks the configured model what the current frame holds in a box (in the Observation)."""

Inspector = Callable[[Box], Sequence[Detection] | None]
"""The camera's own detector on a close-up of a box of the current frame: what it finds there
(boxes in frame coordinates), for a second look at something too small to be sure of; None when
the look could not be had (the box's shared detector was too busy)."""

LOOK_AGAIN_S = 2.0  # while a close look finds someone on a region, look again this often
ACTOR_COVER = 0.3  # people or vehicles covering this share of the regions are what is there
CUT_ACTOR_COVER = 0.1  # ...of a region cut by the picture's edge (only part of them is seen)


@dataclass(frozen=True, slots=True)
class LookedAt:
    """A part of what a close look is asked about: a region's box, its area and whether the
    edge of what is judged cuts it (`StaticRegion.cut`)."""

    box: Box
    area: float
    cut: bool = False

    @property
    def enough(self) -> float:
        """The share of it that actors must cover to count as all covered."""
        return CUT_ACTOR_COVER / ACTOR_COVER if self.cut else 1.0


class CloseLook:
    """Is what the scene model found (static regions: a pile, an object left in a lane) a
    person, an animal or a vehicle too small for the full-frame detector (someone standing far
    away in a crowd)? The camera's detector looks closer (`Observation.inspect`) when a rule
    is about to alert, and again every `LOOK_AGAIN_S` while it finds one; a look that could not
    be had (a busy box) counts as someone there: not sure is no alert. An answer is reused
    only for the same place (the regions' box much as it was when looked at)."""

    def __init__(self) -> None:
        self._looked_s = float("-inf")
        self._looked_box: Box | None = None
        self._someone_there = False

    def occupied(self, observation: Observation, parts: Sequence[LookedAt]) -> bool:
        """`parts`: the regions' boxes, areas and whether the picture's edge cuts them; True
        when actors cover `ACTOR_COVER` of their area (or the look could not be had). A part
        cut by the edge is seen only in part (people standing at the top of the picture show
        their legs there): `CUT_ACTOR_COVER` of it is enough."""
        if observation.inspect is None or not parts:
            return False
        around = union_box([part.box for part in parts])
        same_place = self._looked_box is not None and box_iou(around, self._looked_box) >= 0.5
        if observation.pts_s - self._looked_s >= LOOK_AGAIN_S or not same_place:
            self._looked_s, self._looked_box = observation.pts_s, around
            found = observation.inspect(around)
            if found is None:
                self._someone_there = True
                return True
            actors = [d.box for d in found if d.label in EXPLAINED_CLASSES]
            covered = sum(
                part.area * min(1.0, covered_share(part.box, actors) / part.enough)
                for part in parts
            )
            self._someone_there = covered >= ACTOR_COVER * sum(part.area for part in parts)
        return self._someone_there

    def forget(self) -> None:
        self._looked_s, self._looked_box, self._someone_there = float("-inf"), None, False


STARVED_UNSEEN_S = 1.0
"""A zone analysis that follows the one before this much later than the analysis rate and the
camera's own frame rate allow has not seen what happened in between..."""
STARVED_DETECT_AGE_S = 3.0
"""...nor has one whose detector has not looked for this long while something moved."""


@dataclass(frozen=True, slots=True)
class Observation:
    """Everything the analysis knows about one analysed frame."""

    pts_s: float
    tracks: Sequence[TrackedObject] = ()
    regions: Sequence[StaticRegion] = ()
    detector_ran: bool = True
    moving: frozenset[int] = frozenset()  # track ids whose pixels keep changing (in motion)
    classify: Classifier | None = None  # a garbage model on this frame, when one is configured
    inspect: Inspector | None = None  # the camera's detector on a close-up of this frame
    blind: bool = False  # the scene model cannot judge this frame (too dark, light re-learnt)
    # stream seconds before this analysis that no analysis saw, beyond what the analysis rate
    # and the camera's own frame rate leave between two analyses (frames dropped on a busy box)
    unseen_s: float = 0.0
    detect_age_s: float = 0.0  # seconds since the detector last looked, while a look was wanted

    @property
    def starved(self) -> bool:
        """The analysis has not seen enough of the zone to judge (a busy box): a rule holds
        its judgement, neither raising nor ending anything on it."""
        return self.unseen_s > STARVED_UNSEEN_S or self.detect_age_s > STARVED_DETECT_AGE_S


@dataclass(frozen=True, slots=True)
class RuleOutput:
    """A rule's decision for one situation; `edge.delivery.sequencer` makes it an event message."""

    rule_id: str
    zone_id: str
    state: State
    onset_s: float
    pts_s: float
    box: Box
    score: float
    details: dict[str, Any] = field(default_factory=dict)
    highlight: Sequence[Box] = ()  # boxes to draw on the evidence


class Rule(Protocol):
    rule_id: str
    zone_id: str

    def update(self, observation: Observation) -> list[RuleOutput]: ...


class FrameRule(Protocol):
    """A rule that looks at every decoded frame itself, at full rate (falls are too fast for
    the analysis rate of the zone rules); it picks the frames it analyses by `frame.pts_s`
    (`wants`, asked once per frame before the frame is handed over; `need_fps` None means
    every frame, consecutive).

    Its `new` messages carry a clip from `onset_s - clip_pre_s` to `pts_s + clip_post_s`, cut
    from the pipeline's rolling pre-event buffer; `model` is what its events name as the model
    used (None when the rule uses no learned model).
    """

    rule_id: str
    zone_id: str
    clip_pre_s: float
    clip_post_s: float

    @property
    def model(self) -> ModelInfo | None: ...

    @property
    def need_fps(self) -> float | None: ...

    def wants(self, pts_s: float) -> bool: ...

    def on_frame(self, frame: Frame) -> list[RuleOutput]: ...


PRESENT_SHARE = 0.5
"""A situation is raised only once seen present for at least this share of the time since
its onset (absences its present things span count as presence: a missed detection, an
occlusion)."""


class Situation:
    """The life of one situation of a rule, judged on presence over time (time passed in).

    Its clock starts at the `since` of what is present and keeps running through absences
    shorter than `clear_s`; `new` once present for `dwell_s`; `update` every
    `update_interval_s` after that; over once absent for `clear_s`.

    An absence that what is present now does not span (it came to rest after the situation
    was last seen) is bridged, but not counted as presence: a thing seen a moment at one spot
    and again at that spot 15 s later is not 15 s of presence (a car pulling out of a bay
    left a short static change beside it once a loop, and two loops made a blockage). Nor
    is the alert raised while such absences are most of the time since the onset
    (`PRESENT_SHARE`): moments that add up to the dwell over half a minute are not a stay.
    """

    def __init__(self, dwell_s: float, clear_s: float, update_interval_s: float) -> None:
        self.dwell_s = dwell_s
        self.clear_s = clear_s
        self.update_interval_s = update_interval_s
        self.onset_s: float | None = None
        self.last_seen_s = float("-inf")
        self.unseen_s = 0.0  # bridged absences before the alert, not counted as presence
        self.alerted = False
        self.last_sent_s = float("-inf")

    def seen(
        self, now_s: float, since_s: float, ready: Callable[[], bool] | None = None
    ) -> State | None:
        """Something is present (since `since_s`): the message due now, if any. `ready`, when
        given, is asked once the dwell has passed and may hold the alert back (the clock keeps
        running): a confirmation that is too costly to ask on every frame."""
        if self.onset_s is None or now_s - self.last_seen_s > self.clear_s:
            self.onset_s, self.unseen_s = since_s, 0.0
        elif not self.alerted:
            self.unseen_s += max(0.0, since_s - self.last_seen_s)
            self.onset_s = min(self.onset_s, since_s)
        self.last_seen_s = now_s
        if not self.alerted:
            if not self._stayed(now_s) or (ready is not None and not ready()):
                return None
            self.alerted = True
            self.last_sent_s = now_s
            return "new"
        if now_s - self.last_sent_s >= self.update_interval_s:
            self.last_sent_s = now_s
            return "update"
        return None

    def present_s(self, now_s: float) -> float:
        """How long the situation has been seen present by `now_s` (0 before its onset)."""
        if self.onset_s is None:
            return 0.0
        return max(0.0, now_s - self.onset_s - self.unseen_s)

    def _stayed(self, now_s: float) -> bool:
        """Present for the dwell, and for most of the time since the onset."""
        assert self.onset_s is not None  # noqa: S101
        present = self.present_s(now_s)
        return present >= self.dwell_s and present >= PRESENT_SHARE * (now_s - self.onset_s)

    def hold(self, now_s: float) -> None:
        """Nothing can be seen now (a dark picture, the light being re-learnt): what was present
        is taken to be there still, so the clear clock does not run; but before the alert the
        time is not counted as presence (a moment seen before a light change re-learnt for 6 s
        is not 6 s of blocking)."""
        if self.onset_s is not None:
            if not self.alerted:
                self.unseen_s += max(0.0, now_s - self.last_seen_s)
            self.last_seen_s = max(self.last_seen_s, now_s)

    def over(self, now_s: float) -> bool:
        """Nothing present: True once the situation has been clear for `clear_s`. The caller
        builds its `end` (when `alerted`) and then calls `reset()`."""
        return self.onset_s is not None and now_s - self.last_seen_s >= self.clear_s

    def reset(self) -> None:
        self.onset_s = None
        self.unseen_s = 0.0
        self.alerted = False
