"""The detector seam: what the edge worker needs from any object detector."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol, runtime_checkable

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


class Priority(IntEnum):
    """How much an inference matters on a busy box (lower first; edge.runtime.detection)."""

    # what an alert waits on: faces to blur in its snapshot, the close look that confirms an
    # object left in a lane or a pile, the garbage model on a pile. Bounded (one picture per
    # message; a look per rule every few seconds), where a fall room asks for its pose model
    # on every analysed frame (two runs at a time): behind it, a busy box's alerts waited
    # 10-30 s for their snapshots, and behind the zones' due looks a lane's alert waited half a
    # second for its close look
    EVIDENCE = 0
    FRAME_RULE = 1  # a frame rule's inference: a person moving in a fall room, a fall watched
    DUE = 2  # a zone analysis that has gone as long as its rules allow without a look
    ROUTINE = 3  # a zone analysis at its normal rate
    RECHECK = 4  # the periodic re-check of a quiet scene
    CLIPS = 5  # faces to blur in an alert's clip (it follows the alert; nothing waits on it)


@dataclass(frozen=True, slots=True)
class Need:
    """How much an inference matters and how long its answer stays useful."""

    priority: Priority
    expires_s: float | None = None  # not worth running once it has waited this long


class Pending(Protocol):
    """An inference asked for: answered at once by a detector of the camera's own, later (or
    not at all) by the box's shared detector."""

    def wait(self, timeout_s: float) -> bool:
        """True once answered (with detections, or with the news that it was not run)."""
        ...

    def result(self) -> list[Detection] | None:
        """Once answered: the detections, or None when the run was not made (shed as too
        late on a busy box, or the service out of reach)."""
        ...


class Done:
    """A `Pending` answered at once."""

    def __init__(self, detections: list[Detection] | None) -> None:
        self._detections = detections

    def wait(self, timeout_s: float) -> bool:
        del timeout_s
        return True

    def result(self) -> list[Detection] | None:
        return self._detections


@runtime_checkable
class SharedDetector(Protocol):
    """A detector shared by the box's cameras (edge.runtime.detection): each run says how much
    it matters, is answered later, and may not be run at all on a busy box."""

    def submit(self, image_bgr: npt.NDArray[np.uint8], need: Need) -> Pending:
        """Ask for the detections in `image_bgr` (as `Detector.detect`); returns at once."""
        ...


def submit(detector: Detector, image_bgr: npt.NDArray[np.uint8], need: Need) -> Pending:
    """Ask `detector` for the detections in `image_bgr`: a shared detector answers later (or
    declines); a detector of the camera's own answers now."""
    if isinstance(detector, SharedDetector):
        return detector.submit(image_bgr, need)
    return Done(detector.detect(image_bgr))


def detect_with(
    detector: Detector, image_bgr: npt.NDArray[np.uint8], need: Need, timeout_s: float = 30.0
) -> list[Detection] | None:
    """`submit` and wait for the answer (None: not run, or no answer within `timeout_s`)."""
    pending = submit(detector, image_bgr, need)
    return pending.result() if pending.wait(timeout_s) else None
