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
