"""Where a camera's models come from: loaded in this process (replay, tests) or run by the box's
shared detection service (edge.runtime.detection, live)."""

from __future__ import annotations

from functools import cache
from typing import Protocol

from edge.analysis.detect.base import Detector, Priority
from edge.analysis.faces import FaceModel, load_face_model
from edge.analysis.pose import PoseEstimator, load_pose_estimator


class ModelSource(Protocol):
    def detector(
        self, model: str, min_score: float, iou: float, providers: tuple[str, ...]
    ) -> Detector:
        """The registered detector `model`, its detections filtered at `min_score`."""
        ...

    def pose(self, model: str, priority: Priority) -> PoseEstimator:
        """The registered pose model `model`; `priority` says what its runs are for."""
        ...

    def faces(self, model: str, priority: Priority) -> FaceModel:
        """The registered face model `model` (evidence redaction)."""
        ...


class LocalModels:
    """Models loaded in this process, once each (onnxruntime sessions of its own)."""

    def detector(
        self, model: str, min_score: float, iou: float, providers: tuple[str, ...]
    ) -> Detector:
        return _load_detector(model, min_score, iou, providers)

    def pose(self, model: str, priority: Priority) -> PoseEstimator:
        del priority  # one process, one model: nothing to put in order
        return load_pose_estimator(model)

    def faces(self, model: str, priority: Priority) -> FaceModel:
        del priority
        return load_face_model(model)


@cache
def _load_detector(
    model: str, min_score: float, iou: float, providers: tuple[str, ...]
) -> Detector:
    from edge.analysis.detect.onnx import OnnxDetector
    from edge.runtime.models import load_registry

    return OnnxDetector.load(load_registry()[model], min_score, iou, providers)


LOCAL_MODELS = LocalModels()
