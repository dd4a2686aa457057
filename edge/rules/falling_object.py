"""Falling objects (高空抛物): something thrown or dropped down a facade.

Every decoded frame goes through the speck finder (`edge.analysis.specks`, OpenCV, run by
`edge.analysis.frame_rules.FacadeWatch`); this rule takes the specks it found and is pure,
tested without video:

- `SpeckLinker` links specks into tracks, each new speck gated by the position its track
  predicts under constant acceleration (a least-squares fit of its recent sightings);
- `judge` accepts a track as a fall only when it descends with the acceleration of a falling
  thing over a real distance: y(t) = y0 + v0 t + a t²/2 and x(t) linear, fitted by least
  squares, with a positive, significant, large enough `a`, a small residual and no climbing
  after the apex; birds, insects, leaves, laundry, rain and lights in windows all fail one of
  these (docs/falling-object.md);
- `FloorScale` turns a height in the picture into a floor, from a few marked slab lines;
- `IncidentGrouper` makes objects thrown together one incident.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from common.config import FallingObjectRuleConfig, FloorMark, ZoneConfig
from common.events import ModelInfo
from edge.rules.base import RuleOutput, State
from edge.types import Box, Speck, SpeckFrame, clamp_box

GRAVITY_M_S2 = 9.81
LINK_HISTORY = 10  # sightings a track's prediction is fitted on
MAX_TRACKS = 300  # live tracks at most (clutter beyond this is dropped, newest first)
MAX_TRACK_S = 8.0  # a track this old is closed and judged (a 90 m fall takes 4.3 s)
MAX_ACCEL_G = 2.0  # with floors: faster than this is not a fall (perspective adds a little)
# without floors: a view one storey high (the closest a facade camera gets) shows gravity as
# about 3.3 frame heights/s²; more than this is clutter linked by chance, not a fall
MAX_ACCEL_FRAME_HEIGHTS = 5.0
ISOLATION = 0.03  # frame heights: another speck this close makes a sighting not isolated
# `min_fall_px` is in pixels of a picture this many rows high, or fewer: a taller picture
# (1440p, 4K) shows everything larger, so the least fall grows with it
REFERENCE_ROWS = 1080
INTERVAL_STEPS = 15  # the frame interval is taken from this many recent pts steps
MAX_INTERVAL_S = 0.5  # a step longer than this is a gap in the stream, not its frame rate
RESTART_GAP_S = 2.0  # frames this far apart: the stream was interrupted (a reconnect)
NOISE_VARIANCE_PX2 = 0.25  # a sighting's position is never surer than half a pixel
# a fall under perspective is fitted only with this many degrees of freedom left, and kept
# only when it beats the parabola by this many standard errors (F-test of one parameter)
PERSPECTIVE_MIN_DOF = 4
PERSPECTIVE_SIGNIFICANCE = 3.0
PERSPECTIVE_GRID = 41  # perspectives tried per pass (two passes: coarse, then fine)


@dataclass(frozen=True, slots=True)
class Sighting:
    """A speck at stream time `t`, in pixels of the full frame."""

    t: float
    x: float
    y: float
    area: float = 1.0
    neighbours: int = 0  # other specks close by in the same frame (fragments of something big)
    extent: float = 0.0  # share of the area around it that differs from the background


# ------------------------------------------------------------------------- trajectory fitting


@dataclass(frozen=True, slots=True)
class FallFit:
    """Least-squares fit of a track as a fall seen through a pinhole camera.

    The object's height is h(s) = y0 + vy0·s + accel·s²/2 (s = t − t0), in pixels at the
    scale of the picture at row `y_ref` (the lowest sighting's row). A camera maps
    heights on a vertical line to picture rows by a 1-D projective map, so the row is
    y = y_ref + (h − y_ref) / (1 − r·(h − y_ref)), with r = `perspective` (1/px): 0 in a view
    across the facade (a parabola in y), > 0 when the object comes towards a camera looking
    up (it grows and speeds up in the picture beyond gravity), < 0 looking down. The object's
    scale relative to the reference row is k(y) = 1 + r·(y − y_ref) (its depth is ∝ 1/k), and
    x(t) = x_v + k·(x1 + vx·s) about the column `x_v` of the vertical vanishing point, which
    for r = 0 is x(t) = x0 + vx·s. `accel` is therefore g in pixels of the reference row and
    `vx` the sideways drift at the same scale (both as seen in the picture when r = 0).

    Example:
        >>> fit = fit_fall([Sighting(t, 100.0, 50 + 200 * (t - .05) ** 2) for t in (0, .1, .2, .3)])
        >>> round(fit.accel, 1), round(fit.apex_s, 3), fit.perspective
        (400.0, 0.05, 0.0)
    """

    t0: float
    x0: float
    vx: float
    y0: float
    vy0: float
    accel: float  # px/s² at the reference row, downward positive (image y grows downward)
    accel_sigma: float  # standard error of `accel` (with the perspective free, if fitted)
    rms_x: float
    rms_y: float
    y_ref: float = 0.0
    perspective: float = 0.0  # r, 1/px
    x_vanish: float = 0.0  # x_v (unused when r = 0)
    # how much better than the best steady movement (under the same perspective freedom) the
    # fall fits: an F statistic of the added acceleration, in squared standard errors
    steady_gain: float = math.inf

    def height_at(self, t: float) -> float:
        """The fitted height (pixels at the reference row's scale) at `t`."""
        s = t - self.t0
        return self.y0 + self.vy0 * s + 0.5 * self.accel * s * s

    def scale_at(self, t: float) -> float:
        """The object's scale at `t` relative to the reference row (1 without perspective):
        how much larger it looks than there."""
        return 1.0 / (1.0 - self.perspective * (self.height_at(t) - self.y_ref))

    def x_at(self, t: float) -> float:
        move = self.x0 + self.vx * (t - self.t0)
        if self.perspective == 0.0:
            return move
        return self.x_vanish + self.scale_at(t) * move

    def y_at(self, t: float) -> float:
        return self.y_ref + (self.height_at(t) - self.y_ref) * self.scale_at(t)

    def vy_at(self, t: float) -> float:
        """The fitted vertical speed of the height (px/s at the reference row's scale)."""
        return self.vy0 + self.accel * (t - self.t0)

    @property
    def apex_s(self) -> float | None:
        """When the fitted vertical speed is zero (the top of the path), if it accelerates
        downward."""
        if self.accel <= 0:
            return None
        return self.t0 - self.vy0 / self.accel

    def in_view(self, t: float) -> bool:
        """Whether the fitted path at `t` is on this side of the vanishing point."""
        return 1.0 - self.perspective * (self.height_at(t) - self.y_ref) > 0.05


def fit_fall(points: Sequence[Sighting], max_depth_ratio: float = 1.0) -> FallFit:
    """Fit a fall to at least 4 sightings: a parabola in y (x linear) and, when
    `max_depth_ratio` > 1 and there are enough sightings, a fall under perspective whose depth
    changes by at most that factor over the track; the perspective is kept only when it fits
    significantly better than the parabola (an F-test of the one added parameter at
    `PERSPECTIVE_SIGNIFICANCE` standard errors), so a view across a facade is judged as
    before and only a path the parabola cannot follow uses the added freedom. The fit also
    says how much better it is than the best steady movement seen under the same freedom
    (`FallFit.steady_gain`)."""
    if len(points) < 4:
        raise ValueError("a fall fit needs at least 4 sightings")
    t0 = points[0].t
    s = np.array([p.t - t0 for p in points])
    xs = np.array([p.x for p in points])
    ys = np.array([p.y for p in points])
    if len(np.unique(s)) < 3:
        raise ValueError("sightings at fewer than 3 distinct times")
    design = np.column_stack([np.ones_like(s), s, 0.5 * s * s])
    coef = _least_squares(design, ys)
    y_ref = float(ys.max())  # the lowest point: the scale the acceleration is given in
    rss = float(np.sum((ys - design @ coef) ** 2))
    steady = float(np.sum((ys - design[:, :2] @ _least_squares(design[:, :2], ys)) ** 2))
    n = len(points)
    perspective, free = 0.0, 3
    if max_depth_ratio > 1.0 and n - 4 >= PERSPECTIVE_MIN_DOF:
        low, high = _perspective_bounds(float(ys.min()) - y_ref, max_depth_ratio)
        r, coef_r, rss_r = _best_perspective(ys, y_ref, design, low, high)
        gain = (rss - rss_r) / (max(rss_r, NOISE_VARIANCE_PX2 * (n - 4)) / (n - 4))
        if gain >= PERSPECTIVE_SIGNIFICANCE**2:
            perspective, coef, rss, free = r, coef_r, rss_r, 4
            steady = min(steady, _best_perspective(ys, y_ref, design[:, :2], low, high)[2])
    residual = max(rss, NOISE_VARIANCE_PX2 * (n - free)) / max(1, n - free)
    gain = max(0.0, steady - rss) / residual
    return _fall_fit(t0, s, xs, y_ref, perspective, coef, rss, gain)


def _least_squares(design: np.ndarray[Any, Any], values: np.ndarray[Any, Any]) -> Any:
    """Least-squares coefficients by the normal equations (a few well-scaled columns: much
    cheaper than an SVD, and the judge runs often)."""
    return np.linalg.solve(design.T @ design, design.T @ values)


def _perspective_bounds(above: float, max_ratio: float) -> tuple[float, float]:
    """The range of the perspective r (reference at the lowest row, the highest `above` it,
    < 0) for which the object comes nearer by at most `max_ratio` between the two. Only
    nearer: the camera looks up at the facade from below, so a falling object never recedes
    (allowing it would let a sinking, stalling leaf pass for a fall seen from above)."""
    return 0.0, (max_ratio - 1.0) / (-max_ratio * above)


def _best_perspective(
    ys: np.ndarray[Any, Any],
    y_ref: float,
    design: np.ndarray[Any, Any],
    low: float,
    high: float,
) -> tuple[float, np.ndarray[Any, Any], float]:
    """The perspective r in [low, high] under which the height, a polynomial in time with the
    columns of `design`, fits the rows best: (r, height coefficients, residual sum of squares
    in the picture). For each r the height is fitted by weighted least squares (the weights
    turn height residuals into row residuals); a coarse grid, then a fine one around its best.
    A fall (three columns) must accelerate downward: a decelerating height under a stronger
    perspective can mimic the same rows, and is no fall."""
    offset = ys - y_ref
    candidates = np.linspace(low, high, PERSPECTIVE_GRID)
    result: tuple[float, np.ndarray[Any, Any], float] = (0.0, np.zeros(design.shape[1]), math.inf)
    for _ in range(2):
        k = 1.0 + candidates[:, None] * offset[None, :]  # scale of each sighting, per r
        heights = offset[None, :] / k
        weight = k * k  # d(row)/d(height)
        wd = weight[:, :, None] * design[None, :, :]
        wdt = wd.transpose(0, 2, 1)
        coefs = np.linalg.solve(wdt @ wd, wdt @ (weight * heights)[:, :, None])[:, :, 0]
        fitted = coefs @ design.T  # heights (relative to y_ref)
        q = 1.0 - candidates[:, None] * fitted
        rows = np.where(q > 0.05, fitted / np.maximum(q, 0.05), np.inf)
        rss = np.sum((rows - offset[None, :]) ** 2, axis=1)
        if design.shape[1] == 3:
            rss[coefs[:, 2] <= 0] = np.inf
        best = int(np.argmin(rss))
        if rss[best] < result[2]:
            result = (float(candidates[best]), coefs[best].copy(), float(rss[best]))
        step = candidates[1] - candidates[0]
        candidates = np.linspace(
            max(low, result[0] - step), min(high, result[0] + step), PERSPECTIVE_GRID
        )
    r, coef, rss_best = result
    coef[0] += y_ref  # heights in pixels of the reference row, like the rows themselves
    return r, coef, rss_best


def _fall_fit(
    t0: float,
    s: np.ndarray[Any, Any],
    xs: np.ndarray[Any, Any],
    y_ref: float,
    r: float,
    coef: np.ndarray[Any, Any],
    rss: float,
    steady_gain: float,
) -> FallFit:
    design = np.column_stack([np.ones_like(s), s, 0.5 * s * s])
    n = len(s)
    if r == 0.0:
        variance = max(rss / max(1, n - 3), NOISE_VARIANCE_PX2)
        covariance = variance * np.linalg.pinv(design.T @ design)
        design_x = design[:, :2]
        x_vanish = 0.0
    else:
        # rows as a function of the height coefficients and r: y = y_ref + e / (1 − r·e)
        e = design @ coef - y_ref
        q = 1.0 - r * e
        jacobian = np.column_stack([e * e / q**2, design / (q * q)[:, None]])
        variance = max(rss / max(1, n - 4), NOISE_VARIANCE_PX2)
        covariance = variance * np.linalg.pinv(jacobian.T @ jacobian)[1:, 1:]
        scale = 1.0 / q
        design_x = np.column_stack([np.ones_like(s), scale, scale * s])
    if r == 0.0:
        coef_x = _least_squares(design_x, xs)
    else:  # the scale may vary little: an SVD copes with nearly dependent columns
        coef_x = np.linalg.lstsq(design_x, xs, rcond=None)[0]
    res_x = xs - design_x @ coef_x
    if r != 0.0:
        x_vanish, coef_x = float(coef_x[0]), coef_x[1:]
    return FallFit(
        t0=t0,
        x0=float(coef_x[0]),
        vx=float(coef_x[1]),
        y0=float(coef[0]),
        vy0=float(coef[1]),
        accel=float(coef[2]),
        accel_sigma=math.sqrt(max(0.0, float(covariance[2, 2]))),
        rms_x=float(np.sqrt(np.mean(res_x * res_x))),
        rms_y=math.sqrt(rss / n),
        y_ref=y_ref,
        perspective=r,
        x_vanish=x_vanish,
        steady_gain=steady_gain,
    )


# ------------------------------------------------------------------------------ acceptance


@dataclass(frozen=True, slots=True)
class FallParams:
    """What a track must show to be a fall (config keys, docs/falling-object.md)."""

    min_fall_px: float = 40.0
    min_accel_px_s2: float = 30.0
    max_accel_px_s2: float = math.inf
    min_duration_s: float = 0.3
    min_points: int = 6
    min_density: float = 0.7  # share of the frames between first and last sighting seen on
    min_isolated: float = 0.6  # share of sightings with no other speck close by
    max_extent: float = 0.35  # typical share of changed pixels around it (more: a large thing)
    max_extrapolation_s: float = 1.5
    accel_significance: float = 3.0  # the acceleration must be this many standard errors
    min_speedup: float = 0.2  # the speed must grow by this share of the final speed
    max_residual: float = 0.02  # rms off the fitted path, as a share of the fall
    min_residual_px: float = 2.0  # ... but never less than this many pixels
    max_climb_share: float = 0.15  # sightings after the apex that go up (beyond the noise)
    max_sideways: float = 1.2  # horizontal speed at most this times the final fall speed
    # how much nearer (larger) the object may come between its first and last sighting: a
    # camera at the foot of a tower looking up sees a 3-4 px object grow to 10-15 px near
    # the bottom, and up to about 8x when it is close to the wall and the object falls from
    # the top of a 20-storey block; 1 fits a parabola only (no perspective)
    max_depth_ratio: float = 8.0


@dataclass(frozen=True, slots=True)
class Fall:
    """A track accepted as a fall."""

    sightings: tuple[Sighting, ...]
    fit: FallFit
    release_s: float  # when the object left its origin (fitted apex, or first sighting)
    origin: tuple[float, float]  # pixels: the highest point of the path
    drop_px: float  # from the origin to the last sighting
    score: float

    @property
    def landed_s(self) -> float:
        return self.sightings[-1].t


@dataclass(frozen=True, slots=True)
class Verdict:
    fall: Fall | None
    reason: str  # why not a fall ("" when it is one)


def judge(
    points: Sequence[Sighting],
    params: FallParams,
    frame_interval_s: float,
    accel_range: tuple[float, float] | None = None,
    earliest_s: float = -math.inf,
) -> Verdict:
    """Is this track a fall? `accel_range` (px/s²) overrides the params' (gravity from the
    floors); `frame_interval_s` is the stream's time between frames; the release is never put
    before `earliest_s` (the stream's first frame). A track whose first sightings stray from
    the path, or are too sparse (it started on some other speck), is judged without them.

    It is judged as a parabola in the picture (a view across the facade) and, unless the
    parabola follows the track (`_follows`), under perspective (a view up it) when
    `params.max_depth_ratio` allows: the fall under perspective is taken when
    the perspective fits significantly better than the parabola and the track passes every
    test under it, including an acceleration of its own beyond what the perspective
    explains; else the parabola's verdict stands. So nothing the parabola rejects gets in
    unless the parabola cannot follow its path and it falls under perspective (a leaf that
    sinks and stalls, which the parabola follows and rejects, stays rejected), nothing that
    moves steadily gets in through it, and
    a fall the parabola follows closely keeps the parabola's release (on the real throws it
    is the better one: the perspective's extra freedom puts it up to 0.7 s early there).

    Example:
        >>> judge([Sighting(t / 25, 300, 100 + 400 * (t / 25) ** 2) for t in range(20)],
        ...       FallParams(), 1 / 25).reason
        ''
    """
    flat = replace(params, max_depth_ratio=1.0)
    every = range(1, len(points) // 3 + 1)
    verdict = _judge_trimmed(points, flat, frame_interval_s, accel_range, earliest_s, every)
    if params.max_depth_ratio > 1.0 and not _follows(points, verdict, params):
        # the fit under perspective costs more: the start is cut by 1, 2, 4, 8... sightings
        # (cutting a few more than the stray ones loses only some of the slow first part)
        doubling = [2**k for k in range(len(points).bit_length()) if 2**k <= len(points) // 3]
        seen = _judge_trimmed(points, params, frame_interval_s, accel_range, earliest_s, doubling)
        if seen.fall is not None and seen.fall.fit.perspective > 0.0:
            return seen
    return verdict


def _follows(points: Sequence[Sighting], verdict: Verdict, params: FallParams) -> bool:
    """Whether the parabola follows the track's rows: it accepted it within
    `min_residual_px`, or it rejected a track whose rows it fits within the path tolerance
    (for a reason of its own: a steady sink, too little acceleration, a swinging sideways
    path), which the perspective must not overturn. Perspective bends the rows of a fall
    first; a path off the parabola only sideways is a swinging leaf or a bird, which the
    perspective's freedom in x (about a vanishing column) could otherwise follow."""
    if verdict.fall is not None:
        return verdict.fall.fit.rms_y <= params.min_residual_px
    try:
        fit = fit_fall(points)
    except ValueError:
        return True  # too few sightings for any fit
    drop = points[-1].y - min(p.y for p in points)
    tolerance = max(params.min_residual_px, params.max_residual * drop)
    return fit.rms_y <= tolerance


def _judge_trimmed(
    points: Sequence[Sighting],
    params: FallParams,
    frame_interval_s: float,
    accel_range: tuple[float, float] | None,
    earliest_s: float,
    skips: Iterable[int],
) -> Verdict:
    verdict = _judge(points, params, frame_interval_s, accel_range, earliest_s)
    # a track that began on stray specks (in a view looking up, the object is tiny and slow
    # at first, and the wide early gates pick up other things while waiting for it) has its
    # start off the path, or too few sightings in its first part
    stray_start = verdict.reason.startswith("erratic") or "not one object" in verdict.reason
    if verdict.fall is None and stray_start:
        for skip in skips:
            trimmed = _judge(points[skip:], params, frame_interval_s, accel_range, earliest_s)
            if trimmed.fall is not None:
                return trimmed
    return verdict


def _judge(
    points: Sequence[Sighting],
    params: FallParams,
    frame_interval_s: float,
    accel_range: tuple[float, float] | None,
    earliest_s: float = -math.inf,
) -> Verdict:
    if len(points) < params.min_points:
        return Verdict(None, f"seen on {len(points)} frames, fewer than {params.min_points}")
    duration = points[-1].t - points[0].t
    if duration < params.min_duration_s:
        return Verdict(None, f"followed {duration:.2f} s, less than {params.min_duration_s}")
    frames = round(duration / frame_interval_s) + 1
    if len(points) < params.min_density * frames:
        return Verdict(None, f"seen on {len(points)} of {frames} frames: not one object")
    isolated = sum(1 for p in points if p.neighbours == 0)
    if isolated < params.min_isolated * len(points):
        return Verdict(None, "moves among other specks: part of something large (a car, people)")
    if float(np.median([p.extent for p in points])) > params.max_extent:
        return Verdict(None, "the edge of a large changed area, not a small object")
    ys = [p.y for p in points]
    top = min(ys)
    observed_drop = points[-1].y - top
    if observed_drop < params.min_fall_px:
        return Verdict(None, f"fell {observed_drop:.0f} px, less than {params.min_fall_px:.0f}")
    try:
        fit = fit_fall(points, params.max_depth_ratio)
    except ValueError as error:
        return Verdict(None, str(error))
    low, high = accel_range or (params.min_accel_px_s2, params.max_accel_px_s2)
    if fit.accel < low:
        return Verdict(None, f"acceleration {fit.accel:.0f} px/s², less than {low:.0f}")
    if fit.accel > high:
        return Verdict(None, f"acceleration {fit.accel:.0f} px/s², more than a fall's")
    if fit.accel < params.accel_significance * fit.accel_sigma:
        return Verdict(None, f"acceleration {fit.accel:.0f}±{fit.accel_sigma:.0f} px/s² unsure")
    end = points[-1].t
    v_end = fit.vy_at(end)
    if v_end <= 0 or fit.accel * duration < params.min_speedup * v_end:
        return Verdict(None, "no speeding up: drifts or sinks at a steady speed")
    tolerance = max(params.min_residual_px, params.max_residual * observed_drop)
    if fit.rms_y > tolerance or fit.rms_x > tolerance:
        return Verdict(None, f"erratic path ({max(fit.rms_x, fit.rms_y):.1f} px off the fit)")
    if fit.perspective > 0.0 and fit.steady_gain < params.accel_significance**2:
        return Verdict(None, "a steady movement seen in perspective: no acceleration of its own")
    if abs(fit.vx) > params.max_sideways * v_end:
        return Verdict(None, "moves sideways more than down")
    apex = fit.apex_s
    assert apex is not None  # noqa: S101 - accel > 0 here
    after = [p for p in points if p.t >= apex]
    climbs = sum(1 for a, b in itertools.pairwise(after) if b.y < a.y - max(2.0, 2 * fit.rms_y))
    if after and climbs > params.max_climb_share * len(after):
        return Verdict(None, "climbs while coming down (a bird, an insect)")
    first = points[0].t
    release = min(first, max(apex, first - params.max_extrapolation_s, earliest_s))
    if not fit.in_view(release):  # looking down, the fitted top is beyond the vanishing point
        release = first
    origin_y = min(top, fit.y_at(release))
    origin = (fit.x_at(release), origin_y)
    drop = points[-1].y - origin_y
    quality = 1.0 - min(1.0, max(fit.rms_x, fit.rms_y) / tolerance)
    certainty = min(1.0, drop / (4 * params.min_fall_px)) * min(1.0, len(points) / 15)
    score = round(0.5 + 0.25 * quality + 0.25 * certainty, 3)
    fall = Fall(tuple(points), fit, release, origin, drop, score)
    return Verdict(fall, "")


# ----------------------------------------------------------------------------------- linking


@dataclass(slots=True)
class Track:
    track_id: int
    sightings: list[Sighting]
    confirmed: bool = False  # already accepted as a fall while in flight
    judged: int = 0  # sightings it had when last judged in flight
    top: float = math.inf
    bottom: float = -math.inf

    def add(self, sighting: Sighting) -> None:
        self.sightings.append(sighting)
        self.top = min(self.top, sighting.y)
        self.bottom = max(self.bottom, sighting.y)

    @property
    def last(self) -> Sighting:
        return self.sightings[-1]

    def predict(self, t: float, max_speed_px_s: float) -> list[tuple[float, float, float]]:
        """Where the track should be at `t`, with the gate radius around it (pixels): from
        its last step (constant velocity) and, with four sightings or more, from the fit of
        its recent path (constant acceleration), so one stray early sighting cannot make the
        track lose its object."""
        last = self.last
        dt = t - last.t
        if len(self.sightings) == 1:
            return [(last.x, last.y, 3.0 + max_speed_px_s * dt)]
        before = self.sightings[-2]
        step = max(1e-6, last.t - before.t)
        vx, vy = (last.x - before.x) / step, (last.y - before.y) / step
        # the allowance for a change of speed grows with the time step only up to a 25 fps
        # step: at 10 fps it would gate 45 px around a 720-row prediction and steal specks
        # of another object (the constant-acceleration guess follows a fall at any rate)
        radius = 4.0 + 0.5 * math.hypot(vx, vy) * dt + 0.25 * max_speed_px_s * min(dt, 0.04)
        guesses = [(last.x + vx * dt, last.y + vy * dt, radius)]
        recent = self.sightings[-LINK_HISTORY:]
        if len(recent) >= 4:
            s = np.array([p.t - t for p in recent])
            xs = np.array([p.x for p in recent])
            ys = np.array([p.y for p in recent])
            cy = np.polyfit(s, ys, 2)
            cx = np.polyfit(s, xs, 1)
            residual = float(np.sqrt(np.mean((np.polyval(cy, s) - ys) ** 2)))
            speed = math.hypot(float(cx[0]), float(cy[1]))
            guesses.append((float(cx[1]), float(cy[2]), 4.0 + 3.0 * residual + 0.3 * speed * dt))
        return guesses


class SpeckLinker:
    """Links each frame's specks to the live tracks: nearest within the gate of each track's
    predicted position, longer tracks served first; the rest start tracks. A track unseen for
    `max_gap_s` has ended (landed, or left the zone).

    A maintained tracker does not fit: Kalman trackers (Norfair, SORT) assume constant
    velocity and need several frames of a track before they gate well, and they keep no
    history, while a fall is judged on the least-squares fit of its whole path.
    """

    def __init__(self, max_gap_s: float, max_speed_px_s: float) -> None:
        self.max_gap_s = max_gap_s
        self.max_speed_px_s = max_speed_px_s
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(
        self, t: float, specks: Sequence[Sighting], frame_interval_s: float = 0.04
    ) -> list[Track]:
        """Add this frame's specks; return the tracks that ended. A lone sighting is linked
        only on the next frame or the one after (what appears once and again later in
        another place is two things)."""
        first_link_s = 2.5 * frame_interval_s
        # at a low frame rate one missed frame is already a long gap
        max_gap_s = max(self.max_gap_s, first_link_s)
        ended = [
            track
            for track in self.tracks
            if t - track.last.t > (max_gap_s if len(track.sightings) > 1 else first_link_s)
            or track.last.t - track.sightings[0].t > MAX_TRACK_S
        ]
        if ended:
            gone = {id(track) for track in ended}
            self.tracks = [track for track in self.tracks if id(track) not in gone]
        pairs: list[tuple[int, float, int, int]] = []
        for ti, track in enumerate(self.tracks):
            guesses = track.predict(t, self.max_speed_px_s)
            tier = 0 if len(track.sightings) >= 4 else 1 if len(track.sightings) >= 2 else 2
            for si, speck in enumerate(specks):
                cost = min(math.hypot(speck.x - x, speck.y - y) / r for x, y, r in guesses)
                if cost <= 1.0:
                    pairs.append((tier, cost, ti, si))
        used_tracks: set[int] = set()
        used_specks: set[int] = set()
        for _, _, ti, si in sorted(pairs):
            if ti in used_tracks or si in used_specks:
                continue
            used_tracks.add(ti)
            used_specks.add(si)
            self.tracks[ti].add(specks[si])
        for si, speck in enumerate(specks):
            if si not in used_specks:
                track = Track(self._next_id, [])
                track.add(speck)
                self._next_id += 1
                self.tracks.append(track)
        if len(self.tracks) > MAX_TRACKS:
            self.tracks.sort(key=lambda track: -len(track.sightings))
            del self.tracks[MAX_TRACKS:]
        return ended


# ------------------------------------------------------------------------------------ floors


class FloorScale:
    """Which floor a point of the picture is on, from slab lines marked on a still frame.

    Each mark is the floor level (slab) of one floor, as a line across the facade; at the
    point's x each line gives the slab's height in the picture. Slabs of a flat facade are
    equally spaced in the world, and a camera maps heights on a plane to picture rows by a 1-D
    projective map f = (p·y + q) / (r·y + 1): with three or more marks it is fitted (least
    squares), which follows the perspective of a camera looking up; with two it is linear.

    Example:
        >>> scale = FloorScale([(1, ((0, .9), (1, .9))), (5, ((0, .5), (1, .5)))])
        >>> scale.floor_at(0.5, 0.68)
        3.2
    """

    def __init__(
        self, marks: Sequence[tuple[int, tuple[tuple[float, float], tuple[float, float]]]]
    ) -> None:
        if len(marks) < 2:
            raise ValueError("mark at least two floors")
        self._marks = sorted(marks)

    @classmethod
    def from_config(cls, marks: Sequence[FloorMark]) -> FloorScale | None:
        if not marks:
            return None
        return cls([(m.floor, m.line) for m in marks])

    def _rows(self, x: float) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        floors, rows = [], []
        for floor, ((x1, y1), (x2, y2)) in self._marks:
            floors.append(float(floor))
            rows.append(y1 + (y2 - y1) * (x - x1) / (x2 - x1))
        return np.array(rows), np.array(floors)

    def _map(self, x: float) -> tuple[float, float, float]:
        """(p, q, r) of f = (p·y + q) / (r·y + 1) at this x (r = 0: linear)."""
        rows, floors = self._rows(x)
        if len(rows) >= 3:
            design = np.column_stack([rows, np.ones_like(rows), -floors * rows])
            p, q, r = (float(v) for v in np.linalg.lstsq(design, floors, rcond=None)[0])
            # the map must stay one-to-one over the picture: no pole between 0 and 1
            if all(r * y + 1 > 0.05 for y in (0.0, 1.0, float(rows.min()), float(rows.max()))):
                return p, q, r
        slope, intercept = np.polyfit(rows, floors, 1)
        return float(slope), float(intercept), 0.0

    def floor_at(self, x: float, y: float) -> float:
        """The floor (continuous: 3.5 is half-way up floor 3) at the normalised point."""
        p, q, r = self._map(x)
        return round((p * y + q) / (r * y + 1), 3)

    def floor_height(self, x: float, y: float) -> float:
        """One storey's height in the picture (normalised rows) at this point."""
        p, q, r = self._map(x)
        slope = abs((p - r * q) / (r * y + 1) ** 2)
        return 1.0 / slope if slope > 0 else math.inf


def origin_floor(scale: FloorScale, x: float, y: float) -> int:
    """The floor an object released at this point came from: the floor whose slab is just
    below (a hand or a window sill is above its own floor's slab)."""
    return math.floor(scale.floor_at(x, y) + 1e-6)


# ---------------------------------------------------------------------------------- incidents


@dataclass(slots=True)
class Incident:
    falls: list[Fall] = field(default_factory=list)

    @property
    def onset_s(self) -> float:
        return min(f.release_s for f in self.falls)

    @property
    def last_landing_s(self) -> float:
        return max(f.landed_s for f in self.falls)


class IncidentGrouper:
    """Objects released within `group_s` of the incident's last landing join it (one `new`,
    then `update`s); the incident ends once nothing more has fallen for `group_s`."""

    def __init__(self, group_s: float) -> None:
        self.group_s = group_s
        self.open: Incident | None = None

    def add(self, fall: Fall) -> State:
        if self.open is not None and fall.release_s <= self.open.last_landing_s + self.group_s:
            self.open.falls.append(fall)
            return "update"
        self.open = Incident([fall])
        return "new"

    def expire(self, now_s: float) -> Incident | None:
        """The incident that is over at `now_s`, if any (it is closed)."""
        if self.open is not None and now_s - self.open.last_landing_s >= self.group_s:
            over, self.open = self.open, None
            return over
        return None


# -------------------------------------------------------------------------------------- rule


class FallingObjectRule:
    """Watches every frame of the facade zone; one event per throw incident: `new` once the
    first object has landed (or fallen `confirm_after_s`), `update` for each further object
    thrown with it, `end` once nothing more has fallen for `group_s`."""

    def __init__(self, config: FallingObjectRuleConfig, zone: ZoneConfig) -> None:
        self.config = config
        self.rule_id = config.id
        self.zone_id = zone.id
        self.clip_pre_s = config.clip_pre_s
        self.clip_post_s = config.clip_post_s
        self.params = FallParams(
            min_fall_px=config.min_fall_px,
            min_accel_px_s2=config.min_accel_px_s2,
            min_duration_s=config.min_duration_s,
            min_points=config.min_points,
            max_extrapolation_s=config.max_extrapolation_s,
        )
        self.floors = FloorScale.from_config(config.floors)
        self.grouper = IncidentGrouper(config.group_s)
        self.skipped_frames = 0
        self._base_params = self.params
        self._linker: SpeckLinker | None = None
        self._size = (1, 1)
        self._first_pts = 0.0  # the stream's first frame, or the first after an interruption
        self._last_pts: float | None = None
        self._steps: deque[float] = deque(maxlen=INTERVAL_STEPS)
        self._interval = 1.0 / 25  # the stream's frame interval, followed as frames come

    @property
    def frame_interval_s(self) -> float:
        """The stream's time between the frames this rule is given, as followed so far."""
        return self._interval

    @property
    def model(self) -> ModelInfo | None:
        return None  # no learned model: motion, tracking and a physical fit

    def breaks(self, pts_s: float, size_wh: tuple[int, int]) -> bool:
        """Whether the frame at `pts_s` breaks the stream (its time went back, the picture
        changed size, or it comes after a gap): the frames before it are no reference for
        the speck finder."""
        if self._last_pts is None:
            return False
        return (
            pts_s < self._last_pts - 1e-3
            or size_wh != self._size
            or pts_s - self._last_pts > RESTART_GAP_S
        )

    def observe(
        self, pts_s: float, size_wh: tuple[int, int], found: SpeckFrame
    ) -> list[RuleOutput]:
        """The specks found on one frame (of `size_wh` pixels, at stream time `pts_s`)."""
        width, height = size_wh
        outputs: list[RuleOutput] = []
        if self._last_pts is not None and (
            pts_s < self._last_pts - 1e-3 or self._size != (width, height)
        ):
            outputs.extend(self._restart())
        if self._linker is None:
            self._size = (width, height)
            self._first_pts = pts_s
            self._linker = SpeckLinker(self.config.max_gap_s, self.config.max_speed * height)
            least = self._base_params.min_fall_px * max(1.0, height / REFERENCE_ROWS)
            self.params = replace(self._base_params, min_fall_px=least)
        resumed = self._last_pts is not None and pts_s - self._last_pts > RESTART_GAP_S
        if self._last_pts is not None and pts_s > self._last_pts:
            step = pts_s - self._last_pts
            if step <= MAX_INTERVAL_S:
                self._steps.append(step)
                self._interval = _typical_step(self._steps)
        self._last_pts = pts_s
        self.skipped_frames += int(found.skipped)
        sightings = _sightings(pts_s, found.specks, ISOLATION * height)
        ended = self._linker.update(pts_s, sightings, self._interval)
        for track in ended:
            if not track.confirmed:
                outputs.extend(self._consider(track, pts_s))
        if resumed:  # after an outage no release is put before the stream came back
            self._first_pts = pts_s
        for track in self._linker.tracks:
            in_flight = track.last.t - track.sightings[0].t
            fresh = len(track.sightings) > track.judged
            if fresh and not track.confirmed and in_flight >= self.config.confirm_after_s:
                track.judged = len(track.sightings)
                outputs.extend(self._consider(track, pts_s))
        closed = self.grouper.expire(pts_s)
        if closed is not None:
            outputs.append(self._output("end", closed, pts_s))
        return outputs

    def judge_track(self, points: Sequence[Sighting]) -> Verdict:
        """`judge` with this camera's acceleration threshold (from the floors if marked)."""
        accel = self._accel_range(points)
        return judge(points, self.params, self._interval, accel, self._first_pts)

    def _restart(self) -> list[RuleOutput]:
        """The stream broke: its time went back (a replay looped, a camera restarted) or its
        picture changed size. The tracks in flight are judged as they were last seen, the
        open incident is closed at the last frame before the break, and everything starts
        again on the next frame (the speck finder sets itself up for a new size)."""
        assert self._linker is not None and self._last_pts is not None  # noqa: S101
        now = self._last_pts
        outputs: list[RuleOutput] = []
        for track in self._linker.tracks:
            if not track.confirmed:
                outputs.extend(self._consider(track, now))
        if self.grouper.open is not None:
            closed, self.grouper.open = self.grouper.open, None
            outputs.append(self._output("end", closed, now))
        self._linker = None
        self._last_pts = None
        self._steps.clear()
        return outputs

    def _consider(self, track: Track, now_s: float) -> list[RuleOutput]:
        if track.bottom - track.top < self.params.min_fall_px:
            return []
        verdict = self.judge_track(track.sightings)
        if verdict.fall is None:
            return []
        track.confirmed = True
        state = self.grouper.add(verdict.fall)
        assert self.grouper.open is not None  # noqa: S101
        return [self._output(state, self.grouper.open, now_s)]

    def _accel_range(self, points: Sequence[Sighting]) -> tuple[float, float]:
        """The downward acceleration (px/s²) a fall may show here, at the scale of the
        picture where the track is lowest (the scale `FallFit.accel` is given in): from the
        floors when they are marked (a share of g there), else from the config and the
        frame."""
        if self.floors is None:
            return self.config.min_accel_px_s2, MAX_ACCEL_FRAME_HEIGHTS * self._size[1]
        gravity = GRAVITY_M_S2 / self._metres_per_px(_lowest(points))
        return self.config.min_accel_g * gravity, MAX_ACCEL_G * gravity

    def _metres_per_px(self, at: Sighting) -> float:
        """With floors: metres per pixel of height at this sighting's place."""
        assert self.floors is not None  # noqa: S101
        width, height = self._size
        storey_px = self.floors.floor_height(at.x / width, at.y / height) * height
        return self.config.floor_height_m / storey_px

    # ---------------------------------------------------------------------------- messages

    def trajectory(self, fall: Fall) -> list[list[float]]:
        """[[pts_s, x, y], ...] normalised, the origin first."""
        width, height = self._size
        points = [(p.t, p.x, p.y) for p in fall.sightings]
        if fall.release_s < fall.sightings[0].t - 1e-3:
            points.insert(0, (fall.release_s, *fall.origin))
        return [
            [round(t, 3), round(_unit(x / width), 4), round(_unit(y / height), 4)]
            for t, x, y in points
        ]

    def _describe(self, fall: Fall) -> dict[str, Any]:
        width, height = self._size
        x, y = fall.origin[0] / width, fall.origin[1] / height
        described: dict[str, Any] = {
            "release_pts_s": round(fall.release_s, 3),
            "landed_pts_s": round(fall.landed_s, 3),
            "origin": [round(_unit(x), 4), round(_unit(y), 4)],
            "fall_px": round(fall.drop_px, 1),
            "duration_s": round(fall.landed_s - fall.release_s, 3),
            "accel_px_s2": round(fall.fit.accel, 1),
            "score": fall.score,
        }
        if self.floors is not None:
            described["origin_floor"] = origin_floor(self.floors, x, y)
            metres_per_px = self._metres_per_px(_lowest(fall.sightings))
            described["accel_g"] = round(fall.fit.accel * metres_per_px / GRAVITY_M_S2, 2)
            # between floors read at both ends (the storeys shrink upwards when looking up)
            last = fall.sightings[-1]
            storeys = self.floors.floor_at(x, y) - self.floors.floor_at(
                last.x / width, last.y / height
            )
            described["fall_m"] = round(storeys * self.config.floor_height_m, 1)
        return described

    def _box(self, fall: Fall) -> Box:
        width, height = self._size
        xs = [fall.origin[0], *(p.x for p in fall.sightings)]
        ys = [fall.origin[1], *(p.y for p in fall.sightings)]
        pad = 4.0
        return clamp_box(
            (
                (min(xs) - pad) / width,
                (min(ys) - pad) / height,
                (max(xs) + pad) / width,
                (max(ys) + pad) / height,
            )
        )

    def _output(self, state: State, incident: Incident, now_s: float) -> RuleOutput:
        falls = sorted(incident.falls, key=lambda f: f.release_s)
        main = falls[0]
        described = [self._describe(f) for f in falls]
        details: dict[str, Any] = {
            "trajectory": self.trajectory(main),
            "trajectories": [self.trajectory(f) for f in falls],
            "objects": len(falls),
            "falls": described,
            **{k: v for k, v in described[0].items() if k != "score"},
        }
        if state == "end":
            details["cleared_pts_s"] = round(now_s, 3)
        return RuleOutput(
            rule_id=self.rule_id,
            zone_id=self.zone_id,
            state=state,
            onset_s=incident.onset_s,
            pts_s=now_s,
            box=self._box(main),
            score=max(f.score for f in falls),
            details=details,
            highlight=tuple(self._box(f) for f in falls) if state != "end" else (),
        )


def _sightings(t: float, specks: Sequence[Speck], radius: float) -> list[Sighting]:
    """This frame's specks, each with how many others lie within `radius` (or within four
    times its own size, for a large one)."""
    if not specks:
        return []
    xy = np.array([(s.x, s.y) for s in specks])
    distance = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
    reach = np.maximum(radius, 4.0 * np.sqrt([s.area for s in specks]))
    close = (distance <= reach[:, None]).sum(axis=1) - 1
    return [
        Sighting(t, s.x, s.y, s.area, int(n), s.extent)
        for s, n in zip(specks, close.tolist(), strict=True)
    ]


def _lowest(points: Sequence[Sighting]) -> Sighting:
    """The sighting lowest in the picture: where a fit's scale is taken (`FallFit.y_ref`)."""
    return max(points, key=lambda p: p.y)


def _typical_step(steps: Sequence[float]) -> float:
    """The stream's frame interval from recent pts steps: the mean of the middle half, so
    a dropped or doubled frame changes nothing and a cadence that alternates (a 12 fps
    camera stored at 30 fps: 2 and 3 frames) gives its mean, not one of its two steps."""
    ordered = sorted(steps)
    quarter = len(ordered) // 4
    middle = ordered[quarter : len(ordered) - quarter]
    return statistics.fmean(middle)


def _unit(value: float) -> float:
    return min(1.0, max(0.0, value))
