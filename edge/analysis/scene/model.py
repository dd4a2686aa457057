"""The scene model: what moves now, and what has newly appeared and stays.

Works on a small grey copy of each analysed frame:

* motion: the change against the previous analysed frame (drives the detector gate);
* a long-term *reference* of the empty scene, updated slowly and only where nothing new is
  present, so an object left behind never fades into the background while it is still there;
* static changes: pixels that differ from the reference, do not move, and are not covered by
  something the detector explains (people, vehicles). Connected, big enough and stable for a
  while, they become `StaticRegion`s: goods, bags, bins, piles, found with no class needed.

Global brightness swings (auto-exposure, clouds) are removed by a gain match before comparing;
camera shake, drift, pans and tilts by registering each frame to the reference view
(edge.analysis.scene.registration: optical flow chained from frame to frame, refined against
the reference).
All per-pixel state lives on a canvas in reference-view pixels, which grows when a moving camera
looks beyond the view it started with (up to `MAX_CANVAS` times the picture; further, it moves
along and forgets the far side); pixels seen for the first time are learnt as soon as they show
the quiet scene. A zone watches the ground it covered at start-up and, when the camera moves,
what it covers on the picture as well. A change over most of the watched area at once (lights
on, day to night, a fade to black) re-learns the reference instead of raising regions.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge.analysis.scene.registration import ViewTracker, translation
from edge.types import Box, StaticRegion

ANALYSIS_WIDTH = 320
SATURATED = 250.0  # grey level from which a pixel is taken as clipped
WARMUP_FRAMES = 30  # at most this many frames go into the start-up median
MAX_CANVAS = 2.0  # a moving view's canvas grows up to this many times the picture's width, height
CANVAS_SLACK = 0.1  # grown this much further (fraction of the picture) so that it grows seldom

Array = npt.NDArray[Any]


@dataclass(frozen=True, slots=True)
class SceneParams:
    reference_tau_s: float = 60.0  # time constant of the reference where the scene is unchanged
    recent_tau_s: float = 0.6  # time constant of the short-term average used for "is it still"
    diff_threshold: float = 18.0  # grey levels (after gain match) that count as a change
    motion_threshold: float = 14.0  # grey levels between consecutive frames that count as motion
    static_after_s: float = 1.0  # a change must stay still this long before it is a region
    dropout_s: float = 1.0  # a pixel may look unchanged this long without losing its clock
    global_change: float = 0.5  # changed fraction of the watched area that means "lighting"
    relearn_s: float = 3.0  # how long a global change must last before the reference resets
    min_region_px: int = 12  # at ANALYSIS_WIDTH, below this a component is noise
    warmup_s: float = 3.0  # the reference is the median of the frames of the first seconds
    activity_tau_s: float = 1.0  # memory of the per-pixel motion activity
    stray_tau_s: float = 0.5  # memory of the motion nobody explains (judging regions)
    max_activity: float = 0.08  # a region that still moves more often than this is not left
    lighting_ncc: float = 0.9  # a region whose texture matches the reference is only lighting
    light_alike: float = 0.1  # ...as is one whose brightness changed as its surroundings' (log)
    # an object has an outline: a change whose rim shows new edges this weak (x its contrast)
    # is a soft light change (a cloud's shadow on flat ground)
    least_outline: float = 0.6
    shading_ncc: float = 0.85  # a pixel whose neighbourhood (7 x 7) still shows the reference's
    # texture is in a shadow, not under an object (a region judged whole would take in the shadow)
    dark_level: float = 12.0  # below this grey level (watched area's median) nothing can be seen
    least_contrast: float = 0.35  # the change threshold falls with the light to this share of it
    stabilise: bool = True  # register each frame to the reference view (shake, drift, pan)
    border: float = 0.02  # the frame's outermost band (x its larger side) is not judged
    # a pixel matches the reference anywhere this close (analysis pixels): registration is
    # never exact. A frame of a camera that has not moved is within a pixel
    # (edge.analysis.scene.registration snaps smaller view changes to none); a warped one can
    # be a pixel or two off (fit error, interpolation, motion blur)
    still_tolerance_px: int = 1
    align_tolerance_px: int = 2


@dataclass(frozen=True, slots=True)
class SceneUpdate:
    motion_fraction: float  # share of the watched area that moved since the last frame
    changed_fraction: float  # share of the watched area that differs from the reference
    relearning: bool  # a global change is being re-learnt: regions are suppressed
    regions: tuple[StaticRegion, ...]
    dark: bool = False  # the picture is too dark to see anything (night, a fade to black)

    @property
    def blind(self) -> bool:
        """Nothing can be judged on this frame: what was there may still be."""
        return self.relearning or self.dark


def _hw(image: Array) -> tuple[int, int]:
    return int(image.shape[0]), int(image.shape[1])


def _gradient(image: Array) -> Array:
    gx = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.magnitude(gx, gy)


def _outline_moved(before: Array, now: Array, where: Array) -> tuple[float, float]:
    """Edges over the pixels of `where` that only `before` has, and those that only `now` has
    (summed gradient magnitude). Edges both have (a kerb, a sign's border beside the spot)
    cancel out."""
    g_before = _gradient(before)[where]
    g_now = _gradient(now)[where]
    return float(np.maximum(g_before - g_now, 0).sum()), float(
        np.maximum(g_now - g_before, 0).sum()
    )


def _tolerant_diff(image: Array, reference: Array, tolerance_px: int) -> Array:
    """How far each pixel lies outside the range of the reference around it (within
    `tolerance_px`): registration is never exact, and an edge a pixel or two off is not a
    change, while something new differs from everything that was around it."""
    if tolerance_px <= 0:
        return cv2.absdiff(image, reference)
    kernel = np.ones((2 * tolerance_px + 1, 2 * tolerance_px + 1), np.uint8)
    low = cv2.erode(reference, kernel)
    high = cv2.dilate(reference, kernel)
    return np.maximum(np.maximum(image - high, low - image), 0.0)


def _texture(patch: Array) -> Array:
    """The fine detail of a patch: what is left once its local mean (5 x 5) is taken away."""
    return patch - cv2.blur(patch, (5, 5), borderType=cv2.BORDER_REFLECT)


CUT_REACH_PX = 2  # analysis pixels: a region this close to the judged area's edge is cut by it
SHADING_WINDOW = 7  # analysis pixels: the neighbourhood a pixel's texture is compared over
LIGHT_FIELD_WINDOW = 15  # analysis pixels: how far the light measured on texture is carried
SHADING_MIN_STD = 2.0  # grey levels: flatter neighbourhoods have no texture to compare


def _mean(image: Array, side: int) -> Array:
    return cv2.boxFilter(image, cv2.CV_32F, (side, side), borderType=cv2.BORDER_REFLECT)


def _only_light(image: Array, reference: Array, min_ncc: float, alike: float) -> Array:
    """Pixels that changed only in light (a cloud's shadow, a lamp), not in what is there.

    Where the ground has texture, a pixel is lit differently when its neighbourhood still shows
    the reference's texture (normalised cross-correlation over a small window). Those pixels
    measure the light's change (now / reference); a pixel of flat ground nearby whose
    brightness changed by the same factor (within `alike`, log) is only lit differently too.
    A flat pixel with no textured ground near it cannot be told from an object: it stays."""
    side = SHADING_WINDOW
    mi, mr = _mean(image, side), _mean(reference, side)
    vi = np.maximum(_mean(image * image, side) - mi * mi, 0.0)
    vr = np.maximum(_mean(reference * reference, side) - mr * mr, 0.0)
    cov: Array = _mean(image * reference, side) - mi * mr
    textured = (vi > SHADING_MIN_STD**2) & (vr > SHADING_MIN_STD**2)
    shaded = textured & (cov > min_ncc * np.sqrt(vi * vr))
    ratio = np.log(np.maximum(image, 1.0) / np.maximum(reference, 1.0)).astype(np.float32)
    weight = _mean(shaded.astype(np.float32), LIGHT_FIELD_WINDOW)
    light = _mean(np.where(shaded, ratio, 0.0).astype(np.float32), LIGHT_FIELD_WINDOW)
    light /= np.maximum(weight, 1e-6)
    lit_alike = (weight >= 0.2) & (np.abs(ratio - light) < alike)
    only: Array = shaded | lit_alike
    return only


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


@dataclass(slots=True)
class _Canvas:
    """The per-pixel state of the scene in reference-view pixels, on a canvas that holds the
    reference view at `offset` and grows when a moving camera looks beyond it."""

    frame_hw: tuple[int, int]
    offset: tuple[int, int]  # canvas pixel of the reference view's (0, 0)
    reference: Array  # the empty scene (float32)
    recent: Array  # short-term average of the frames (float32)
    previous: Array  # the previous frame, warped (float32)
    changed_since: Array  # when each pixel began to differ from the reference (nan: it does not)
    last_changed: Array  # when each pixel last differed
    activity: Array  # recent share of frames with motion, per pixel
    stray: Array  # the same, of motion that no person or vehicle the detector saw explains
    seen: Array  # the camera has looked at the pixel
    known: Array  # the reference there was seen free of people and vehicles
    covered: Array  # the current frame covers the pixel
    zones: dict[str, Array]  # per zone: pixels the zone has covered (it moves with the view)
    warmup: list[Array] = field(default_factory=list)  # start-up samples (nan: not usable)

    @classmethod
    def start(cls, gray: Array, zones: dict[str, Array]) -> _Canvas:
        shape = _hw(gray)
        return cls(
            frame_hw=shape,
            offset=(0, 0),
            reference=gray.copy(),
            recent=gray.copy(),
            previous=gray.copy(),
            changed_since=np.full(shape, np.nan, np.float32),
            last_changed=np.full(shape, -np.inf, np.float32),
            activity=np.zeros(shape, np.float32),
            stray=np.zeros(shape, np.float32),
            seen=np.ones(shape, bool),
            known=np.zeros(shape, bool),
            covered=np.ones(shape, bool),
            zones=zones,
        )

    @property
    def shape(self) -> tuple[int, int]:
        return _hw(self.reference)

    @property
    def watch(self) -> Array:
        masks = list(self.zones.values())
        union = np.zeros(self.shape, bool) if not masks else masks[0].copy()
        for mask in masks[1:]:
            union |= mask
        return union

    def reframe(self, x0: int, y0: int, x1: int, y1: int) -> None:
        """Make the canvas span reference-view pixels [x0, x1) x [y0, y1), keeping what it
        knows there."""
        shape = (y1 - y0, x1 - x0)
        shift = (-x0 - self.offset[0], -y0 - self.offset[1])

        def moved(array: Array, fill: float | bool) -> Array:
            out = np.full(shape, fill, array.dtype)
            src_y = slice(max(0, -shift[1]), min(array.shape[0], shape[0] - shift[1]))
            src_x = slice(max(0, -shift[0]), min(array.shape[1], shape[1] - shift[0]))
            dst_y = slice(src_y.start + shift[1], src_y.stop + shift[1])
            dst_x = slice(src_x.start + shift[0], src_x.stop + shift[0])
            if src_y.stop > src_y.start and src_x.stop > src_x.start:
                out[dst_y, dst_x] = array[src_y, src_x]
            return out

        self.reference = moved(self.reference, 0.0)
        self.recent = moved(self.recent, 0.0)
        self.previous = moved(self.previous, 0.0)
        self.changed_since = moved(self.changed_since, np.nan)
        self.last_changed = moved(self.last_changed, -np.inf)
        self.activity = moved(self.activity, 0.0)
        self.stray = moved(self.stray, 0.0)
        self.seen = moved(self.seen, False)
        self.known = moved(self.known, False)
        self.covered = moved(self.covered, False)
        self.zones = {zone: moved(mask, False) for zone, mask in self.zones.items()}
        self.warmup = [moved(sample, np.nan) for sample in self.warmup]
        self.offset = (-x0, -y0)


class SceneModel:
    """Motion and static-change analysis for one camera; time is passed in (stream seconds).

    `zones` are the watched polygons by zone id (normalised, on the camera's picture); each
    region found names the zones it lies in.
    """

    def __init__(
        self, zones: Mapping[str, Sequence[tuple[float, float]]], params: SceneParams
    ) -> None:
        self.params = params
        self._zone_polygons = {zone: list(polygon) for zone, polygon in zones.items()}
        self._canvas: _Canvas | None = None
        self._view = ViewTracker()
        self._homography: Array = np.eye(3)  # current frame -> reference view
        self._frame: Array | None = None  # the current frame warped onto the canvas
        self._motion: Array = np.zeros((1, 1), bool)
        self._valid: Array | None = None  # watched pixels the current frame covers
        self._watch: Array | None = None
        self._last_t: float | None = None
        self._global_since: float | None = None
        self._learnt_level = 0.0  # the watched area's grey level when the reference was learnt
        self._started_s = 0.0
        self._warming = False
        self._dt = 0.0
        self._movers: list[Box] = []  # people and vehicles of the last analysed frame
        self._tolerance = params.still_tolerance_px  # of the current frame's alignment
        self._steady: Array = np.zeros((1, 1), bool)  # pixels covered by this frame and the last
        self._inner_mask: Array | None = None

    @property
    def reference(self) -> Array | None:
        return None if self._canvas is None else self._canvas.reference

    @property
    def view_change(self) -> Array:
        """The map (3x3) of the current frame onto the reference view, in analysis pixels."""
        return self._homography

    def reset(self) -> None:
        """Forget the scene (after a reconnect or a camera move)."""
        self._canvas = None
        self._frame = self._valid = self._watch = None
        self._last_t = self._global_since = None
        self._view.reset()
        self._homography = np.eye(3)

    def observe(self, gray: Array, now_s: float) -> float:
        """First step for each analysis frame (from `to_analysis_gray`): register it to the
        reference view and measure motion. Returns the share of the watched area that moved."""
        canvas = self._canvas
        if canvas is None or canvas.frame_hw != _hw(gray):
            self._start(gray, now_s)
            return 0.0
        self._dt = now_s - (self._last_t if self._last_t is not None else now_s)
        self._last_t = now_s
        if self.params.stabilise:
            watch = self._watch if self._watch is not None else canvas.watch
            movers = boxes_mask(self._movers, _hw(gray), margin=0.2) > 0 if self._movers else None
            homography = self._view.align(
                gray, canvas.reference, canvas.seen, canvas.offset, watch, movers
            )
            if not self._fits_canvas(homography):
                self._start(gray, now_s)  # the view moved too far: a new scene
                return 0.0
            self._homography = homography
        warped, covered = self._warp(gray)
        self._steady = covered & canvas.covered  # seen in the previous frame too
        canvas.covered = covered
        fresh = covered & ~canvas.seen
        if fresh.any():  # the view shows pixels it never showed before: start them from here
            for array in (canvas.reference, canvas.recent, canvas.previous):
                array[fresh] = warped[fresh]
            canvas.seen |= fresh
        self._sweep_zones()
        assert self._watch is not None  # noqa: S101
        self._valid = self._watch & covered
        unmoved = np.array_equal(self._homography, np.eye(3))
        p = self.params
        self._tolerance = p.still_tolerance_px if unmoved else p.align_tolerance_px
        # consecutive frames of a camera that has not moved are aligned exactly (a distant car
        # moves a pixel a frame and must be seen to move)
        moved = _tolerant_diff(warped, canvas.previous, 0 if unmoved else self._tolerance)
        moved = moved > p.motion_threshold
        self._motion = moved & covered
        cv2.accumulateWeighted(
            self._motion.astype(np.float32),
            canvas.activity,
            _alpha(self._dt, self.params.activity_tau_s),
            covered.astype(np.uint8),
        )
        canvas.previous[covered] = warped[covered]
        self._frame = warped
        return float((self._motion & self._valid).sum()) / max(1, int(self._valid.sum()))

    def update(self, now_s: float, explained: Sequence[Box] = ()) -> SceneUpdate:
        """Second step: find static changes. `explained` are boxes of things the detector
        recognises (people, vehicles), whose pixels are never judged as left objects."""
        canvas = self._canvas
        if canvas is None or self._valid is None or self._frame is None:
            return SceneUpdate(0.0, 0.0, False, ())
        p = self.params
        gray, valid, dt, covered = self._frame, self._valid, self._dt, canvas.covered
        valid_px = max(1, int(valid.sum()))
        motion_fraction = float((self._motion & valid).sum()) / valid_px
        cv2.accumulateWeighted(
            gray, canvas.recent, _alpha(dt, p.recent_tau_s), covered.astype(np.uint8)
        )
        self._movers = list(explained)
        explained_mask = self._explained_mask(explained)
        stray = self._motion if explained_mask is None else self._motion & ~explained_mask
        cv2.accumulateWeighted(
            stray.astype(np.float32),
            canvas.stray,
            _alpha(dt, p.stray_tau_s),
            covered.astype(np.uint8),
        )
        if self._warming_up(gray, now_s, explained_mask):
            return SceneUpdate(motion_fraction, 0.0, False, ())
        level = float(np.median(canvas.recent[valid])) if valid.any() else 0.0
        if level < p.dark_level:
            # nothing to see and nothing to learn from: the reference waits for the light
            self._global_since = None
            return SceneUpdate(motion_fraction, 0.0, False, (), dark=True)
        gain = self._gain(gray, valid)
        expected = canvas.reference * gain
        diff = _tolerant_diff(canvas.recent, expected, self._tolerance)
        # in failing light (dusk) every contrast shrinks with it: so does the threshold
        threshold = p.diff_threshold * self._light_share(level)
        # clipped pixels (over-exposed now, or would be at this gain) cannot be compared
        saturated = (canvas.recent >= SATURATED) | (expected >= SATURATED)
        changed = (diff > threshold) & valid & canvas.known & ~saturated
        changed_fraction = float(changed.sum()) / valid_px
        if changed_fraction >= p.global_change:
            return self._relearn(now_s, motion_fraction, changed_fraction)
        self._global_since = None
        kernel = np.ones((5, 5), np.uint8)
        still = ~cv2.dilate(self._motion.astype(np.uint8), kernel).astype(bool)
        self._track_change_clock(changed, now_s)
        self._learn_uncovered(still, explained_mask)
        self._absorb_background(gray, changed, still, explained_mask, dt, gain)
        # what the short-term average still holds of a passer-by is no object: judge only pixels
        # where it has caught up with the picture
        settled = cv2.absdiff(gray, canvas.recent) < threshold / 2
        static = changed & still & settled
        static &= ~_only_light(canvas.recent, expected, p.shading_ncc, p.light_alike)
        regions = self._regions(static, changed, diff, now_s, explained_mask)
        return SceneUpdate(motion_fraction, changed_fraction, False, regions)

    # -- the canvas and the view -------------------------------------------------------------

    def _start(self, gray: Array, now_s: float) -> None:
        shape = _hw(gray)
        zones = {
            zone: polygons_mask([polygon], shape) > 0
            for zone, polygon in self._zone_polygons.items()
        }
        self._canvas = _Canvas.start(gray, zones)
        self._canvas.covered = self._inner(shape) > 0
        self._view.reset()
        self._homography = np.eye(3)
        self._watch = self._canvas.watch
        self._valid = self._watch & self._canvas.covered
        self._frame = gray
        self._motion = np.zeros(shape, bool)
        self._steady = np.ones(shape, bool)
        self._last_t = now_s
        self._started_s = now_s
        self._warming = True
        self._global_since = None

    def _to_canvas(self) -> Array:
        assert self._canvas is not None  # noqa: S101
        return translation(*self._canvas.offset) @ self._homography

    def _fits_canvas(self, homography: Array) -> bool:
        """Grow (or move) the canvas so that it holds the view `homography` puts the frame in;
        False when the view moved beyond what a canvas may hold (a new scene)."""
        canvas = self._canvas
        assert canvas is not None  # noqa: S101
        h, w = canvas.frame_hw
        corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32).reshape(-1, 1, 2)
        moved = cv2.perspectiveTransform(corners, homography).reshape(-1, 2)
        vx0, vy0 = (float(v) for v in moved.min(axis=0))
        vx1, vy1 = (float(v) for v in moved.max(axis=0))
        max_w, max_h = MAX_CANVAS * w, MAX_CANVAS * h
        if vx1 - vx0 > max_w or vy1 - vy0 > max_h:
            return False
        ox, oy = canvas.offset
        ch, cw = canvas.shape
        # a view a few pixels past the canvas loses those pixels: not worth a bigger canvas
        out_x, out_y = CANVAS_SLACK / 2 * w, CANVAS_SLACK / 2 * h
        if (
            vx0 >= -ox - out_x
            and vy0 >= -oy - out_y
            and vx1 <= cw - ox + out_x
            and vy1 <= ch - oy + out_y
        ):
            return True
        slack_x, slack_y = CANVAS_SLACK * w, CANVAS_SLACK * h
        x0, x1 = _span(-ox, cw - ox, vx0 - slack_x, vx1 + slack_x, max_w)
        y0, y1 = _span(-oy, ch - oy, vy0 - slack_y, vy1 + slack_y, max_h)
        canvas.reframe(x0, y0, x1, y1)
        return True

    def _warp(self, gray: Array) -> tuple[Array, Array]:
        """The frame on the canvas, and the canvas pixels it covers."""
        canvas = self._canvas
        assert canvas is not None  # noqa: S101
        mapping = self._to_canvas()
        ch, cw = canvas.shape
        inner = self._inner(_hw(gray))
        if canvas.shape == _hw(gray) and np.allclose(mapping, np.eye(3)):
            return gray, inner > 0
        warped = cv2.warpPerspective(
            gray, mapping, (cw, ch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        covered = cv2.warpPerspective(inner, mapping, (cw, ch), flags=cv2.INTER_NEAREST)
        return warped, covered > 0

    def _inner(self, shape: tuple[int, int]) -> Array:
        """The frame without its outermost pixels (uint8, 255 inside): encoders, lens
        vignetting and interpolation make the border unreliable, and an object there is seen
        only in part anyway."""
        if self._inner_mask is None or _hw(self._inner_mask) != shape:
            h, w = shape
            band = max(2, round(self.params.border * max(h, w)))
            mask: Array = np.zeros(shape, np.uint8)
            mask[band : h - band, band : w - band] = 255
            self._inner_mask = mask
        return self._inner_mask

    def _sweep_zones(self) -> None:
        """Each zone watches the ground it covered at start-up and, on a camera that moves,
        also what it covers on the picture now."""
        canvas = self._canvas
        assert canvas is not None  # noqa: S101
        mapping = self._to_canvas()
        if canvas.shape == canvas.frame_hw and np.allclose(mapping, np.eye(3)):
            return
        ch, cw = canvas.shape
        for zone, polygon in self._zone_polygons.items():
            drawn = polygons_mask([polygon], canvas.frame_hw)
            now = cv2.warpPerspective(drawn, mapping, (cw, ch), flags=cv2.INTER_NEAREST) > 0
            canvas.zones[zone] |= now & canvas.covered
        self._watch = canvas.watch

    def _rect(self, box: Box) -> tuple[int, int, int, int]:
        """A box of the current view as a rectangle of canvas pixels (x1, y1, x2, y2)."""
        canvas = self._canvas
        assert canvas is not None  # noqa: S101
        h, w = canvas.frame_hw
        x1, y1, x2, y2 = box
        corners = np.array(
            [[x1 * w, y1 * h], [x2 * w, y1 * h], [x2 * w, y2 * h], [x1 * w, y2 * h]], np.float32
        ).reshape(-1, 1, 2)
        moved = cv2.perspectiveTransform(corners, self._to_canvas()).reshape(-1, 2)
        ch, cw = canvas.shape
        c1 = int(np.clip(math.floor(float(moved[:, 0].min())), 0, cw - 1))
        r1 = int(np.clip(math.floor(float(moved[:, 1].min())), 0, ch - 1))
        c2 = int(np.clip(math.ceil(float(moved[:, 0].max())), c1 + 1, cw))
        r2 = int(np.clip(math.ceil(float(moved[:, 1].max())), r1 + 1, ch))
        return c1, r1, c2, r2

    def _box(self, rect: tuple[int, int, int, int]) -> Box:
        """A rectangle of canvas pixels as a box of the current view (normalised, clipped)."""
        canvas = self._canvas
        assert canvas is not None  # noqa: S101
        h, w = canvas.frame_hw
        x1, y1, x2, y2 = rect
        corners = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32).reshape(-1, 1, 2)
        moved = cv2.perspectiveTransform(corners, np.linalg.inv(self._to_canvas())).reshape(-1, 2)
        xs = np.clip(moved[:, 0] / w, 0.0, 1.0)
        ys = np.clip(moved[:, 1] / h, 0.0, 1.0)
        return (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))

    def _explained_mask(self, explained: Sequence[Box]) -> Array | None:
        """Canvas pixels under the explained boxes (each grown by a tenth of its size)."""
        canvas = self._canvas
        if not explained or canvas is None:
            return None
        mask: Array = np.zeros(canvas.shape, np.uint8)
        for x1, y1, x2, y2 in explained:
            mx, my = (x2 - x1) * 0.1, (y2 - y1) * 0.1
            c1, r1, c2, r2 = self._rect((x1 - mx, y1 - my, x2 + mx, y2 + my))
            mask[r1:r2, c1:c2] = 1
        return mask > 0

    # -- the reference -------------------------------------------------------------------------

    def _warming_up(self, gray: Array, now_s: float, explained: Array | None) -> bool:
        """For the first `warmup_s` the reference is learnt as the per-pixel median of the frames
        seen, leaving out what the detector explains, so people and cars passing, standing in
        the first frame or standing still the whole time do not stay in it as ghosts. Pixels
        never seen free of them are learnt later, once they show the quiet scene. No regions
        are reported meanwhile."""
        canvas = self._canvas
        assert canvas is not None  # noqa: S101
        if not self._warming:
            return False
        usable = canvas.covered if explained is None else canvas.covered & ~explained
        if now_s - self._started_s < self.params.warmup_s:
            if len(canvas.warmup) < WARMUP_FRAMES:
                canvas.warmup.append(np.where(usable, gray, np.nan).astype(np.float32))
            return True
        samples = np.stack(canvas.warmup)
        counts = np.isfinite(samples).sum(axis=0)
        learnt = counts >= max(1, len(canvas.warmup) // 3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-nan pixels: not learnt
            median = np.nanmedian(samples, axis=0)
        canvas.reference = np.where(learnt, median, canvas.recent).astype(np.float32)
        canvas.known = learnt & canvas.seen
        canvas.changed_since[:] = np.nan
        canvas.warmup = []
        self._warming = False
        self._learnt()
        return False

    def _light_share(self, level: float) -> float:
        """The light now as a share of the light the reference was learnt in (least_contrast..1)."""
        if self._learnt_level <= 0.0:
            return 1.0
        return float(np.clip(level / self._learnt_level, self.params.least_contrast, 1.0))

    def _learnt(self) -> None:
        """Remember the light the reference was learnt in."""
        canvas = self._canvas
        assert canvas is not None  # noqa: S101
        watch = canvas.watch & canvas.covered
        self._learnt_level = float(np.median(canvas.reference[watch])) if watch.any() else 0.0

    def _gain(self, gray: Array, watch: Array) -> float:
        """Brightness ratio now/reference over the watched area (auto-exposure, clouds)."""
        assert self._canvas is not None  # noqa: S101
        reference = self._canvas.reference
        ref_level = float(np.median(reference[watch])) if watch.any() else 0.0
        cur_level = float(np.median(gray[watch])) if watch.any() else 0.0
        if ref_level < 4.0:
            return 1.0
        return float(np.clip(cur_level / ref_level, 0.25, 4.0))

    def _relearn(
        self, now_s: float, motion_fraction: float, changed_fraction: float
    ) -> SceneUpdate:
        """Most of the view changed at once: lighting, not objects. Re-learn once it settles."""
        canvas = self._canvas
        assert canvas is not None  # noqa: S101
        if self._global_since is None:
            self._global_since = now_s
        if now_s - self._global_since >= self.params.relearn_s and motion_fraction < 0.02:
            covered = canvas.covered
            # what was new before the light changed (its clock stopped then) stays new: its
            # reference is brought to the new light, not replaced by the object itself
            kept = np.isfinite(canvas.changed_since) & covered
            kept = cv2.dilate(kept.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
            fresh = covered & ~kept
            if kept.any() and fresh.any():
                before = float(np.median(canvas.reference[fresh]))
                ratio = float(np.median(canvas.recent[fresh])) / max(before, 1.0)
                canvas.reference[kept] *= np.float32(ratio)
            canvas.reference[fresh] = canvas.recent[fresh]
            canvas.known = canvas.seen.copy()
            canvas.changed_since[fresh] = np.nan
            self._global_since = None
            self._learnt()
            self._view.start_again_from_here()
        return SceneUpdate(motion_fraction, changed_fraction, True, ())

    def _track_change_clock(self, changed: Array, now_s: float) -> None:
        canvas = self._canvas
        assert canvas is not None  # noqa: S101
        start = changed & np.isnan(canvas.changed_since)
        canvas.changed_since[start] = now_s
        canvas.last_changed[changed] = now_s
        # what the camera does not look at now keeps its clock
        lapsed = canvas.covered & ~changed & (now_s - canvas.last_changed > self.params.dropout_s)
        canvas.changed_since[lapsed] = np.nan

    def _learn_uncovered(self, still: Array, explained: Array | None) -> None:
        """Pixels not yet seen free of people and vehicles are learnt once they show the quiet
        scene, so the spot a person leaves is never taken for a new object (a ghost)."""
        canvas = self._canvas
        assert canvas is not None  # noqa: S101
        # a pixel seen for the first time (a pan reveals it) has no motion measured yet: it is
        # learnt from its second frame on, when it is still
        learn = ~canvas.known & self._steady & still & (canvas.activity < 0.02)
        if explained is not None:
            learn &= ~explained
        canvas.reference[learn] = canvas.recent[learn]
        canvas.known |= learn

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
        canvas = self._canvas
        assert canvas is not None  # noqa: S101
        quiet = still & ~changed & canvas.covered
        if explained is not None:
            quiet &= ~explained
        # keep the reference in the camera's current exposure: scale it by the gain, then blend
        if abs(gain - 1.0) > 0.02:
            canvas.reference *= 1.0 + (gain - 1.0) * _alpha(dt, 5.0)
        cv2.accumulateWeighted(
            gray,
            canvas.reference,
            _alpha(dt, self.params.reference_tau_s),
            quiet.astype(np.uint8),
        )

    def activity(self, box: Box) -> float:
        """The recent share of frames with motion inside a box of the current view, 0..1.
        Traffic passing through a spot keeps it high; a parked car lets it fall to 0."""
        if self._canvas is None:
            return 0.0
        c1, r1, c2, r2 = self._rect(box)
        return float(self._canvas.activity[r1:r2, c1:c2].mean())

    # -- regions -------------------------------------------------------------------------------

    def _outline(self, pixels: Array) -> tuple[float, float, int]:
        """The edges around a region's rim that only the reference has (`gone`) and those that
        only the current picture has (`come`), and how many pixels the rim holds. Something
        that was in the reference and has gone (a person who stood there at start) is a ghost:
        its outline shows in the reference, not now; a new object is the other way round. Only
        the edges that differ count, so a bag put down beside a strong edge is no ghost."""
        canvas = self._canvas
        assert canvas is not None  # noqa: S101
        mask = pixels.astype(np.uint8)
        # the change stops short of the real outline by up to the alignment tolerance
        reach = 2 * self._tolerance + 3
        ring = cv2.dilate(mask, np.ones((reach, reach), np.uint8)) - cv2.erode(
            mask, np.ones((3, 3), np.uint8)
        )
        rim = ring > 0
        rim_px = int(rim.sum())
        if not rim_px:
            return 0.0, 0.0, 0
        gone, come = _outline_moved(canvas.reference, canvas.recent, rim)
        return gone, come, rim_px

    def _cut(self, pixels: Array) -> bool:
        """Does the region reach (within `CUT_REACH_PX`) the edge of what is judged: the
        picture's border band, or the part of the canvas this frame does not show? What lies
        beyond is unseen (the legs of people standing at the top of the picture)."""
        canvas = self._canvas
        assert canvas is not None  # noqa: S101
        side = 2 * CUT_REACH_PX + 1
        near = cv2.dilate(pixels.astype(np.uint8), np.ones((side, side), np.uint8)) > 0
        return bool((near & ~canvas.covered).any())

    def _heal(self, pixels: Array, changed: Array) -> None:
        """Put what the camera shows now into the reference where a ghost was: over the whole
        of the change it belongs to (parts of it may not have settled yet)."""
        canvas = self._canvas
        assert canvas is not None  # noqa: S101
        _, labels = cv2.connectedComponents((changed | pixels).astype(np.uint8), connectivity=8)
        whole = np.isin(labels, np.unique(labels[pixels]))
        grown = cv2.dilate(whole.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        grown &= canvas.covered
        canvas.reference[grown] = canvas.recent[grown]
        canvas.changed_since[grown] = np.nan

    def _is_new_thing(self, rect: tuple[int, int, int, int]) -> bool:
        """Reject what is only other light: a patch whose texture is the reference's (a shadow
        on textured ground), or one that changed by the same factor as the ground around it (a
        soft cloud shadow, the light coming back after it, on ground with little texture). An
        object changes what is under it, not what lies around."""
        canvas = self._canvas
        assert canvas is not None  # noqa: S101
        x, y, bw, bh = rect
        h, w = canvas.shape
        if self._lit_alike(rect):
            return False
        x1, y1, x2, y2 = max(0, x - 2), max(0, y - 2), min(w, x + bw + 2), min(h, y + bh + 2)
        # texture only: a soft shadow's edge is a slope of light, not a change of what is there
        now = _texture(canvas.recent[y1:y2, x1:x2])
        ref = _texture(canvas.reference[y1:y2, x1:x2])
        energy = float(np.sqrt((now * now).sum() * (ref * ref).sum()))
        if energy < 1e-3 * now.size:
            return True  # flat patches: no texture to compare, trust the difference
        return float((now * ref).sum()) / energy < self.params.lighting_ncc

    def _soft_edged(self, come: float, rim_px: int, contrast: float) -> bool:
        """A change without an outline of its own: the edges new around its rim (`_outline`)
        are weak for its contrast (a shadow's edge is a slope of light many pixels wide)."""
        if contrast <= 0.0:
            return True
        return come / max(1, rim_px) < self.params.least_outline * contrast

    def _lit_alike(self, rect: tuple[int, int, int, int]) -> bool:
        """Did the region brighten or darken by the same factor as a band of ground around it
        (3 to 10 pixels out)?"""
        canvas = self._canvas
        assert canvas is not None  # noqa: S101
        x, y, bw, bh = rect
        h, w = canvas.shape
        box: Array = np.zeros((h, w), np.uint8)
        box[y : y + bh, x : x + bw] = 1
        near = cv2.dilate(box, np.ones((7, 7), np.uint8))
        band = (cv2.dilate(box, np.ones((21, 21), np.uint8)) > 0) & (near == 0) & canvas.covered
        inside = box > 0
        if int(band.sum()) < inside.sum() // 2 + 1:
            return False
        ratio = canvas.recent / np.maximum(canvas.reference, 4.0)
        there = float(np.median(ratio[inside]))
        around = float(np.median(ratio[band]))
        return abs(math.log(max(there, 1e-3) / max(around, 1e-3))) < self.params.light_alike

    def _regions(
        self, static: Array, changed: Array, diff: Array, now_s: float, explained: Array | None
    ) -> tuple[StaticRegion, ...]:
        canvas = self._canvas
        assert canvas is not None  # noqa: S101
        p = self.params
        since_all = canvas.changed_since
        old_enough = static & (now_s - np.nan_to_num(since_all, nan=now_s) >= p.static_after_s)
        if explained is not None:
            old_enough &= ~explained
        mask: Array = old_enough.astype(np.uint8)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        fh, fw = canvas.frame_hw
        regions = []
        for label in range(1, count):
            x, y, bw, bh, area = (int(v) for v in stats[label])
            if area < p.min_region_px:
                continue
            pixels = labels == label
            if float(canvas.stray[pixels].mean()) > p.max_activity:
                continue  # something unexplained still moves there: judge it later
            if not self._is_new_thing((x, y, bw, bh)):
                continue  # only the light changed there
            gone, come, rim_px = self._outline(pixels)
            if self._soft_edged(come, rim_px, float(diff[pixels].mean())):
                continue  # only the light changed there (before the ghost test: a shadow
                # dims the edges as a departed object's outline would)
            if rim_px and gone > 1.2 * come:  # a ghost
                self._heal(pixels, changed)
                continue
            since = since_all[pixels & ~np.isnan(since_all)]
            zones = frozenset(
                zone for zone, where in canvas.zones.items() if 2 * int(where[pixels].sum()) >= area
            )
            regions.append(
                StaticRegion(
                    box=self._box((x, y, x + bw, y + bh)),
                    since_s=float(np.median(since)) if since.size else now_s,
                    area=area / float(fw * fh),
                    contrast=float(diff[pixels].mean()),
                    mask_fraction=area / float(max(1, bw * bh)),
                    zones=zones,
                    cut=self._cut(pixels),
                )
            )
        return tuple(regions)


def _span(lo: float, hi: float, want_lo: float, want_hi: float, longest: float) -> tuple[int, int]:
    """The canvas's new extent on one axis: its old extent [lo, hi) grown to hold
    [want_lo, want_hi), or, when that would be longer than `longest`, the `longest` span
    centred on what is wanted (the far side of the old canvas is dropped)."""
    new_lo, new_hi = min(lo, want_lo), max(hi, want_hi)
    if new_hi - new_lo > longest:
        middle = (want_lo + want_hi) / 2
        new_lo, new_hi = middle - longest / 2, middle + longest / 2
    return math.floor(new_lo), math.ceil(new_hi)
