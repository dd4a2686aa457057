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

Repeated images: many recorders and re-encodes store a slower camera in a faster stream, each
image two or three times (10 fps as 30). A frame that shows nothing new against the last
distinct one (its strongest local change well under the usual one between distinct frames,
and in a noisy stream its mean change too) is a repeat: it is not analysed and leaves every
map alone, so the differencing, the maps and the rule see the distinct images at the time each
first appeared.

Start-up: the noise and busy-area maps learn fast at first (running means over the frames
seen so far, until their usual rates take over), so the finder is usable a few frames after
the stream starts; after a break it keeps what it learnt unless the picture changed meanwhile
(then the background and the noise are learnt again from the new frames).
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
# the activity map counts in time: its rate and `busy_share` are per frame at this frame
# interval and grow with a slower stream's (a cell hit 3 times a second is busy at any frame
# rate: 12 % of the frames at 25 fps, 30 % at 10 fps), up to this share
REFERENCE_INTERVAL_S = 1.0 / 25
MAX_BUSY_SHARE = 0.5
BACKGROUND_EVERY = 4  # frames between background updates
BACKGROUND_RATE = 0.15  # weight of the frame in each background update (~1 s at 25 fps)
MEAN_ABS_TO_SIGMA = 1.0 / 1.128  # mean |difference| of Gaussian noise is 1.128 sigma
# start-up: a map's weight for the n-th frame it learns from is the larger of its rate and
# 1 / (n + offset): a running mean of the frames seen so far until the rate takes over
NOISE_START = 0  # the noise map: the mean of the steps so far (about 20 steps)
# the activity map: never more than 1/8 per frame, so one or two sightings of an object
# passing never make a cell busy (busy_share 0.12), while a cell hit in most of the first few
# frames (leaves, reflections) is busy within 3-5 frames
BUSY_START = 8
# repeats: a frame is the last distinct image again when its strongest local change (3x3
# mean) in the zone is under this share of the usual one between distinct frames (and under
# the least contrast of a speck before that is known)...
REPEAT_PEAK_SHARE = 0.5
# ... and, in a noisy stream (a usual mean change of at least `NOISY_MEAN` grey levels), its
# mean change under this share of the usual one: sensor noise is new on every distinct frame,
# so a still, noisy scene changes as much as usual each time and none of its frames is a
# repeat, however little moves. An encoder removes most of the noise; and a re-encoded
# repeat is not identical (the encoder refines the picture on each copy, up to ~25 grey levels
# locally and all over at a key frame), so in a clean stream the mean cannot tell
REPEAT_MEAN_SHARE = 0.7
NOISY_MEAN = 1.0
REPEAT_FLOOR = 0.5  # before the usual change is known: a mean change under this, grey levels
MAX_REPEATS = 4  # a run of repeats longer than this is a still scene: the next frame counts
# after a break, the picture changed (light, exposure, the camera moved) when this share of
# the zone differs from the background by more than the threshold
SCENE_CHANGED_SHARE = 0.25
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
        self._frames = 0  # frames analysed
        self._learnt = {"noise": 0, "activity": 0, "level": 0}  # frames each map has had
        self._level: tuple[float, float] | None = None  # usual (mean, peak) distinct change
        self._repeats = 0  # repeats in a row
        self._check_scene = False  # after a break: compare the next frame with the background
        self._slower = 1.0  # the stream's frame interval over `REFERENCE_INTERVAL_S`, at least 1
        self.repeats = 0  # frames found to repeat the image before (not analysed)

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
        self._learnt = dict.fromkeys(self._learnt, 0)
        self._level = None
        self._repeats = 0
        self._check_scene = False

    def restart(self) -> None:
        """Forget the frames seen so far (the stream was interrupted): the next frames are
        references again. The background, noise and activity maps are kept, unless the next
        frame shows the picture changed (then the background and the noise are learnt
        again, as at a start)."""
        self._previous = []
        self._repeats = 0
        self._check_scene = self._background is not None

    @property
    def crop(self) -> tuple[int, int, int, int]:
        """The pixel box of the frame that is analysed (x1, y1, x2, y2)."""
        return self._crop

    def find(
        self, image: npt.NDArray[np.uint8], frame_interval_s: float | None = None
    ) -> SpeckFrame:
        """The moving specks of this frame (none for the first two distinct frames of a
        stream; `repeat` when it shows the image before again). `frame_interval_s`: the
        time between the stream's distinct frames, when known (the activity map counts in
        time)."""
        if frame_interval_s is not None and frame_interval_s > 0:
            self._slower = max(1.0, frame_interval_s / REFERENCE_INTERVAL_S)
        height, width = image.shape[:2]
        if self._size != (width, height):
            self._setup(width, height)
        x1, y1, x2, y2 = self._crop
        crop = image[y1:y2, x1:x2]
        gray: Gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop.copy()
        if self.params.scale != 1.0:
            gray = cv2.resize(gray, self._mask.shape[::-1], interpolation=cv2.INTER_AREA)
        if self._check_scene:
            self._check_scene = False
            self._relearn_if_changed(gray)
        if not self._previous:
            self._previous = [gray]
            self._learn_background(gray)
            return SpeckFrame((), skipped=False)
        last = self._previous[-1]
        step = cv2.absdiff(gray, last)
        if self._is_repeat(step):
            self.repeats += 1
            return SpeckFrame((), skipped=False, repeat=True)
        threshold = self._update_noise(step)
        if len(self._previous) < 2:
            self._learn_background(gray)
            self._previous.append(gray)
            return SpeckFrame((), skipped=False)
        assert self._background is not None  # noqa: S101 - learnt from the first frame
        self._frames += 1
        before = self._previous[-2]
        moved = cv2.min(step, cv2.absdiff(gray, before))
        changed = cv2.absdiff(gray, self._background)
        moved = cv2.min(moved, changed)
        binary = cv2.compare(moved, threshold, cv2.CMP_GT)
        binary = cv2.bitwise_and(binary, self._mask)
        binary = cv2.bitwise_and(binary, self._update_activity(binary))
        self._previous = [last, gray]
        # learnt from this frame only after it was compared with the background: blended in
        # first, an object that has moved little for a few frames (a throw at its apex) is
        # partly in the background it is compared with, and is lost
        self._learn_background(gray)
        return self._specks(binary, moved, changed, threshold)

    def _rate(self, name: str, rate: float, offset: int) -> float:
        """The weight of this frame in map `name`: a running mean of the frames it has had
        so far until its own `rate` takes over (see the *_START constants)."""
        self._learnt[name] += 1
        return max(rate, 1.0 / (self._learnt[name] + offset))

    def _learn_background(self, gray: Gray) -> None:
        """The slowly updated background: the first frame, then `BACKGROUND_RATE` of the
        frame every `BACKGROUND_EVERY` analysed frames. It need not have converged for specks
        to be found (a mean of the first frames was tried: it keeps a ghost of whatever moved
        in them, which hides an object of the same grey passing there)."""
        if self._background is None:
            self._background = gray.copy()
        elif self._frames % BACKGROUND_EVERY == 0:
            self._background = cv2.addWeighted(
                self._background, 1.0 - BACKGROUND_RATE, gray, BACKGROUND_RATE, 0.0
            )

    def _relearn_if_changed(self, gray: Gray) -> None:
        """After a break: when the picture is no longer the one the background holds (the
        light changed during an outage, the camera was moved), the background and the noise
        are learnt again from this frame on; the activity map is kept (leaves stay leaves)."""
        if self._background is None or self._background.shape != gray.shape:
            return
        level = self._threshold
        if level is None:
            level = np.full_like(gray, self.params.min_contrast)
        differs = cv2.compare(cv2.absdiff(gray, self._background), level, cv2.CMP_GT)
        inside = max(1, cv2.countNonZero(self._mask))
        share = cv2.countNonZero(cv2.bitwise_and(differs, self._mask)) / inside
        if share > SCENE_CHANGED_SHARE:
            self._background = None
            self._noise = None
            self._threshold = None
            self._level = None
            self._learnt["noise"] = self._learnt["level"] = 0

    def _is_repeat(self, step: Gray) -> bool:
        """Whether this frame shows the last distinct image again (see the module
        docstring); a frame that is not one resets the run of repeats and teaches the usual
        change between distinct frames."""
        mean = float(cv2.mean(step, self._mask)[0])
        peak = float(cv2.minMaxLoc(cv2.blur(step, (3, 3)), self._mask)[1])
        usual = self._level
        if usual is None:
            repeat = peak <= self.params.min_contrast and mean < REPEAT_FLOOR
        else:
            least = max(self.params.min_contrast, REPEAT_PEAK_SHARE * usual[1])
            noisy = usual[0] >= NOISY_MEAN
            repeat = peak <= least and (not noisy or mean < REPEAT_MEAN_SHARE * usual[0])
        if repeat and self._repeats < MAX_REPEATS:
            self._repeats += 1
            return True
        self._repeats = 0
        rate = self._rate("level", NOISE_RATE, NOISE_START)
        if usual is None:
            self._level = (mean, peak)
        else:
            self._level = (usual[0] + rate * (mean - usual[0]), usual[1] + rate * (peak - usual[1]))
        return False

    def _update_noise(self, step: Gray) -> Gray:
        """The per-pixel threshold: `noise_factor` x the local running frame-to-frame noise,
        at least `min_contrast` (recomputed from the coarse noise map every few frames, and
        on every frame while the map is young). At first the map is the mean of the steps
        seen so far, so a thing that moved in the first frames does not blind its cells for
        long."""
        h, w = step.shape
        cells = (max(1, w // NOISE_CELL), max(1, h // NOISE_CELL))
        coarse = cv2.resize(step, cells, interpolation=cv2.INTER_AREA).astype(np.float32)
        rate = self._rate("noise", NOISE_RATE, NOISE_START)
        if self._noise is None:
            self._noise = coarse
        else:
            cv2.accumulateWeighted(coarse, self._noise, rate)
        young = rate > NOISE_RATE
        if self._threshold is None or young or self._frames % BACKGROUND_EVERY == 0:
            sigma = self._noise * (self.params.noise_factor * MEAN_ABS_TO_SIGMA * 1.41)
            level = np.clip(sigma, self.params.min_contrast, 255).astype(np.uint8)
            self._threshold = cv2.resize(level, (w, h), interpolation=cv2.INTER_NEAREST)
        return self._threshold

    def _update_activity(self, binary: Gray) -> Gray:
        """Where specks keep appearing (leaves in the wind, a flickering sign, water), over
        `busy_share` of the recent frames, nothing is looked for: a falling object crosses a
        cell of the map in a frame or two. The map learns faster in its first frames
        (`BUSY_START`), so leaves are known a few frames after a start, and counts in time
        (`REFERENCE_INTERVAL_S`). Returns the mask of the quiet cells."""
        h, w = binary.shape
        cells = (max(1, w // NOISE_CELL), max(1, h // NOISE_CELL))
        hit = (cv2.resize(binary, cells, interpolation=cv2.INTER_AREA) > 0).astype(np.float32)
        if self._activity is None:
            self._activity = np.zeros_like(hit)
        usual = BUSY_RATE * self._slower
        rate = self._rate("activity", usual, BUSY_START)
        cv2.accumulateWeighted(hit, self._activity, rate)
        if self._quiet is None or rate > usual or self._frames % BACKGROUND_EVERY == 0:
            share = self.params.busy_share
            busy = max(share, min(MAX_BUSY_SHARE, share * self._slower))
            quiet: Gray = (self._activity < busy).astype(np.uint8) * 255
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
