"""Registration of frames to the reference view (edge.analysis.scene.registration) on synthetic
pictures whose true motion is known: shifts, rotations and pans recovered, noise and movers
ignored."""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from edge.analysis.scene.registration import (
    RegistrationParams,
    ViewTracker,
    corner_motion,
    corner_shift,
    fit_view_change,
    plausible,
    translation,
)
from edge.offline.synthetic import textured_ground

Array = npt.NDArray[np.float32]
SHAPE = (180, 320)  # the scene model's analysis size


def ground(width: int = 480, height: int = 300) -> Array:
    picture = cv2.cvtColor(textured_ground(width, height, seed=3), cv2.COLOR_BGR2GRAY)
    return cv2.GaussianBlur(picture, (5, 5), 0).astype(np.float32)


def view(scene: Array, to_scene: Array) -> Array:
    """The analysis-size view whose pixels `to_scene` maps into the scene."""
    h, w = SHAPE
    return cv2.warpPerspective(
        scene, to_scene, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    ).astype(np.float32)


def similarity(dx: float, dy: float, degrees: float = 0.0, scale: float = 1.0) -> Array:
    h, w = SHAPE
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, scale)
    matrix[:, 2] += (dx, dy)
    return np.vstack([matrix, [0.0, 0.0, 1.0]])


def noisy(image: Array, seed: int) -> Array:
    rng = np.random.default_rng(seed)
    return (image + rng.normal(0, 2.0, image.shape)).astype(np.float32)


def test_points_that_did_not_move_give_the_identity() -> None:
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 300, (60, 1, 2)).astype(np.float32)
    dst = src + rng.normal(0, 0.1, src.shape).astype(np.float32)
    # a third of them on something that moved (a car) does not move the view
    dst[:20] += 9.0
    fit = fit_view_change(src, dst, RegistrationParams())
    assert fit is not None and np.array_equal(fit.homography, np.eye(3))


def test_a_shift_of_the_points_is_fitted() -> None:
    rng = np.random.default_rng(2)
    src = rng.uniform(0, 300, (80, 1, 2)).astype(np.float32)
    dst = src + np.array([6.5, -3.0], np.float32)
    fit = fit_view_change(src, dst, RegistrationParams())
    assert fit is not None and fit.support == 80
    assert fit.homography[:2, 2] == pytest.approx([6.5, -3.0], abs=0.05)


def test_points_that_agree_on_nothing_give_none() -> None:
    rng = np.random.default_rng(3)
    src = rng.uniform(0, 300, (40, 1, 2)).astype(np.float32)
    dst = rng.uniform(0, 300, (40, 1, 2)).astype(np.float32)
    assert fit_view_change(src, dst, RegistrationParams()) is None


def test_implausible_maps_are_refused() -> None:
    assert plausible(similarity(5, 3, 2.0), SHAPE, 0.1)
    assert not plausible(similarity(80, 0), SHAPE, 0.1)  # a quarter of the picture at once
    folded = np.array([[-1.0, 0.0, 320.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert not plausible(folded, SHAPE, 10.0)  # mirrored
    assert not plausible(similarity(0, 0, 0.0, 2.5), SHAPE, 10.0)  # zoomed 2.5x
    assert corner_motion(translation(3, -4), SHAPE) == pytest.approx(4.0)
    assert corner_shift(translation(3, 0), translation(1, 0), SHAPE) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("dx", "dy", "degrees"),
    [(4.0, -3.0, 0.0), (-9.5, 6.0, 0.0), (3.0, 2.0, 2.5), (0.0, 0.0, -3.0)],
)
def test_a_moved_view_is_mapped_back_onto_the_reference(
    dx: float, dy: float, degrees: float
) -> None:
    scene = ground()
    start = translation(60, 50)  # the reference view: a window of the scene
    reference = view(scene, start)
    tracker = ViewTracker()
    learnt = np.ones(SHAPE, bool)
    tracker.align(noisy(reference, 0), reference, learnt)
    moved = start @ similarity(dx, dy, degrees)  # the camera moved: view -> scene
    homography = tracker.align(noisy(view(scene, moved), 1), reference, learnt)
    truth = np.linalg.inv(start) @ moved  # current view -> reference view
    assert corner_shift(homography, truth, SHAPE) < 0.6


def test_a_pan_is_followed_far_beyond_the_first_view() -> None:
    """A camera panning 1.5 views to the right, 6 px a frame: keyframes carry the map on."""
    scene = ground(900, 300)
    tracker = ViewTracker()
    reference = view(scene, translation(10, 40))
    canvas = np.zeros((180, 900), np.float32)
    canvas[:, :320] = reference
    learnt = np.zeros(canvas.shape, bool)
    learnt[:, :320] = True
    error = 0.0
    for step in range(80):
        x = 10 + 6.0 * step
        homography = tracker.align(noisy(view(scene, translation(x, 40)), step), canvas, learnt)
        error = max(error, corner_shift(homography, translation(x - 10, 0), SHAPE))
    assert error < 1.5  # over 470 px of pan


def test_a_fixed_camera_stays_put_while_a_bus_fills_most_of_the_picture() -> None:
    """A big textured block crossing the view moves most corners the same way, as a pan
    would; the reference around it says the camera did not move."""
    scene = ground()
    reference = view(scene, translation(60, 50))
    bus = noisy(np.full((120, 220), 40.0, np.float32), 9)
    cv2.rectangle(bus, (10, 10), (210, 40), 200.0, 2)
    for x in range(20, 200, 25):
        cv2.rectangle(bus, (x, 60), (x + 15, 90), 230.0, -1)
    tracker = ViewTracker()
    learnt = np.ones(SHAPE, bool)
    for step in range(12):
        frame = noisy(reference, step)
        left = -60 + 25 * step  # drives through from the left
        x1, x2 = max(0, left), min(320, left + 220)
        if x2 > x1:
            frame[30:150, x1:x2] = bus[:, x1 - left : x2 - left]
        homography = tracker.align(frame, reference, learnt)
        assert np.array_equal(homography, np.eye(3)), step


def test_corners_on_people_are_not_followed() -> None:
    """A crowd walking one way: their corners moved, the floor's did not. Masked as movers,
    they do not pull the view along."""
    scene = ground()
    reference = view(scene, translation(60, 50))
    tracker = ViewTracker()
    learnt = np.ones(SHAPE, bool)
    tracker.align(reference, reference, learnt)
    frame = reference.copy()
    movers = np.zeros(SHAPE, bool)
    walkers = noisy(np.full((40, 14), 30.0, np.float32), 4)
    cv2.line(walkers, (0, 10), (13, 10), 220.0, 2)
    for i, x in enumerate(range(10, 300, 24)):
        y = 20 + (i % 4) * 35
        frame[y : y + 40, x + 8 : x + 22] = walkers  # each moved 8 px to the right
        movers[y - 4 : y + 44, x - 4 : x + 26] = True
    homography = tracker.align(frame, reference, learnt, movers=movers)
    assert np.array_equal(homography, np.eye(3))


def test_reset_forgets_the_view() -> None:
    scene = ground()
    reference = view(scene, translation(60, 50))
    tracker = ViewTracker()
    learnt = np.ones(SHAPE, bool)
    tracker.align(reference, reference, learnt)
    tracker.align(view(scene, translation(66, 50)), reference, learnt)
    assert not np.array_equal(tracker.homography, np.eye(3))
    tracker.reset()
    assert np.array_equal(tracker.homography, np.eye(3))
    assert math.isclose(tracker.lost_steps, 0)
