"""Values passed between the edge's stages: frames, detections, tracks, what the analysis
observes for the rules (static regions, specks); frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Box = tuple[float, float, float, float]
"""Normalised [x1, y1, x2, y2]: (0, 0) top-left, (1, 1) bottom-right."""


@dataclass(frozen=True, slots=True)
class Frame:
    image: npt.NDArray[np.uint8]  # BGR, HxWx3 uint8
    pts_s: float  # seconds since the start of the stream, from the stream's timestamps
    index: int  # decoded frame number, from 0
    wall_s: float  # time.time() when the frame was read (or start time + pts for files)

    @property
    def size_wh(self) -> tuple[int, int]:
        return int(self.image.shape[1]), int(self.image.shape[0])


@dataclass(frozen=True, slots=True)
class Detection:
    label: str
    class_id: int
    score: float
    box: Box


@dataclass(frozen=True, slots=True)
class TrackedObject:
    track_id: int
    label: str
    score: float
    box: Box
    first_seen_s: float  # pts when the track started


@dataclass(frozen=True, slots=True)
class StaticRegion:
    box: Box  # normalised
    since_s: float  # when the change first appeared (median over its pixels)
    area: float  # fraction of the frame area
    contrast: float  # mean grey difference against the reference
    mask_fraction: float  # fraction of its box that is changed
    zones: frozenset[str] = frozenset()  # the watched zones holding most of it
    cut: bool = False  # it reaches the edge of what the scene model judges: seen only in part

    @property
    def score(self) -> float:
        return float(min(1.0, 0.4 + self.contrast / 100.0))


@dataclass(frozen=True, slots=True)
class Speck:
    """A moving speck, in pixels of the full frame."""

    x: float
    y: float
    area: float  # pixels of the full frame
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the full frame
    extent: float = 0.0  # share of a window 3x its size that differs from the background


@dataclass(frozen=True, slots=True)
class SpeckFrame:
    specks: tuple[Speck, ...]
    skipped: bool  # too many specks at once: the frame told nothing
    repeat: bool = False  # the image before again (a slower camera in a faster stream)


def box_area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def box_iou(a: Box, b: Box) -> float:
    ix1, iy1 = max(a[0], b[0]), max(a[1], b[1])
    ix2, iy2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, ix2 - ix1) * max(0.0, iy2 - iy1)
    union = box_area(a) + box_area(b) - inter
    return inter / union if union > 0 else 0.0


def clamp_box(box: Box) -> Box:
    x1, y1, x2, y2 = (min(1.0, max(0.0, v)) for v in box)
    return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))
