"""Faces for redaction, found by the face model (CenterFace) in several views of one frame.

A face detector finds upright faces: the face of a person lying on the floor is turned by 90
degrees, and one lying towards the camera by 180. The frame is therefore shown to the model
turned by each of `privacy.face_rotations` (clockwise). A wide high-resolution frame shrunk to
the model's input (640 x 640) leaves a distant face a few pixels wide, so a frame longer than
the input is cut into overlapping tiles (searched at up to `privacy.face_search_px` along its
longer side), each tile turned the same ways, plus the whole frame upright for faces too large
for one tile. Every view's faces are mapped back to the frame and merged.

All views of a frame go to the model in one call, so the box's detection service can run them
as one batch. Pure geometry here; the model is `edge.analysis.faces.FaceModel`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from edge.analysis.detect.yolo import nms
from edge.analysis.faces import FaceModel
from edge.types import Box, clamp_box

Image = npt.NDArray[np.uint8]

TILE_STRETCH = 1.15  # a tile may be this much larger than the model input (shrunk to fit)
TILE_OVERLAP = 0.125  # neighbouring tiles share this share of the model input (a whole face)
MERGE_IOU = 0.3  # faces from two views overlapping this much are one face
_ROTATE = {
    90: cv2.ROTATE_90_CLOCKWISE,
    180: cv2.ROTATE_180,
    270: cv2.ROTATE_90_COUNTERCLOCKWISE,
}


@dataclass(frozen=True, slots=True)
class View:
    """What the face model is shown: the frame's pixels `region` (x1, y1, x2, y2), turned by
    `rotation` degrees clockwise."""

    region: tuple[int, int, int, int]
    rotation: int = 0


@dataclass(frozen=True, slots=True)
class FoundFace:
    """A face in frame coordinates (normalised), its score and the view turn it was found in."""

    box: Box
    score: float
    rotation: int


def _spans(length: int, scale: float, tile: float) -> list[tuple[int, int]]:
    """Overlapping pixel spans covering `length` pixels, each at most about `tile` pixels
    once scaled by `scale` (evenly placed, the first at 0, the last at the end)."""
    scaled = length * scale
    count = max(1, math.ceil(scaled / (tile * TILE_STRETCH)))
    if count == 1:
        return [(0, length)]
    extent = min(length, round((scaled / count + tile * TILE_OVERLAP) / scale))
    step = (length - extent) / (count - 1)
    return [(round(i * step), round(i * step) + extent) for i in range(count)]


def plan_views(
    frame_wh: tuple[int, int],
    input_wh: tuple[int, int],
    rotations: Sequence[int] = (0, 90, 180, 270),
    search_px: int = 1280,
) -> list[View]:
    """The views of a `frame_wh` frame the face model is shown.

    The frame is looked at as if its longer side were at most `search_px`; when it is then
    larger than the model input (`TILE_STRETCH` allowed), it is cut into tiles overlapping by
    `TILE_OVERLAP` of the input, and the whole frame is added upright. Each tile is shown at
    each of `rotations`.

    Example: a 320x240 frame with the default rotations gives 4 views (the whole frame, turned
    0, 90, 180 and 270 degrees); a 1920x1080 frame, searched at 1280x720 by a 640x640 model,
    gives 2 tiles x 4 turns + the whole frame = 9 views.
    """
    w, h = frame_wh
    if w <= 0 or h <= 0:
        raise ValueError(f"frame size must be positive, got {w}x{h}")
    if any(r not in (0, 90, 180, 270) for r in rotations):
        raise ValueError(f"rotations must be 0, 90, 180 or 270, got {list(rotations)}")
    tile = float(min(input_wh))
    scale = min(1.0, search_px / max(w, h))
    columns, rows = _spans(w, scale, tile), _spans(h, scale, tile)
    regions = [(x1, y1, x2, y2) for y1, y2 in rows for x1, x2 in columns]
    views = [View(region, rotation) for rotation in dict.fromkeys(rotations) for region in regions]
    if len(regions) > 1:
        views.append(View((0, 0, w, h), 0))
    return views


def view_image(image: Image, view: View) -> Image:
    """The pixels the model is shown for `view` (a crop, turned)."""
    x1, y1, x2, y2 = view.region
    crop = image[y1:y2, x1:x2]
    if view.rotation == 0:
        return crop
    return np.asarray(cv2.rotate(crop, _ROTATE[view.rotation]), np.uint8)


def _unturn(u: float, v: float, rotation: int) -> tuple[float, float]:
    """A point normalised to a view turned `rotation` degrees clockwise, normalised to the
    view before it was turned."""
    if rotation == 90:
        return v, 1.0 - u
    if rotation == 180:
        return 1.0 - u, 1.0 - v
    if rotation == 270:
        return 1.0 - v, u
    return u, v


def to_frame(box: Box, view: View, frame_wh: tuple[int, int]) -> Box:
    """A box normalised to the view's image, normalised to the frame.

    Example: in a 100x100 frame, the box (0.1, 0.2, 0.3, 0.4) of the whole frame turned 90
    degrees clockwise is (0.2, 0.7, 0.4, 0.9) of the frame.
    """
    a = _unturn(box[0], box[1], view.rotation)
    b = _unturn(box[2], box[3], view.rotation)
    x1, y1, x2, y2 = view.region
    w, h = frame_wh
    xs = sorted(x1 + p * (x2 - x1) for p in (a[0], b[0]))
    ys = sorted(y1 + p * (y2 - y1) for p in (a[1], b[1]))
    return clamp_box((xs[0] / w, ys[0] / h, xs[1] / w, ys[1] / h))


def merge_faces(faces: Sequence[FoundFace], iou: float = MERGE_IOU) -> list[FoundFace]:
    """One face for each group overlapping more than `iou` (the best scored), best first."""
    if not faces:
        return []
    boxes = np.array([face.box for face in faces], np.float32)
    scores = np.array([face.score for face in faces], np.float32)
    return [faces[int(i)] for i in nms(boxes, scores, iou)]


class FaceFinder:
    """Faces in a frame: the face model run on `plan_views` of it, merged."""

    def __init__(
        self,
        model: FaceModel,
        input_wh: tuple[int, int],
        min_score: float = 0.2,
        rotations: Sequence[int] = (0, 90, 180, 270),
        search_px: int = 1280,
    ) -> None:
        self.model = model
        self.input_wh = input_wh
        self.min_score = min_score
        self.rotations = tuple(rotations)
        self.search_px = search_px

    def views(self, frame_wh: tuple[int, int]) -> list[View]:
        return plan_views(frame_wh, self.input_wh, self.rotations, self.search_px)

    def find(self, image: Image) -> list[FoundFace]:
        """The faces scoring at least `min_score` in any view, in frame coordinates, merged.

        Raises whatever the model raises (the caller writes nothing then)."""
        h, w = image.shape[:2]
        views = self.views((w, h))
        answers = self.model.detect_faces([view_image(image, view) for view in views])
        if len(answers) != len(views):
            raise ValueError(f"the face model answered {len(answers)} of {len(views)} views")
        found = [
            FoundFace(to_frame(face.box, view, (w, h)), face.score, view.rotation)
            for view, faces in zip(views, answers, strict=True)
            for face in faces
            if face.score >= self.min_score
        ]
        return merge_faces(found)
