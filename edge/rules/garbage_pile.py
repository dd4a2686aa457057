"""Garbage piles (垃圾堆放): something dumped in a zone where nothing should accumulate.

Works on the scene model's static regions: what newly appeared, stays, and is not a person or a
vehicle (those are masked by the detector). Regions in the zone that lie close together are one
heap (a bag torn in two by the light, bags dumped side by side); the pile is every heap that
covers at least `min_area` of the frame. It is reported once it has stayed `dwell_s`, updated
when it grows markedly (or every `update_interval_s`), and ended once the zone has been back to
its reference for `clear_s`.

Before the alert the camera's detector takes a second, closer look at the pile (a close-up of
the frame around it): a person, an animal or a vehicle too small for the full-frame detector
(someone standing far away in a crowd) holds the alert back until it has gone, and so does a
look that could not be had (a busy box). An analysis that has not seen enough of the zone
(`Observation.starved`) neither raises nor ends anything.

With a garbage detector configured (`classifier`), the model is asked what the pile holds when
the dwell has passed and at each update (`details.contents`: kind of waste, label, score); with
`require: true` the alert waits until the model finds waste there, asking every `recheck_s`.
"""

from __future__ import annotations

from collections.abc import Sequence

from common.config import GarbagePileRuleConfig, ZoneConfig
from edge.rules.base import CloseLook, Content, LookedAt, Observation, RuleOutput, Situation, State
from edge.rules.geometry import boxes_overlap, group_boxes, union_box
from edge.types import StaticRegion

GROWTH_FOR_UPDATE = 0.5  # an update once the pile covers this much more than when last sent...
GROWTH_HOLD_S = 2.0  # ...and has stayed that big this long (a passer-by's trail is no growth)
HEAP_MARGIN = 0.5  # regions this close (fraction of their size) are parts of one heap


class GarbagePileRule:
    def __init__(self, config: GarbagePileRuleConfig, zone: ZoneConfig) -> None:
        self.config = config
        self.rule_id = config.id
        self.zone_id = zone.id
        self._situation = Situation(config.dwell_s, config.clear_s, config.update_interval_s)
        self._sent_area = 0.0
        self._grown_since: float | None = None
        self._regions: list[StaticRegion] = []
        self._contents: tuple[Content, ...] = ()
        self._asked_s = float("-inf")
        self._look = CloseLook()

    def _forget(self) -> None:
        """The situation is over: what was learnt about its pile goes with it."""
        self._situation.reset()
        self._regions, self._grown_since = [], None
        self._contents, self._asked_s = (), float("-inf")
        self._look.forget()

    def pile(self, regions: Sequence[StaticRegion]) -> list[StaticRegion]:
        """The new regions in the zone (as the scene model places them) that belong to a heap
        of at least `min_area`."""
        mine = [r for r in regions if self.zone_id in r.zones]
        heaps = group_boxes([r.box for r in mine], HEAP_MARGIN)
        return [
            mine[i]
            for heap in heaps
            if sum(mine[i].area for i in heap) >= self.config.min_area
            for i in heap
        ]

    def update(self, observation: Observation) -> list[RuleOutput]:
        now = observation.pts_s
        if observation.blind or observation.starved:
            # a fade to black is no clearing; an analysis that has not seen enough of the zone
            # (a busy box) neither raises nor ends anything
            self._situation.hold(now)
            return []
        regions = self.pile(observation.regions)
        area = sum(r.area for r in regions)
        if regions:
            if not self._situation.alerted and not _same_place(regions, self._regions):
                self._situation.reset()  # a speck that came and went elsewhere lends no time
            self._regions = regions
            since = min(r.since_s for r in regions)
            state = self._situation.seen(now, since, lambda: self._confirmed(observation))
            if area < self._sent_area * (1.0 + GROWTH_FOR_UPDATE):
                self._grown_since = None
            elif self._grown_since is None:
                self._grown_since = now
            grown = self._grown_since is not None and now - self._grown_since >= GROWTH_HOLD_S
            if state is None and self._situation.alerted and grown:
                self._situation.last_sent_s = now
                state = "update"
            if state is None:
                return []
            if state == "update":
                self._ask(observation)
            output = self._output(state, now, area)
            self._sent_area, self._grown_since = area, None
            return [output]
        if self._situation.over(now):
            alerted = self._situation.alerted
            outputs = [self._output("end", now, self._sent_area)] if alerted else []
            self._forget()
            return outputs
        return []

    def _confirmed(self, observation: Observation) -> bool:
        """Asked once the dwell has passed: may the alert go out? Not while a close look finds
        a person, an animal or a vehicle on the pile. Then, without a garbage model, yes; with
        one, it classifies the pile, and with `require` holds the alert until it finds waste."""
        if self._occupied(observation):
            return False
        classifier = self.config.classifier
        if classifier is None or observation.classify is None:
            return True
        if observation.pts_s - self._asked_s >= classifier.recheck_s:
            self._ask(observation)
        return bool(self._contents) or not classifier.require

    def _occupied(self, observation: Observation) -> bool:
        """Does the camera's detector, looking closer, find someone or something that moves by
        itself where the pile is?"""
        return self._look.occupied(
            observation, [LookedAt(r.box, r.area, r.cut) for r in self._regions]
        )

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


def _same_place(regions: Sequence[StaticRegion], before: Sequence[StaticRegion]) -> bool:
    """Do these regions lie where the pile seen before lay (overlapping it)?"""
    if not before:
        return False
    return boxes_overlap(union_box([r.box for r in regions]), union_box([r.box for r in before]))
