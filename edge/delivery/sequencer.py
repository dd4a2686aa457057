"""Turn rule outputs into event messages: ids and sequence numbers per situation (pure)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from common.events import Event, Evidence, ModelInfo
from edge.rules.base import RuleOutput


class EventSequencer:
    """Gives each situation of a rule one `event_id` and counts its messages (`seq`).

    A situation starts with `new` and ends with `end`; a later `new` of the same rule is a new
    situation with a new id.
    """

    def __init__(
        self,
        site_id: str,
        camera_id: str,
        rule_types: dict[str, str],
        model: ModelInfo | None,
        rule_models: dict[str, ModelInfo | None] | None = None,
    ) -> None:
        self.site_id = site_id
        self.camera_id = camera_id
        self._rule_types = rule_types
        self.model = model  # a roll-out may change it between messages
        self._rule_models = rule_models or {}  # rules that use a model of their own, or none
        self._open: dict[tuple[str, str], tuple[str, int]] = {}

    def next_id(self, output: RuleOutput) -> tuple[str, int]:
        """The (event_id, seq) the message for this output will carry, without consuming it."""
        key = (output.rule_id, str(output.details.get("situation", "")))
        if output.state == "new" or key not in self._open:
            return uuid.uuid4().hex, 0
        event_id, seq = self._open[key]
        return event_id, seq + 1

    def make(
        self,
        output: RuleOutput,
        observed_at: datetime,
        evidence: Sequence[Evidence] = (),
        ids: tuple[str, int] | None = None,
    ) -> Event:
        event_id, seq = ids if ids is not None else self.next_id(output)
        key = (output.rule_id, str(output.details.get("situation", "")))
        if output.state == "end":
            self._open.pop(key, None)
        else:
            self._open[key] = (event_id, seq)
        return Event(
            event_id=event_id,
            seq=seq,
            state=output.state,
            type=self._rule_types[output.rule_id],
            site_id=self.site_id,
            camera_id=self.camera_id,
            zone_id=output.zone_id,
            rule_id=output.rule_id,
            observed_at=observed_at.astimezone(UTC),
            pts_s=round(max(0.0, output.pts_s), 3),
            onset_pts_s=round(max(0.0, output.onset_s), 3),
            bbox=tuple(round(min(1.0, max(0.0, v)), 4) for v in output.box),
            score=round(min(1.0, max(0.0, output.score)), 3),
            details=output.details,
            model=self._rule_models.get(output.rule_id, self.model),
            evidence=list(evidence),
        )
