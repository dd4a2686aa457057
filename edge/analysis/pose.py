"""The pose model: people with COCO keypoints, loaded once per process and shared.

One pose-model idea in the codebase: evidence redaction (faces from the head keypoints) and any
rule that needs body keypoints take the estimator from `load_pose_estimator`.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from common.events import ModelInfo
from edge.analysis.detect.yolo import PoseDetection
from edge.runtime.models import load_registry

if TYPE_CHECKING:  # onnxruntime is loaded only where a model runs in this process
    from edge.analysis.detect.onnx import OnnxDetector

DEFAULT_POSE_MODEL = "yolov8n-pose-640"
POSE_MIN_SCORE = 0.1  # callers filter further; a low floor keeps dim and distant people

# COCO keypoint order (17): what the head and shoulders are
NOSE, LEFT_EYE, RIGHT_EYE, LEFT_EAR, RIGHT_EAR = 0, 1, 2, 3, 4
LEFT_SHOULDER, RIGHT_SHOULDER = 5, 6
HEAD_KEYPOINTS = (NOSE, LEFT_EYE, RIGHT_EYE, LEFT_EAR, RIGHT_EAR)
SHOULDER_KEYPOINTS = (LEFT_SHOULDER, RIGHT_SHOULDER)


class PoseEstimator(Protocol):
    """Finds people and their keypoints in one BGR frame (tests pass fakes)."""

    @property
    def info(self) -> ModelInfo:
        """`{name, version, sha256}` of the pose model."""
        ...

    def detect_pose(self, image_bgr: npt.NDArray[np.uint8]) -> list[PoseDetection]:
        """People with `(17, 3)` keypoints: x, y normalised to `image_bgr`, and visibility."""
        ...


class PosePending(Protocol):
    """A pose-model run asked for: answered at once in this process, later by the box's
    detection service."""

    def wait(self, timeout_s: float) -> bool:
        """True once answered (with people, or with the news that the run was not made)."""
        ...

    def result(self) -> list[PoseDetection]:
        """The people found; raises what the run raised (the service declined, a model
        error) when it was not made."""
        ...


class DonePose:
    """A run made at once: its people, or what it raised."""

    def __init__(
        self, found: list[PoseDetection] | None = None, error: Exception | None = None
    ) -> None:
        self._found = found or []
        self._error = error

    def wait(self, timeout_s: float) -> bool:
        del timeout_s
        return True

    def result(self) -> list[PoseDetection]:
        if self._error is not None:
            raise self._error
        return self._found


def submit_pose(estimator: PoseEstimator, image_bgr: npt.NDArray[np.uint8]) -> PosePending:
    """Ask `estimator` for the people in `image_bgr`: the box's shared pose model answers later
    (so a camera may ask for the next frame while one is being run), one of this process now."""
    submit = getattr(estimator, "submit_pose", None)
    if submit is not None:
        pending: PosePending = submit(image_bgr)
        return pending
    try:
        return DonePose(estimator.detect_pose(image_bgr))
    except Exception as error:  # onnxruntime raises its own untyped errors: kept for result()
        return DonePose(error=error)


@cache
def load_pose_estimator(name: str = DEFAULT_POSE_MODEL) -> OnnxDetector:
    """The registered pose model `name`, found, verified and loaded once per process.

    Raises:
        KeyError: no such model in the registry.
        ValueError: the model is not a pose model.
        ModelNotFoundError, ModelIntegrityError: as `OnnxDetector.load`.
    """
    from edge.analysis.detect.onnx import OnnxDetector

    spec = load_registry()[name]
    if spec.layout != "yolov8-pose":
        raise ValueError(f"model {name} is not a pose model (layout {spec.layout})")
    return OnnxDetector.load(spec, min_score=POSE_MIN_SCORE)
