"""The garbage_pile rule as timelines of static regions (no video, time passed in)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from common.config import GarbagePileRuleConfig, ZoneConfig
from edge.rules.base import Observation, RuleOutput
from edge.rules.garbage_pile import GarbagePileRule
from edge.scene import StaticRegion
from edge.types import Box

ZONE = ZoneConfig(id="bin-point", polygon=[(0.2, 0.4), (0.8, 0.4), (0.8, 0.9), (0.2, 0.9)])
FPS = 5.0


def rule(**overrides: float) -> GarbagePileRule:
    params = {"dwell_s": 10.0, "clear_s": 5.0, "update_interval_s": 60.0, "min_area": 0.002}
    params.update(overrides)
    config = GarbagePileRuleConfig(id="no-dumping", type="garbage_pile", zone=ZONE.id, **params)
    return GarbagePileRule(config, ZONE)


def region(box: Box, since_s: float, zones: frozenset[str] = frozenset({ZONE.id})) -> StaticRegion:
    """A region as the scene model reports it; `zones`: those it lies in (the model decides)."""
    area = (box[2] - box[0]) * (box[3] - box[1])
    return StaticRegion(
        box=box, since_s=since_s, area=area, contrast=40.0, mask_fraction=0.8, zones=zones
    )


def run(
    pile_rule: GarbagePileRule, scene: Callable[[float], list[StaticRegion]], until_s: float
) -> list[RuleOutput]:
    outputs: list[RuleOutput] = []
    for i in range(int(until_s * FPS) + 1):
        now = i / FPS
        outputs.extend(pile_rule.update(Observation(now, (), tuple(scene(now)))))
    return outputs


BAGS = (0.45, 0.6, 0.55, 0.75)  # 1.5 % of the frame, centre in the zone


def test_a_pile_that_stays_raises_new_after_dwell_then_end_once_cleared() -> None:
    def scene(t: float) -> list[StaticRegion]:
        return [region(BAGS, 3.0)] if 3.0 <= t < 40.0 else []

    outputs = run(rule(), scene, 60.0)
    assert [(o.state, round(o.pts_s, 1)) for o in outputs] == [("new", 13.0), ("end", 44.8)]
    assert all(o.onset_s == 3.0 for o in outputs)
    assert outputs[0].box == BAGS and outputs[0].details["area"] == pytest.approx(0.015)


def test_a_pile_that_grows_markedly_sends_an_update() -> None:
    bigger = (0.35, 0.55, 0.7, 0.85)

    def scene(t: float) -> list[StaticRegion]:
        if t < 3.0:
            return []
        grown = [region(bigger, 25.0)] if t >= 25.0 else []
        return [region(BAGS, 3.0), *grown]

    outputs = run(rule(), scene, 40.0)
    assert [o.state for o in outputs] == ["new", "update"]
    update = outputs[1]
    assert update.pts_s == pytest.approx(25.0) and update.details["growth"] > 1.5
    assert update.onset_s == 3.0  # the same situation: the clock did not restart


def test_too_small_or_outside_the_zone_is_not_a_pile() -> None:
    crumb = (0.5, 0.6, 0.52, 0.62)  # 0.04 % of the frame
    outside = (0.85, 0.1, 0.99, 0.3)  # in another zone

    def scene(t: float) -> list[StaticRegion]:
        return [region(crumb, 1.0), region(outside, 1.0, frozenset({"road"}))] if t >= 1.0 else []

    assert run(rule(), scene, 40.0) == []


def test_a_short_gap_does_not_restart_the_clock() -> None:
    def scene(t: float) -> list[StaticRegion]:
        # hidden for 2 s (a person standing in front, masked) before the dwell is reached
        return [] if t < 3.0 or 8.0 <= t < 10.0 else [region(BAGS, 3.0 if t < 8.0 else 10.0)]

    outputs = run(rule(), scene, 20.0)
    assert [o.state for o in outputs] == ["new"]
    assert outputs[0].onset_s == 3.0 and outputs[0].pts_s == pytest.approx(13.0)


def test_updates_repeat_at_the_interval_while_the_pile_stays() -> None:
    def scene(t: float) -> list[StaticRegion]:
        return [region(BAGS, 0.0)]

    outputs = run(rule(update_interval_s=20.0), scene, 55.0)
    assert [(o.state, round(o.pts_s)) for o in outputs] == [
        ("new", 10),
        ("update", 30),
        ("update", 50),
    ]
