"""What rules receive and return: pure values, time passed in (stream seconds)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from edge.scene import StaticRegion
from edge.types import Box, TrackedObject

State = Literal["new", "update", "end"]


@dataclass(frozen=True, slots=True)
class Observation:
    """Everything the analysis knows about one analysed frame."""

    pts_s: float
    tracks: Sequence[TrackedObject] = ()
    regions: Sequence[StaticRegion] = ()
    detector_ran: bool = True
    moving: frozenset[int] = frozenset()  # track ids whose pixels keep changing (in motion)


@dataclass(frozen=True, slots=True)
class RuleOutput:
    """A rule's decision for one situation; `edge.events` turns it into an event message."""

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


class Situation:
    """The life of one situation of a rule, judged on presence over time (time passed in).

    Its clock starts at the `since` of what is present and keeps running through absences
    shorter than `clear_s`; `new` once present for `dwell_s`; `update` every
    `update_interval_s` after that; over once absent for `clear_s`.
    """

    def __init__(self, dwell_s: float, clear_s: float, update_interval_s: float) -> None:
        self.dwell_s = dwell_s
        self.clear_s = clear_s
        self.update_interval_s = update_interval_s
        self.onset_s: float | None = None
        self.last_seen_s = float("-inf")
        self.alerted = False
        self.last_sent_s = float("-inf")

    def seen(self, now_s: float, since_s: float) -> State | None:
        """Something is present (since `since_s`): the message due now, if any."""
        if self.onset_s is None or now_s - self.last_seen_s > self.clear_s:
            self.onset_s = since_s
        elif not self.alerted:
            self.onset_s = min(self.onset_s, since_s)
        self.last_seen_s = now_s
        if not self.alerted:
            if now_s - self.onset_s < self.dwell_s:
                return None
            self.alerted = True
            self.last_sent_s = now_s
            return "new"
        if now_s - self.last_sent_s >= self.update_interval_s:
            self.last_sent_s = now_s
            return "update"
        return None

    def over(self, now_s: float) -> bool:
        """Nothing present: True once the situation has been clear for `clear_s`. The caller
        builds its `end` (when `alerted`) and then calls `reset()`."""
        return self.onset_s is not None and now_s - self.last_seen_s >= self.clear_s

    def reset(self) -> None:
        self.onset_s = None
        self.alerted = False
