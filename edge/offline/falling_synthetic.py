"""A tall facade seen from below, with ground truth by construction, for falling-object tests
and benchmarks.

The facade has `floors` storeys of `storey_px` pixels with a grid of windows, sensor noise
and a slow light drift; by day it is light concrete, at night dark with some windows lit. At
`release_s` a tiny object (a few pixels: a cigarette box, a bottle cap seen from far) leaves
a window of `release_floor` and falls freely (gravity scaled from the storey height), drawn
with its motion blur. Distractors, each optional: a bird flying across (bobbing, climbing), leaves
fluttering down, rain, a window light switched on and a person moving behind a window, an
insect flying close to the lens (a large, soft blob darting up and down), lamps flickering with
the mains (sampled by the camera, a 100 or 120 Hz flicker beats at a few hertz) and a car's
headlights sweeping across the lower floors at night.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from edge.types import Frame

GRAVITY_M_S2 = 9.81
NOISE_FIELDS = 6  # pre-drawn noise images, cycled with random shifts (fast at 1080p)


@dataclass(frozen=True, slots=True)
class FacadeScene:
    width: int = 480
    height: int = 720
    fps: float = 25.0
    seconds: float = 6.0
    floors: int = 12
    storey_px: float = 52.0  # one storey's height in pixels
    storey_m: float = 3.0
    ground_y: float = 0.94  # normalised row of floor 1's slab
    night: bool = False
    noise: float = 2.5  # sensor noise, grey levels (doubled at night)
    release_s: float | None = 1.5  # when the object is let go; None: nothing falls
    release_floor: int = 10
    release_x: float = 0.55  # normalised column of the window it leaves
    throw_vx: float = 12.0  # px/s sideways, as a throw gives it
    throw_vy: float = 0.0  # px/s at release (negative: thrown upward)
    object_px: float = 3.0  # the object's size
    object_contrast: float = 55.0  # grey levels against the facade
    bird: bool = False
    leaves: bool = False
    rain: bool = False
    window_lights: bool = False
    insect: bool = False
    flicker_hz: float | None = None  # lamps flickering at this rate (twice the mains frequency)
    headlights: bool = False
    seed: int = 3

    @property
    def gravity_px_s2(self) -> float:
        return GRAVITY_M_S2 * self.storey_px / self.storey_m

    def slab_y(self, floor: float) -> float:
        """Pixel row of a floor's slab (floor 1 on the ground line)."""
        return self.ground_y * self.height - (floor - 1) * self.storey_px

    def floor_line(self, floor: int) -> list[list[float]]:
        """The slab line of a floor, normalised, as an installer would mark it."""
        y = round(self.slab_y(floor) / self.height, 4)
        return [[0.05, y], [0.95, y]]

    @property
    def release_xy(self) -> tuple[float, float]:
        """Pixels: a hand 1.2 m above the slab of `release_floor`."""
        hand = 1.2 / self.storey_m * self.storey_px
        return self.release_x * self.width, self.slab_y(self.release_floor) - hand

    def object_at(self, t: float) -> tuple[float, float] | None:
        """Where the object is at `t` (pixels), None before release or after landing."""
        if self.release_s is None or t < self.release_s:
            return None
        s = t - self.release_s
        x0, y0 = self.release_xy
        y = y0 + self.throw_vy * s + 0.5 * self.gravity_px_s2 * s * s
        if y > self.ground_y * self.height:
            return None
        return x0 + self.throw_vx * s, y

    @property
    def landing_s(self) -> float | None:
        if self.release_s is None:
            return None
        drop = self.ground_y * self.height - self.release_xy[1]
        a, v = self.gravity_px_s2, self.throw_vy
        return self.release_s + (-v + math.sqrt(v * v + 2 * a * drop)) / a


def _facade(scene: FacadeScene, rng: np.random.Generator) -> npt.NDArray[np.float32]:
    h, w = scene.height, scene.width
    base = 45.0 if scene.night else 175.0
    texture = cv2.resize(rng.normal(0, 1, (h // 8, w // 8)).astype(np.float32), (w, h))
    image = np.full((h, w), base, np.float32) + (3.0 if scene.night else 6.0) * texture
    window = 25.0 if scene.night else 105.0
    for floor in range(1, scene.floors + 1):
        top = scene.slab_y(floor + 1) + 0.25 * scene.storey_px
        bottom = scene.slab_y(floor) - 0.15 * scene.storey_px
        for col in range(6):
            x1 = int((0.08 + col * 0.15) * w)
            lit = scene.night and rng.random() < 0.25
            shade = 120.0 if lit else window
            cv2.rectangle(image, (x1, int(top)), (x1 + int(0.09 * w), int(bottom)), (shade,), -1)
        y = int(scene.slab_y(floor))
        cv2.line(image, (0, y), (w, y), (base - 20,), 2)
    image[: max(0, int(scene.slab_y(scene.floors + 1)))] = 30.0 if scene.night else 215.0  # sky
    return image


def _dot(
    image: npt.NDArray[np.float32],
    xy: tuple[float, float],
    size: float,
    shade: float,
    streak: tuple[float, float] = (0.0, 0.0),
) -> None:
    """Add a small round blob of `shade` grey levels, of diameter `size` pixels, smeared
    along `streak` (the pixels it moved during the frame's exposure)."""
    reach = int(size + abs(streak[0]) + abs(streak[1])) + 3
    cx, cy = int(xy[0]), int(xy[1])
    h, w = image.shape[:2]
    x1, y1, x2, y2 = max(0, cx - reach), max(0, cy - reach), min(w, cx + reach), min(h, cy + reach)
    if x1 >= x2 or y1 >= y2:
        return
    patch = np.zeros((y2 - y1, x2 - x1), np.float32)
    steps = max(1, math.ceil(math.hypot(*streak) / max(1.0, size / 2)))
    for i in range(steps):
        f = i / steps
        centre = (
            round((xy[0] - streak[0] * f - x1) * 4),
            round((xy[1] - streak[1] * f - y1) * 4),
        )
        cv2.circle(patch, centre, max(2, round(size * 2)), (1.0,), -1, cv2.LINE_AA, 2)
    image[y1:y2, x1:x2] += shade * np.minimum(patch, 1.0)


def frames(scene: FacadeScene) -> Iterator[Frame]:
    """The scene's frames (BGR), pts at the scene's frame rate."""
    rng = np.random.default_rng(scene.seed)
    h, w = scene.height, scene.width
    facade = _facade(scene, rng)
    sigma = scene.noise * (2.0 if scene.night else 1.0)
    fields = [rng.normal(0, sigma, (h, w)).astype(np.float32) for _ in range(NOISE_FIELDS)]
    sign = 1.0 if scene.night else -1.0  # a light object at night, a dark one against concrete
    leaves = [
        (rng.uniform(0.2, 0.8) * w, rng.uniform(0.0, 0.3) * h, rng.uniform(0, 6)) for _ in range(4)
    ]
    dt = 1.0 / scene.fps
    for index in range(int(scene.seconds * scene.fps)):
        t = index * dt
        image = facade * (1.0 + 0.05 * math.sin(2 * math.pi * t / 17.0))
        field = fields[index % NOISE_FIELDS]
        image += np.roll(field, (int(rng.integers(h)), int(rng.integers(w))), axis=(0, 1))
        now = scene.object_at(t)
        before = scene.object_at(t - dt)
        if now is not None:
            streak = (now[0] - before[0], now[1] - before[1]) if before else (0.0, 0.0)
            _dot(image, now, scene.object_px, sign * scene.object_contrast, streak)
        if scene.bird:
            x = (-0.1 + 0.35 * t) * w
            y = 0.35 * h + 18 * math.sin(2 * math.pi * 1.5 * t) - 30 * t  # bobs and climbs
            _dot(image, (x, y), 5.0, -70.0)
        if scene.leaves:
            for x0, y0, phase in leaves:
                y = y0 + 45 * t + 12 * math.sin(2.3 * t + phase)  # sinks, stalls, sinks
                x = x0 + 25 * math.sin(1.7 * t + phase)  # and swings side to side
                _dot(image, (x, y), 5.0, -60.0)
        if scene.rain:
            for _ in range(250):
                x, y = rng.uniform(0, w), rng.uniform(0, h)
                cv2.line(image, (int(x), int(y)), (int(x - 3), int(y + 14)), (215.0,), 1)
        if scene.window_lights:
            _window_lights(image, scene, t)
        if scene.insect:
            _insect(image, scene, t)
        if scene.flicker_hz is not None:
            _flicker(image, scene, t, scene.flicker_hz)
        if scene.headlights:
            _headlights(image, scene, t)
        gray = np.clip(image, 0, 255).astype(np.uint8)
        bgr: npt.NDArray[np.uint8] = np.ascontiguousarray(np.dstack([gray, gray, gray]))
        yield Frame(bgr, t, index, 1.7e9 + t)


def _window_lights(image: npt.NDArray[np.float32], scene: FacadeScene, t: float) -> None:
    """A window switched on and off every 1.5 s; a person walking behind another one."""
    w = scene.width
    top, bottom = scene.slab_y(7) + 0.25 * scene.storey_px, scene.slab_y(6) - 0.15 * scene.storey_px
    if int(t / 1.5) % 2 == 1:
        x1 = int(0.38 * w)
        cv2.rectangle(image, (x1, int(top)), (x1 + int(0.09 * w), int(bottom)), (240.0,), -1)
    x1 = int(0.68 * w)
    px = x1 + (0.5 + 0.45 * math.sin(2 * math.pi * t / 3.0)) * 0.09 * w
    cv2.rectangle(image, (int(px) - 3, int(top) + 4), (int(px) + 3, int(bottom)), (20.0,), -1)


def _insect(image: npt.NDArray[np.float32], scene: FacadeScene, t: float) -> None:
    """A fly close to the lens: out of focus (a soft blob a tenth of the width), darting
    down and up and sideways several times a second."""
    w, h = scene.width, scene.height
    x = w * (0.5 + 0.3 * math.sin(2 * math.pi * 0.7 * t) + 0.05 * math.sin(2 * math.pi * 3.1 * t))
    y = h * (0.45 + 0.25 * math.sin(2 * math.pi * 0.9 * t + 1.0) + 0.04 * math.sin(11.0 * t))
    image -= 60.0 * _soft_ellipse(image.shape, (x, y), (0.05 * w, 0.05 * w), 0.025 * w)


def _flicker(image: npt.NDArray[np.float32], scene: FacadeScene, t: float, hz: float) -> None:
    """Two lamps (a lit window and a wall lamp with its halo) whose light follows the mains:
    each frame catches the flicker at another phase."""
    w = scene.width
    level = abs(math.sin(math.pi * hz * t))  # |sin| of the mains: `hz` light pulses a second
    top, bottom = scene.slab_y(5) + 0.25 * scene.storey_px, scene.slab_y(4) - 0.15 * scene.storey_px
    x1 = int(0.23 * w)
    cv2.rectangle(image, (x1, int(top)), (x1 + int(0.09 * w), int(bottom)), (150 + 90 * level,), -1)
    centre = (int(0.85 * w), int(scene.slab_y(3)))
    radius = 0.4 * scene.storey_px
    halo = _soft_ellipse(image.shape, centre, (radius, radius), 0.2 * scene.storey_px)
    image += (40.0 + 60.0 * level) * halo
    cv2.circle(image, centre, 2, (90.0 + 160.0 * level,), -1)  # the bulb itself


def _headlights(image: npt.NDArray[np.float32], scene: FacadeScene, t: float) -> None:
    """A car turning in the yard at night: its beams sweep across the lower floors every
    3 s, a wide, bright and soft patch."""
    w, h = scene.width, scene.height
    phase = (t % 3.0) / 3.0
    x = w * (-0.3 + 1.6 * phase)
    y = scene.slab_y(2) + 0.3 * scene.storey_px * math.sin(2 * math.pi * phase)
    axes = (0.25 * w, 1.2 * scene.storey_px)
    image += 120.0 * _soft_ellipse(image.shape, (x, y), axes, 0.08 * w)
    del h


def _soft_ellipse(
    shape: tuple[int, ...], centre: tuple[float, float], axes: tuple[float, float], soft: float
) -> npt.NDArray[np.float32]:
    """An ellipse blurred by `soft` pixels, peak 1 (drawn at an eighth of the size: fast)."""
    h, w = shape[:2]
    small = np.zeros((max(1, h // 8), max(1, w // 8)), np.float32)
    cx, cy = round(centre[0] / 8), round(centre[1] / 8)
    ax = (max(1, round(axes[0] / 8)), max(1, round(axes[1] / 8)))
    cv2.ellipse(small, (cx, cy), ax, 0.0, 0.0, 360.0, (1.0,), -1, cv2.LINE_AA)
    small = np.asarray(cv2.GaussianBlur(small, (0, 0), max(0.5, soft / 8)), np.float32)
    peak = float(small.max())
    if peak <= 0:
        return np.zeros((h, w), np.float32)
    return np.asarray(cv2.resize(small / peak, (w, h), interpolation=cv2.INTER_LINEAR))
