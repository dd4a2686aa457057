"""The detector seam: what the edge worker needs from any object detector."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from common.events import ModelInfo
from edge.types import Detection


class Detector(Protocol):
    """Finds objects in one BGR frame; tests pass fakes with the same three members."""

    @property
    def info(self) -> ModelInfo:
        """`{name, version, sha256}` of the model, copied into every event's `model` field."""
        ...

    @property
    def names(self) -> Sequence[str]:
        """Class names by class id."""
        ...

    def detect(self, image_bgr: npt.NDArray[np.uint8]) -> list[Detection]:
        """Detections with boxes normalised to `image_bgr`, best score first."""
        ...
