"""Garbage piles (垃圾堆放): something dumped in a zone where nothing should accumulate.

Works on the scene model's static regions: what newly appeared, stays, and is not a person or a
vehicle (those are masked by the detector). The pile is everything new inside the zone; it is
reported once it has stayed `dwell_s` and covers at least `min_area` of the frame, updated when
it grows markedly (or every `update_interval_s`), and ended once the zone has been back to its
reference for `clear_s`.
"""

from __future__ import annotations

from collections.abc import Sequence

from common.config import GarbagePileRuleConfig, ZoneConfig
from edge.rules.base import Observation, RuleOutput, State
from edge.rules.geometry import box_center, point_in_polygon, union_box
from edge.scene import StaticRegion

GROWTH_FOR_UPDATE = 0.5  # an update as soon as the pile covers this much more than when last sent


class GarbagePileRule:
    def __init__(self, config: GarbagePileRuleConfig, zone: ZoneConfig) -> None:
        self.config = config
        self.rule_id = config.id
        self.zone_id = zone.id
        self._polygon = [tuple(p) for p in zone.polygon]
        self._onset_s: float | None = None
        self._last_seen_s = float("-inf")
        self._alerted = False
        self._last_sent_s = float("-inf")
        self._sent_area = 0.0
        self._regions: list[StaticRegion] = []

    def pile(self, regions: Sequence[StaticRegion]) -> list[StaticRegion]:
        """The new regions whose centre lies in the zone."""
        return [r for r in regions if point_in_polygon(box_center(r.box), self._polygon)]  # type: ignore[arg-type]

    def update(self, observation: Observation) -> list[RuleOutput]:
        now = observation.pts_s
        regions = self.pile(observation.regions)
        area = sum(r.area for r in regions)
        if regions and area >= self.config.min_area:
            if self._onset_s is None or now - self._last_seen_s > self.config.clear_s:
                self._onset_s = min(r.since_s for r in regions)
            elif not self._alerted:
                self._onset_s = min(self._onset_s, *(r.since_s for r in regions))
            self._last_seen_s = now
            self._regions = regions
            return self._while_present(now, area)
        if self._onset_s is not None and now - self._last_seen_s >= self.config.clear_s:
            outputs = [self._output("end", now, self._sent_area)] if self._alerted else []
            self._onset_s, self._alerted, self._regions = None, False, []
            return outputs
        return []

    def _while_present(self, now: float, area: float) -> list[RuleOutput]:
        assert self._onset_s is not None  # noqa: S101
        if not self._alerted:
            if now - self._onset_s < self.config.dwell_s:
                return []
            self._alerted = True
            return [self._sent("new", now, area)]
        grown = area >= self._sent_area * (1.0 + GROWTH_FOR_UPDATE)
        if grown or now - self._last_sent_s >= self.config.update_interval_s:
            return [self._sent("update", now, area)]
        return []

    def _sent(self, state: State, now: float, area: float) -> RuleOutput:
        output = self._output(state, now, area)
        self._last_sent_s = now
        self._sent_area = area
        return output

    def _output(self, state: State, now: float, area: float) -> RuleOutput:
        assert self._onset_s is not None  # noqa: S101
        boxes = [r.box for r in self._regions]
        details = {
            "area": round(area, 5),
            "present_s": round(now - self._onset_s, 2),
            "dwell_s": self.config.dwell_s,
            "regions": [
                {"bbox": [round(v, 4) for v in r.box], "since_pts_s": round(r.since_s, 3)}
                for r in self._regions
            ],
        }
        if state == "update":
            details["growth"] = round(area / self._sent_area, 2) if self._sent_area else None
        if state == "end":
            details["cleared_pts_s"] = round(now, 3)
        return RuleOutput(
            rule_id=self.rule_id,
            zone_id=self.zone_id,
            state=state,
            onset_s=self._onset_s,
            pts_s=now,
            box=union_box(boxes),
            score=max(r.score for r in self._regions),
            details=details,
            highlight=tuple(boxes) if state != "end" else (),
        )
