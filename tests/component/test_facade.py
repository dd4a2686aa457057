"""The facade analysis on synthetic frames: the speck finder alone, then the whole
falling-object rule on a facade by day and at night, and on what must not raise an alert."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from common.config import FallingObjectRuleConfig, ZoneConfig
from edge.facade import SpeckFinder, SpeckParams
from edge.falling_synthetic import FacadeScene, frames
from edge.rules.base import RuleOutput
from edge.rules.falling_object import FallingObjectRule

WHOLE = [(0.02, 0.02), (0.98, 0.02), (0.98, 0.98), (0.02, 0.98)]
SCENE = FacadeScene()  # 480x720, 12 storeys of 52 px; an object leaves floor 10 at 1.5 s
QUIET = replace(SCENE, release_s=None)


def floors(scene: FacadeScene) -> list[dict[str, object]]:
    """Slab lines an installer would mark: floors 1, 6 and 12."""
    return [{"floor": f, "line": scene.floor_line(f)} for f in (1, 6, 12)]


def run(scene: FacadeScene, **keys: object) -> list[RuleOutput]:
    zone = ZoneConfig(id="facade", polygon=WHOLE)
    config = FallingObjectRuleConfig.model_validate(
        {"id": "throw", "zone": "facade", "type": "falling_object", **keys}
    )
    rule = FallingObjectRule(config, zone)
    return [out for frame in frames(scene) for out in rule.on_frame(frame)]


# the speck finder --------------------------------------------------------------------------


def test_a_small_moving_dot_is_found_where_it_is_now() -> None:
    finder = SpeckFinder(WHOLE)
    found = []
    for frame in frames(replace(SCENE, seconds=2.8)):
        found.append((frame.pts_s, finder.find(frame.image).specks))
    for t, specks in found:
        where = SCENE.object_at(t)
        if where is None or t < 2.0:  # slow near the top: not always seen yet
            continue
        assert any(abs(s.x - where[0]) < 3 and abs(s.y - where[1]) < 3 for s in specks), t


def test_a_still_noisy_facade_with_drifting_light_gives_no_specks() -> None:
    finder = SpeckFinder(WHOLE)
    counts = [len(finder.find(f.image).specks) for f in frames(replace(QUIET, seconds=3.0))]
    assert sum(counts[10:]) / len(counts[10:]) < 0.2  # a noise speck now and then, at most


def test_ignored_areas_are_not_looked_at() -> None:
    finder = SpeckFinder(WHOLE, [[(0.3, 0.0), (0.8, 0.0), (0.8, 1.0), (0.3, 1.0)]])
    for frame in frames(replace(SCENE, seconds=3.0)):  # the object falls at x 0.55
        specks = finder.find(frame.image).specks
        assert not [s for s in specks if 0.3 * SCENE.width <= s.x <= 0.8 * SCENE.width]


def test_half_resolution_still_finds_a_three_pixel_object() -> None:
    finder = SpeckFinder(WHOLE, params=SpeckParams(scale=0.5))
    hits = 0
    for frame in frames(replace(SCENE, seconds=3.0)):
        where = SCENE.object_at(frame.pts_s)
        specks = finder.find(frame.image).specks
        if where is not None and frame.pts_s > 2.0:
            hits += any(abs(s.x - where[0]) < 4 and abs(s.y - where[1]) < 4 for s in specks)
    assert hits >= 15  # of 25 frames: enough to follow it (a 1.5-pixel dot at that scale)


def test_a_frame_full_of_specks_is_skipped() -> None:
    finder = SpeckFinder(WHOLE, params=SpeckParams(max_specks=20))
    rng = np.random.default_rng(0)
    base = np.full((200, 200, 3), 120, np.uint8)
    for _ in range(3):
        finder.find(base)
    speckled = base.copy()
    for x, y in rng.integers(10, 190, (60, 2)):
        speckled[y : y + 2, x : x + 2] = 250
    assert finder.find(speckled).skipped


# the rule on synthetic facades ---------------------------------------------------------------


@pytest.mark.parametrize("night", [False, True], ids=["day", "night"])
def test_a_tiny_object_falling_past_the_facade_is_found_with_onset_and_floor(night: bool) -> None:
    scene = replace(SCENE, night=night)
    outputs = run(scene, floors=floors(scene))
    assert [o.state for o in outputs] == ["new", "end"]
    new = outputs[0]
    assert scene.release_s is not None and scene.landing_s is not None
    assert new.onset_s == pytest.approx(scene.release_s, abs=0.2)
    assert abs(new.details["origin_floor"] - scene.release_floor) <= 1
    assert new.pts_s <= scene.landing_s + 1.0
    first = new.details["trajectory"][0]
    assert first[0] == pytest.approx(new.onset_s, abs=1e-3)
    x0, y0 = scene.release_xy
    assert first[1] == pytest.approx(x0 / scene.width, abs=0.02)
    assert first[2] == pytest.approx(y0 / scene.height, abs=0.02)
    assert new.details["accel_g"] == pytest.approx(1.0, abs=0.2)


def test_an_object_thrown_upward_is_found_from_the_top_of_its_path() -> None:
    scene = replace(SCENE, throw_vy=-60.0)
    outputs = run(scene, floors=floors(scene))
    assert [o.state for o in outputs] == ["new", "end"]
    assert scene.release_s is not None
    apex_s = scene.release_s + 60.0 / scene.gravity_px_s2
    assert outputs[0].onset_s == pytest.approx(apex_s, abs=0.2)
    assert outputs[0].details["origin_floor"] == scene.release_floor


@pytest.mark.parametrize(
    "distractor",
    [
        {"bird": True},
        {"leaves": True},
        {"rain": True},
        {"window_lights": True},
        {"night": True, "window_lights": True, "bird": True},
    ],
    ids=["bird", "leaves", "rain", "window-lights", "night-lights-bird"],
)
def test_what_is_not_a_fall_raises_no_alert(distractor: dict[str, bool]) -> None:
    scene = replace(QUIET, **distractor)
    assert run(scene, floors=floors(scene)) == []
