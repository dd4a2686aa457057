"""The garbage_pile rule as timelines of static regions (no video, time passed in)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from common.config import GarbagePileRuleConfig, ZoneConfig
from edge.rules.base import LOOK_AGAIN_S, Observation, RuleOutput
from edge.rules.garbage_pile import GROWTH_HOLD_S, GarbagePileRule
from edge.types import Box, Detection, StaticRegion

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
    # once the growth has held for GROWTH_HOLD_S
    assert update.pts_s == pytest.approx(25.0 + GROWTH_HOLD_S) and update.details["growth"] > 1.5
    assert update.onset_s == 3.0  # the same situation: the clock did not restart


def test_a_pile_that_looks_bigger_for_a_moment_sends_no_update() -> None:
    """Something passing over a pile leaves a trail in the short-term average for a moment."""
    bigger = (0.35, 0.55, 0.7, 0.85)

    def scene(t: float) -> list[StaticRegion]:
        if t < 3.0:
            return []
        trail = [region(bigger, 20.0)] if 20.0 <= t < 20.0 + GROWTH_HOLD_S * 0.8 else []
        return [region(BAGS, 3.0), *trail]

    assert [o.state for o in run(rule(), scene, 40.0)] == ["new"]


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
    # the clock goes on from 3 s; the 2 s nothing was seen there do not count towards the dwell
    assert outputs[0].onset_s == 3.0 and outputs[0].pts_s == pytest.approx(15.0, abs=0.25)


def test_updates_repeat_at_the_interval_while_the_pile_stays() -> None:
    def scene(t: float) -> list[StaticRegion]:
        return [region(BAGS, 0.0)]

    outputs = run(rule(update_interval_s=20.0), scene, 55.0)
    assert [(o.state, round(o.pts_s)) for o in outputs] == [
        ("new", 10),
        ("update", 30),
        ("update", 50),
    ]


# Heaps: what counts as a pile -------------------------------------------------------------


def test_fragments_of_one_heap_add_up_to_a_pile() -> None:
    """A bag the light tears into three small regions is one heap of 0.0006 (min_area
    0.0005); the same specks scattered over the zone are no pile."""
    close = [(0.40, 0.60, 0.41, 0.62), (0.412, 0.60, 0.422, 0.62), (0.424, 0.60, 0.434, 0.62)]
    scattered = [(0.25, 0.45, 0.26, 0.47), (0.50, 0.70, 0.51, 0.72), (0.70, 0.80, 0.71, 0.82)]

    def scene(boxes: list[Box]) -> Callable[[float], list[StaticRegion]]:
        return lambda t: [region(b, 2.0) for b in boxes] if t >= 2.0 else []

    piles = run(rule(min_area=0.0005), scene(close), 20.0)
    assert [o.state for o in piles] == ["new"]
    assert piles[0].details["area"] == pytest.approx(0.0006)
    assert run(rule(min_area=0.0005), scene(scattered), 20.0) == []


def test_a_speck_that_came_and_went_elsewhere_lends_the_pile_no_time() -> None:
    """Something seen briefly at one spot, then a pile at another: the pile's clock starts
    with the pile (its own since), not with the speck."""
    speck, pile = (0.25, 0.45, 0.30, 0.55), BAGS

    def scene(t: float) -> list[StaticRegion]:
        if 1.0 <= t < 2.0:
            return [region(speck, 1.0)]
        return [region(pile, 4.0)] if t >= 4.0 else []

    outputs = run(rule(), scene, 20.0)
    assert [(o.state, round(o.pts_s, 1), o.onset_s) for o in outputs] == [("new", 14.0, 4.0)]


# A closer look before the alert -------------------------------------------------------------


class CloseLook:
    """An inspector answering from a script of what the close look finds at each time, and
    recording when it was asked."""

    def __init__(self, found: Callable[[float], list[Detection]]) -> None:
        self.found = found
        self.now = 0.0
        self.asked: list[float] = []

    def __call__(self, box: Box) -> list[Detection]:
        self.asked.append(self.now)
        return self.found(self.now)


def run_looking(
    pile_rule: GarbagePileRule,
    scene: Callable[[float], list[StaticRegion]],
    found: Callable[[float], list[Detection]],
    until_s: float,
) -> tuple[list[RuleOutput], list[float]]:
    look = CloseLook(found)
    outputs: list[RuleOutput] = []
    for i in range(int(until_s * FPS) + 1):
        look.now = i / FPS
        observation = Observation(look.now, (), tuple(scene(look.now)), inspect=look)
        outputs.extend(pile_rule.update(observation))
    return outputs, look.asked


def person(box: Box, score: float = 0.8) -> Detection:
    return Detection(label="person", class_id=0, score=score, box=box)


def test_a_person_the_close_look_finds_on_the_pile_holds_the_alert_until_they_go() -> None:
    """Someone standing far away (a crowd's edge), too small for the full-frame detector: the
    close look finds them where the 'pile' is, and the alert waits; they leave, the scene's
    region goes with them, nothing is raised. A real pile with nobody on it goes out."""

    def standing(t: float) -> list[StaticRegion]:
        return [region(BAGS, 1.0)] if 1.0 <= t < 30.0 else []

    def someone(t: float) -> list[Detection]:
        return [person((0.44, 0.55, 0.56, 0.76))]

    outputs, asked = run_looking(rule(), standing, someone, 40.0)
    assert outputs == []
    # looked once the dwell had passed, then again every LOOK_AGAIN_S while held
    assert asked[0] == pytest.approx(11.0)
    assert all(b - a == pytest.approx(LOOK_AGAIN_S) for a, b in itertools.pairwise(asked))

    def bag_only(t: float) -> list[Detection]:
        return [Detection(label="backpack", class_id=24, score=0.4, box=BAGS)]

    outputs, asked = run_looking(rule(), standing, bag_only, 40.0)
    assert [o.state for o in outputs] == ["new", "end"]
    assert outputs[0].pts_s == pytest.approx(11.0)
    assert asked == [pytest.approx(11.0)]


def test_the_alert_goes_once_the_person_beside_the_pile_has_left() -> None:
    """The one who dumped it lingers beside the bags; the close look sees them over the
    pile until 16 s; the alert follows at the next look, with the pile's own onset."""

    def bags(t: float) -> list[StaticRegion]:
        return [region(BAGS, 3.0)] if t >= 3.0 else []

    def lingering(t: float) -> list[Detection]:
        return [person((0.40, 0.50, 0.52, 0.80))] if t < 16.0 else []

    outputs, _ = run_looking(rule(), bags, lingering, 25.0)
    assert [(o.state, round(o.pts_s, 1), o.onset_s) for o in outputs] == [("new", 17.0, 3.0)]


def test_a_person_beside_the_pile_who_hardly_covers_it_does_not_hold_it() -> None:
    def bags(t: float) -> list[StaticRegion]:
        return [region(BAGS, 3.0)] if t >= 3.0 else []

    def beside(t: float) -> list[Detection]:
        return [person((0.53, 0.40, 0.70, 0.80))]  # covers a fifth of the bags' box

    outputs, _ = run_looking(rule(), bags, beside, 20.0)
    assert [o.state for o in outputs] == ["new"]
