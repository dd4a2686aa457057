"""The facade analysis on synthetic frames: the speck finder alone, then the whole
falling-object rule on a facade by day and at night, and on what must not raise an alert."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import numpy.typing as npt
import pytest

from common.config import FallingObjectRuleConfig, ZoneConfig
from edge.analysis.frame_rules import FacadeWatch
from edge.analysis.specks import SpeckFinder, SpeckParams
from edge.offline.falling_synthetic import FacadeScene, frames
from edge.rules.base import RuleOutput
from edge.types import Frame

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
    rule = FacadeWatch(config, zone)
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
    for _ in range(3):  # a still, noisy picture (identical frames would be repeats)
        noise = rng.normal(0, 2.0, base.shape[:2])[:, :, None]
        finder.find(np.clip(base + noise, 0, 255).astype(np.uint8))
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
        {"insect": True},
        {"flicker_hz": 120.0},
        {"flicker_hz": 100.0, "fps": 30.0},
        {"night": True, "headlights": True},
        {"fps": 10.0, "bird": True, "leaves": True, "insect": True, "window_lights": True},
    ],
    ids=[
        "bird",
        "leaves",
        "rain",
        "window-lights",
        "night-lights-bird",
        "insect-at-the-lens",
        "60Hz-mains-flicker-at-25fps",
        "50Hz-mains-flicker-at-30fps",
        "headlights",
        "all-at-10fps",
    ],
)
def test_what_is_not_a_fall_raises_no_alert(distractor: dict[str, object]) -> None:
    scene = replace(QUIET, **distractor)  # type: ignore[arg-type]
    assert run(scene, floors=floors(scene)) == []
    assert run(scene) == []  # nor without floors (a wider acceleration range)


DISTRACTORS = {
    "insect": {"insect": True},
    "flicker": {"flicker_hz": 120.0},
    "headlights": {"night": True, "headlights": True},
}


@pytest.mark.parametrize("name", DISTRACTORS)
def test_the_distractors_move_on_the_picture_and_the_fall_is_still_found(name: str) -> None:
    """The no-alert cases above mean something: each distractor gives the speck finder more
    than the plain facade does, and a throw among them is still found."""
    scene = replace(SCENE, **DISTRACTORS[name])  # type: ignore[arg-type]

    def specks(of: FacadeScene) -> int:
        # what the finder sees before the busy-cell map silences it (within a few frames)
        finder = SpeckFinder(WHOLE, params=SpeckParams(busy_share=1.0))
        return sum(len(finder.find(f.image).specks) for f in frames(replace(of, seconds=3.0)))

    assert specks(replace(scene, release_s=None)) > 1.5 * specks(QUIET)
    outputs = run(scene, floors=floors(scene))
    assert [o.state for o in outputs] == ["new", "end"]
    assert abs(outputs[0].details["origin_floor"] - scene.release_floor) <= 1


# other cameras, broken streams ---------------------------------------------------------------


@pytest.mark.parametrize(
    "camera",
    [
        {"fps": 5.0},
        {"fps": 10.0},
        {"fps": 50.0},
        {"width": 960, "height": 1440, "storey_px": 104.0, "object_px": 6.0},
        {"width": 320, "height": 480, "storey_px": 34.0, "object_px": 2.0},
    ],
    ids=["5fps", "10fps", "50fps", "2x-size", "small-picture"],
)
def test_a_fall_is_found_at_other_frame_rates_and_sizes(camera: dict[str, float]) -> None:
    # long enough for the `end` (2 s after the landing, at 3.9 s) at any frame rate
    scene = replace(SCENE, seconds=6.5, **camera)  # type: ignore[arg-type]
    outputs = run(scene, floors=floors(scene))
    assert [o.state for o in outputs] == ["new", "end"]
    assert scene.release_s is not None
    assert outputs[0].onset_s == pytest.approx(scene.release_s, abs=0.25)
    assert abs(outputs[0].details["origin_floor"] - scene.release_floor) <= 1


def test_a_large_picture_is_not_skipped_for_its_sensor_noise() -> None:
    """Noise specks grow with the area: `max_specks` allows more on a larger zone (a 4K
    portrait facade is 9 times the test scene), so the frames are still looked at."""
    finder = SpeckFinder(WHOLE)
    scene = replace(QUIET, width=1440, height=2160, storey_px=156.0, seconds=0.6)
    skipped = [finder.find(f.image).skipped for f in frames(scene)]
    assert not any(skipped)


def test_the_least_fall_grows_with_a_picture_taller_than_1080_rows() -> None:
    watch = FacadeWatch(
        FallingObjectRuleConfig(id="throw", type="falling_object", zone="facade"),
        ZoneConfig(id="facade", polygon=WHOLE),
    )
    for height, least in ((720, 40.0), (1080, 40.0), (2160, 80.0)):
        watch.on_frame(Frame(np.zeros((height, 64, 3), np.uint8), 0.0, 0, 0.0))
        assert watch.rule.params.min_fall_px == least


def replayed(scene: FacadeScene, change: Callable[[Frame], list[Frame]]) -> list[RuleOutput]:
    """The rule on the scene's frames, each changed (dropped, doubled, retimed) by `change`."""
    zone = ZoneConfig(id="facade", polygon=WHOLE)
    config = FallingObjectRuleConfig(
        id="throw", type="falling_object", zone="facade", floors=floors(scene)
    )
    rule = FacadeWatch(config, zone)
    return [o for frame in frames(scene) for f in change(frame) for o in rule.on_frame(f)]


def test_duplicated_dropped_and_jittered_frames_do_not_hide_a_fall() -> None:
    rng = np.random.default_rng(5)

    def messy(frame: Frame) -> list[Frame]:
        if frame.index % 11 == 5:
            return []  # dropped
        jitter = float(rng.uniform(-0.008, 0.008))  # variable frame rate
        retimed = Frame(frame.image, max(0.0, frame.pts_s + jitter), frame.index, frame.wall_s)
        return [retimed, retimed] if frame.index % 7 == 3 else [retimed]  # doubled

    outputs = replayed(SCENE, messy)
    assert [o.state for o in outputs] == ["new", "end"]
    assert abs(outputs[0].details["origin_floor"] - SCENE.release_floor) <= 1


def test_grey_frames_and_a_zone_partly_outside_or_thinner_than_a_pixel() -> None:
    gray = [f.image[:, :, 0].copy() for f in frames(replace(SCENE, seconds=3.0))]
    for zone in (
        [(0.5, -0.5), (1.5, -0.5), (1.5, 1.5), (0.5, 1.5)],  # half of it beyond the picture
        [(0.5, 0.5), (0.5004, 0.5), (0.5004, 0.5001), (0.5, 0.5001)],  # under a pixel
        [(1.0, 1.0), (1.0, 1.0), (1.0, 1.0)],  # the corner
    ):
        finder = SpeckFinder(zone)
        for image in gray:
            finder.find(image)
        assert finder.crop[2] > finder.crop[0] and finder.crop[3] > finder.crop[1]


def test_a_fall_near_the_start_of_the_stream_has_its_onset_in_the_stream() -> None:
    """The release is extrapolated back from the first sighting, never before the first
    frame (an event's onset cannot be negative)."""
    start = 1.7  # the object was let go 0.2 s before the stream began

    def late(frame: Frame) -> list[Frame]:
        if frame.pts_s < start - 1e-6:
            return []
        return [Frame(frame.image, frame.pts_s - start, frame.index, frame.wall_s)]

    first_pts = math.ceil(start * SCENE.fps) / SCENE.fps - start
    outputs = replayed(SCENE, late)
    assert [o.state for o in outputs] == ["new", "end"]
    assert outputs[0].onset_s == pytest.approx(first_pts)
    assert outputs[0].details["trajectory"][0][0] == pytest.approx(first_pts, abs=1e-3)


def test_time_going_back_or_a_new_picture_size_closes_the_incident_and_starts_again() -> None:
    scene = replace(SCENE, seconds=4.6)
    assert scene.landing_s is not None and scene.landing_s < 4.0  # `end` comes 2 s after
    zone = ZoneConfig(id="facade", polygon=WHOLE)
    config = FallingObjectRuleConfig(
        id="throw", type="falling_object", zone="facade", floors=floors(scene)
    )
    rule = FacadeWatch(config, zone)
    first = [o for f in frames(scene) for o in rule.on_frame(f)]
    assert [o.state for o in first] == ["new"]
    again = [o for f in frames(scene) for o in rule.on_frame(f)]  # the replay restarted at 0
    assert [o.state for o in again] == ["end", "new"]
    last_pts = (int(scene.seconds * scene.fps) - 1) / scene.fps
    assert again[0].pts_s == pytest.approx(last_pts)  # closed at the last frame before the break
    big = replace(scene, width=600, height=900, storey_px=65.0)
    resized = [o for f in frames(big) for o in rule.on_frame(f) if f.pts_s >= 0]
    assert [o.state for o in resized[:2]] == ["end", "new"]
    assert resized[1].box[3] <= 1.0 and abs(resized[1].details["origin_floor"] - 10) <= 1


# a slower camera in a faster stream, a start or a reconnect just before a throw (issue 17) ---


def encoded_again(image: npt.NDArray[np.uint8], rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    """The image as an encoder stores it once more: a few grey levels changed in some 8x8
    blocks (a repeated image is refined on each copy, never bit-identical)."""
    h, w = image.shape[:2]
    blocks = rng.integers(-3, 4, (h // 8 + 1, w // 8 + 1)) * (
        rng.random((h // 8 + 1, w // 8 + 1)) < 0.2
    )
    change = np.kron(blocks, np.ones((8, 8), np.int64))[:h, :w, None]
    return np.asarray(np.clip(image.astype(np.int64) + change, 0, 255), np.uint8)


def tripled(rng: np.random.Generator) -> Callable[[Frame], list[Frame]]:
    """A 10 fps scene stored at 30 fps: each image three times, the copies re-encoded."""

    def change(frame: Frame) -> list[Frame]:
        return [
            Frame(
                frame.image if copy == 0 else encoded_again(frame.image, rng),
                frame.pts_s + copy / 30,
                frame.index * 3 + copy,
                frame.wall_s,
            )
            for copy in range(3)
        ]

    return change


def test_repeated_images_are_told_from_new_ones_by_their_content() -> None:
    rng = np.random.default_rng(7)
    finder = SpeckFinder(WHOLE)
    copies = [f for frame in frames(replace(SCENE, fps=10.0)) for f in tripled(rng)(frame)]
    repeats = [finder.find(f.image).repeat for f in copies]
    assert repeats == [False, True, True] * (len(copies) // 3)
    # a still, noisy picture changes as much as usual on every frame: nothing repeats
    still = SpeckFinder(WHOLE)
    assert not any(still.find(f.image).repeat for f in frames(replace(QUIET, seconds=2.0)))


def test_a_fall_filmed_at_10_fps_and_stored_at_30_is_found_at_the_images_times() -> None:
    scene = replace(SCENE, fps=10.0)
    outputs = replayed(scene, tripled(np.random.default_rng(8)))
    assert [o.state for o in outputs] == ["new", "end"]
    assert scene.release_s is not None
    assert outputs[0].onset_s == pytest.approx(scene.release_s, abs=0.25)
    seen = [point[0] for point in outputs[0].details["trajectory"][1:]]
    assert min(np.diff(seen)) == pytest.approx(0.1, abs=1e-6)  # the first copy of each image


def test_a_flickering_area_is_known_as_busy_within_a_few_frames() -> None:
    """Leaves or a flickering sign give specks in the first frames only: the busy-cell map
    learns fast after a start (a single object passing still never makes a cell busy)."""
    finder = SpeckFinder(WHOLE)
    counts = []
    for frame in frames(replace(QUIET, seconds=1.0)):
        image = frame.image.copy()
        if frame.index % 2:
            image[100:140, 100:200] = 240  # lit every other frame
        counts.append(len(finder.find(image).specks))
    assert sum(counts[8:]) <= 2


def test_after_a_reconnect_a_changed_picture_is_learnt_again() -> None:
    """The stream comes back darker (the light changed during the outage): the background
    is learnt again from the new frames, so an object is small in its surroundings at once
    (not the edge of a picture-wide change)."""
    finder = SpeckFinder(WHOLE)
    for frame in frames(replace(QUIET, seconds=1.0)):
        finder.find(frame.image)
    finder.restart()
    extents = []
    for frame in frames(replace(QUIET, seconds=0.4, seed=4)):
        image = np.clip(frame.image.astype(np.float32) * 0.7 + 10, 0, 255).astype(np.uint8)
        cy = 200 + 10 * frame.index
        image[cy - 2 : cy + 2, 240:244] = 200
        extents += [s.extent for s in finder.find(image).specks if abs(s.y - cy) < 4]
    assert len(extents) >= 4 and max(extents) < 0.35
