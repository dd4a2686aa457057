"""Moving specks on a facade, on every frame, cheaply (the OpenCV side of `falling_object`).

Only the bounding box of the zone is looked at, in grey, optionally scaled down. A pixel is a
speck pixel when the current frame differs from *both* of the two frames before it and from a
slowly updated background (three-frame differencing with a background check): that places a
moving object where it is now, without the "ghost" plain differencing leaves where it was, and
a slow light change, which the background follows, never qualifies. The threshold is adaptive:
at least `min_contrast` grey levels and `noise_factor` times the local frame-to-frame noise,
kept as a coarse running map, so sensor noise at night, glare and fluttering leaves raise it
where they are and nowhere else. A frame with more specks than `max_specks` (rain, a camera
shake, lights switched on) is skipped as a whole.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge.types import Speck, SpeckFrame

Gray = npt.NDArray[Any]  # uint8 images, as OpenCV returns them
NOISE_CELL = 8  # pixels per cell of the noise map
NOISE_RATE = 0.05  # the noise map's update weight per frame (time constant ~20 frames)
BUSY_RATE = 0.02  # the activity map's update weight per frame (time constant ~2 s at 25 fps)
BACKGROUND_EVERY = 4  # frames between background updates
BACKGROUND_RATE = 0.15  # weight of the frame in each background update (~1 s at 25 fps)
MEAN_ABS_TO_SIGMA = 1.0 / 1.128  # mean |difference| of Gaussian noise is 1.128 sigma
# `max_specks` is per this many analysed pixels (a 1280x720 zone); a larger zone allows
# proportionally more, as sensor noise and rain give specks in proportion to the area
SPECKS_AREA_PX = 1280 * 720


@dataclass(frozen=True, slots=True)
class SpeckParams:
    """How specks are found (config keys of the same names, docs/falling-object.md)."""

    min_contrast: int = 8
    noise_factor: float = 3.0
    max_speck_px: int = 900
    max_specks: int = 60
    scale: float = 1.0
    busy_share: float = 0.12


class SpeckFinder:
    """Finds moving specks inside a zone (normalised polygon) minus ignored areas.

    Example:
        >>> finder = SpeckFinder([(0.2, 0.1), (0.8, 0.1), (0.8, 0.9), (0.2, 0.9)], [])
        >>> found = finder.find(image)  # a BGR frame; call it on every decoded frame
    """

    def __init__(
        self,
        zone: Sequence[tuple[float, float]],
        ignore: Sequence[Sequence[tuple[float, float]]] = (),
        params: SpeckParams | None = None,
    ) -> None:
        self.params = params or SpeckParams()
        self._zone = [(float(x), float(y)) for x, y in zone]
        self._ignore = [[(float(x), float(y)) for x, y in area] for area in ignore]
        self._size: tuple[int, int] | None = None
        self._crop = (0, 0, 0, 0)
        self._mask: Gray = np.zeros((1, 1), np.uint8)
        self._max_specks = float(self.params.max_specks)
        self._previous: list[Gray] = []
        self._background: Gray | None = None
        self._noise: npt.NDArray[Any] | None = None
        self._threshold: Gray | None = None
        self._activity: npt.NDArray[Any] | None = None
        self._quiet: Gray | None = None
        self._frames = 0

    def _setup(self, width: int, height: int) -> None:
        xs = [p[0] * width for p in self._zone]
        ys = [p[1] * height for p in self._zone]
        # a zone partly (or wholly) outside the picture, or thinner than a pixel, is clamped
        # to at least one pixel of it (nothing is found there, nothing breaks)
        x1 = min(width - 1, max(0, math.floor(min(xs))))
        y1 = min(height - 1, max(0, math.floor(min(ys))))
        x2 = max(x1 + 1, min(width, math.ceil(max(xs))))
        y2 = max(y1 + 1, min(height, math.ceil(max(ys))))
        self._crop = (x1, y1, x2, y2)
        self._size = (width, height)
        scale = self.params.scale
        cw, ch = max(1, round((x2 - x1) * scale)), max(1, round((y2 - y1) * scale))
        mask = np.zeros((ch, cw), np.uint8)

        def to_crop(poly: Sequence[tuple[float, float]]) -> Gray:
            pts = [((x * width - x1) * scale, (y * height - y1) * scale) for x, y in poly]
            points: Gray = np.round(np.array(pts)).astype(np.int32)
            return points

        cv2.fillPoly(mask, [to_crop(self._zone)], (255,))
        for area in self._ignore:
            cv2.fillPoly(mask, [to_crop(area)], (0,))
        self._mask = mask
        self._max_specks = self.params.max_specks * max(1.0, cw * ch / SPECKS_AREA_PX)
        self._previous = []
        self._background = None
        self._noise = None
        self._threshold = None
        self._activity = None
        self._quiet = None

    def restart(self) -> None:
        """Forget the frames seen so far (the stream was interrupted): the next two frames
        are references again. The background, noise and activity maps are kept."""
        self._previous = []

    @property
    def crop(self) -> tuple[int, int, int, int]:
        """The pixel box of the frame that is analysed (x1, y1, x2, y2)."""
        return self._crop

    def find(self, image: npt.NDArray[np.uint8]) -> SpeckFrame:
        """The moving specks of this frame (none for the first two frames of a stream)."""
        height, width = image.shape[:2]
        if self._size != (width, height):
            self._setup(width, height)
        x1, y1, x2, y2 = self._crop
        crop = image[y1:y2, x1:x2]
        gray: Gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop.copy()
        if self.params.scale != 1.0:
            gray = cv2.resize(gray, self._mask.shape[::-1], interpolation=cv2.INTER_AREA)
        self._frames += 1
        if len(self._previous) < 2 or self._background is None:
            self._previous.append(gray)
            if self._background is None:
                self._background = gray.copy()
            return SpeckFrame((), skipped=False)
        last, before = self._previous[-1], self._previous[-2]
        step = cv2.absdiff(gray, last)
        moved = cv2.min(step, cv2.absdiff(gray, before))
        moved = cv2.min(moved, cv2.absdiff(gray, self._background))
        threshold = self._update_noise(step)
        changed = cv2.absdiff(gray, self._background)
        binary = cv2.compare(moved, threshold, cv2.CMP_GT)
        binary = cv2.bitwise_and(binary, self._mask)
        binary = cv2.bitwise_and(binary, self._update_activity(binary))
        self._previous = [last, gray]
        if self._frames % BACKGROUND_EVERY == 0:
            self._background = cv2.addWeighted(
                self._background, 1.0 - BACKGROUND_RATE, gray, BACKGROUND_RATE, 0.0
            )
        return self._specks(binary, moved, changed, threshold)

    def _update_noise(self, step: Gray) -> Gray:
        """The per-pixel threshold: `noise_factor` x the local running frame-to-frame noise,
        at least `min_contrast` (recomputed from the coarse noise map every few frames)."""
        h, w = step.shape
        cells = (max(1, w // NOISE_CELL), max(1, h // NOISE_CELL))
        coarse = cv2.resize(step, cells, interpolation=cv2.INTER_AREA).astype(np.float32)
        if self._noise is None:
            self._noise = coarse
        else:
            cv2.accumulateWeighted(coarse, self._noise, NOISE_RATE)
        if self._threshold is None or self._frames % BACKGROUND_EVERY == 0:
            sigma = self._noise * (self.params.noise_factor * MEAN_ABS_TO_SIGMA * 1.41)
            level = np.clip(sigma, self.params.min_contrast, 255).astype(np.uint8)
            self._threshold = cv2.resize(level, (w, h), interpolation=cv2.INTER_NEAREST)
        return self._threshold

    def _update_activity(self, binary: Gray) -> Gray:
        """Where specks keep appearing (leaves in the wind, a flickering sign, water), over
        `busy_share` of the recent frames, nothing is looked for: a falling object crosses a
        cell of the map in a frame or two. Returns the mask of the quiet cells."""
        h, w = binary.shape
        cells = (max(1, w // NOISE_CELL), max(1, h // NOISE_CELL))
        hit = (cv2.resize(binary, cells, interpolation=cv2.INTER_AREA) > 0).astype(np.float32)
        if self._activity is None:
            self._activity = np.zeros_like(hit)
        cv2.accumulateWeighted(hit, self._activity, BUSY_RATE)
        if self._quiet is None or self._frames % BACKGROUND_EVERY == 0:
            quiet: Gray = (self._activity < self.params.busy_share).astype(np.uint8) * 255
            # a busy cell silences its neighbours too (leaves at the edge of a cell)
            quiet = cv2.erode(quiet, np.ones((3, 3), np.uint8))
            self._quiet = cv2.resize(quiet, (w, h), interpolation=cv2.INTER_NEAREST)
        return self._quiet

    def _specks(self, binary: Gray, moved: Gray, changed: Gray, threshold: Gray) -> SpeckFrame:
        if cv2.countNonZero(binary) == 0:
            return SpeckFrame((), skipped=False)
        # join the fragments of one object (a thin stick, a blurred streak) before counting
        joined = cv2.dilate(binary, np.ones((3, 3), np.uint8))
        count, _, stats, centroids = cv2.connectedComponentsWithStats(joined, connectivity=8)
        # one pixel (3x3 once dilated) is sensor noise, unless it stands out twice the
        # threshold; only what is left counts towards `max_specks`
        kept = np.ones(count, bool)
        kept[0] = False
        single = np.flatnonzero(
            (stats[:, cv2.CC_STAT_AREA] == 9) & (stats[:, cv2.CC_STAT_WIDTH] == 3)
        )
        if len(single):
            xs = stats[single, cv2.CC_STAT_LEFT] + 1
            ys = stats[single, cv2.CC_STAT_TOP] + 1
            faint = moved[ys, xs].astype(np.int32) <= 2 * threshold[ys, xs].astype(np.int32)
            kept[single[faint]] = False
        if int(kept.sum()) > self._max_specks:
            return SpeckFrame((), skipped=True)
        scale = self.params.scale
        x0, y0 = self._crop[0], self._crop[1]
        area_scale = 1.0 / (scale * scale)
        specks = []
        for index in np.flatnonzero(kept).tolist():
            left, top, w, h, pixels = (int(v) for v in stats[index])
            area = pixels * area_scale  # with the one-pixel ring the dilation added
            if area > self.params.max_speck_px:
                continue
            cx, cy = centroids[index]
            # the edge of something large (a car, a person) sits in a wide changed area; a
            # small object is alone in its window
            half = max(4, w, h)
            wx1, wy1 = max(0, int(cx) - half), max(0, int(cy) - half)
            window = (slice(wy1, int(cy) + half + 1), slice(wx1, int(cx) + half + 1))
            differs = cv2.compare(changed[window], threshold[window], cv2.CMP_GT)
            extent = cv2.countNonZero(differs) / max(1, differs.size)
            specks.append(
                Speck(
                    x=x0 + (float(cx) + 0.5) / scale - 0.5,
                    y=y0 + (float(cy) + 0.5) / scale - 0.5,
                    area=float(area),
                    extent=round(extent, 3),
                    box=(
                        x0 + left / scale,
                        y0 + top / scale,
                        x0 + (left + w) / scale,
                        y0 + (top + h) / scale,
                    ),
                )
            )
        return SpeckFrame(tuple(specks), skipped=False)
