"""Where is the camera looking? Each analysed frame mapped onto the reference view.

A fixed camera shakes in the wind and drifts as its mount warms; a hand-held or badly fixed one
pans and tilts. The scene model compares every frame with a long-term reference of the empty
scene, so it needs each frame's map onto the reference view: a homography, current frame →
reference ("world") pixels.

The map is found in two steps, both with pyramidal Lucas-Kanade optical flow on corners:

1. *chain*: corners of the previous frame followed into the current one give the small change
   between consecutive frames; composed with the previous frame's map it is a first guess,
   good even after the view has moved far from the reference (a pan);
2. *refine*: the current frame warped with that guess, corners followed from it onto the
   reference itself give the residual, so the guess never drifts away from the reference.

Each fit is a RANSAC homography (a similarity when too few corners agree), preferring the
corners on the watched ground when there are enough (the ground is a plane, while walls and far
buildings move differently when the camera moves: parallax). Fits that are not a plausible
camera motion are refused. A map within `still_px` of the identity is the identity, and one
within `hold_px` of the previous frame's stays the previous one, so a fixed camera is never
warped by estimation noise (the scene model tolerates a pixel or two of misalignment).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]

LK_WINDOW = (21, 21)
LK_LEVELS = 3
LK_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 20, 0.03)
GLANCE_POINTS = 60  # corners a glance follows to see that a resting view has not moved
GLANCE_WINDOW = (11, 11)  # ...with a small window on one pyramid level (a move of pixels)
NOISE_GAIN = 0.6  # a fit must leave the points this much closer than no motion does


@dataclass(frozen=True, slots=True)
class RegistrationParams:
    max_points: int = 300  # corners followed per step
    min_point_distance: int = 6  # pixels between corners (analysis resolution)
    max_flow_error: float = 1.0  # forward-backward disagreement (pixels) that drops a corner
    ransac_px: float = 2.0  # reprojection error (pixels) of an inlier
    min_inliers: int = 10  # fewer agreeing corners: the step cannot tell
    min_focus_points: int = 12  # corners on the watched ground needed to fit on them alone
    focus_margin: float = 0.08  # the watched area grown by this fraction of the width
    # the scene model tolerates a pixel or two of misalignment, so the map need not follow
    # estimation noise: one within `still_px` of the identity is the identity, and one within
    # `hold_px` of the previous frame's keeps that (a fixed camera is never warped by noise)
    still_px: float = 1.0
    hold_px: float = 0.75
    still_flow_px: float = 0.5  # a point that moved less than this did not move...
    still_share: float = 0.6  # ...and when this share of the points did not, the view did not
    max_step: float = 0.3  # a frame moving a corner further from its keyframe (x size): refused
    rekey: float = 0.1  # a new keyframe once the view moved a corner this far (x size) from it
    # the reference only corrects small errors of the change measured on the keyframe: a
    # reference learnt on the move, or a bus in front, must not pull the view away
    max_correction_px: float = 3.0
    # a view that has not moved from its keyframe keeps the keyframe's map without measuring
    # against the reference (the costly part); it is checked against it every this many frames
    recheck_frames: int = 10


def corner_motion(homography: Array, shape_hw: tuple[int, int]) -> float:
    """How far (pixels) the homography moves the furthest corner of an image of this size."""
    h, w = shape_hw
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32).reshape(-1, 1, 2)
    moved = cv2.perspectiveTransform(corners, homography.astype(np.float64))
    return float(np.abs(moved - corners).max())


def corner_shift(a: Array, b: Array, shape_hw: tuple[int, int]) -> float:
    """How far apart (pixels) two homographies put the furthest corner of an image."""
    h, w = shape_hw
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64).reshape(-1, 1, 2)
    return float(
        np.abs(cv2.perspectiveTransform(corners, a) - cv2.perspectiveTransform(corners, b)).max()
    )


def plausible(
    homography: Array, shape_hw: tuple[int, int], max_motion: float, base: Array | None = None
) -> bool:
    """A camera that moves keeps the picture convex and about its size, and moves no corner
    further than `max_motion` (a fraction of the picture's larger side) from where `base` puts
    it (the identity when None). RANSAC on bad matches can return folded or wild maps, which
    are refused."""
    h, w = shape_hw
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32).reshape(-1, 1, 2)
    before = corners if base is None else cv2.perspectiveTransform(corners, base)
    moved = cv2.perspectiveTransform(corners, homography.astype(np.float64))
    if not np.isfinite(moved).all():
        return False
    if float(np.abs(moved - before).max()) > max_motion * max(w, h):
        return False
    outline = moved.reshape(-1, 2).astype(np.float32)
    if not cv2.isContourConvex(outline):
        return False
    # signed areas: a mirrored picture has its corners the other way round
    area = cv2.contourArea(outline, oriented=True) / cv2.contourArea(
        before.reshape(-1, 2).astype(np.float32), oriented=True
    )
    return 0.6 <= area <= 1.6


def find_corners(image: Array, mask: Array | None, params: RegistrationParams) -> Array | None:
    """Good corners to follow (N x 1 x 2 float32), or None when the picture has too few."""
    points = cv2.goodFeaturesToTrack(
        image,
        params.max_points,
        0.01,
        params.min_point_distance,
        mask=None if mask is None else mask.astype(np.uint8),
    )
    if points is None or len(points) < params.min_inliers:
        return None
    return points.astype(np.float32)


def follow(
    source: Array,
    target: Array,
    points: Array,
    params: RegistrationParams,
    expected: Array | None = None,
    window: tuple[int, int] = LK_WINDOW,
    levels: int = LK_LEVELS,
) -> tuple[Array, Array]:
    """The corners of `source` found again in `target` (Lucas-Kanade, checked forwards and
    backwards): matching point arrays (N x 1 x 2), only the corners followed reliably. With
    `expected` (where the points should be now, from the motion so far) the search starts
    there: a long move over a repeating pattern (paving slabs) cannot lock onto the wrong tile."""
    flags = 0 if expected is None else cv2.OPTFLOW_USE_INITIAL_FLOW
    start = points.copy() if expected is None else expected.astype(np.float32).copy()
    ahead, status, _ = cv2.calcOpticalFlowPyrLK(
        source,
        target,
        points,
        start,
        winSize=window,
        maxLevel=levels,
        flags=flags,
        criteria=LK_CRITERIA,
    )
    back, status_back, _ = cv2.calcOpticalFlowPyrLK(
        target,
        source,
        ahead,
        points.copy(),
        winSize=window,
        maxLevel=levels,
        flags=cv2.OPTFLOW_USE_INITIAL_FLOW,
        criteria=LK_CRITERIA,
    )
    error = np.linalg.norm(back - points, axis=2).ravel()
    good = (status.ravel() == 1) & (status_back.ravel() == 1) & (error < params.max_flow_error)
    return points[good], ahead[good]


@dataclass(frozen=True, slots=True)
class Fit:
    """A view change and how many of the followed points agree with it."""

    homography: Array
    support: int


def _agreeing(homography: Array, src: Array, dst: Array, within_px: float) -> int:
    moved = cv2.perspectiveTransform(src.astype(np.float64), homography)
    return int((np.linalg.norm((moved - dst).reshape(-1, 2), axis=1) < within_px).sum())


def _fit(src: Array, dst: Array, params: RegistrationParams) -> Fit | None:
    """A similarity (shift, rotation, scale) unless a homography explains clearly more of the
    points: the fewer parameters, the less noise at the picture's corners."""
    if len(src) < params.min_inliers:
        return None
    best: Fit | None = None
    similarity, _ = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=params.ransac_px
    )
    if similarity is not None:
        matrix = np.vstack([similarity, [0.0, 0.0, 1.0]]).astype(np.float64)
        best = Fit(matrix, _agreeing(matrix, src, dst, params.ransac_px))
    if len(src) >= 2 * params.min_inliers:
        homography, _ = cv2.findHomography(src, dst, cv2.RANSAC, params.ransac_px)
        if homography is not None:
            matrix = np.asarray(homography, np.float64)
            support = _agreeing(matrix, src, dst, params.ransac_px)
            if best is None or support >= 1.1 * best.support + 5:
                best = Fit(matrix, support)
    if best is None or best.support < params.min_inliers or best.support < 0.4 * len(src):
        return None
    return best


def fit_view_change(
    src: Array, dst: Array, params: RegistrationParams, focus: Array | None = None
) -> Fit | None:
    """The homography taking `src` points to `dst` points: the identity when most of them did
    not move (what moved is people and cars), None when they do not agree on one. With a
    `focus` mask (of the `src` picture), the points on it are fitted alone when there are
    enough of them: the watched ground is one plane."""
    if len(src) < params.min_inliers:
        return None
    moved = np.linalg.norm((dst - src).reshape(-1, 2), axis=1)
    still = Fit(np.eye(3), int((moved < params.ransac_px).sum()))
    if float(np.mean(moved < params.still_flow_px)) >= params.still_share:
        return still
    fitted: Fit | None = None
    if focus is not None:
        on = on_mask(focus, src)
        if int(on.sum()) >= params.min_focus_points:
            fitted = _fit(src[on], dst[on], params)
    if fitted is None:
        fitted = _fit(src, dst, params)
    if fitted is None:
        return None
    # on a weak texture (asphalt, a plain floor) the flow is noisy: a fit that hardly explains
    # the points better than no motion at all is the noise, not the camera
    error = cv2.perspectiveTransform(src.astype(np.float64), fitted.homography) - dst
    residual = float(np.median(np.linalg.norm(error.reshape(-1, 2), axis=1)))
    if residual > NOISE_GAIN * float(np.median(moved)):
        return still
    return Fit(fitted.homography, _agreeing(fitted.homography, src, dst, params.ransac_px))


def on_mask(mask: Array, points: Array) -> Array:
    """Which of the points (N x 1 x 2, pixels) lie on the mask's non-zero pixels (clipped to
    the mask)."""
    h, w = mask.shape[:2]
    xs = np.clip(points[:, 0, 0].astype(np.int32), 0, w - 1)
    ys = np.clip(points[:, 0, 1].astype(np.int32), 0, h - 1)
    on: Array = mask[ys, xs] > 0
    return on


def shape_hw(image: Array) -> tuple[int, int]:
    return int(image.shape[0]), int(image.shape[1])


def translation(dx: float, dy: float) -> Array:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]], np.float64)


@dataclass(slots=True)
class _Keyframe:
    """A past frame the current ones are measured against, with its map onto the reference."""

    image: Array  # uint8
    homography: Array  # keyframe -> reference view
    corners: Array | None  # its corners worth following (people and vehicles left out)
    last_step: Array = field(default_factory=lambda: np.eye(3))  # the latest frame -> keyframe


class ViewTracker:
    """Keeps the map of the current frame onto the reference view, frame after frame.

    `align` is given each analysed frame (grey, analysis resolution) with the reference as the
    scene model holds it: a canvas at least as large as the reference view, whose pixel
    (x + ox, y + oy) is the reference view's (x, y), and the mask of canvas pixels that hold a
    learnt reference. It returns the map of the frame onto the reference view.

    The change is measured against a *keyframe*, a past frame whose map is known: the first
    frame for as long as the view stays close to it (a fixed camera measures every frame
    against its first, so nothing accumulates), a newer one once the camera has moved away
    (a pan); errors add up only once per keyframe, not once per frame. Two starting points
    are then refined against the reference: the previous frame's map (the camera did not move
    since) and the keyframe's map chained with the measured change. The one more of the
    reference agrees with wins: a car or a bus filling the picture moves the points as a pan
    would, but the reference around it stays put. Corners on the people and vehicles of the
    last analysed frame are not followed at all, so a crowd walking one way does not pass for
    a pan either.
    """

    def __init__(self, params: RegistrationParams | None = None) -> None:
        self.params = params or RegistrationParams()
        self._key: _Keyframe | None = None
        self._homography: Array = np.eye(3)  # previous frame -> reference view
        self.lost_steps = 0  # consecutive frames whose change could not be measured
        self._unchecked = 0  # frames since the map was last measured against the reference

    @property
    def homography(self) -> Array:
        return self._homography

    def reset(self) -> None:
        self._key = None
        self._homography = np.eye(3)
        self.lost_steps = self._unchecked = 0

    def start_again_from_here(self) -> None:
        """The scene was learnt anew where the camera looks now: the next frame becomes the
        keyframe, with the current map."""
        self._key = None
        self.lost_steps = 0

    def align(
        self,
        gray: Array,
        reference: Array,
        learnt: Array,
        offset: tuple[int, int] = (0, 0),
        focus: Array | None = None,
        movers: Array | None = None,
    ) -> Array:
        """The map (3x3, current frame -> reference view pixels) of this frame. `focus`, in
        canvas pixels, marks the watched ground (fitted first); `movers`, in frame pixels, where
        people and vehicles were last seen (their corners are not followed: a crowd walking one
        way must not pass for a pan)."""
        p = self.params
        image = np.clip(gray, 0, 255).astype(np.uint8)
        shape = shape_hw(image)
        still = None if movers is None else (~movers).astype(np.uint8) * 255
        if self._unchecked < p.recheck_frames and self._glance(image, still, shape):
            self._unchecked += 1
            self.lost_steps = 0
            return self._homography  # a fixed camera: nothing moved since the keyframe
        # where the camera was a frame ago, and where the change from the keyframe puts it
        guesses: list[Array] = [self._homography]
        step = None if self._key is None else self._step(self._key, image, still)
        if self._key is not None:
            self.lost_steps = 0 if step is not None else self.lost_steps + 1
        if self._key is not None and step is not None:
            if self._resting(step, shape) and self._unchecked < p.recheck_frames:
                self._unchecked += 1
                return self._homography  # a fixed camera: nothing moved since the keyframe
            guesses.append(self._key.homography @ step.homography)
        self._unchecked = 0
        if focus is not None:
            margin = max(3, round(self.params.focus_margin * image.shape[1]))
            focus = cv2.dilate(focus.astype(np.uint8), np.ones((margin, margin), np.uint8))
        known = np.clip(reference, 0, 255).astype(np.uint8)
        fits = [
            self._refine(image, guess, reference, known, learnt, offset, focus, still)
            for guess in guesses
        ]
        best = max(fits, key=lambda fit: fit.support)  # the first of equals: no move
        if best.support < p.min_inliers and step is not None and self._whole_view(step):
            # the reference cannot tell (a pan beyond what it has learnt) while the whole
            # keyframe moved as one: that measured change is all there is
            best = fits[-1]
        homography = best.homography
        if corner_motion(homography, shape) < p.still_px:
            homography = np.eye(3)
        elif corner_shift(homography, self._homography, shape) < p.hold_px:
            homography = self._homography
        self._homography = homography
        # a keyframe lost for a moment (a bus in front) comes back: it is only replaced once
        # the view has moved on (a camera turned for good makes the scene model start again)
        if self._key is None or (step is not None and self._moved_on(step, shape)):
            self._key = _Keyframe(image, homography, find_corners(image, still, p))
        return homography

    def _glance(self, image: Array, still: Array | None, shape: tuple[int, int]) -> bool:
        """A cheap look (a few corners, a small search) that the frame still shows the view of
        the keyframe whose map is the current one: most of the time a fixed camera's answer."""
        p, key = self.params, self._key
        if key is None or key.corners is None:
            return False
        if corner_shift(key.homography, self._homography, shape) >= p.hold_px:
            return False
        corners = np.ascontiguousarray(key.corners[:: max(1, len(key.corners) // GLANCE_POINTS)])
        if still is not None:
            corners = corners[on_mask(still, corners)]
        if len(corners) < p.min_inliers:
            return False
        before, now = follow(key.image, image, corners, p, window=GLANCE_WINDOW, levels=1)
        if len(before) < max(p.min_inliers, len(corners) // 2):
            return False
        fit = fit_view_change(now, before, p)
        return fit is not None and corner_motion(fit.homography, shape) < p.still_px

    def _resting(self, step: Fit, shape: tuple[int, int]) -> bool:
        """The frame shows the keyframe's view (within `still_px`) and the map is still the
        keyframe's: nothing to measure."""
        assert self._key is not None  # noqa: S101
        p = self.params
        return corner_motion(step.homography, shape) < p.still_px and (
            corner_shift(self._key.homography, self._homography, shape) < p.hold_px
        )

    def _whole_view(self, step: Fit) -> bool:
        """Did most of the keyframe's corners move as the step says (the camera moved), not
        just some of them (something large passing by)?"""
        assert self._key is not None and self._key.corners is not None  # noqa: S101
        return step.support >= 0.6 * len(self._key.corners)

    def _moved_on(self, step: Fit, shape: tuple[int, int]) -> bool:
        """Time for a new keyframe: the view has moved well away from it, or few of its
        corners are still found."""
        assert self._key is not None and self._key.corners is not None  # noqa: S101
        far = corner_motion(step.homography, shape) > self.params.rekey * max(shape)
        return far or step.support < 0.5 * len(self._key.corners)

    def _step(self, key: _Keyframe, image: Array, still: Array | None) -> Fit | None:
        """current frame -> keyframe, or None when it cannot be measured. Corners that a
        person or a vehicle covers now (`still` is 0 there) are not followed."""
        p = self.params
        if key.corners is None:
            return None
        # the camera keeps moving as it did: the corners are looked for where the latest
        # frame had them
        expected = cv2.perspectiveTransform(key.corners, np.linalg.inv(key.last_step))
        corners = key.corners
        if still is not None:
            free = on_mask(still, expected)
            corners, expected = corners[free], expected[free]
            if len(corners) < p.min_inliers:
                return None
        before, now = follow(key.image, image, corners, p, expected)
        step = fit_view_change(now, before, p)
        if step is None or not plausible(step.homography, shape_hw(image), p.max_step):
            return None
        key.last_step = step.homography
        return step

    def _refine(
        self,
        image: Array,
        guess: Array,
        reference: Array,
        known: Array,
        learnt: Array,
        offset: tuple[int, int],
        focus: Array | None,
        still: Array | None,
    ) -> Fit:
        """The guess corrected against the reference itself, where the two overlap, with the
        number of reference points that agree (0: nothing to compare)."""
        p = self.params
        to_canvas = translation(*offset)
        size = (int(reference.shape[1]), int(reference.shape[0]))
        mapping: Array = np.asarray(to_canvas @ guess, np.float64)
        warped = cv2.warpPerspective(image, mapping, size, flags=cv2.INTER_LINEAR)
        usable_view = np.full(shape_hw(image), 255, np.uint8) if still is None else still
        covered = cv2.warpPerspective(usable_view, mapping, size, flags=cv2.INTER_NEAREST)
        usable = cv2.erode(covered, np.ones((7, 7), np.uint8)) > 0
        usable &= learnt
        corners = find_corners(warped, usable.astype(np.uint8) * 255, p)
        if corners is None:
            return Fit(guess, 0)
        src, dst = follow(warped, known, corners, p)
        unrefined = Fit(guess, _agreeing(np.eye(3), src, dst, p.ransac_px))
        residual = fit_view_change(src, dst, p, focus)
        # a correction few of the followed points agree on (repeating tiles, a reference
        # learnt on the move) is noise: the guess stands
        if residual is None or residual.support < max(2 * p.min_inliers, len(src) // 2):
            return unrefined
        refined = np.asarray(np.linalg.inv(to_canvas) @ residual.homography @ mapping, np.float64)
        limit = p.max_correction_px / max(shape_hw(image))
        if not plausible(refined, shape_hw(image), limit, guess):
            return unrefined
        return Fit(refined, residual.support)
