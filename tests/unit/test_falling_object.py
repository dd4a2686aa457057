"""The pure parts of the falling-object rule: fitting, acceptance, floors, linking, grouping,
and the rule's messages from scripted specks (no video)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from common.config import FallingObjectRuleConfig, ZoneConfig
from edge.analysis.frame_rules import FacadeWatch
from edge.rules.falling_object import (
    Fall,
    FallParams,
    FloorScale,
    IncidentGrouper,
    Sighting,
    SpeckLinker,
    fit_fall,
    judge,
    origin_floor,
)
from edge.types import Frame, Speck, SpeckFrame

FPS = 25.0
DT = 1.0 / FPS
PARAMS = FallParams()
G_PX = 400.0  # px/s²: gravity for a view with 12 px per metre


def path(
    fn: Callable[[float], tuple[float, float]],
    start: float,
    seconds: float,
    noise: float = 0.0,
    seed: int = 1,
    every: int = 1,
) -> list[Sighting]:
    """Sightings of a point moving along `fn`, one per frame (or every `every` frames)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(0, int(seconds * FPS) + 1, every):
        t = start + i * DT
        x, y = fn(t)
        out.append(Sighting(t, x + rng.normal(0, noise), y + rng.normal(0, noise)))
    return out


def free_fall(
    release: float,
    x0: float = 300.0,
    y0: float = 100.0,
    vy0: float = 0.0,
    vx: float = 10.0,
    g: float = G_PX,
) -> Callable[[float], tuple[float, float]]:
    def at(t: float) -> tuple[float, float]:
        s = t - release
        return x0 + vx * s, y0 + vy0 * s + 0.5 * g * s * s

    return at


# fitting ---------------------------------------------------------------------------------


def test_fit_recovers_the_parabola_and_its_apex() -> None:
    fit = fit_fall(path(free_fall(2.0, vy0=-80.0), 2.0, 1.0))
    assert fit.accel == pytest.approx(G_PX, rel=1e-6)
    assert fit.vx == pytest.approx(10.0)
    assert fit.apex_s == pytest.approx(2.0 + 80.0 / G_PX)
    assert fit.rms_y < 1e-6 and fit.accel_sigma < 5.0  # a noise floor of half a pixel


def test_fit_needs_four_sightings() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        fit_fall(path(free_fall(0.0), 0.0, 0.1))


# acceptance ------------------------------------------------------------------------------


def test_a_dropped_object_is_a_fall_released_where_it_was_let_go() -> None:
    verdict = judge(path(free_fall(1.0), 1.0, 1.2, noise=0.7), PARAMS, DT)
    assert verdict.reason == "" and verdict.fall is not None
    assert verdict.fall.release_s == pytest.approx(1.0, abs=0.05)
    assert verdict.fall.origin[1] == pytest.approx(100.0, abs=3.0)


def test_a_late_first_sighting_is_extrapolated_back_to_the_release() -> None:
    """Seen only from 0.5 s after the release (too slow and small to see at first)."""
    verdict = judge(path(free_fall(1.0), 1.5, 0.9, noise=0.7), PARAMS, DT)
    assert verdict.fall is not None
    assert verdict.fall.release_s == pytest.approx(1.0, abs=0.1)
    assert verdict.fall.origin[1] == pytest.approx(100.0, abs=8.0)


def test_extrapolation_is_bounded() -> None:
    params = FallParams(max_extrapolation_s=0.2)
    verdict = judge(path(free_fall(1.0), 2.0, 0.8), params, DT)
    assert verdict.fall is not None and verdict.fall.release_s == pytest.approx(1.8)


def test_an_object_thrown_upward_falls_from_the_top_of_its_path() -> None:
    verdict = judge(path(free_fall(1.0, vy0=-150.0), 1.0, 1.5, noise=0.5), PARAMS, DT)
    assert verdict.fall is not None
    apex = 1.0 + 150.0 / G_PX
    assert verdict.fall.release_s == pytest.approx(1.0)  # the first sighting: it was seen going up
    assert verdict.fall.origin[1] == pytest.approx(100.0 - 150.0**2 / (2 * G_PX), abs=2.0)
    assert verdict.fall.fit.apex_s == pytest.approx(apex, abs=0.02)


def test_paper_falling_slower_than_free_fall_is_still_a_fall() -> None:
    verdict = judge(path(free_fall(0.0, g=90.0), 0.0, 1.6, noise=0.8), PARAMS, DT)
    assert verdict.fall is not None


def rejected(points: Sequence[Sighting], params: FallParams = PARAMS, **kw: Any) -> str:
    verdict = judge(points, params, DT, **kw)
    assert verdict.fall is None
    return verdict.reason


def test_rain_or_a_sinking_leaf_at_steady_speed_is_not_a_fall() -> None:
    steady = path(lambda t: (200.0 + 5 * t, 50.0 + 300.0 * t), 0.0, 1.0, noise=0.5)
    assert "acceleration" in rejected(steady) or "speeding up" in rejected(steady)


def test_a_climbing_bird_is_not_a_fall() -> None:
    climbing = path(lambda t: (100.0 + 150 * t, 400.0 - 60 * t - 40 * t * t), 0.0, 1.2)
    assert rejected(climbing).startswith(("fell", "acceleration", "climbs"))


def test_a_fluttering_leaf_is_not_a_fall() -> None:
    def flutter(t: float) -> tuple[float, float]:
        return 300 + 30 * math.sin(9 * t), 100 + 60 * t + 0.5 * 120 * t * t + 15 * math.sin(7 * t)

    assert rejected(path(flutter, 0.0, 1.5)).startswith(("erratic", "acceleration"))


def test_a_light_moving_in_a_window_does_not_fall_far_enough() -> None:
    window = path(lambda t: (300 + 20 * math.sin(3 * t), 200 + 0.5 * 400 * (t % 0.3) ** 2), 0, 1)
    assert "fell" in rejected(window)


def test_a_bird_diving_across_moves_sideways_more_than_down() -> None:
    assert "sideways" in rejected(path(free_fall(0.0, vx=900.0, g=300.0), 0.0, 0.6))


def test_a_track_seen_on_few_of_its_frames_is_clutter_linked_by_chance() -> None:
    assert "not one object" in rejected(path(free_fall(0.0), 0.0, 1.0, every=3))


def test_too_few_sightings_or_too_short() -> None:
    assert "fewer than" in rejected(path(free_fall(0.0), 0.0, 0.12))
    assert "followed" in rejected(path(free_fall(0.0), 0.0, 0.2), FallParams(min_points=4))


def test_fragments_of_a_large_moving_thing_are_not_a_fall() -> None:
    crowded = [Sighting(p.t, p.x, p.y, 20.0, neighbours=2) for p in path(free_fall(0.0), 0, 1)]
    assert "part of something large" in rejected(crowded)
    edges = [Sighting(p.t, p.x, p.y, 20.0, extent=0.6) for p in path(free_fall(0.0), 0, 1)]
    assert "large changed area" in rejected(edges)


def test_acceleration_beyond_the_allowed_range_is_not_a_fall() -> None:
    points = path(free_fall(0.0), 0.0, 1.0)
    assert "more than a fall" in rejected(points, accel_range=(10.0, 200.0))
    assert "less than" in rejected(points, accel_range=(800.0, 2000.0))


def test_a_stray_first_sighting_is_dropped_before_judging() -> None:
    points = [Sighting(0.0, 500.0, 20.0), *path(free_fall(0.04), 0.04, 1.0)]
    verdict = judge(points, PARAMS, DT)
    assert verdict.fall is not None and verdict.fall.sightings[0].t == pytest.approx(0.04)


# floors ----------------------------------------------------------------------------------


def level(y: float) -> tuple[tuple[float, float], tuple[float, float]]:
    return ((0.1, y), (0.9, y))


def test_two_marks_interpolate_linearly() -> None:
    scale = FloorScale([(1, level(0.9)), (5, level(0.5))])
    assert scale.floor_at(0.5, 0.7) == pytest.approx(3.0)
    assert scale.floor_height(0.5, 0.7) == pytest.approx(0.1)
    assert origin_floor(scale, 0.5, 0.68) == 3  # above slab 3, below slab 4
    assert origin_floor(scale, 0.5, 0.42) == 5  # above the top mark: extrapolated


def test_three_marks_follow_the_perspective_of_a_camera_looking_up() -> None:
    """Storeys shrink towards the top of the picture; a 1-D projective map f -> y fits them
    exactly, where straight lines between marks would be off by most of a storey."""

    def row(floor: float) -> float:  # a pinhole camera tilted up at a flat facade
        return (0.95 - 0.06 * floor) / (1 + 0.05 * floor)

    scale = FloorScale([(1, level(row(1))), (10, level(row(10))), (20, level(row(20)))])
    for floor in (3.0, 7.5, 15.0, 18.2):
        assert scale.floor_at(0.5, row(floor)) == pytest.approx(floor, abs=0.01)
    assert origin_floor(scale, 0.3, row(12.4)) == 12
    assert scale.floor_height(0.5, row(18)) < scale.floor_height(0.5, row(2))


def test_slanted_slab_lines_are_read_at_the_objects_column() -> None:
    scale = FloorScale([(1, ((0.0, 0.9), (1.0, 0.8))), (3, ((0.0, 0.5), (1.0, 0.4)))])
    assert scale.floor_at(0.0, 0.7) == pytest.approx(2.0)
    assert scale.floor_at(1.0, 0.6) == pytest.approx(2.0)


def test_floors_in_the_config_are_checked() -> None:
    def config(floors: list[dict[str, Any]]) -> FallingObjectRuleConfig:
        return FallingObjectRuleConfig.model_validate(
            {"id": "f", "zone": "z", "type": "falling_object", "floors": floors}
        )

    ok = config([{"floor": 5, "line": [[0, 0.5], [1, 0.5]]}, {"floor": 1, "line": level(0.9)}])
    assert [m.floor for m in ok.floors] == [1, 5]
    for bad, message in [
        ([{"floor": 1, "line": level(0.9)}], "at least two"),
        ([{"floor": 1, "line": level(0.9)}, {"floor": 1, "line": level(0.5)}], "twice"),
        ([{"floor": 1, "line": level(0.5)}, {"floor": 5, "line": level(0.9)}], "higher"),
        (
            [{"floor": 1, "line": [[0.5, 0.9], [0.5, 0.8]]}, {"floor": 2, "line": level(0.5)}],
            "apart",
        ),
    ]:
        with pytest.raises(ValidationError, match=message):
            config(bad)


def test_the_rule_config_has_defaults_for_every_key_but_the_pinned_ones() -> None:
    config = FallingObjectRuleConfig.model_validate(
        {"id": "f", "zone": "z", "type": "falling_object"}
    )
    assert config.min_fall_px == 40.0 and config.group_s == 2.0 and config.floors == []
    assert (config.clip_pre_s, config.clip_post_s) == (5.0, 2.0)
    with pytest.raises(ValidationError, match="no area"):
        FallingObjectRuleConfig.model_validate(
            {
                "id": "f",
                "zone": "z",
                "type": "falling_object",
                "ignore_areas": [[[0, 0], [0.5, 0.5], [1, 1]]],
            }
        )


# linking ---------------------------------------------------------------------------------


def test_the_linker_follows_a_falling_speck_through_static_clutter() -> None:
    linker = SpeckLinker(max_gap_s=0.2, max_speed_px_s=1800.0)
    fall = path(free_fall(0.0), 0.0, 1.2)
    clutter = [(250.0 + 40 * k, 150.0 + 60 * k) for k in range(6)]
    ended = []
    for i, point in enumerate(fall):
        specks = [point] + [
            Sighting(point.t, x, y) for j, (x, y) in enumerate(clutter) if (i + j) % 3 == 0
        ]
        if i == 10:
            specks = specks[1:]  # missed on one frame
        ended += linker.update(point.t, specks, DT)
    ended += linker.update(fall[-1].t + 0.5, [], DT)
    longest = max(ended, key=lambda track: len(track.sightings))
    assert len(longest.sightings) == len(fall) - 1
    assert judge(longest.sightings, PARAMS, DT).fall is not None


def test_a_lone_sighting_is_not_linked_to_one_far_later() -> None:
    linker = SpeckLinker(max_gap_s=0.2, max_speed_px_s=1800.0)
    linker.update(0.0, [Sighting(0.0, 100.0, 100.0)], DT)
    linker.update(0.16, [Sighting(0.16, 120.0, 200.0)], DT)
    assert [len(track.sightings) for track in linker.tracks] == [1]


# grouping --------------------------------------------------------------------------------


def a_fall(release: float, landed: float) -> Fall:
    points = path(free_fall(release), release, landed - release)
    verdict = judge(points, PARAMS, DT)
    assert verdict.fall is not None
    return verdict.fall


def test_objects_thrown_together_are_one_incident_and_a_later_throw_another() -> None:
    grouper = IncidentGrouper(group_s=2.0)
    assert grouper.add(a_fall(1.0, 2.0)) == "new"
    assert grouper.add(a_fall(1.5, 2.5)) == "update"
    assert grouper.expire(4.4) is None
    closed = grouper.expire(4.5)
    assert closed is not None and len(closed.falls) == 2 and closed.onset_s == pytest.approx(1.0)
    assert grouper.add(a_fall(9.0, 10.0)) == "new"


# the rule's messages, from scripted specks --------------------------------------------------


class ScriptedFinder:
    """Stands in for the OpenCV speck finder: the specks of each frame by its index."""

    def __init__(self, script: dict[int, list[tuple[float, float]]]) -> None:
        self.script = script
        self.index = -1

    def find(self, image: Any, frame_interval_s: float | None = None) -> SpeckFrame:
        del frame_interval_s
        self.index += 1
        found = self.script.get(self.index, [])
        return SpeckFrame(
            tuple(Speck(x, y, 6.0, (x - 1, y - 1, x + 1, y + 1)) for x, y in found), False
        )


def run_rule(script: dict[int, list[tuple[float, float]]], seconds: float, **keys: Any) -> list:
    zone = ZoneConfig(id="facade", polygon=[(0, 0), (1, 0), (1, 1), (0, 1)])
    config = FallingObjectRuleConfig.model_validate(
        {"id": "throw", "zone": "facade", "type": "falling_object", **keys}
    )
    rule = FacadeWatch(config, zone, ScriptedFinder(script))  # type: ignore[arg-type]
    image = np.zeros((720, 480, 3), np.uint8)
    outputs = []
    for i in range(int(seconds * FPS)):
        outputs += rule.on_frame(Frame(image, i * DT, i, 0.0))
    return outputs


def throw(script: dict[int, list[tuple[float, float]]], release: float, x0: float, y0: float,
          g: float, land_y: float) -> None:  # fmt: skip
    for i in range(int(release * FPS), int((release + 5) * FPS)):
        s = i * DT - release
        y = y0 + 0.5 * g * s * s
        if y > land_y:
            return
        script.setdefault(i, []).append((x0 + 8 * s, y))


def slab(floor: int) -> float:
    """Normalised row of a floor's slab: floor 1 at row 672 of 720, 52 px per storey."""
    return (672 - 52 * (floor - 1)) / 720


FLOORS = [{"floor": f, "line": [[0.05, slab(f)], [0.95, slab(f)]]} for f in (1, 6, 12)]


def test_the_rule_alerts_once_per_incident_with_trajectories_and_floor() -> None:
    g = 9.81 * 52 / 3  # 52 px per 3 m storey
    script: dict[int, list[tuple[float, float]]] = {}
    throw(script, 1.0, 240.0, 672 - 52 * 9 - 20, g, 660)  # from floor 10, 20 px above its slab
    throw(script, 1.6, 300.0, 672 - 52 * 9 - 20, g, 660)  # a second object with it
    throw(script, 9.0, 200.0, 672 - 52 * 4 - 20, g, 660)  # later, from floor 5
    outputs = run_rule(script, 14.0, floors=FLOORS)
    assert [o.state for o in outputs] == ["new", "update", "end", "new", "end"]
    first, second, end, later, _ = outputs
    assert first.onset_s == pytest.approx(1.0, abs=0.05)
    assert first.pts_s < 1.0 + 2.3 + 0.5  # within half a second of the landing (2.3 s fall)
    assert first.details["origin_floor"] == 10 and first.details["objects"] == 1
    trajectory = first.details["trajectory"]
    assert trajectory[0][0] == pytest.approx(first.onset_s, abs=1e-3)  # the origin first
    assert all(0 <= x <= 1 and 0 <= y <= 1 for _, x, y in trajectory)
    assert [p[0] for p in trajectory] == sorted(p[0] for p in trajectory)
    assert first.details["accel_g"] == pytest.approx(1.0, abs=0.1)
    assert second.details["objects"] == 2 and len(second.details["trajectories"]) == 2
    assert second.onset_s == first.onset_s and len(second.highlight) == 2
    assert end.pts_s >= second.details["falls"][1]["landed_pts_s"] + 2.0
    assert later.onset_s == pytest.approx(9.0, abs=0.05)
    assert later.details["origin_floor"] == 5
    x1, y1, x2, y2 = first.box
    assert x1 < 240 / 480 < x2 and y1 < trajectory[0][2] < trajectory[-1][2] < y2


def test_without_floors_the_event_names_no_floor() -> None:
    script: dict[int, list[tuple[float, float]]] = {}
    throw(script, 1.0, 240.0, 100.0, 300.0, 600)
    outputs = run_rule(script, 6.0)
    assert [o.state for o in outputs] == ["new", "end"]
    assert "origin_floor" not in outputs[0].details
    assert outputs[0].details["fall_px"] > 300


def test_a_long_fall_is_alerted_while_still_falling() -> None:
    script: dict[int, list[tuple[float, float]]] = {}
    throw(script, 1.0, 240.0, 20.0, 150.0, 700)  # 2.9 s from release to the ground
    outputs = run_rule(script, 3.5, confirm_after_s=1.5)
    assert outputs and outputs[0].state == "new" and outputs[0].pts_s < 3.0
