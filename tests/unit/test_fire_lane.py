"""The fire-lane rule as timelines of observations: time is passed in, no video."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from common.config import DEFAULT_MIN_OBJECT_AREA, FireLaneRuleConfig, ZoneConfig
from edge.rules.base import LOOK_AGAIN_S, Inspector, Observation, RuleOutput
from edge.rules.fire_lane import FireLaneRule, RestClock
from edge.types import Box, Detection, StaticRegion, TrackedObject

FPS = 5.0
LANE = ZoneConfig(id="lane", polygon=[(0.2, 0.5), (0.8, 0.5), (0.8, 1.0), (0.2, 1.0)])
PARKED: Box = (0.4, 0.6, 0.6, 0.8)  # ground point (0.5, 0.8): in the lane
BAG: Box = (0.3, 0.85, 0.38, 0.95)  # area 0.008, ground point in the lane

Seen = tuple[list[TrackedObject], list[StaticRegion]]  # what one analysed frame shows
Scene = Callable[[float], Seen]


def rule(zone: ZoneConfig = LANE, **overrides: Any) -> FireLaneRule:
    settings: dict[str, Any] = {
        "id": "lane-blocked",
        "type": "fire_lane",
        "zone": "lane",
        "dwell_s": 10.0,
        "clear_s": 8.0,
        "update_interval_s": 20.0,
        "rest_s": 3.0,
    }
    settings.update(overrides)
    return FireLaneRule(FireLaneRuleConfig(**settings), zone)


def vehicle(box: Box, track_id: int = 1, label: str = "car", score: float = 0.9) -> TrackedObject:
    return TrackedObject(track_id=track_id, label=label, score=score, box=box, first_seen_s=0.0)


def region(
    box: Box = BAG,
    since_s: float = 2.0,
    area: float | None = None,
    zones: frozenset[str] = frozenset({LANE.id}),
    cut: bool = False,
) -> StaticRegion:
    """A left-object region as the scene model reports it, in the zones it lies in."""
    if area is None:
        area = (box[2] - box[0]) * (box[3] - box[1])
    return StaticRegion(
        box=box,
        since_s=since_s,
        area=area,
        contrast=40.0,
        mask_fraction=0.9,
        zones=zones,
        cut=cut,
    )


def run(
    lane_rule: FireLaneRule,
    scene: Scene,
    until_s: float,
    fps: float = FPS,
    *,
    starved: Callable[[float], bool] | None = None,
    inspect: Inspector | None = None,
    blind: Callable[[float], bool] | None = None,
) -> list[RuleOutput]:
    """Feed the rule one observation per analysed frame from 0 to `until_s`; the analyses
    for which `starved(t)` holds arrive after a gap the analysis did not see (`unseen_s` past
    the limit), those for which `blind(t)` holds cannot be judged (the scene model re-learns
    the light); `inspect` is the camera's close look."""
    outputs: list[RuleOutput] = []
    for index in range(round(until_s * fps) + 1):
        now = index / fps
        tracks, regions = scene(now)
        unseen = 2.0 if starved is not None and starved(now) else 0.0
        observation = Observation(
            now,
            tuple(tracks),
            tuple(regions),
            inspect=inspect,
            unseen_s=unseen,
            blind=blind is not None and blind(now),
        )
        outputs.extend(lane_rule.update(observation))
    return outputs


def states(outputs: Sequence[RuleOutput]) -> list[str]:
    return [out.state for out in outputs]


def shifted(box: Box, dx: float) -> Box:
    return (box[0] + dx, box[1], box[2] + dx, box[3])


def arriving_car(stop_s: float, step: float = 0.1, track_id: int = 1) -> Callable[[float], Box]:
    """A car driving in from the left at `step` per frame that stops at PARKED at `stop_s`."""

    def box_at(t: float) -> Box:
        frames_to_go = max(0.0, (stop_s - t) * FPS)
        return shifted(PARKED, -step * frames_to_go)

    return box_at


def parked_from(stop_s: float, leave_s: float = float("inf")) -> Scene:
    box_at = arriving_car(stop_s)

    def scene(t: float) -> Seen:
        if t < stop_s - 2.0 or t >= leave_s:
            return [], []
        return [vehicle(box_at(t))], []

    return scene


# Vehicles at rest ----------------------------------------------------------------------------


def test_a_car_at_rest_in_the_lane_raises_one_new_after_dwell() -> None:
    outputs = run(rule(), parked_from(stop_s=5.0), until_s=30.0)
    assert states(outputs) == ["new"]
    (alert,) = outputs
    assert alert.onset_s == pytest.approx(5.0)
    assert alert.pts_s == pytest.approx(15.0)
    assert alert.rule_id == "lane-blocked" and alert.zone_id == "lane"
    assert alert.box == pytest.approx(PARKED)
    assert alert.highlight == (alert.box,)
    assert alert.details["blocked_s"] == pytest.approx(10.0)
    (blocker,) = alert.details["blockers"]
    assert (blocker["kind"], blocker["label"]) == ("vehicle", "car")
    assert blocker["since_pts_s"] == pytest.approx(5.0)


@pytest.mark.parametrize("dwell_s", [4.0, 10.0, 25.0])
def test_the_alert_waits_for_dwell_counted_from_the_stop(dwell_s: float) -> None:
    outputs = run(rule(dwell_s=dwell_s, update_interval_s=100.0), parked_from(5.0), until_s=40.0)
    assert states(outputs) == ["new"]
    # the car counts as a blocker only after rest_s; the alert never comes before that
    assert outputs[0].pts_s == pytest.approx(5.0 + max(dwell_s, 3.0))
    assert outputs[0].onset_s == pytest.approx(5.0)


@pytest.mark.parametrize("label", ["car", "truck", "bus", "motorcycle", "e-bike"])
def test_every_vehicle_class_blocks(label: str) -> None:
    def scene(t: float) -> Seen:
        return [vehicle(PARKED, label=label)], []

    assert states(run(rule(), scene, until_s=12.0)) == ["new"]


@pytest.mark.parametrize("step", [0.02, 0.05, 0.1])
def test_traffic_driving_through_the_lane_never_raises(step: float) -> None:
    crossing_s = 1.4 / (step * FPS)  # from x1 = -0.3 to x1 = 1.1

    def scene(t: float) -> Seen:
        lap, into = divmod(t, crossing_s)
        return [vehicle(shifted(PARKED, -0.7 + step * FPS * into), track_id=int(lap) + 1)], []

    assert run(rule(), scene, until_s=60.0) == []


def test_a_person_standing_in_the_lane_never_raises() -> None:
    def scene(t: float) -> Seen:
        return [vehicle((0.45, 0.5, 0.52, 0.9), label="person")], []

    assert run(rule(), scene, until_s=60.0) == []


def test_a_car_parked_beside_the_lane_never_raises_even_if_its_box_overlaps() -> None:
    beside: Box = (0.0, 0.5, 0.3, 0.9)  # ground point (0.15, 0.9): left of the lane

    def scene(t: float) -> Seen:
        return [vehicle(beside)], []

    assert run(rule(), scene, until_s=60.0) == []


def test_a_car_parked_in_front_of_the_lane_never_raises() -> None:
    above: Box = (0.3, 0.2, 0.7, 0.48)  # stands above the lane's far edge

    def scene(t: float) -> Seen:
        return [vehicle(above)], []

    assert run(rule(), scene, until_s=60.0) == []


@pytest.mark.parametrize(("score", "raises"), [(0.2, False), (0.34, False), (0.35, True)])
def test_low_score_vehicles_are_ignored(score: float, raises: bool) -> None:
    def scene(t: float) -> Seen:
        return [vehicle(PARKED, score=score)], []

    assert states(run(rule(), scene, until_s=20.0)) == (["new"] if raises else [])


def test_a_class_left_out_of_vehicle_classes_does_not_block() -> None:
    def scene(t: float) -> Seen:
        return [vehicle(PARKED, label="truck")], []

    assert run(rule(vehicle_classes=("car",)), scene, until_s=30.0) == []


def test_a_detected_object_class_blocks_as_an_object() -> None:
    def scene(t: float) -> Seen:
        return [vehicle(BAG, label="suitcase", score=0.6)], []

    (alert,) = run(rule(detect_left_objects=False), scene, until_s=20.0)
    assert alert.details["blockers"][0]["kind"] == "object"
    assert alert.details["blockers"][0]["label"] == "suitcase"


# Gaps, id switches, updates and the end ----------------------------------------------------


def test_an_id_switch_does_not_restart_the_clock() -> None:
    def scene(t: float) -> Seen:
        return [vehicle(PARKED, track_id=1 if t < 8.0 else 2)], []

    outputs = run(rule(), scene, until_s=30.0)
    assert states(outputs) == ["new"]
    assert outputs[0].onset_s == pytest.approx(0.0)


@pytest.mark.parametrize("gap_s", [0.2, 1.0, 3.0])
def test_a_short_gap_in_detections_does_not_restart_the_clock(gap_s: float) -> None:
    def scene(t: float) -> Seen:
        missed = 8.0 <= t < 8.0 + gap_s
        return ([] if missed else [vehicle(PARKED)]), []

    outputs = run(rule(update_interval_s=100.0), scene, until_s=40.0)
    assert states(outputs) == ["new"]
    assert outputs[0].onset_s == pytest.approx(0.0)


@pytest.mark.parametrize("gap_s", [0.2, 3.0])
def test_a_short_gap_after_the_alert_sends_no_end(gap_s: float) -> None:
    def scene(t: float) -> Seen:
        missed = 12.0 <= t < 12.0 + gap_s
        return ([] if missed else [vehicle(PARKED)]), []

    outputs = run(rule(update_interval_s=100.0), scene, until_s=40.0)
    assert states(outputs) == ["new"]


def test_a_gap_just_shorter_than_clear_s_does_not_end_the_situation() -> None:
    def scene(t: float) -> Seen:
        missed = 12.0 <= t < 18.0  # 6 s gap, clear_s 8 s
        return ([] if missed else [vehicle(PARKED)]), []

    outputs = run(rule(update_interval_s=100.0), scene, until_s=40.0)
    assert states(outputs) == ["new"]


def test_updates_come_every_update_interval_while_blocked() -> None:
    outputs = run(rule(update_interval_s=7.0), parked_from(stop_s=5.0), until_s=40.0)
    assert states(outputs) == ["new", "update", "update", "update"]
    assert [out.pts_s for out in outputs] == pytest.approx([15.0, 22.0, 29.0, 36.0])
    assert [out.onset_s for out in outputs] == pytest.approx([5.0] * 4)
    assert outputs[-1].details["blocked_s"] == pytest.approx(31.0)


def test_end_after_clear_s_then_a_new_blockage_is_a_new_situation() -> None:
    first = parked_from(stop_s=5.0, leave_s=20.0)
    second = parked_from(stop_s=40.0)

    def scene(t: float) -> Seen:
        return first(t) if t < 30.0 else second(t)

    outputs = run(rule(), scene, until_s=60.0)
    assert states(outputs) == ["new", "end", "new"]
    new, end, again = outputs
    assert new.onset_s == pytest.approx(5.0)
    assert end.pts_s == pytest.approx(19.8 + 8.0, abs=0.21)
    assert end.details["last_blocked_pts_s"] == pytest.approx(19.8)
    assert end.highlight == ()
    assert again.onset_s == pytest.approx(40.0)
    assert again.pts_s == pytest.approx(50.0)


def test_no_end_before_clear_s() -> None:
    outputs = run(rule(clear_s=8.0), parked_from(stop_s=5.0, leave_s=20.0), until_s=27.6)
    assert states(outputs) == ["new"]


def test_a_blockage_that_clears_before_dwell_raises_nothing() -> None:
    outputs = run(rule(), parked_from(stop_s=5.0, leave_s=12.0), until_s=40.0)
    assert outputs == []


# How large a left object must be: metres on a lane of known width, else a share of the frame

LANE_4M = LANE.model_copy(update={"lane_width_m": 4.0})  # 0.6 of the frame wide: 0.15 a metre


def bag(width: float, area: float) -> StaticRegion:
    """A region `width` of the frame wide (its foot in the lane), covering `area` of it."""
    return region(box=(0.45, 0.85, 0.45 + width, 0.95), area=area)


@pytest.mark.parametrize(
    ("zone", "found", "overrides", "reported"),
    [
        # no lane width: the share of the frame decides
        (LANE, bag(0.02, 1.2 * DEFAULT_MIN_OBJECT_AREA), {}, True),
        (LANE, bag(0.2, 0.8 * DEFAULT_MIN_OBJECT_AREA), {}, False),
        (LANE, bag(0.02, 0.0018), {"min_object_area": 0.002}, False),
        # a 4 m lane: the object's width across it, 0.3 m by default
        (LANE_4M, bag(0.06, 0.0003), {}, True),  # 0.4 m, however few pixels it covers
        (LANE_4M, bag(0.03, 0.0030), {}, False),  # 0.2 m, however many
        (LANE_4M, bag(0.06, 0.0030), {"min_object_size_m": 0.5}, False),  # 0.4 m < 0.5 m
        (LANE_4M, bag(0.09, 0.0030), {"min_object_size_m": 0.5}, True),  # 0.6 m
        # a share of the frame set on the rule wins over the zone's width
        (LANE_4M, bag(0.06, 0.0003), {"min_object_area": 0.001}, False),
        (LANE_4M, bag(0.03, 0.0030), {"min_object_area": 0.001}, True),
    ],
)
def test_the_size_that_blocks_the_lane(
    zone: ZoneConfig, found: StaticRegion, overrides: dict[str, Any], reported: bool
) -> None:
    def scene(t: float) -> Seen:
        return [], [found]

    outputs = run(rule(zone, **overrides), scene, until_s=30.0)
    assert states(outputs) == (["new"] if reported else [])


def test_the_same_object_is_the_same_size_near_and_far() -> None:
    """On a lane narrowing with perspective, a 0.4 m bag far away covers a quarter of the
    pixels it covers near by: in metres it is the same bag, and both are reported."""
    lane = ZoneConfig(
        id="lane", polygon=[(0.4, 0.2), (0.6, 0.2), (0.9, 1.0), (0.1, 1.0)], lane_width_m=4.0
    )
    near = region(box=(0.46, 0.9, 0.54, 1.0), zones=frozenset({"lane"}))  # row 0.8 wide
    far = region(box=(0.49, 0.17, 0.51, 0.2), zones=frozenset({"lane"}))  # row 0.2 wide
    for found in (near, far):

        def scene(t: float, found: StaticRegion = found) -> Seen:
            return [], [found]

        assert states(run(rule(lane), scene, until_s=30.0)) == ["new"]
        assert states(run(rule(lane, min_object_size_m=0.5), scene, until_s=30.0)) == []


# Objects left in the lane, from the scene model ----------------------------------------------


def test_a_static_region_in_the_lane_raises_with_its_since() -> None:
    def scene(t: float) -> Seen:
        return [], ([region(since_s=2.4)] if t >= 4.0 else [])

    outputs = run(rule(), scene, until_s=30.0)
    assert states(outputs) == ["new"]
    assert outputs[0].onset_s == pytest.approx(2.4)
    assert outputs[0].pts_s == pytest.approx(12.4)
    assert outputs[0].box == BAG
    (blocker,) = outputs[0].details["blockers"]
    assert blocker["kind"] == "object"


@pytest.mark.parametrize(
    ("found", "overrides"),
    [
        (region(area=0.9 * DEFAULT_MIN_OBJECT_AREA), {}),  # smaller than the default share
        (region(area=0.02), {"min_object_area": 0.05}),
        (region(box=(0.0, 0.6, 0.1, 0.7), zones=frozenset()), {}),  # outside the lane
        (region(), {"detect_left_objects": False}),
    ],
)
def test_regions_that_do_not_count(found: StaticRegion, overrides: dict[str, Any]) -> None:
    def scene(t: float) -> Seen:
        return [], [found]

    assert run(rule(**overrides), scene, until_s=30.0) == []


def test_a_region_on_a_resting_vehicle_is_not_counted_twice() -> None:
    car = parked_from(stop_s=5.0)

    def scene(t: float) -> Seen:
        tracks, _ = car(t)
        regions = [region(box=(0.41, 0.62, 0.6, 0.8), since_s=6.0)] if t >= 8.0 else []
        return tracks, regions

    (alert,) = run(rule(), scene, until_s=20.0)
    (blocker,) = alert.details["blockers"]
    assert blocker["kind"] == "vehicle"


def test_a_region_and_a_separate_vehicle_are_both_blockers() -> None:
    car = parked_from(stop_s=5.0)

    def scene(t: float) -> Seen:
        tracks, _ = car(t)
        return tracks, [region(since_s=7.0)] if t >= 9.0 else []

    (alert,) = run(rule(), scene, until_s=20.0)
    kinds = [b["kind"] for b in alert.details["blockers"]]
    assert kinds == ["vehicle", "object"]  # sorted by since
    assert alert.onset_s == pytest.approx(5.0)
    assert len(alert.highlight) == 2


# The rest clock ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moves", "rest_since"),
    [
        ([0.0, 0.0, 0.0, 0.0], 0.0),  # never moved
        ([0.0, 0.1, 0.2, 0.2], 2.0),  # stopped at t = 2
        ([0.0, 0.01, 0.02, 0.03], 0.0),  # creeping within tolerance
        ([0.0, 0.1, 0.2, 0.3], 3.0),  # still moving
    ],
)
def test_rest_clock(moves: list[float], rest_since: float) -> None:
    clock = RestClock(tolerance=0.25, keep_s=10.0)
    result: dict[int, float] = {}
    for t, dx in enumerate(moves):
        result = clock.update([vehicle(shifted(PARKED, dx))], float(t))
    assert result == {1: rest_since}


def test_rest_clock_goes_on_through_an_id_switch_on_the_same_spot() -> None:
    clock = RestClock(tolerance=0.25, keep_s=10.0)
    box = (0.4, 0.4, 0.5, 0.6)
    for t in range(5):
        clock.update([TrackedObject(1, "car", 0.9, box, 0.0)], float(t))
    clock.update([], 5.0)  # a missed detection
    since = clock.update([TrackedObject(7, "car", 0.9, box, 6.0)], 6.0)
    assert since == {7: 0.0}


def test_rest_clock_forgets_a_track_lost_for_longer_than_keep_s() -> None:
    clock = RestClock(tolerance=0.25, keep_s=3.0)
    box = (0.4, 0.4, 0.5, 0.6)
    for t in range(3):
        clock.update([TrackedObject(1, "car", 0.9, box, 0.0)], float(t))
    for t in range(3, 8):
        clock.update([], float(t))
    assert clock.update([TrackedObject(1, "car", 0.9, box, 8.0)], 8.0) == {1: 8.0}


# A busy box: analyses too sparse to judge ------------------------------------------------------


def test_traffic_sampled_too_sparsely_to_judge_never_raises_an_alert() -> None:
    # a different car on the same spot at every analysis the starved box manages to make: to
    # a rest clock it looks parked, but none of those analyses saw what happened in between
    def traffic(t: float) -> Seen:
        return [vehicle(PARKED, track_id=1 + int(t))], []

    outputs = run(rule(), traffic, until_s=60.0, starved=lambda _t: True)
    assert outputs == []


def test_the_dwell_starts_again_after_starvation_before_an_alert() -> None:
    # parked from 5 s; every analysis from 8 to 11.8 s follows a gap: the clock restarts at
    # the last of them (what it saw is true of its moment, not of the time before it)
    outputs = run(rule(), parked_from(stop_s=5.0), until_s=40.0, starved=lambda t: 8.0 <= t < 12.0)
    assert states(outputs) == ["new"]
    assert outputs[0].onset_s == pytest.approx(11.8)
    assert outputs[0].pts_s == pytest.approx(11.8 + 10.0)  # the whole dwell again


def test_starvation_never_ends_an_alerted_blockage() -> None:
    # parked from 5 s (alert at 15 s); from 20 s the box is starved for 30 s while the
    # analyses that do come show an empty lane (the detector could not look): no `end`
    def scene(t: float) -> Seen:
        return parked_from(stop_s=5.0)(t) if t < 20.0 else ([], [])

    held = run(rule(), scene, until_s=50.0, starved=lambda t: t >= 20.0)
    assert states(held) == ["new"]
    # once the box keeps up again and the lane is really clear, the blockage ends
    ended = run(rule(), scene, until_s=80.0, starved=lambda t: 20.0 <= t < 50.0)
    assert states(ended) == ["new", "end"]
    assert ended[1].pts_s == pytest.approx(49.8 + 8.0)  # clear_s after the last starved look


def test_short_stays_at_different_spots_add_up_to_no_blockage() -> None:
    """Two passers-by who each stood still a moment at a different spot, 7 s apart (less than
    clear_s), are not one 7-second blockage: the second came to rest after the lane was last
    seen blocked, elsewhere, and starts the clock again. Seen from 0.6 s each time."""
    elsewhere: Box = (0.6, 0.6, 0.66, 0.7)

    def scene(t: float) -> Seen:
        if 1.0 <= t < 1.6:
            return [], [region(BAG, since_s=0.2)]
        if 8.6 <= t < 9.2:
            return [], [region(elsewhere, since_s=8.0)]
        return [], []

    assert run(rule(dwell_s=5.0, clear_s=8.0), scene, until_s=30.0) == []


def test_a_stay_seen_again_at_the_same_spot_keeps_its_clock() -> None:
    """Seen, missed for 4 s, seen again where it was (its own clock restarted by the gap):
    the lane's clock goes on from the first sighting, but the time nothing was seen there
    does not count towards the dwell."""

    def scene(t: float) -> Seen:
        if 4.0 <= t < 8.0:
            return [], []
        return [], [region(BAG, since_s=0.0 if t < 4.0 else 8.0)]

    outputs = run(rule(dwell_s=10.0, clear_s=8.0), scene, until_s=20.0)
    assert states(outputs) == ["new"]
    assert outputs[0].onset_s == pytest.approx(0.0)
    last_seen_before_the_gap = 4.0 - 1 / FPS
    unseen = 8.0 - last_seen_before_the_gap
    assert outputs[0].pts_s == pytest.approx(10.0 + unseen, abs=1 / FPS)


def test_moments_at_the_same_spot_are_not_a_blockage_for_the_time_between_them() -> None:
    """Something at rest a moment at one spot (a car pulling out of its bay leaves a short
    static change beside it), and again at that spot 7 s later, and 7 s after that (a camera
    watching the same manoeuvre come round, a looped clip): within clear_s each time, but
    seen 1.4 s each time, not blocking for 14 s."""

    def scene(t: float) -> Seen:
        for start in (0.2, 7.2, 14.2):
            if start + 0.8 <= t < start + 1.4:
                return [], [region(BAG, since_s=start)]
        return [], []

    assert run(rule(dwell_s=5.0, clear_s=8.0), scene, until_s=30.0) == []


def test_a_moment_held_through_a_blind_spell_is_not_a_blockage() -> None:
    """Seen a moment, then the light is re-learnt for 15 s (a scene cut: a looped clip, a
    camera switching to night mode) and the same spot is seen a moment again: the blind spell
    keeps the situation open (nothing could be seen) but is not blocked time. It was: a
    car-park spot seen 1.2 s before a loop's cut and 1.2 s after it made a 31-s blockage."""

    def scene(t: float) -> Seen:
        if t < 1.4 or 22.0 <= t < 23.4:
            return [], [region(BAG, since_s=0.2 if t < 1.4 else 22.0)]
        return [], []

    def relearning(t: float) -> bool:
        return 6.0 <= t < 21.0

    assert run(rule(dwell_s=5.0, clear_s=20.0), scene, until_s=40.0, blind=relearning) == []


def test_a_long_absence_at_the_same_spot_leaves_a_short_stay_short() -> None:
    """Seen at rest 4 s, then nothing for 16 s (within clear_s), then at rest at the same spot
    again: 4 s and 1.4 s seen are not the 5-s dwell with most of the 21 s unseen. If it stays,
    it is raised once seen for half the time since the first sighting (the onset)."""

    def scene(t: float) -> Seen:
        if t < 4.2:
            return [], [region(BAG, since_s=0.2)]
        if t < 20.0:
            return [], []
        return [], [region(BAG, since_s=20.0)]

    assert run(rule(dwell_s=5.0, clear_s=20.0), scene, until_s=21.4) == []
    outputs = run(rule(dwell_s=5.0, clear_s=20.0), scene, until_s=40.0)
    assert states(outputs)[:1] == ["new"]
    assert outputs[0].onset_s == pytest.approx(0.2)
    # onset 0.2 s, unseen 4 s to 20 s: present (t - 16.2) reaches half of (t - 0.2) at 32.2 s
    assert outputs[0].pts_s == pytest.approx(32.2, abs=0.5)


def person_at(box: Box) -> Detection:
    return Detection(box=box, score=0.8, class_id=0, label="person")


def strip(box: Box, start: float, end: float) -> Box:
    """The part of `box` from `start` to `end` of its width."""
    width = box[2] - box[0]
    return (box[0] + start * width, box[1], box[0] + end * width, box[3])


def bag_from_the_start(_t: float) -> Seen:
    """A bag the scene model alone finds, at rest since 0 s."""
    return [], [region(BAG, since_s=0.0)]


@pytest.mark.parametrize(
    ("look", "alerted"),
    [
        (lambda _box: [], True),  # nobody there: the object left standing is what it is
        (lambda _box: [person_at(BAG)], False),  # someone standing far away, too small
        # two people talking, each over a fifth of what the scene found (a third between
        # them: a sign stand, their shadows): together they are what is there
        (lambda _box: [person_at(strip(BAG, 0.0, 0.2)), person_at(strip(BAG, 0.6, 0.8))], False),
        (lambda _box: [person_at(strip(BAG, 0.0, 0.2))], True),  # one passer-by at its edge
        (lambda _box: None, False),  # a busy box could not look: not sure, no alert
    ],
)
def test_an_object_found_in_the_scene_alone_is_looked_at_closer_before_the_alert(
    look: Callable[[Box], list[Detection] | None], alerted: bool
) -> None:
    looked: list[Box] = []

    def inspect(box: Box) -> list[Detection] | None:
        looked.append(box)
        return look(box)

    outputs = run(rule(dwell_s=5.0), bag_from_the_start, 12.0, inspect=inspect)
    assert (states(outputs)[:1] == ["new"]) is alerted
    assert looked and all(box == BAG for box in looked)
    if not alerted:  # asked again every LOOK_AGAIN_S while someone may be there
        assert len(looked) == pytest.approx((12.0 - 5.0) / LOOK_AGAIN_S + 1, abs=1)


@pytest.mark.parametrize(("cut", "alerted"), [(True, False), (False, True)])
def test_people_over_a_region_cut_by_the_pictures_edge_hold_its_alert(
    cut: bool, alerted: bool
) -> None:
    """Legs of people standing at the top of the picture: the close look finds them over a
    sixth of the region. Cut by the edge of what is judged, the region is seen only in part and
    that is enough to hold the alert; a region seen whole with someone over a sixth of it is an
    object left beside a person."""

    def scene(_t: float) -> Seen:
        return [], [region(BAG, since_s=0.0, cut=cut)]

    def legs(_box: Box) -> list[Detection]:
        return [person_at(strip(BAG, 0.0, 0.16))]

    outputs = run(rule(dwell_s=5.0), scene, 12.0, inspect=legs)
    assert (states(outputs)[:1] == ["new"]) is alerted


def test_a_vehicle_at_rest_needs_no_close_look() -> None:
    def inspect(box: Box) -> list[Detection] | None:
        raise AssertionError("a vehicle the detector found is not looked at again")

    outputs = run(rule(dwell_s=5.0), lambda _t: ([vehicle(PARKED)], []), 10.0, inspect=inspect)
    assert states(outputs) == ["new"]


def test_a_starved_analysis_keeps_the_close_looks_answer() -> None:
    """A slow close look that starves the next analysis must not bring another look at once
    (on a busy box the lane would alternate between long looks and starved analyses)."""
    looked_at: list[float] = []
    now = 0.0

    def scene(t: float) -> Seen:
        nonlocal now
        now = t
        return bag_from_the_start(t)

    def inspect(box: Box) -> list[Detection] | None:
        looked_at.append(now)
        return [person_at(BAG)]  # someone there: held, looked at again every LOOK_AGAIN_S

    def every_second(t: float) -> bool:  # one analysis a second starved, after the dwell
        return round(t * FPS) % 5 == 0 and t > 5.0

    run(rule(dwell_s=5.0), scene, 9.0, starved=every_second, inspect=inspect)
    gaps = [b - a for a, b in itertools.pairwise(looked_at)]
    assert gaps and min(gaps) >= LOOK_AGAIN_S - 1e-9


def test_the_close_looks_answer_is_not_reused_for_another_place() -> None:
    """Someone stood on the first spot when it was looked at; a moment later the objects are
    found elsewhere: they get a look of their own (nobody there), not the first spot's answer
    (which would hold the alert for another 2 s)."""
    elsewhere: Box = (0.6, 0.6, 0.66, 0.7)
    looked: list[Box] = []

    def inspect(box: Box) -> list[Detection] | None:
        looked.append(box)
        return [person_at(BAG)] if box == BAG else []

    def scene(t: float) -> Seen:
        return [], [region(BAG if t < 2.2 else elsewhere, since_s=0.0)]

    outputs = run(rule(dwell_s=2.0, clear_s=8.0), scene, 6.0, inspect=inspect)
    assert looked == [BAG, elsewhere]
    assert states(outputs) == ["new"]
    assert outputs[0].pts_s == pytest.approx(2.2) and outputs[0].box == elsewhere
