"""Evidence files: annotated snapshots, privacy masks applied before anything is written."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt

from common.events import Evidence
from edge.evidence.privacy import MaskStyle, RedactionRecord, Redactor, obscure_polygons
from edge.types import Box

logger = logging.getLogger(__name__)

Polygon = Sequence[tuple[float, float]]
ZONE_COLOUR = (0, 200, 255)  # BGR amber
BOX_COLOUR = (0, 0, 255)  # red
PATH_COLOUR = (255, 0, 255)  # magenta: a trajectory, its origin ringed
JPEG_QUALITY = 85

Array = npt.NDArray[Any]


@dataclass(frozen=True, slots=True)
class Annotation:
    zone: Polygon | None = None
    boxes: Sequence[Box] = ()
    caption: str = ""
    paths: Sequence[Polygon] = ()  # open polylines (a falling object's trajectory), normalised


class EvidenceStore(Protocol):
    def put(self, name: str, data: bytes, kind: str, content_type: str, role: str) -> Evidence: ...


class DirectoryStore:
    """Writes evidence files into a folder; each event's `url` is the file's absolute path."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder.resolve()
        self.folder.mkdir(parents=True, exist_ok=True)

    def put(self, name: str, data: bytes, kind: str, content_type: str, role: str) -> Evidence:
        path = self.folder / name
        # write to a temporary file and rename, so a crash never leaves half a file behind
        with tempfile.NamedTemporaryFile(dir=self.folder, delete=False, suffix=".part") as tmp:
            tmp.write(data)
            tmp_name = tmp.name
        Path(tmp_name).replace(path)
        return Evidence(
            kind=kind,
            sha256=hashlib.sha256(data).hexdigest(),
            content_type=content_type,
            url=os.fspath(path),
            role=role,
        )


def apply_privacy_masks(
    image: Array, masks: Sequence[Polygon], style: MaskStyle = "black"
) -> Array:
    """Hide the masked areas on a copy (black, or unrecoverable mosaic: `edge.evidence.privacy`, the
    one masking implementation); nothing under a mask survives."""
    return obscure_polygons(image, masks, style)


def annotate(image: Array, annotation: Annotation) -> Array:
    """Draw the zone outline, the offending boxes and a caption on a copy of the image."""
    out = image.copy()
    h, w = out.shape[:2]
    thickness = max(2, round(min(h, w) / 300))
    if annotation.zone:
        pts = np.array([[x * w, y * h] for x, y in annotation.zone], np.float32)
        cv2.polylines(out, [pts.round().astype(np.int32)], True, ZONE_COLOUR, thickness)
    for path in annotation.paths:
        pts = np.array([[x * w, y * h] for x, y in path], np.float32).round().astype(np.int32)
        if len(pts) >= 2:
            cv2.polylines(out, [pts], False, PATH_COLOUR, thickness, cv2.LINE_AA)
        if len(pts):
            cv2.circle(out, tuple(int(v) for v in pts[0]), thickness * 3, PATH_COLOUR, thickness)
    for x1, y1, x2, y2 in annotation.boxes:
        p1 = (round(x1 * w), round(y1 * h))
        p2 = (round(x2 * w), round(y2 * h))
        cv2.rectangle(out, p1, p2, BOX_COLOUR, thickness)
    if annotation.caption:
        scale = max(0.5, min(h, w) / 900)
        origin = (8, round(28 * scale) + 4)
        # white on a black outline: legible on any background
        for colour, weight in (
            ((0, 0, 0), thickness + 2),
            ((255, 255, 255), max(1, thickness - 1)),
        ):
            cv2.putText(
                out,
                annotation.caption,
                origin,
                cv2.FONT_HERSHEY_SIMPLEX,
                scale,
                colour,
                weight,
                cv2.LINE_AA,
            )
    return out


def encode_jpeg(image: Array) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return bytes(buffer)


def snapshot(
    image: Array,
    privacy_masks: Sequence[Polygon],
    annotation: Annotation,
) -> bytes:
    """The JPEG of a frame as it may leave the box: masks first, then the drawing on top."""
    return encode_jpeg(annotate(apply_privacy_masks(image, privacy_masks), annotation))


def redacted_snapshot(
    image: Array,
    redactor: Redactor,
    annotation: Annotation,
    blur_faces: bool = True,
    people: Sequence[Box] = (),
) -> tuple[bytes, RedactionRecord]:
    """The JPEG of a frame as it may leave the box: masks hidden and faces blurred first, then
    the drawing on top; with the record of what was hidden (`event.details["privacy"]`).
    `people`: the detector's person boxes in this frame (see `Redactor.image`)."""
    redacted, record = redactor.image(image, blur_faces, people)
    return encode_jpeg(annotate(redacted, annotation)), record
