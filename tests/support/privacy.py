"""Measuring redaction: how much detail of the original survives, and fake pose estimators."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
import numpy.typing as npt

from common.events import ModelInfo
from edge.analysis.detect.yolo import PoseDetection
from edge.types import Box, Detection

Image = npt.NDArray[np.uint8]
Mask = npt.NDArray[np.bool_]


def grey(image: Image) -> npt.NDArray[np.float64]:
    if image.ndim == 2:
        return image.astype(np.float64)
    return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), np.float64)


def detail(image: Image, sigma: float = 2.0) -> npt.NDArray[np.float64]:
    """The high-frequency part of the grey image (what makes text, faces legible)."""
    g = grey(image)
    return np.asarray(g - cv2.GaussianBlur(g, (0, 0), sigma), np.float64)


def correlation(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    """Pearson correlation; 0 when either side is flat."""
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


def detail_correlation(original: Image, redacted: Image, region: Mask) -> float:
    """How much of the original's fine detail the redacted image still shows in `region`."""
    return correlation(detail(original)[region], detail(redacted)[region])


def box_pixels(box: Box, shape_hw: tuple[int, ...], inset: float = 0.0) -> tuple[slice, slice]:
    """Row and column slices of a normalised box, shrunk by `inset` of its size per side."""
    h, w = shape_hw[:2]
    dx, dy = (box[2] - box[0]) * inset, (box[3] - box[1]) * inset
    return (
        slice(round((box[1] + dy) * h), round((box[3] - dy) * h)),
        slice(round((box[0] + dx) * w), round((box[2] - dx) * w)),
    )


def laplacian_variance(image: Image, box: Box, inset: float = 0.0) -> float:
    """Sharpness inside a normalised box: variance of the Laplacian of the grey image."""
    rows, cols = box_pixels(box, image.shape[:2], inset)
    lap = cv2.Laplacian(grey(image), cv2.CV_64F)
    return float(lap[rows, cols].var())


def secret_pattern(h: int, w: int, text: str, seed: int = 0) -> Image:
    """What a mask must hide: high-contrast lines of text over random fine speckle."""
    rng = np.random.default_rng(seed)
    image = np.asarray(rng.integers(80, 176, (h, w, 3)), np.uint8)
    for row, y in enumerate(range(24, h, 28)):
        line = (text * 8)[row % len(text) :][: max(1, w // 14)]
        cv2.putText(image, line, (4, y), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
        cv2.putText(image, line, (6, y + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 1)
    return image


def textured_face(image: Image, box: Box, seed: int = 1) -> None:
    """Paint a high-detail patch (a stand-in for a face) into a normalised box, in place."""
    rows, cols = box_pixels(box, image.shape[:2])
    rng = np.random.default_rng(seed)
    patch = rng.integers(0, 256, image[rows, cols].shape[:2], dtype=np.uint8)
    image[rows, cols] = np.repeat(patch[..., None], 3, axis=2)


def person_with_head(
    head_xy: tuple[float, float],
    person_box: Box,
    head_w: float = 0.04,
    score: float = 0.9,
    head_visible: bool = True,
) -> PoseDetection:
    """A pose detection of an upright person facing the camera, on a square frame: eyes
    beside `head_xy`, nose there, ears further out, shoulders below."""
    x, y = head_xy
    points = np.zeros((17, 3), np.float32)
    vis = 0.9 if head_visible else 0.05
    points[0] = (x, y + head_w * 0.1, vis)
    points[1] = (x - head_w * 0.2, y - head_w * 0.1, vis)
    points[2] = (x + head_w * 0.2, y - head_w * 0.1, vis)
    points[3] = (x - head_w * 0.5, y, vis)
    points[4] = (x + head_w * 0.5, y, vis)
    points[5] = (x - head_w * 1.1, y + head_w * 1.2, 0.95)
    points[6] = (x + head_w * 1.1, y + head_w * 1.2, 0.95)
    return PoseDetection(Detection("person", 0, score, person_box), points)


class FakePose:
    """A pose estimator scripted per call: `script(call_index, image)` gives the people."""

    def __init__(self, script: Callable[[int, Image], Sequence[PoseDetection]]) -> None:
        self._script = script
        self.calls = 0

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(name="fake-pose", version="1", sha256="0" * 64)

    def detect_pose(self, image_bgr: Image) -> list[PoseDetection]:
        people = list(self._script(self.calls, image_bgr))
        self.calls += 1
        return people


class BrokenPose(FakePose):
    def __init__(self) -> None:
        super().__init__(lambda _i, _img: [])

    def detect_pose(self, image_bgr: Image) -> list[PoseDetection]:
        raise RuntimeError("onnxruntime: bad input")
