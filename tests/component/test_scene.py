"""The scene model on synthetic frames: left objects found, passers, light and shake ignored.

Frames come from `edge.offline.synthetic` (ground truth known by construction), analysed at 5 fps
the way the pipeline does: `observe`, then `update`.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from common.config import DEFAULT_MIN_OBJECT_AREA
from edge.analysis.scene.model import (
    ANALYSIS_WIDTH,
    SceneModel,
    SceneParams,
    SceneUpdate,
    boxes_mask,
    polygons_mask,
    to_analysis_gray,
)
from edge.offline.synthetic import (
    LANE,
    LaneScene,
    MovingView,
    frames,
    moving_view_frames,
    textured_ground,
)
from edge.types import Box, Frame, StaticRegion, box_iou

Image = npt.NDArray[np.uint8]
FPS = 5.0
# The object stays 24 s, longer than one period (23 s) of the synthetic light swing.
BASE = LaneScene(fps=FPS, seconds=42.0, drop_s=12.0, clear_s=36.0)
# Nothing is left; a passer drives through every 6 s.
EMPTY = LaneScene(fps=FPS, seconds=30.0, drop_s=None, clear_s=None)
JUMP_S = 10.0


@dataclass(frozen=True, slots=True)
class Step:
    t: float
    motion: float
    update: SceneUpdate


@functools.cache
def scene_frames(scene: LaneScene) -> tuple[Frame, ...]:
    return tuple(frames(scene))


def analyse(
    scene: LaneScene,
    transform: Callable[[Frame], Image] | None = None,
    explained: Callable[[float], Sequence[Box]] | None = None,
    until_s: float = float("inf"),
) -> list[Step]:
    model = SceneModel({"lane": list(LANE)}, SceneParams())
    steps = []
    for frame in scene_frames(scene):
        if frame.pts_s > until_s:
            break
        image = frame.image if transform is None else transform(frame)
        motion = model.observe(to_analysis_gray(image), frame.pts_s)
        update = model.update(frame.pts_s, explained(frame.pts_s) if explained else ())
        steps.append(Step(frame.pts_s, motion, update))
    return steps


def on_object(regions: Sequence[StaticRegion], scene: LaneScene, iou: float) -> list[StaticRegion]:
    return [r for r in regions if box_iou(r.box, scene.object_box) > iou]


def passer_near_object(scene: LaneScene, t: float) -> bool:
    """A passer drives over the object (and its motion settles) in the first 2.4 s of a cycle."""
    return t % scene.passers_every_s < 2.4


def brighter(factor: float) -> Callable[[Frame], Image]:
    def transform(frame: Frame) -> Image:
        if frame.pts_s < JUMP_S:
            return frame.image
        return np.clip(frame.image.astype(np.float32) * factor, 0, 255).astype(np.uint8)

    return transform


def shaken(frame: Frame) -> Image:
    """Every other frame moved by 2 to 4 px down and left."""
    if frame.index % 2:
        return frame.image
    shift = 2 + frame.index % 3
    return np.roll(frame.image, (shift, -shift), axis=(0, 1))


@pytest.fixture(scope="module")
def base_run() -> list[Step]:
    return analyse(BASE)


# A left object -------------------------------------------------------------------------------


def test_no_region_before_the_drop(base_run: list[Step]) -> None:
    assert BASE.drop_s is not None
    before = [s for s in base_run if s.t < BASE.drop_s]
    assert len(before) == 60
    assert [s.t for s in before if s.update.regions] == []


def test_the_left_object_becomes_a_region_soon_after_the_drop(base_run: list[Step]) -> None:
    assert BASE.drop_s is not None
    found = [s for s in base_run if on_object(s.update.regions, BASE, 0.5)]
    assert found, "the left object was never found"
    assert BASE.drop_s < found[0].t <= BASE.drop_s + 3.0
    (region,) = on_object(found[0].update.regions, BASE, 0.5)
    assert region.since_s == pytest.approx(BASE.drop_s, abs=0.5)
    # big enough to count as a blocker (fire_lane's default share of the frame), not the lane
    assert DEFAULT_MIN_OBJECT_AREA < region.area < 0.03
    assert 0.4 < region.score <= 1.0


def test_the_region_persists_until_the_object_is_taken(base_run: list[Step]) -> None:
    assert BASE.drop_s is not None and BASE.clear_s is not None
    start = BASE.drop_s + 3.0
    held = [s for s in base_run if start <= s.t < BASE.clear_s]
    checked = [s for s in held if not passer_near_object(BASE, s.t)]
    assert len(checked) > 40
    present = [s for s in checked if len(on_object(s.update.regions, BASE, 0.5)) == 1]
    # a passer driving over the object may hide it for a moment, never for long
    assert len(present) >= 0.9 * len(checked)
    times = [start] + [s.t for s in present] + [BASE.clear_s]
    assert max(b - a for a, b in itertools.pairwise(times)) <= 3.5
    # it never fades into the background nor restarts its clock, through the light swing
    assert present[-1].t >= BASE.clear_s - 1.0
    sinces = [on_object(s.update.regions, BASE, 0.5)[0].since_s for s in present]
    assert all(abs(since - BASE.drop_s) <= 0.5 for since in sinces)
    assert not any(s.update.relearning for s in held)


def test_the_region_goes_once_the_object_is_taken(base_run: list[Step]) -> None:
    assert BASE.clear_s is not None
    after = [s for s in base_run if s.t >= BASE.clear_s + 3.0]
    assert len(after) >= 10
    assert [s.t for s in after if s.update.regions] == []


def test_passers_never_become_regions() -> None:
    steps = analyse(EMPTY)
    moving = [s for s in steps if s.motion > 0.01]
    assert len(moving) > 12  # the passers were seen moving
    assert [s.t for s in steps if s.update.regions] == []


def test_a_box_the_detector_explains_is_not_a_left_object() -> None:
    assert BASE.drop_s is not None
    drop_s = BASE.drop_s

    def explained(t: float) -> list[Box]:
        return [BASE.object_box] if t >= drop_s else []

    steps = analyse(BASE, explained=explained, until_s=30.0)
    assert [s.t for s in steps if on_object(s.update.regions, BASE, 0.1)] == []


# Light and shake -----------------------------------------------------------------------------


def test_a_moderate_brightness_jump_is_relearnt_without_regions() -> None:
    steps = analyse(EMPTY, brighter(1.3))
    relearning = [s.t for s in steps if s.update.relearning]
    assert relearning, "the jump was not seen as a global change"
    assert min(relearning) >= JUMP_S and max(relearning) < JUMP_S + 5.0
    assert [s.t for s in steps if s.update.regions] == []


def test_a_strong_brightness_jump_produces_no_region_after_relearning() -> None:
    steps = analyse(EMPTY, brighter(1.6))
    relearning = [s.t for s in steps if s.update.relearning]
    assert relearning and min(relearning) >= JUMP_S
    assert not any(s.update.relearning for s in steps[-25:])
    assert [s.t for s in steps if s.update.regions] == []


def test_an_object_left_before_a_strong_light_change_is_still_there_after_relearning() -> None:
    """Re-learning the whole view after the light changed must not learn the object with it."""
    early = LaneScene(fps=FPS, seconds=30.0, drop_s=5.0, clear_s=None)
    steps = analyse(early, brighter(1.6))
    assert on_object(next(s for s in steps if s.t >= JUMP_S - 1.0).update.regions, early, 0.3)
    relearnt = max(s.t for s in steps if s.update.relearning)
    after = [s for s in steps if s.t > relearnt + 2.0 and not passer_near_object(early, s.t)]
    assert after and all(on_object(s.update.regions, early, 0.3) for s in after)


def test_a_dark_picture_is_blind_and_keeps_the_reference() -> None:
    def night(frame: Frame) -> Image:
        return frame.image if not 8.0 <= frame.pts_s < 14.0 else frame.image // 40

    steps = analyse(EMPTY, night)
    dark = [s.t for s in steps if s.update.dark]
    assert dark and min(dark) >= 8.0 and max(dark) < 15.0
    assert all(s.update.blind and not s.update.regions for s in steps if s.update.dark)
    # only while the picture fades out and back (the short-term average follows it): the
    # reference kept the day, so the day coming back is no change to re-learn (that takes 3 s)
    relearning = [s.t for s in steps if s.update.relearning]
    assert all(8.0 <= t < 9.6 or 14.0 <= t < 15.6 for t in relearning), relearning
    assert [s.t for s in steps if s.update.regions] == []


def test_small_camera_shake_produces_no_region_before_the_drop() -> None:
    assert BASE.drop_s is not None
    steps = analyse(BASE, shaken, until_s=BASE.drop_s - 0.2)
    assert len(steps) == 60
    assert [s.t for s in steps if s.update.regions] == []


def test_a_left_object_is_still_found_under_small_camera_shake() -> None:
    assert BASE.drop_s is not None
    steps = analyse(BASE, shaken, until_s=BASE.drop_s + 12.0)
    found = [s.t for s in steps if on_object(s.update.regions, BASE, 0.5)]
    assert found and found[0] <= BASE.drop_s + 6.0


# Helpers -----------------------------------------------------------------------------------


def test_analysis_gray_is_small_float_and_keeps_the_aspect() -> None:
    gray = to_analysis_gray(np.full((360, 640, 3), 100, np.uint8))
    assert gray.shape == (180, ANALYSIS_WIDTH)
    assert gray.dtype == np.float32
    assert float(gray.mean()) == pytest.approx(100.0, abs=0.5)


def test_polygons_mask_fills_the_inside() -> None:
    mask = polygons_mask([[(0.25, 0.25), (0.75, 0.25), (0.75, 0.75), (0.25, 0.75)]], (100, 200))
    assert mask[50, 100] == 255 and mask[10, 10] == 0 and mask[50, 190] == 0
    assert (mask > 0).mean() == pytest.approx(0.25, abs=0.02)


def test_boxes_mask_grows_each_box_by_its_margin() -> None:
    box = (0.4, 0.4, 0.6, 0.6)
    plain = boxes_mask([box], (100, 100), margin=0.0)
    grown = boxes_mask([box], (100, 100), margin=0.5)
    assert (plain > 0).sum() < (grown > 0).sum()
    assert grown[31, 31] == 255 and plain[31, 31] == 0 and grown[20, 20] == 0


@pytest.mark.parametrize(("contrast", "score"), [(0.0, 0.4), (30.0, 0.7), (200.0, 1.0)])
def test_region_score(contrast: float, score: float) -> None:
    region = StaticRegion((0, 0, 1, 1), since_s=0, area=1, contrast=contrast, mask_fraction=1)
    assert region.score == pytest.approx(score)


def test_update_before_any_frame_is_empty() -> None:
    model = SceneModel({"lane": list(LANE)}, SceneParams())
    assert model.update(0.0) == SceneUpdate(0.0, 0.0, False, ())


def test_reset_forgets_the_reference() -> None:
    model = SceneModel({"lane": list(LANE)}, SceneParams())
    first, second = scene_frames(EMPTY)[:2]
    model.observe(to_analysis_gray(first.image), 0.0)
    assert model.reference is not None
    model.reset()
    assert model.reference is None
    assert model.observe(to_analysis_gray(second.image), 0.2) == 0.0
    assert model.reference is not None


def test_an_object_taken_away_after_start_up_leaves_no_ghost() -> None:
    """The box stands in the lane through the start-up median, so the reference holds it; when
    it is taken away the empty lane differs from the reference, but that is a ghost (its outline
    is in the reference, not in the picture) and is healed, never reported."""
    scene = LaneScene(fps=FPS, seconds=20.0, drop_s=0.0, clear_s=6.0, passers_every_s=1e9)
    steps = analyse(scene)
    assert [s.t for s in steps if s.update.regions] == []


def test_nothing_is_reported_during_the_start_up_median() -> None:
    steps = analyse(BASE, until_s=SceneParams().warmup_s)
    assert steps and all(s.update.regions == () for s in steps)


# A camera that moves -----------------------------------------------------------------------
# A paved square seen from above, larger than the view; the camera pans 120 px right and 20 px
# down between 4 s and 14 s and shakes by up to 1.5 px on every frame; a dark bag is dumped
# bit by bit from 10 s (while it pans) to 16 s; the light swings by 15 %.

PAVING = textured_ground(1000, 600)
WATCHED = {"square": [(0.05, 0.05), (0.95, 0.05), (0.95, 0.95), (0.05, 0.95)]}


def dark_bag() -> Image:
    patch = np.full((40, 50, 3), 38, np.uint8)
    cv2.ellipse(patch, (25, 22), (20, 14), 0, 0, 360, (22, 22, 26), -1)
    cv2.line(patch, (18, 4), (30, 10), (60, 60, 64), 2)  # the knot
    return patch


@dataclass(frozen=True, slots=True)
class Seen:
    t: float
    update: SceneUpdate
    pile: Box | None  # where the pile lies in the view (ground truth)
    view_change: npt.NDArray[np.float64]
    canvas_hw: tuple[int, int]


@functools.cache
def watch_view(view: MovingView, dumped: bool) -> tuple[Seen, ...]:
    model = SceneModel(WATCHED, SceneParams())
    seen = []
    for frame in moving_view_frames(view, PAVING, dark_bag() if dumped else None):
        model.observe(to_analysis_gray(frame.image), frame.pts_s)
        update = model.update(frame.pts_s)
        pile = view.pile_in_view(frame.pts_s, (PAVING.shape[1], PAVING.shape[0]))
        box = None if pile is None or frame.pts_s < view.pile_from_s else tuple(pile)
        reference = model.reference
        assert reference is not None
        seen.append(
            Seen(frame.pts_s, update, box, model.view_change.copy(), reference.shape)  # type: ignore[arg-type]
        )
    return tuple(seen)


def test_a_pile_dumped_while_the_camera_pans_is_found_where_it_lies() -> None:
    view = MovingView()
    seen = watch_view(view, dumped=True)
    on_pile = [
        s for s in seen if s.pile and any(box_iou(r.box, s.pile) > 0.3 for r in s.update.regions)
    ]
    assert on_pile, "the pile was never found"
    assert view.pile_from_s < on_pile[0].t <= view.pile_full_s + 2.0
    # its onset is when the first of it was dumped (while the camera was panning)
    first = [r for r in on_pile[0].update.regions if box_iou(r.box, on_pile[0].pile or r.box) > 0.3]
    assert first[0].since_s == pytest.approx(view.pile_from_s, abs=1.5)
    # found on (nearly) every frame once it is all there, and nothing is found elsewhere
    settled = [s for s in seen if s.t >= view.pile_full_s + 2.0]
    assert len([s for s in settled if s in on_pile]) >= 0.9 * len(settled)
    stray = [
        (s.t, r.box)
        for s in seen
        for r in s.update.regions
        if s.pile is None or box_iou(r.box, expand(s.pile)) == 0.0
    ]
    assert stray == []


def expand(box: Box, margin: float = 0.5) -> Box:
    w, h = box[2] - box[0], box[3] - box[1]
    return (box[0] - w * margin, box[1] - h * margin, box[2] + w * margin, box[3] + h * margin)


def test_a_camera_panning_over_an_empty_square_finds_nothing() -> None:
    seen = watch_view(MovingView(), dumped=False)
    assert [(s.t, s.update.regions) for s in seen if s.update.regions] == []


def test_the_pan_is_followed_and_the_canvas_grows_with_it() -> None:
    """The view's map onto the start-up view follows the pan (120 x 20 px at 640 x 360, so
    60 x 10 at the analysis size) within the shake, and the canvas holds what was seen."""
    view = MovingView()
    seen = watch_view(view, dumped=True)
    scale = ANALYSIS_WIDTH / view.view_wh[0]
    for s in seen:
        ox, oy = view.offset_at(s.t)
        dx, dy = (ox - view.start_xy[0]) * scale, (oy - view.start_xy[1]) * scale
        shake = view.shake_px * scale
        assert s.view_change[0, 2] == pytest.approx(dx, abs=shake + 1.0), s.t
        assert s.view_change[1, 2] == pytest.approx(dy, abs=shake + 1.0), s.t
    assert seen[-1].canvas_hw[1] > ANALYSIS_WIDTH  # it grew to the right


def test_a_fixed_camera_is_never_warped_by_the_traffic() -> None:
    model = SceneModel({"lane": list(LANE)}, SceneParams())
    for frame in scene_frames(BASE):
        model.observe(to_analysis_gray(frame.image), frame.pts_s)
        model.update(frame.pts_s)
        assert np.array_equal(model.view_change, np.eye(3)), frame.pts_s


def test_a_region_reaching_the_edge_of_what_is_judged_is_cut_by_it() -> None:
    """A dark object at the top of the picture (its upper part in the border band that is not
    judged: the legs of someone standing there) is reported cut, one in the middle whole: a
    close look holds the first on less of it covered by people (`edge.rules.base.LookedAt`)."""
    quiet = LaneScene(fps=FPS, seconds=10.0, drop_s=None, clear_s=None, passers_every_s=1e9)
    model = SceneModel({"all": [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]}, SceneParams())
    top: Box = (0.40, 0.0, 0.48, 0.10)
    middle: Box = (0.60, 0.45, 0.68, 0.55)
    regions: Sequence[StaticRegion] = ()
    for frame in scene_frames(quiet):
        image = frame.image.copy()
        if frame.pts_s >= 5.0:
            h, w = image.shape[:2]
            for x1, y1, x2, y2 in (top, middle):
                p1, p2 = (round(x1 * w), round(y1 * h)), (round(x2 * w), round(y2 * h))
                cv2.rectangle(image, p1, p2, (30, 30, 30), -1)
        model.observe(to_analysis_gray(image), frame.pts_s)
        regions = model.update(frame.pts_s).regions
    (at_top,) = [r for r in regions if box_iou(r.box, top) > 0.3]
    (in_middle,) = [r for r in regions if box_iou(r.box, middle) > 0.5]
    assert at_top.cut and not in_middle.cut
