"""Synthetic scenes with ground truth known by construction, for the demo and for tests.

A fixed camera over a lane on textured ground, with sensor noise and slow light drift (clouds,
auto-exposure). Traffic drives through without stopping; at `drop_s` an object (a box, a bag)
is left in the lane and stays until `clear_s`. Nothing here needs a model or a file.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from edge.types import Frame

Image = npt.NDArray[np.uint8]
Alpha = npt.NDArray[np.float32]
LANE = ((0.15, 0.55), (0.85, 0.55), (0.95, 0.98), (0.05, 0.98))


@dataclass(frozen=True, slots=True)
class LaneScene:
    width: int = 640
    height: int = 360
    fps: float = 10.0
    seconds: float = 40.0
    drop_s: float | None = 12.0  # when the object is left in the lane; None: never
    clear_s: float | None = 32.0  # when it is taken away; None: stays
    object_xy: tuple[float, float] = (0.45, 0.78)  # centre of the object, normalised
    object_size: float = 0.09  # side, as a fraction of the frame width
    passers_every_s: float = 6.0  # a shape drives through the lane this often
    light_swing: float = 0.12  # +- fraction of brightness drift over the scene
    growth_per_s: float = 0.0  # the object's side grows by this fraction per second (a pile)
    seed: int = 7

    @property
    def object_box(self) -> tuple[float, float, float, float]:
        """The object's box when it is left (at `drop_s`)."""
        return self.object_box_at(self.drop_s or 0.0)

    def object_box_at(self, t: float) -> tuple[float, float, float, float]:
        """The object's box at time `t`: a pile grows from `drop_s` at `growth_per_s`."""
        grown = 1.0 + self.growth_per_s * max(0.0, t - (self.drop_s or 0.0))
        half_w = self.object_size * grown / 2
        half_h = half_w * self.width / self.height
        x, y = self.object_xy
        return (x - half_w, y - half_h, x + half_w, y + half_h)


def _background(scene: LaneScene, rng: np.random.Generator) -> npt.NDArray[np.float32]:
    h, w = scene.height, scene.width
    noise = rng.normal(0, 1, (h // 4, w // 4)).astype(np.float32)
    texture = cv2.resize(cv2.GaussianBlur(noise, (0, 0), 1.5), (w, h))
    ground = 105 + 14 * texture
    image = np.dstack([ground, ground * 1.02, ground * 0.98]).astype(np.float32)
    image[: int(h * 0.45)] = (150, 160, 170)  # a wall
    for x in range(40, w, 90):  # windows on the wall
        cv2.rectangle(image, (x, 20), (x + 50, int(h * 0.35)), (90, 95, 110), -1)
    pts = np.array([[x * w, y * h] for x, y in LANE], np.int32)
    cv2.polylines(image, [pts], True, (210, 210, 60), 3)
    return image


def _paste_box(
    image: npt.NDArray[np.float32],
    box: tuple[float, float, float, float],
    colour: tuple[int, int, int],
) -> None:
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (int(box[0] * w), int(box[1] * h), int(box[2] * w), int(box[3] * h))
    cv2.rectangle(image, (x1, y1), (x2, y2), colour, -1)
    cv2.rectangle(image, (x1, y1), (x2, y2), (20, 20, 20), 2)


def frames(scene: LaneScene) -> Iterator[Frame]:
    """The scene's frames, with pts at the scene's frame rate."""
    rng = np.random.default_rng(scene.seed)
    background = _background(scene, rng)
    count = int(scene.seconds * scene.fps)
    for index in range(count):
        t = index / scene.fps
        image = background.copy()
        present = scene.drop_s is not None and t >= scene.drop_s
        if present and (scene.clear_s is None or t < scene.clear_s):
            _paste_box(image, scene.object_box_at(t), (40, 70, 150))
        phase = (t % scene.passers_every_s) / 1.5  # a passer takes 1.5 s to cross
        if phase <= 1.0:
            x = -0.2 + 1.4 * phase
            _paste_box(image, (x, 0.62, x + 0.18, 0.78), (30, 30, 35))
        gain = 1.0 + scene.light_swing * math.sin(2 * math.pi * t / 23.0)
        image = image * gain + rng.normal(0, 3.0, image.shape)
        yield Frame(
            image=np.clip(image, 0, 255).astype(np.uint8), pts_s=t, index=index, wall_s=1.7e9 + t
        )


def write_video(scene: LaneScene, path: str) -> None:
    """Write the scene as an MP4 (mp4v), for tests that go through the file reader."""
    write_frames(frames(scene), path, scene.fps)


def paste_object(
    image: Image,
    patch: Image,
    box: tuple[float, float, float, float],
    alpha: Alpha | None = None,
    shadow: float = 0.0,
) -> Image:
    """A copy of `image` with `patch` resized into the normalised `box` (an object left there).

    With `alpha` (the patch's opacity, 0..1, same size as the patch) only the object is pasted,
    its edge blended into the ground; `shadow` (0..1) darkens the ground under and beside it by
    up to that share, softly, as the object's own shade would."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h))
    out = image.copy()
    resized = cv2.resize(patch, (x2 - x1, y2 - y1), interpolation=cv2.INTER_AREA)
    if alpha is None:
        out[y1:y2, x1:x2] = resized
        return out
    opacity = cv2.resize(alpha, (x2 - x1, y2 - y1), interpolation=cv2.INTER_AREA)
    picture = out.astype(np.float32)
    if shadow > 0:
        shade = np.zeros((h, w), np.float32)
        bw, bh = x2 - x1, y2 - y1
        centre = (round((x1 + x2) / 2 + 0.15 * bw), round(y2 - 0.1 * bh))
        axes = (max(1, round(0.6 * bw)), max(1, round(0.25 * bh)))
        cv2.ellipse(shade, centre, axes, 0, 0, 360, (1.0,), -1)
        soft = np.asarray(cv2.GaussianBlur(shade, (0, 0), max(1.0, 0.15 * bw)), np.float32)
        picture *= (1.0 - shadow * soft)[..., None]
    a = opacity[..., None]
    picture[y1:y2, x1:x2] = a * resized.astype(np.float32) + (1.0 - a) * picture[y1:y2, x1:x2]
    return np.clip(picture, 0, 255).astype(np.uint8)


def real_bag(clips_dir: Path) -> Image:
    """The black rubbish bag left on the stair landing of the shared clips (CLIPS.md), cut from
    the real footage: what `with_left_object` pastes into real lanes."""
    capture = cv2.VideoCapture(str(clips_dir / "littering_bag_stair_landing.mp4"))
    try:
        capture.set(cv2.CAP_PROP_POS_MSEC, 11000)
        ok, image = capture.read()
    finally:
        capture.release()
    if not ok:
        raise ValueError(f"cannot read the littering clip in {clips_dir}")
    h, w = image.shape[:2]
    return np.asarray(image[int(0.69 * h) : int(0.77 * h), int(0.36 * w) : int(0.46 * w)])


def real_bag_cutout(clips_dir: Path) -> tuple[Image, Alpha]:
    """The same bag as `real_bag`, cut out of its ground: the bag's pixels (tightly cropped)
    and their opacity, found as the dark blob at the foot of the column, its edge softened.
    Pasted with `paste_object(..., alpha=...)` it is the bag alone, at any size, on any floor."""
    crop = real_bag(clips_dir)
    ch, cw = crop.shape[:2]
    # the bag lies in the crop's left three quarters, between a quarter and two thirds down;
    # the column above it and the floor around it are lighter than its black plastic
    top, bottom, right = round(0.22 * ch), round(0.70 * ch), round(0.78 * cw)
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    dark = np.zeros((ch, cw), np.uint8)
    dark[top:bottom, :right] = (gray[top:bottom, :right] < 36).astype(np.uint8)
    closed = cv2.morphologyEx(dark, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    if count < 2:
        raise ValueError(f"no bag found in the littering clip of {clips_dir}")
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, bw, bh = (int(v) for v in stats[biggest, :4])
    mask = (labels == biggest).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    solid = np.zeros_like(mask)
    cv2.drawContours(solid, list(contours), -1, (1,), -1)  # the bag's glints are bag too
    alpha = cv2.GaussianBlur(solid.astype(np.float32), (0, 0), 1.0)
    return crop[y : y + bh, x : x + bw].copy(), alpha[y : y + bh, x : x + bw].copy()


def with_left_object(
    source: Iterator[Frame],
    patch: Image,
    box: tuple[float, float, float, float],
    drop_s: float,
    clear_s: float | None = None,
    alpha: Alpha | None = None,
    shadow: float = 0.0,
) -> Iterator[Frame]:
    """Real footage with an object left in it from `drop_s` (until `clear_s`): ground truth by
    construction on a real background, with the real traffic, noise and exposure changes
    (`alpha`, `shadow`: as in `paste_object`)."""
    for frame in source:
        if frame.pts_s >= drop_s and (clear_s is None or frame.pts_s < clear_s):
            image = paste_object(frame.image, patch, box, alpha, shadow)
            frame = Frame(image, frame.pts_s, frame.index, frame.wall_s)
        yield frame


def reframed(source: Iterator[Frame], size: tuple[int, int]) -> Iterator[Frame]:
    """Frames cut to the shape of `size` (width, height) about their centre, then scaled to it:
    footage as a camera of that resolution would send it."""
    tw, th = size
    for frame in source:
        h, w = frame.image.shape[:2]
        cut_w, cut_h = min(w, round(h * tw / th)), min(h, round(w * th / tw))
        x, y = (w - cut_w) // 2, (h - cut_h) // 2
        cut = frame.image[y : y + cut_h, x : x + cut_w]
        image = np.asarray(cv2.resize(cut, (tw, th), interpolation=cv2.INTER_AREA), np.uint8)
        yield Frame(image, frame.pts_s, frame.index, frame.wall_s)


def ping_pong(frames: Sequence[Frame], seconds: float) -> Iterator[Frame]:
    """`frames` played forwards, backwards, forwards... until `seconds` of stream: a short clip
    made long with no jump in the picture (people walk back the way they came), with pts going
    on at the clip's own frame interval."""
    if len(frames) < 2:
        raise ValueError("ping_pong needs at least two frames")
    step = (frames[-1].pts_s - frames[0].pts_s) / (len(frames) - 1)
    order = [*range(len(frames)), *range(len(frames) - 2, 0, -1)]
    count = math.ceil(seconds / step - 1e-6)  # frames before `seconds`, rounding aside
    for index in range(count):
        original = frames[order[index % len(order)]]
        yield Frame(original.image, index * step, index, frames[0].wall_s + index * step)


def write_frames(source: Iterator[Frame], path: str, fps: float) -> None:
    """Write frames as an MP4 (mp4v)."""
    writer: cv2.VideoWriter | None = None
    try:
        for frame in source:
            if writer is None:
                h, w = frame.image.shape[:2]
                writer = cv2.VideoWriter(path, cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
            writer.write(frame.image)
    finally:
        if writer is not None:
            writer.release()


@dataclass(frozen=True, slots=True)
class MovingView:
    """A camera that drifts, pans and shakes over a still scene, in which a pile appears
    slowly while the light swings: ground truth by construction for moving cameras.

    The scene is a picture larger than the view (a real frame scaled up, or `textured_ground`);
    the view starts at `start_xy` (scene pixels, top-left) and moves by `pan_px_s` between
    `pan_s[0]` and `pan_s[1]`, with a random shake of up to `shake_px` on every frame. The pile
    (`patch`, pasted at `pile_box`, normalised to the scene) fades in from `pile_from_s` to
    `pile_full_s`: dumped bit by bit, or growing.
    """

    view_wh: tuple[int, int] = (640, 360)
    fps: float = 5.0
    seconds: float = 40.0
    start_xy: tuple[float, float] = (40.0, 30.0)
    pan_px_s: tuple[float, float] = (12.0, 2.0)
    pan_s: tuple[float, float] = (4.0, 14.0)
    shake_px: float = 1.5
    pile_box: tuple[float, float, float, float] | None = (0.45, 0.35, 0.50, 0.42)
    pile_from_s: float = 10.0
    pile_full_s: float = 16.0
    light_swing: float = 0.15
    seed: int = 11

    def offset_at(self, t: float) -> tuple[float, float]:
        """Where the view's top-left corner lies in the scene at time `t`, before the shake."""
        moving = min(max(t, self.pan_s[0]), self.pan_s[1]) - self.pan_s[0]
        return (
            self.start_xy[0] + self.pan_px_s[0] * moving,
            self.start_xy[1] + self.pan_px_s[1] * moving,
        )

    def pile_in_view(self, t: float, scene_wh: tuple[int, int]) -> tuple[float, ...] | None:
        """The pile's box in the view (normalised) at time `t`, shake aside."""
        if self.pile_box is None:
            return None
        ox, oy = self.offset_at(t)
        (sw, sh), (vw, vh) = scene_wh, self.view_wh
        x1, y1, x2, y2 = self.pile_box
        return ((x1 * sw - ox) / vw, (y1 * sh - oy) / vh, (x2 * sw - ox) / vw, (y2 * sh - oy) / vh)


def textured_ground(width: int, height: int, seed: int = 5) -> Image:
    """A paved square seen from above: slabs with joints, stains and kerbs (BGR)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 1, (height // 3, width // 3)).astype(np.float32)
    texture = cv2.resize(cv2.GaussianBlur(noise, (0, 0), 1.2), (width, height))
    ground = 120 + 16 * texture
    image = np.dstack([ground * 0.95, ground, ground * 1.05]).astype(np.float32)
    for x in range(0, width, 48):  # slab joints
        cv2.line(image, (x, 0), (x, height), (85, 88, 92), 2)
    for y in range(0, height, 48):
        cv2.line(image, (0, y), (width, y), (85, 88, 92), 2)
    for _ in range(40):  # stains and drain covers
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        cv2.circle(image, (cx, cy), int(rng.integers(4, 14)), (70, 72, 78), -1)
    cv2.rectangle(image, (0, int(height * 0.82)), (width, int(height * 0.86)), (190, 190, 185), -1)
    return np.clip(image, 0, 255).astype(np.uint8)


def moving_view_frames(view: MovingView, scene: Image, patch: Image | None) -> Iterator[Frame]:
    """The frames of `view` over `scene`, with `patch` as the pile (None: nothing is dumped)."""
    rng = np.random.default_rng(view.seed)
    sh, sw = scene.shape[:2]
    vw, vh = view.view_wh
    pile = None
    if patch is not None and view.pile_box is not None:
        x1, y1, x2, y2 = view.pile_box
        pile = paste_object(scene, patch, view.pile_box)
        box_px = (round(x1 * sw), round(y1 * sh), round(x2 * sw), round(y2 * sh))
    for index in range(int(view.seconds * view.fps)):
        t = index / view.fps
        picture = scene
        if pile is not None:
            share = (t - view.pile_from_s) / max(1e-6, view.pile_full_s - view.pile_from_s)
            share = min(1.0, max(0.0, share))
            if share > 0:  # dumped bit by bit: more of the pile shows, from the bottom up
                picture = scene.copy()
                bx1, by1, bx2, by2 = box_px
                top = round(by2 - share * (by2 - by1))
                picture[top:by2, bx1:bx2] = pile[top:by2, bx1:bx2]
        ox, oy = view.offset_at(t)
        dx, dy = rng.uniform(-view.shake_px, view.shake_px, 2) if view.shake_px else (0.0, 0.0)
        move = np.array([[1.0, 0.0, -(ox + dx)], [0.0, 1.0, -(oy + dy)]], np.float32)
        image = cv2.warpAffine(picture, move, (vw, vh), flags=cv2.INTER_LINEAR)
        gain = 1.0 + view.light_swing * math.sin(2 * math.pi * t / 23.0)
        image = image.astype(np.float32) * gain + rng.normal(0, 2.5, image.shape)
        yield Frame(
            image=np.clip(image, 0, 255).astype(np.uint8), pts_s=t, index=index, wall_s=1.7e9 + t
        )


WEATHER = ("cloud_shadow", "dusk", "rain", "fade_to_black", "white_balance")


def with_weather(source: Iterator[Frame], kind: str, seed: int = 3) -> Iterator[Frame]:
    """What outdoor cameras do, applied to a scene's frames (none of it is an object):

    * `cloud_shadow`: a soft shadow a third of the picture wide, 35 % darker, drifting across;
    * `dusk`: the light falls to a fifth over 20 s from 8 s on, and the sensor noise grows;
    * `rain`: from 6 s, streaks of rain on every frame and the scene 10 % darker;
    * `fade_to_black`: from 10 s the picture fades to black in 2 s, stays black 4 s, comes back;
    * `white_balance`: the colour balance swings (red and blue gains +-20 %, out of step).
    """
    if kind not in WEATHER:
        raise ValueError(f"unknown weather {kind!r}: one of {', '.join(WEATHER)}")
    rng = np.random.default_rng(seed)
    for frame in source:
        t = frame.pts_s
        image = frame.image.astype(np.float32)
        h, w = image.shape[:2]
        if kind == "cloud_shadow":
            shade = np.zeros((h, w), np.float32)
            cx = int((t / 20.0 % 1.6 - 0.3) * w)
            cv2.ellipse(shade, (cx, h // 2), (w // 6, h // 2), 0, 0, 360, (1.0,), -1)
            soft = cv2.GaussianBlur(shade, (0, 0), w / 20)
            image *= (1.0 - 0.35 * soft)[:, :, None]
        elif kind == "dusk":
            light = 1.0 - 0.8 * min(1.0, max(0.0, (t - 8.0) / 20.0))
            noise = rng.normal(0, 2.0 + 4.0 * (1.0 - light), image.shape)
            image = np.asarray(image * light + noise, np.float32)
        elif kind == "rain" and t >= 6.0:
            image *= 0.9
            for _ in range(120):
                x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
                cv2.line(image, (x, y), (x + 3, y + 18), (200.0, 200.0, 205.0), 1)
        elif kind == "fade_to_black":
            if 10.0 <= t < 18.0:
                level = max(0.0, 1.0 - (t - 10.0) / 2.0) if t < 14.0 else min(1.0, (t - 16.0) / 2.0)
                image *= max(0.0, level)
        elif kind == "white_balance":
            image[:, :, 2] *= 1.0 + 0.2 * math.sin(2 * math.pi * t / 9.0)
            image[:, :, 0] *= 1.0 + 0.2 * math.sin(2 * math.pi * t / 13.0 + 1.0)
        yield Frame(np.clip(image, 0, 255).astype(np.uint8), frame.pts_s, frame.index, frame.wall_s)
