"""Garbage piles (垃圾堆放): something dumped in a zone where nothing should accumulate.

Works on the scene model's static regions: what newly appeared, stays, and is not a person or a
vehicle (those are masked by the detector). The pile is everything new inside the zone; it is
reported once it has stayed `dwell_s` and covers at least `min_area` of the frame, updated when
it grows markedly (or every `update_interval_s`), and ended once the zone has been back to its
reference for `clear_s`.

With a garbage detector configured (`classifier`), the model is asked what the pile holds when
the dwell has passed and at each update (`details.contents`: kind of waste, label, score); with
`require: true` the alert waits until the model finds waste there, asking every `recheck_s`.
"""

from __future__ import annotations

from collections.abc import Sequence

from common.config import GarbagePileRuleConfig, ZoneConfig
from edge.rules.base import Content, Observation, RuleOutput, Situation, State
from edge.rules.geometry import box_center, point_in_polygon, union_box
from edge.scene import StaticRegion

GROWTH_FOR_UPDATE = 0.5  # an update as soon as the pile covers this much more than when last sent


class GarbagePileRule:
    def __init__(self, config: GarbagePileRuleConfig, zone: ZoneConfig) -> None:
        self.config = config
        self.rule_id = config.id
        self.zone_id = zone.id
        self._polygon = [tuple(p) for p in zone.polygon]
        self._situation = Situation(config.dwell_s, config.clear_s, config.update_interval_s)
        self._sent_area = 0.0
        self._regions: list[StaticRegion] = []
        self._contents: tuple[Content, ...] = ()
        self._asked_s = float("-inf")

    def pile(self, regions: Sequence[StaticRegion]) -> list[StaticRegion]:
        """The new regions whose centre lies in the zone."""
        return [r for r in regions if point_in_polygon(box_center(r.box), self._polygon)]  # type: ignore[arg-type]

    def update(self, observation: Observation) -> list[RuleOutput]:
        now = observation.pts_s
        regions = self.pile(observation.regions)
        area = sum(r.area for r in regions)
        if regions and area >= self.config.min_area:
            self._regions = regions
            since = min(r.since_s for r in regions)
            state = self._situation.seen(now, since, lambda: self._confirmed(observation))
            grown = area >= self._sent_area * (1.0 + GROWTH_FOR_UPDATE)
            if state is None and self._situation.alerted and grown:
                self._situation.last_sent_s = now
                state = "update"
            if state is None:
                return []
            if state == "update":
                self._ask(observation)
            output = self._output(state, now, area)
            self._sent_area = area
            return [output]
        if self._situation.over(now):
            alerted = self._situation.alerted
            outputs = [self._output("end", now, self._sent_area)] if alerted else []
            self._situation.reset()
            self._regions = []
            self._contents, self._asked_s = (), float("-inf")
            return outputs
        return []

    def _confirmed(self, observation: Observation) -> bool:
        """Asked once the dwell has passed: may the alert go out? Without a model, yes; with
        one, it classifies the pile, and with `require` holds the alert until it finds waste."""
        classifier = self.config.classifier
        if classifier is None or observation.classify is None:
            return True
        if observation.pts_s - self._asked_s >= classifier.recheck_s:
            self._ask(observation)
        return bool(self._contents) or not classifier.require

    def _ask(self, observation: Observation) -> None:
        if self.config.classifier is None or observation.classify is None:
            return
        self._asked_s = observation.pts_s
        box = union_box([r.box for r in self._regions])
        self._contents = tuple(observation.classify(box, self.config.classifier))

    def _output(self, state: State, now: float, area: float) -> RuleOutput:
        onset = self._situation.onset_s
        assert onset is not None  # noqa: S101
        boxes = [r.box for r in self._regions]
        details = {
            "area": round(area, 5),
            "present_s": round(now - onset, 2),
            "dwell_s": self.config.dwell_s,
            "regions": [
                {"bbox": [round(v, 4) for v in r.box], "since_pts_s": round(r.since_s, 3)}
                for r in self._regions
            ],
        }
        if self.config.classifier is not None and state != "end":
            details["contents"] = [
                {
                    "kind": c.kind,
                    "label": c.label,
                    "score": round(c.score, 3),
                    "bbox": [round(v, 4) for v in c.box],
                }
                for c in self._contents
            ]
            details["classified_by"] = self.config.classifier.model
        if state == "update":
            details["growth"] = round(area / self._sent_area, 2) if self._sent_area else None
        if state == "end":
            details["cleared_pts_s"] = round(now, 3)
        return RuleOutput(
            rule_id=self.rule_id,
            zone_id=self.zone_id,
            state=state,
            onset_s=onset,
            pts_s=now,
            box=union_box(boxes),
            score=max(r.score for r in self._regions),
            details=details,
            highlight=tuple(boxes) if state != "end" else (),
        )
