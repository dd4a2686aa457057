"""The scene model: what moves now, and what has newly appeared and stays.

Works on a small grey copy of each analysed frame:

* motion: the change against the previous analysed frame (drives the detector gate);
* a long-term *reference* of the empty scene, updated slowly and only where nothing new is
  present, so an object left behind never fades into the background while it is still there;
* static changes: pixels that differ from the reference, do not move, and are not covered by
  something the detector explains (people, vehicles). Connected, big enough and stable for a
  while, they become `StaticRegion`s: goods, bags, bins, piles, found with no class needed.

Global brightness swings (auto-exposure, clouds) are removed by a gain match before comparing;
camera shake, drift and slow pans by registering each frame to the reference view (ORB feature
homography, or a phase-correlation shift where the view has too little texture); a change over
most of the watched area at once (lights on, day to night, a fade to black) re-learns the
reference instead of raising regions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge.types import Box

ANALYSIS_WIDTH = 320
MIN_SHIFT_PX = 0.75  # a view change below this (analysis pixels) is estimation noise: no warp
SATURATED = 250.0  # grey level from which a pixel is taken as clipped
WARMUP_FRAMES = 30  # at most this many frames go into the start-up median

Array = npt.NDArray[Any]


@dataclass(frozen=True, slots=True)
class SceneParams:
    reference_tau_s: float = 60.0  # time constant of the reference where the scene is unchanged
    recent_tau_s: float = 0.6  # time constant of the short-term average used for "is it still"
    diff_threshold: float = 18.0  # grey levels (after gain match) that count as a change
    motion_threshold: float = 14.0  # grey levels between consecutive frames that count as motion
    static_after_s: float = 1.5  # a change must stay still this long before it is a region
    dropout_s: float = 1.0  # a pixel may look unchanged this long without losing its clock
    global_change: float = 0.5  # changed fraction of the watched area that means "lighting"
    relearn_s: float = 3.0  # how long a global change must last before the reference resets
    min_region_px: int = 12  # at ANALYSIS_WIDTH, below this a component is noise
    warmup_s: float = 3.0  # the reference is the median of the frames of the first seconds
    activity_tau_s: float = 1.0  # memory of the per-pixel motion activity
    max_activity: float = 0.08  # a region that still moves more often than this is not left
    lighting_ncc: float = 0.9  # a region whose texture matches the reference is only lighting
    stabilise: bool = True  # register each frame to the reference view (shake, drift, pan)


@dataclass(frozen=True, slots=True)
class StaticRegion:
    box: Box  # normalised
    since_s: float  # when the change first appeared (median over its pixels)
    area: float  # fraction of the frame area
    contrast: float  # mean grey difference against the reference
    mask_fraction: float  # fraction of its box that is changed

    @property
    def score(self) -> float:
        return float(min(1.0, 0.4 + self.contrast / 100.0))


@dataclass(frozen=True, slots=True)
class SceneUpdate:
    motion_fraction: float  # share of the watched area that moved since the last frame
    changed_fraction: float  # share of the watched area that differs from the reference
    relearning: bool  # a global change is being re-learnt: regions are suppressed
    regions: tuple[StaticRegion, ...]


def _hw(image: Array) -> tuple[int, int]:
    return int(image.shape[0]), int(image.shape[1])


def _edge_strength(image: Array, where: Array) -> float:
    """Mean gradient magnitude of `image` over the pixels of `where`."""
    gx = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3)
    return float(cv2.magnitude(gx, gy)[where].mean())


def _plausible_view_change(homography: Array, shape_hw: tuple[int, int]) -> bool:
    """A camera that shakes, drifts or pans moves the view by a fraction of itself and keeps its
    size and shape; RANSAC on a bad match set can return wild warps, which are refused."""
    h, w = shape_hw
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32).reshape(-1, 1, 2)
    moved = cv2.perspectiveTransform(corners, homography).reshape(-1, 2)
    if float(np.abs(moved - corners.reshape(-1, 2)).max()) > 0.25 * max(w, h):
        return False
    area = 0.5 * abs(
        float(
            np.dot(moved[:, 0], np.roll(moved[:, 1], 1))
            - np.dot(moved[:, 1], np.roll(moved[:, 0], 1))
        )
    )
    return 0.7 <= area / float(w * h) <= 1.4


def _alpha(dt_s: float, tau_s: float) -> float:
    return 1.0 - math.exp(-max(dt_s, 0.0) / tau_s)


def to_analysis_gray(image_bgr: Array, width: int = ANALYSIS_WIDTH) -> Array:
    """A small, slightly blurred grey copy as float32: the input of every scene computation."""
    h, w = image_bgr.shape[:2]
    height = max(1, round(h * width / w))
    small = cv2.resize(image_bgr, (width, height), interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    return cv2.GaussianBlur(gray, (5, 5), 0).astype(np.float32)


def polygons_mask(
    polygons: Sequence[Sequence[tuple[float, float]]], shape_hw: tuple[int, int]
) -> Array:
    """A uint8 mask (255 inside) of normalised polygons at the given size."""
    h, w = shape_hw
    mask: Array = np.zeros((h, w), np.uint8)
    for polygon in polygons:
        pts = np.array([[x * w, y * h] for x, y in polygon], np.float32).round().astype(np.int32)
        cv2.fillPoly(mask, [pts], (255,))
    return mask


def boxes_mask(boxes: Sequence[Box], shape_hw: tuple[int, int], margin: float = 0.1) -> Array:
    """A uint8 mask of normalised boxes, each grown by `margin` of its size."""
    h, w = shape_hw
    mask: Array = np.zeros((h, w), np.uint8)
    for x1, y1, x2, y2 in boxes:
        mx, my = (x2 - x1) * margin, (y2 - y1) * margin
        p1 = (int((x1 - mx) * w), int((y1 - my) * h))
        p2 = (math.ceil((x2 + mx) * w), math.ceil((y2 + my) * h))
        cv2.rectangle(mask, p1, p2, (255,), thickness=-1)
    return mask


class SceneModel:
    """Motion and static-change analysis for one camera; time is passed in (stream seconds)."""

    def __init__(
        self, watch_polygons: Sequence[Sequence[tuple[float, float]]], params: SceneParams
    ) -> None:
        self.params = params
        self._watch_polygons = [list(p) for p in watch_polygons]
        self._watch: Array | None = None
        self._reference: Array | None = None
        self._recent: Array | None = None
        self._previous: Array | None = None
        self._changed_since: Array | None = None
        self._last_changed: Array | None = None
        self._activity: Array | None = None  # recent share of frames with motion, per pixel
        self._last_t: float | None = None
        self._global_since: float | None = None
        self._warmup: list[Array] | None = None
        self._started_s = 0.0
        self._frame: Array | None = None
        self._motion: Array = np.zeros((1, 1), bool)
        self._valid: Array | None = None
        self._dt = 0.0
        self._homography: Array | None = None  # current view -> reference view, None: identity
        self._window: Array | None = None  # Hanning window for phase correlation
        self._known: Array | None = None  # reference pixels seen free of people and vehicles
        self._ref_features: tuple[Sequence[cv2.KeyPoint], Array | None] | None = None
        self._orb = cv2.ORB.create(nfeatures=500, fastThreshold=12)
        self._matcher = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)

    @property
    def reference(self) -> Array | None:
        return self._reference

    def reset(self) -> None:
        """Forget the scene (after a reconnect or a camera move)."""
        self._reference = self._recent = self._previous = self._frame = self._valid = None
        self._last_t = self._global_since = None

    def observe(self, gray: Array, now_s: float) -> float:
        """First step for each analysis frame (from `to_analysis_gray`): register it to the
        reference view and measure motion. Returns the share of the watched area that moved."""
        if self._reference is None or self._reference.shape != gray.shape:
            self._start(gray, now_s)
            self._frame = gray
            self._motion = np.zeros(gray.shape, bool)
            return 0.0
        assert self._previous is not None and self._watch is not None  # noqa: S101
        self._dt = now_s - (self._last_t if self._last_t is not None else now_s)
        self._last_t = now_s
        gray, covered = self._register(gray)
        watch = self._watch > 0
        self._valid = watch if covered is None else watch & covered
        self._motion = cv2.absdiff(gray, self._previous) > self.params.motion_threshold
        assert self._activity is not None  # noqa: S101
        cv2.accumulateWeighted(
            self._motion.astype(np.float32),
            self._activity,
            _alpha(self._dt, self.params.activity_tau_s),
        )
        self._previous = gray
        self._frame = gray
        return float((self._motion & self._valid).sum()) / max(1, int(self._valid.sum()))

    def update(self, now_s: float, explained: Sequence[Box] = ()) -> SceneUpdate:
        """Second step: find static changes. `explained` are boxes of things the detector
        recognises (people, vehicles), whose pixels are never judged as left objects."""
        if self._valid is None or self._frame is None:
            return SceneUpdate(0.0, 0.0, False, ())
        assert self._recent is not None and self._reference is not None  # noqa: S101
        p = self.params
        gray, valid, dt = self._frame, self._valid, self._dt
        valid_px = max(1, int(valid.sum()))
        motion_fraction = float((self._motion & valid).sum()) / valid_px
        cv2.accumulateWeighted(gray, self._recent, _alpha(dt, p.recent_tau_s))
        if self._warming_up(gray, now_s):
            return SceneUpdate(motion_fraction, 0.0, False, ())
        explained = [self._to_reference(box, _hw(gray)) for box in explained]
        explained_mask = boxes_mask(explained, _hw(gray)) > 0 if explained else None
        if self._known is None:  # what the first frame showed under people and vehicles is unknown
            self._known = np.ones(_hw(gray), bool) if explained_mask is None else ~explained_mask
        gain = self._gain(gray, valid)
        expected = self._reference * gain
        diff = cv2.absdiff(self._recent, expected)
        # clipped pixels (over-exposed now, or would be at this gain) cannot be compared
        saturated = (self._recent >= SATURATED) | (expected >= SATURATED)
        changed = (diff > p.diff_threshold) & valid & self._known & ~saturated
        changed_fraction = float(changed.sum()) / valid_px
        if changed_fraction >= p.global_change:
            return self._relearn(gray, now_s, motion_fraction, changed_fraction)
        self._global_since = None
        kernel = np.ones((5, 5), np.uint8)
        still = ~cv2.dilate(self._motion.astype(np.uint8), kernel).astype(bool)
        self._track_change_clock(changed, now_s)
        self._learn_uncovered(still, explained_mask)
        self._absorb_background(gray, changed, still, explained_mask, dt, gain)
        regions = self._regions(changed & still, diff, now_s, explained_mask)
        return SceneUpdate(motion_fraction, changed_fraction, False, regions)

    # -- internals ---------------------------------------------------------------------------

    def _start(self, gray: Array, now_s: float) -> None:
        self._reference = gray.copy()
        self._recent = gray.copy()
        self._previous = gray.copy()
        self._changed_since = np.full(gray.shape, np.nan, np.float32)
        self._last_changed = np.full(gray.shape, -np.inf, np.float32)
        self._activity = np.zeros(gray.shape, np.float32)
        self._watch = polygons_mask(self._watch_polygons, _hw(gray))
        self._known = None
        self._last_t = now_s
        self._started_s = now_s
        self._warmup = [gray.copy()]
        self._set_reference(gray)

    def _warming_up(self, gray: Array, now_s: float) -> bool:
        """For the first `warmup_s` the reference is learnt as the per-pixel median of the frames
        seen, so people and cars passing (or standing in the first frame and leaving) do not
        stay in it as ghosts. No regions are reported meanwhile."""
        if self._warmup is None:
            return False
        if now_s - self._started_s < self.params.warmup_s:
            if len(self._warmup) < WARMUP_FRAMES:
                self._warmup.append(gray.copy())
            return True
        self._set_reference(np.median(np.stack(self._warmup), axis=0).astype(np.float32))
        self._warmup = None
        self._known = np.ones(_hw(gray), bool)  # the median has no passers-by in it
        assert self._changed_since is not None  # noqa: S101
        self._changed_since[:] = np.nan
        return False

    def _set_reference(self, gray: Array) -> None:
        self._reference = gray.copy()
        if self.params.stabilise:
            keypoints, descriptors = self._orb.detectAndCompute(gray.astype(np.uint8), None)  # type: ignore[call-overload]
            self._ref_features = (keypoints, descriptors)

    def _register(self, gray: Array) -> tuple[Array, Array | None]:
        self._homography = None
        warped, covered, homography = self._find_registration(gray)
        self._homography = homography
        return warped, covered

    def _find_registration(self, gray: Array) -> tuple[Array, Array | None, Array | None]:
        """Map the frame onto the reference view, undoing camera shake, drift and pan.

        First a homography from ORB features matched to the reference's (fitted with RANSAC and
        checked for sanity); failing that, a translation by phase correlation (shake of a few
        pixels on a low-texture view). Returns the warped frame, the mask of pixels it covers
        and the homography; `None` for both when the frame is already aligned.
        """
        homography = self._feature_homography(gray)
        if homography is None:
            homography = self._shift_homography(gray)
        h, w = _hw(gray)
        corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32).reshape(-1, 1, 2)
        if homography is None:
            return gray, None, None
        moved = cv2.perspectiveTransform(corners, homography) - corners
        if float(np.abs(moved).max()) < MIN_SHIFT_PX:
            return gray, None, None
        warped = cv2.warpPerspective(
            gray, homography, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        covered = cv2.warpPerspective(
            np.full((h, w), 255, np.uint8), homography, (w, h), flags=cv2.INTER_NEAREST
        )
        covered = cv2.erode(covered, np.ones((5, 5), np.uint8))
        return warped, covered > 0, homography

    def _feature_homography(self, gray: Array) -> Array | None:
        """The view change found from features: the identity when the camera did not move,
        None when the features cannot tell (too few, or no plausible fit)."""
        if self._ref_features is None:
            return None
        ref_kp, ref_desc = self._ref_features
        image = gray.astype(np.uint8)
        keypoints, descriptors = self._orb.detectAndCompute(image, None)  # type: ignore[call-overload]
        if descriptors is None or len(keypoints) < 20 or ref_desc is None:
            return None
        matches = self._matcher.match(descriptors, ref_desc)
        if len(matches) < 20:
            return None
        src = np.array([keypoints[m.queryIdx].pt for m in matches], np.float32).reshape(-1, 1, 2)
        dst = np.array([ref_kp[m.trainIdx].pt for m in matches], np.float32).reshape(-1, 1, 2)
        homography, inliers = cv2.findHomography(src, dst, cv2.RANSAC, 3.0)
        if homography is None or inliers is None:
            return None
        count = int(inliers.sum())
        if count < 15 or count < 0.3 * len(matches):
            return None
        # a fixed camera that did not move: keep the identity unless the warp explains clearly
        # more matches (moving people and cars give a few matches that fit neither)
        still = int((np.linalg.norm(src - dst, axis=2) < 3.0).sum())
        if still >= 0.8 * count:
            return np.eye(3)
        return homography if _plausible_view_change(homography, _hw(gray)) else None

    def _shift_homography(self, gray: Array) -> Array | None:
        assert self._reference is not None  # noqa: S101
        h, w = _hw(gray)
        if self._window is None or self._window.shape != (h, w):
            self._window = cv2.createHanningWindow((w, h), cv2.CV_32F)
        # copies: with a window, phaseCorrelate multiplies its inputs in place
        (dx, dy), response = cv2.phaseCorrelate(self._reference.copy(), gray.copy(), self._window)
        if response < 0.2 or max(abs(dx) / w, abs(dy) / h) > 0.1:
            return None
        return np.array([[1.0, 0.0, -dx], [0.0, 1.0, -dy], [0.0, 0.0, 1.0]], np.float64)

    def _map_box(self, box: Box, shape_hw: tuple[int, int], inverse: bool) -> Box:
        if self._homography is None:
            return box
        h, w = shape_hw
        matrix = np.linalg.inv(self._homography) if inverse else self._homography
        x1, y1, x2, y2 = box
        corners = np.array(
            [[x1 * w, y1 * h], [x2 * w, y1 * h], [x2 * w, y2 * h], [x1 * w, y2 * h]], np.float32
        ).reshape(-1, 1, 2)
        moved = cv2.perspectiveTransform(corners, matrix).reshape(-1, 2)
        xs = np.clip(moved[:, 0] / w, 0.0, 1.0)
        ys = np.clip(moved[:, 1] / h, 0.0, 1.0)
        return (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))

    def _to_reference(self, box: Box, shape_hw: tuple[int, int]) -> Box:
        """A box of the current view in the reference view's coordinates."""
        return self._map_box(box, shape_hw, inverse=False)

    def _to_view(self, box: Box, shape_hw: tuple[int, int]) -> Box:
        """A box of the reference view in the current view's coordinates."""
        return self._map_box(box, shape_hw, inverse=True)

    def _gain(self, gray: Array, watch: Array) -> float:
        """Brightness ratio now/reference over the watched area (auto-exposure, clouds)."""
        assert self._reference is not None  # noqa: S101
        ref_level = float(np.median(self._reference[watch])) if watch.any() else 0.0
        cur_level = float(np.median(gray[watch])) if watch.any() else 0.0
        if ref_level < 4.0:
            return 1.0
        return float(np.clip(cur_level / ref_level, 0.25, 4.0))

    def _relearn(
        self, gray: Array, now_s: float, motion_fraction: float, changed_fraction: float
    ) -> SceneUpdate:
        """Most of the view changed at once: lighting, not objects. Re-learn once it settles."""
        if self._global_since is None:
            self._global_since = now_s
        if now_s - self._global_since >= self.params.relearn_s and motion_fraction < 0.02:
            assert self._recent is not None  # noqa: S101
            self._set_reference(self._recent)
            self._known = np.ones(_hw(gray), bool)
            self._changed_since = np.full(gray.shape, np.nan, np.float32)
            self._global_since = None
        return SceneUpdate(motion_fraction, changed_fraction, True, ())

    def _track_change_clock(self, changed: Array, now_s: float) -> None:
        assert self._changed_since is not None and self._last_changed is not None  # noqa: S101
        start = changed & np.isnan(self._changed_since)
        self._changed_since[start] = now_s
        self._last_changed[changed] = now_s
        lapsed = ~changed & (now_s - self._last_changed > self.params.dropout_s)
        self._changed_since[lapsed] = np.nan

    def _learn_uncovered(self, still: Array, explained: Array | None) -> None:
        """Pixels hidden at start (under a person or a vehicle) are learnt once they show the
        quiet scene, so the spot a person leaves is never taken for a new object (a ghost)."""
        assert self._known is not None and self._reference is not None  # noqa: S101
        assert self._recent is not None  # noqa: S101
        assert self._activity is not None  # noqa: S101
        learn = ~self._known & still & (self._activity < 0.02)  # no trail of motion left either
        if explained is not None:
            learn &= ~explained
        self._reference[learn] = self._recent[learn]
        self._known |= learn

    def _absorb_background(
        self,
        gray: Array,
        changed: Array,
        still: Array,
        explained: Array | None,
        dt: float,
        gain: float,
    ) -> None:
        """Follow slow light changes where the scene shows nothing new."""
        assert self._reference is not None  # noqa: S101
        quiet = still & ~changed
        if explained is not None:
            quiet &= ~explained
        mask = quiet.astype(np.uint8)
        # keep the reference in the camera's current exposure: scale it by the gain, then blend
        if abs(gain - 1.0) > 0.02:
            self._reference *= 1.0 + (gain - 1.0) * _alpha(dt, 5.0)
        cv2.accumulateWeighted(gray, self._reference, _alpha(dt, self.params.reference_tau_s), mask)

    def activity(self, box: Box) -> float:
        """The recent share of frames with motion inside a box of the current view, 0..1.
        Traffic passing through a spot keeps it high; a parked car lets it fall to 0."""
        if self._activity is None:
            return 0.0
        h, w = _hw(self._activity)
        x1, y1, x2, y2 = self._to_reference(box, (h, w))
        c1, r1 = min(int(x1 * w), w - 1), min(int(y1 * h), h - 1)
        c2, r2 = max(c1 + 1, math.ceil(x2 * w)), max(r1 + 1, math.ceil(y2 * h))
        return float(self._activity[r1:r2, c1:c2].mean())

    def _is_ghost(self, pixels: Array) -> bool:
        """Something that was in the reference and has gone (a person who stood there at start):
        the region's outline shows in the reference, not in the current picture. A new object
        is the other way round: its outline shows now and not in the reference."""
        assert self._recent is not None and self._reference is not None  # noqa: S101
        mask = pixels.astype(np.uint8)
        ring = cv2.dilate(mask, np.ones((3, 3), np.uint8)) - cv2.erode(
            mask, np.ones((3, 3), np.uint8)
        )
        outline = ring > 0
        if not outline.any():
            return False
        return _edge_strength(self._reference, outline) > 1.2 * _edge_strength(
            self._recent, outline
        )

    def _heal(self, pixels: Array) -> None:
        """Put what the camera shows now into the reference where a ghost was."""
        assert self._recent is not None and self._reference is not None  # noqa: S101
        assert self._changed_since is not None  # noqa: S101
        grown = cv2.dilate(pixels.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        self._reference[grown] = self._recent[grown]
        self._changed_since[grown] = np.nan

    def _is_new_thing(self, pixels: Array, rect: tuple[int, int, int, int]) -> bool:
        """Reject what is not an object left behind: something that keeps moving (a person
        standing and swaying), or a patch whose texture is the reference's under other light
        (exposure, a shadow)."""
        assert self._activity is not None and self._recent is not None  # noqa: S101
        assert self._reference is not None  # noqa: S101
        if float(self._activity[pixels].mean()) > self.params.max_activity:
            return False
        x, y, bw, bh = rect
        h, w = _hw(self._recent)
        x1, y1, x2, y2 = max(0, x - 2), max(0, y - 2), min(w, x + bw + 2), min(h, y + bh + 2)
        now = self._recent[y1:y2, x1:x2] - self._recent[y1:y2, x1:x2].mean()
        ref = self._reference[y1:y2, x1:x2] - self._reference[y1:y2, x1:x2].mean()
        energy = float(np.sqrt((now * now).sum() * (ref * ref).sum()))
        if energy < 1e-3 * now.size:
            return True  # flat patches: no texture to compare, trust the difference
        return float((now * ref).sum()) / energy < self.params.lighting_ncc

    def _regions(
        self, static: Array, diff: Array, now_s: float, explained: Array | None
    ) -> tuple[StaticRegion, ...]:
        assert self._changed_since is not None  # noqa: S101
        p = self.params
        old_enough = static & (
            now_s - np.nan_to_num(self._changed_since, nan=now_s) >= p.static_after_s
        )
        if explained is not None:
            old_enough &= ~explained
        mask: Array = old_enough.astype(np.uint8)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        h, w = mask.shape[:2]
        regions = []
        for label in range(1, count):
            x, y, bw, bh, area = (int(v) for v in stats[label])
            if area < p.min_region_px:
                continue
            pixels = labels == label
            if self._is_ghost(pixels):
                self._heal(pixels)
                continue
            if not self._is_new_thing(pixels, (x, y, bw, bh)):
                continue
            since = self._changed_since[pixels & ~np.isnan(self._changed_since)]
            regions.append(
                StaticRegion(
                    box=self._to_view((x / w, y / h, (x + bw) / w, (y + bh) / h), (h, w)),
                    since_s=float(np.median(since)) if since.size else now_s,
                    area=area / float(w * h),
                    contrast=float(diff[pixels].mean()),
                    mask_fraction=area / float(max(1, bw * bh)),
                )
            )
        return tuple(regions)
