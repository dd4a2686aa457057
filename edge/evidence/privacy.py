"""Evidence redaction before anything is written: privacy masks hidden, faces blurred.

Masks (the camera's `privacy_masks`) are blacked out or made unrecoverable with large mosaic
cells (`pixelate`), smoothed over (`blur`). Faces come from two sources, and the union is
blurred the same way: a face detector made for anonymisation (CenterFace, shown the frame
turned for people lying down and in tiles for wide views: edge.evidence.faces), and the pose
model's head keypoints (`head_box`). A person found (by the pose model or the caller's
detector) for whom no face was located has the whole head region blurred, placed by the body's
orientation (`head_region`). The analysis never sees any of this: redaction works on copies,
and the boxes and trajectories of the evidence are drawn afterwards, on top.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from common.config import CameraConfig, PrivacyConfig
from edge.analysis.faces import FaceModel, load_face_model
from edge.analysis.pose import (
    HEAD_KEYPOINTS,
    SHOULDER_KEYPOINTS,
    PoseEstimator,
    load_pose_estimator,
)
from edge.analysis.scene.model import polygons_mask
from edge.errors import EdgeError
from edge.evidence.faces import FaceFinder, FoundFace
from edge.types import Box, box_iou, clamp_box

logger = logging.getLogger(__name__)

MaskStyle = Literal["black", "blur", "pixelate"]
Polygon = Sequence[tuple[float, float]]
Image = npt.NDArray[np.uint8]
FloatArray = npt.NDArray[np.float64]

MIN_VISIBILITY = 0.5  # keypoints the pose model is at least this sure it sees
HEAD_MARGIN = 1.8  # the blurred square is this many head widths across (hair, chin, error)
FRAME_CELLS = 40  # mask mosaic cells are at least 1/40 of the frame's longer side...
REGION_CELLS = 8  # ...and at most 8 cells span a mask's shorter side
FACE_CELLS = 4  # a head box becomes a 4 x 4 mosaic before smoothing
CLIP_GROW = 0.25  # heads carried between sampled clip frames grow by this share on each side
MATCH_DISTANCE = 4.0  # a head moves at most this many head sizes between two sampled frames
STEADY_MOVE = 0.5  # moved further than this share of its size: look at the frames between
ASSUMED_FPS = 10.0  # frame rate of a clip whose timestamps are not given
FACE_METHOD = "pose_keypoints"  # a head placed by the pose model's head keypoints
DETECTOR_METHOD = "face_detector"  # a face the face detector found
HEAD_REGION_METHOD = "head_region"  # a person with no face located: the head region blurred
METHODS = (DETECTOR_METHOD, FACE_METHOD, HEAD_REGION_METHOD)
SAME_PERSON_IOU = 0.3  # a caller's person box overlapping a pose detection this much is it
HIP_KEYPOINTS = (11, 12)  # COCO: left and right hip
FACE_GROW = 2.0  # a detected face is blurred as a square this many times its longer side
REGION_TORSO = 1.0  # a head region is this many torso lengths (shoulders to hips) across...
REGION_OFFSET = 0.35  # ...centred this many torso lengths beyond the shoulders
STEADY_FACE_SCORE = 0.5  # clips: detected faces this sure decide where to search again
FACE_IN_REGION_GROW = 0.25  # a face counts as a person's when its centre is in the head region
# grown by this share on each side


class RedactionError(ValueError):
    """Faces could not be looked for: the evidence must not be written unredacted."""


# Obscuring ----------------------------------------------------------------------------------


def _mosaic(crop: Image, cell: int, smooth: bool) -> Image:
    """`crop` reduced to one mean colour per `cell` x `cell` block, then enlarged again:
    nearest-neighbour (visible blocks), or the grid blurred and enlarged bilinearly (a smooth
    wash). Either way only the cell means survive, never what was inside a cell."""
    h, w = crop.shape[:2]
    grid = (max(1, math.ceil(w / cell)), max(1, math.ceil(h / cell)))
    small = cv2.resize(crop, grid, interpolation=cv2.INTER_AREA)
    if not smooth:
        return np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST), np.uint8)
    if min(grid) >= 3:
        small = cv2.GaussianBlur(small, (3, 3), 0)
    return np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), np.uint8)


def mask_cell_px(frame_hw: tuple[int, int], region_hw: tuple[int, int]) -> int:
    """Mosaic cell size for a privacy mask: large against the frame (nothing legible survives
    in a small mask) and against the mask (a large one is still a coarse grid)."""
    by_frame = round(max(frame_hw) / FRAME_CELLS)
    by_region = round(min(region_hw) / REGION_CELLS)
    return max(4, by_frame, by_region)


def obscure_polygons(image: Image, masks: Sequence[Polygon], style: MaskStyle = "black") -> Image:
    """The image with everything under the normalised polygons hidden (on a copy).

    `black` fills them; `pixelate` replaces them with coarse mosaic cells (`mask_cell_px`) and
    `blur` with the same cells smoothed, so the content is unrecoverable in all three. With no
    masks the image itself is returned.

    Example: `obscure_polygons(img, [[(0.6, 0), (1, 0), (1, 0.4), (0.6, 0.4)]])` blacks out
    the top-right window area.
    """
    if not masks:
        return image
    out = image.copy()
    h, w = out.shape[:2]
    if style == "black":
        for polygon in masks:
            pts = np.array([[x * w, y * h] for x, y in polygon], np.float32)
            cv2.fillPoly(out, [pts.round().astype(np.int32)], (0, 0, 0))
        return out
    key = tuple(tuple((float(x), float(y)) for x, y in polygon) for polygon in masks)
    for x, y, region in _mask_regions(key, (h, w)):
        bh, bw = region.shape
        crop = out[y : y + bh, x : x + bw]
        hidden = _mosaic(crop, mask_cell_px((h, w), (bh, bw)), smooth=style == "blur")
        cv2.copyTo(hidden, region, crop)
    return out


@lru_cache(maxsize=32)
def _mask_regions(
    masks: tuple[tuple[tuple[float, float], ...], ...], shape_hw: tuple[int, int]
) -> list[tuple[int, int, Image]]:
    """Each polygon's bounding rectangle in pixels (x, y) and its uint8 mask inside it; a
    camera's masks and frame size do not change, so this is computed once."""
    regions = []
    for polygon in masks:
        inside = polygons_mask([polygon], shape_hw)
        x, y, bw, bh = cv2.boundingRect(inside)
        if bw > 0 and bh > 0:
            region = np.ascontiguousarray(inside[y : y + bh, x : x + bw])
            region.flags.writeable = False
            regions.append((x, y, region))
    return regions


def blur_boxes(image: Image, boxes: Sequence[Box]) -> Image:
    """The image with each normalised box (a head) reduced to a smoothed 4 x 4 mosaic (on a
    copy; with no boxes the image itself is returned)."""
    if not boxes:
        return image
    out = image.copy()
    _blur_boxes_into(out, boxes)
    return out


def _blur_boxes_into(out: Image, boxes: Sequence[Box]) -> None:
    h, w = out.shape[:2]
    for box in boxes:
        x1, y1, x2, y2 = clamp_box(box)
        px1, py1 = math.floor(x1 * w), math.floor(y1 * h)
        px2, py2 = math.ceil(x2 * w), math.ceil(y2 * h)
        if px2 - px1 < 2 or py2 - py1 < 2:
            continue
        crop = out[py1:py2, px1:px2]
        cell = max(2, round(min(py2 - py1, px2 - px1) / FACE_CELLS))
        crop[:] = _mosaic(crop, cell, smooth=True)


# Where the head is ---------------------------------------------------------------------------


def head_box(
    keypoints: npt.ArrayLike,
    person_box: Box,
    *,
    aspect: float = 1.0,
    min_visibility: float = MIN_VISIBILITY,
) -> Box | None:
    """The square around a person's head, normalised, or None for an empty person box.

    The head is centred on its visible keypoints (nose, eyes, ears); its width is the largest
    of what the head points span, 0.45 of the shoulder width and 0.9 of the distance from head
    to shoulders, kept between a quarter of the box's short side and 0.6 of its long side; the
    square is `HEAD_MARGIN` head widths across. Without a visible head point (a person seen
    from behind) it is the top of the person box (`top_of_person`).

    Args:
        keypoints: `(17, 3)` COCO keypoints: x, y normalised to the frame, visibility 0..1.
        person_box: the person's normalised box.
        aspect: the frame's width / height, so that the square is square in pixels.
        min_visibility: keypoints seen with less confidence are ignored.

    A keypoint with a non-finite coordinate counts as not seen; a person box that is not
    finite gives None.

    Example: on a square frame, a person box (0.4, 0.15, 0.6, 0.9) with eyes at (0.48, 0.20)
    and (0.52, 0.20), nose at (0.50, 0.23) and shoulders at (0.42, 0.32) and (0.58, 0.32)
    gives about (0.411, 0.121, 0.589, 0.299): a head 0.099 wide (head to shoulders 0.11).
    """
    x1, y1, x2, y2 = person_box
    if not all(math.isfinite(v) for v in person_box) or x2 <= x1 or y2 <= y1:
        return None
    points = np.asarray(keypoints, np.float64).reshape(-1, 3)
    if len(points) <= max(SHOULDER_KEYPOINTS):
        return top_of_person(person_box, aspect)
    scaled = points[:, :2] * np.array([aspect, 1.0])  # isotropic units: frame heights
    # a keypoint the model answered NaN or infinity for is not seen (the head is then placed
    # by the others, or by the top of the box)
    seen = (points[:, 2] >= min_visibility) & np.isfinite(points).all(axis=1)
    head = scaled[list(HEAD_KEYPOINTS)][seen[list(HEAD_KEYPOINTS)]]
    if len(head) == 0:
        return top_of_person(person_box, aspect)
    centre = head.mean(axis=0)
    shoulders = scaled[list(SHOULDER_KEYPOINTS)][seen[list(SHOULDER_KEYPOINTS)]]
    width = _head_width(head, shoulders, centre)
    short, long = sorted(((x2 - x1) * aspect, y2 - y1))
    width = min(max(width, 0.25 * short), 0.6 * long)
    half = width * HEAD_MARGIN / 2
    cx, cy = float(centre[0]) / aspect, float(centre[1])
    return clamp_box((cx - half / aspect, cy - half, cx + half / aspect, cy + half))


def _head_width(head: FloatArray, shoulders: FloatArray, centre: FloatArray) -> float:
    estimates = [0.0]
    if len(head) >= 2:
        spread = np.linalg.norm(head[:, None, :] - head[None, :, :], axis=-1).max()
        estimates.append(1.2 * float(spread))  # ear to ear is about one head width
    if len(shoulders) == 2:
        estimates.append(0.45 * float(np.linalg.norm(shoulders[0] - shoulders[1])))
    if len(shoulders) >= 1:
        estimates.append(0.9 * float(np.linalg.norm(centre - shoulders.mean(axis=0))))
    return max(estimates)


def top_of_person(person_box: Box, aspect: float = 1.0) -> Box:
    """Where the head must be when no head keypoint is visible: the top band of the person
    box, a fifth of a standing person, half of a crouching or lying one.

    Example: `top_of_person((0.4, 0.2, 0.5, 0.8))` on a square frame is
    `(0.4, 0.2, 0.5, 0.32)`.
    """
    x1, y1, x2, y2 = person_box
    bw, bh = (x2 - x1) * aspect, y2 - y1
    band = min(bh, max(bh / 5, 0.5 * min(bw, bh)))
    return clamp_box((x1, y1, x2, y1 + band))


def head_region(
    keypoints: npt.ArrayLike | None,
    person_box: Box,
    *,
    aspect: float = 1.0,
    min_visibility: float = MIN_VISIBILITY,
) -> list[Box]:
    """Where a person's head must be, by the body's orientation, when no face was located for
    them: a square (normalised, in pixels square) or, for a lying person seen only as a box,
    one at each end.

    With the shoulders and the hips (or the shoulders and any head point) seen, the body's "up"
    runs from the hips through the shoulders: the square is `REGION_TORSO` torso lengths across
    (about two head heights), centred `REGION_OFFSET` of the torso beyond the shoulders, or on
    the head points when some are seen. It is never smaller than a quarter of the box's short
    side; for a body within 45 degrees of upright with no head point seen (from behind) it
    also takes in the top of the box (`top_of_person`: one box round both). Without them, an
    upright box (taller than wide) has its top blurred (`top_of_person`); a box wider than tall
    is a person lying whose head may be at either end, so both ends are, each a square of the
    box's height (at most half its width).

    Example: on a square frame, shoulders at (0.30, 0.50) and (0.30, 0.60) and hips at
    (0.60, 0.50) and (0.60, 0.60) are a person lying with the head to the left: a torso of 0.3,
    so the square (0.045, 0.40, 0.345, 0.70), centred at (0.195, 0.55).
    """
    x1, y1, x2, y2 = person_box
    if not all(math.isfinite(v) for v in person_box) or x2 <= x1 or y2 <= y1:
        return []
    if keypoints is not None:
        oriented = _oriented_region(
            np.asarray(keypoints, np.float64), person_box, aspect, min_visibility
        )
        if oriented is not None:
            if is_upright(keypoints, aspect) and not _head_points_seen(keypoints):
                # seen from behind: the top of the box too (one box round both)
                return [_union(oriented, top_of_person(person_box, aspect))]
            return [oriented]
    bw, bh = (x2 - x1) * aspect, y2 - y1
    if bh >= bw:
        return [top_of_person(person_box, aspect)]
    side = min(bh, bw / 2) / aspect  # normalised width of each end's square
    return [clamp_box((x1, y1, x1 + side, y2)), clamp_box((x2 - side, y1, x2, y2))]


def body_up(
    keypoints: npt.ArrayLike, aspect: float = 1.0, min_visibility: float = MIN_VISIBILITY
) -> tuple[FloatArray, float, FloatArray, FloatArray | None] | None:
    """The body's "up" from its keypoints, in isotropic units (frame heights): the unit vector
    from the hips through the shoulders (or from the shoulders to the head points), the torso
    length, the shoulders' middle and the head points' mean (None when none is seen); None
    when the keypoints do not show it."""
    points = np.asarray(keypoints, np.float64).reshape(-1, 3)
    if len(points) <= max(HIP_KEYPOINTS):
        return None
    scaled = points[:, :2] * np.array([aspect, 1.0])
    seen = (points[:, 2] >= min_visibility) & np.isfinite(points).all(axis=1)

    def mean_of(indices: Sequence[int]) -> FloatArray | None:
        chosen = scaled[list(indices)][seen[list(indices)]]
        return chosen.mean(axis=0) if len(chosen) else None

    shoulders, hips = mean_of(SHOULDER_KEYPOINTS), mean_of(HIP_KEYPOINTS)
    head = mean_of(HEAD_KEYPOINTS)
    if shoulders is None or (hips is None and head is None):
        return None
    if hips is not None:
        up = shoulders - hips
        torso = float(np.linalg.norm(up))
    else:
        assert head is not None  # noqa: S101 - checked above
        up = head - shoulders
        torso = float(np.linalg.norm(up)) / REGION_OFFSET
    if torso <= 0:
        return None
    return up / np.linalg.norm(up), torso, shoulders, head


def is_upright(keypoints: npt.ArrayLike, aspect: float = 1.0) -> bool | None:
    """Whether the body stands within 45 degrees of upright (None: the keypoints do not say)."""
    found = body_up(keypoints, aspect)
    return None if found is None else bool(-found[0][1] >= math.sqrt(0.5))


def _oriented_region(
    keypoints: FloatArray, person_box: Box, aspect: float, min_visibility: float
) -> Box | None:
    found = body_up(keypoints, aspect, min_visibility)
    if found is None:
        return None
    up, torso, shoulders, head = found
    centre = head if head is not None else shoulders + up * (REGION_OFFSET * torso)
    x1, y1, x2, y2 = person_box
    short = min((x2 - x1) * aspect, y2 - y1)
    half = max(REGION_TORSO * torso, 0.25 * short) / 2
    cx, cy = float(centre[0]) / aspect, float(centre[1])
    return clamp_box((cx - half / aspect, cy - half, cx + half / aspect, cy + half))


def _union(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def face_square(face: Box, aspect: float = 1.0, grow: float = FACE_GROW) -> Box:
    """What is blurred for a face the detector found: a square (in pixels) `grow` times its
    longer side, on the same centre (the hair, the ears, the chin and the box's error)."""
    w, h = (face[2] - face[0]) * aspect, face[3] - face[1]
    half = grow * max(w, h) / 2
    cx, cy = (face[0] + face[2]) / 2, (face[1] + face[3]) / 2
    return clamp_box((cx - half / aspect, cy - half, cx + half / aspect, cy + half))


def _holds(region: Box, face: Box, grow: float = FACE_IN_REGION_GROW) -> bool:
    """Whether the centre of `face` lies in `region` grown by `grow` on each side."""
    cx, cy = _centre(face)
    dx, dy = (region[2] - region[0]) * grow, (region[3] - region[1]) * grow
    return region[0] - dx <= cx <= region[2] + dx and region[1] - dy <= cy <= region[3] + dy


def _head_points_seen(keypoints: npt.ArrayLike, min_visibility: float = MIN_VISIBILITY) -> bool:
    points = np.asarray(keypoints, np.float64).reshape(-1, 3)
    if len(points) <= max(HEAD_KEYPOINTS):
        return False
    head = points[list(HEAD_KEYPOINTS)]
    return bool(((head[:, 2] >= min_visibility) & np.isfinite(head).all(axis=1)).any())


def carry_heads(before: Sequence[Box], after: Sequence[Box], t: float) -> list[Box]:
    """Head boxes for a clip frame between two sampled frames, `t` of the way (0..1).

    Heads found in both are matched (nearest centres, within `MATCH_DISTANCE` head sizes) and
    moved linearly; the others are kept over the whole gap (a head may have been missed in the
    other sample). All but the samples' own boxes grow by `CLIP_GROW` on each side, so a
    moving head stays covered.
    """
    if t <= 0.0:
        return list(before)
    if t >= 1.0:
        return list(after)
    pairs, lone = _match_heads(before, after)
    carried = [_lerp(before[i], after[j], t) for i, j in pairs]
    carried += [box for k, box in enumerate(before) if k not in {i for i, _ in pairs}]
    carried += [box for k, box in enumerate(after) if k in lone]
    return [_grow(box, CLIP_GROW) for box in carried]


def _match_heads(
    before: Sequence[Box], after: Sequence[Box]
) -> tuple[list[tuple[int, int]], set[int]]:
    """Greedy nearest-centre matching; returns the pairs and the unmatched indices of
    `after`."""
    candidates = []
    for i, a in enumerate(before):
        for j, b in enumerate(after):
            size = max(a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1])
            dist = math.dist(_centre(a), _centre(b))
            if dist <= MATCH_DISTANCE * size:
                candidates.append((dist, i, j))
    pairs: list[tuple[int, int]] = []
    used_i: set[int] = set()
    used_j: set[int] = set()
    for _, i, j in sorted(candidates):
        if i not in used_i and j not in used_j:
            pairs.append((i, j))
            used_i.add(i)
            used_j.add(j)
    return pairs, set(range(len(after))) - used_j


def _centre(box: Box) -> tuple[float, float]:
    return ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)


def _lerp(a: Box, b: Box, t: float) -> Box:
    x1, y1, x2, y2 = (p + (q - p) * t for p, q in zip(a, b, strict=True))
    return (x1, y1, x2, y2)


def _grow(box: Box, share: float) -> Box:
    dx, dy = (box[2] - box[0]) * share, (box[3] - box[1]) * share
    return clamp_box((box[0] - dx, box[1] - dy, box[2] + dx, box[3] + dy))


def sample_indices(count: int, every_s: float, pts_s: Sequence[float] | None = None) -> list[int]:
    """Which of `count` clip frames the face finder runs on: the first, then the first frame
    at least `every_s` after the last sampled one, and always the last.

    Without timestamps the frames are taken as `ASSUMED_FPS` apart.
    """
    if count <= 0:
        return []
    times = list(pts_s) if pts_s is not None else [i / ASSUMED_FPS for i in range(count)]
    if len(times) != count:
        raise ValueError(f"{count} frames but {len(times)} timestamps")
    chosen = [0]
    for index in range(1, count):
        if times[index] - times[chosen[-1]] >= every_s - 1e-9:
            chosen.append(index)
    if chosen[-1] != count - 1:
        chosen.append(count - 1)
    return chosen


def heads_agree(before: Sequence[Box], after: Sequence[Box]) -> bool:
    """Whether interpolating between two samples can be trusted: every head matched on both
    sides, none moved by more than `STEADY_MOVE` of its size."""
    pairs, lone = _match_heads(before, after)
    if lone or len(pairs) != len(before):
        return False
    for i, j in pairs:
        a, b = before[i], after[j]
        size = max(a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1])
        if math.dist(_centre(a), _centre(b)) > STEADY_MOVE * size:
            return False
    return True


def refine_samples(
    found: dict[int, list[Box]],
    find: Callable[[int], list[Box]],
    limit: int | None = None,
) -> list[int]:
    """Add samples between neighbouring sampled frames whose heads disagree (`heads_agree`),
    halving the gap until they agree or are adjacent, at most `limit` of them (None: no
    limit); `found` is filled in. Returns the sorted sampled indices.

    >>> found = {0: [(0.1, 0.1, 0.2, 0.2)], 4: [(0.1, 0.6, 0.2, 0.7)]}
    >>> refine_samples(found, lambda i: [(0.1, 0.1 + 0.125 * i, 0.2, 0.2 + 0.125 * i)])
    [0, 1, 2, 3, 4]
    """
    pending = sorted(found)
    stable: list[int] = []
    added = 0
    while len(pending) > 1:
        a, b = pending[0], pending[1]
        room = limit is None or added < limit
        if room and b - a > 1 and not heads_agree(found[a], found[b]):
            added += 1
            middle = (a + b) // 2
            found[middle] = find(middle)
            pending.insert(1, middle)
            continue
        stable.append(pending.pop(0))
    return stable + pending


# What was done ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Head:
    """One blurred head: where (normalised), how it was located (`METHODS`), and for a face the
    detector found, its score and the turn of the view it was found in."""

    box: Box
    method: str
    score: float | None = None
    rotation: int | None = None

    def as_details(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "box": [round(v, 4) for v in self.box]}
        if self.score is not None:
            out["score"] = round(self.score, 3)
        if self.rotation is not None:
            out["rotation"] = self.rotation
        return out


def _method_counts(heads: Sequence[Head]) -> dict[str, int]:
    counts = {method: sum(head.method == method for head in heads) for method in METHODS}
    return {method: count for method, count in counts.items() if count}


@dataclass(frozen=True, slots=True)
class RedactionRecord:
    """What was hidden in one evidence file, for `event.details["privacy"]`.

    `faces_blurred` is the number of heads blurred (in a clip: the most in any one frame);
    `faces_skipped` says why faces were not looked for, when they were not. `heads` are the
    heads of a snapshot, each with its method; `frame_heads` are those of each searched frame
    of a clip (frame index, heads).
    """

    masks: tuple[int, ...]
    mask_style: MaskStyle
    faces_blurred: int = 0
    face_method: str | None = None
    face_model: str | None = None
    faces_skipped: str | None = None
    frames: int = 1
    face_frames: int = 0  # frames the face finder ran on
    pose_model: str | None = None
    heads: tuple[Head, ...] = ()
    frame_heads: tuple[tuple[int, tuple[Head, ...]], ...] = ()
    problems: tuple[str, ...] = ()  # a face finder of the config that could not be loaded

    def as_details(self) -> dict[str, Any]:
        faces: dict[str, Any]
        if self.faces_skipped is not None:
            faces = {"skipped": self.faces_skipped}
        else:
            faces = {
                "blurred": self.faces_blurred,
                "method": self.face_method,
                "model": self.face_model,
            }
            if self.pose_model is not None:
                faces["pose_model"] = self.pose_model
            if self.frames > 1:
                faces["searched_frames"] = self.face_frames
            if self.heads:
                faces["by_method"] = _method_counts(self.heads)
                faces["items"] = [head.as_details() for head in self.heads]
            if self.frame_heads:
                most: dict[str, int] = {}
                for _, heads in self.frame_heads:
                    for method, count in _method_counts(heads).items():
                        most[method] = max(most.get(method, 0), count)
                faces["by_method"] = most  # the most of each method in any one frame
                faces["per_frame"] = [
                    {"frame": index, "methods": [head.method for head in heads]}
                    for index, heads in self.frame_heads
                ]
        if self.problems:
            faces["problems"] = list(self.problems)
        details: dict[str, Any] = {
            "masks": list(self.masks),
            "mask_style": self.mask_style,
            "faces": faces,
        }
        if self.frames > 1:
            details["frames"] = self.frames
        return details


# The redactor -------------------------------------------------------------------------------


class Redactor:
    """Redacts one camera's evidence: masks hidden in `mask_style`, faces blurred.

    Not tied to a thread; the models it holds are the process-wide shared ones (or the box's
    detection service).
    """

    def __init__(
        self,
        masks: Sequence[Polygon] = (),
        options: PrivacyConfig | None = None,
        pose: PoseEstimator | None = None,
        pose_problem: str | None = None,
        faces: FaceModel | None = None,
        faces_problem: str | None = None,
    ) -> None:
        self._masks = [list(mask) for mask in masks]
        self.options = options or PrivacyConfig()
        self._pose = pose
        self._pose_problem = pose_problem
        self._faces = faces
        self._faces_problem = faces_problem
        self._finder = (
            None
            if faces is None
            else FaceFinder(
                faces,
                faces.input_wh,
                self.options.face_detector_min_score,
                self.options.face_rotations,
                self.options.face_search_px,
            )
        )

    @classmethod
    def for_camera(
        cls,
        camera: CameraConfig,
        pose: PoseEstimator | None = None,
        faces: FaceModel | None = None,
    ) -> Redactor:
        """The camera's masks and privacy options, with `pose` and the face detector `faces`
        to find faces (neither: faces are not looked for and every record says so)."""
        problem = None if pose is not None or faces is not None else "no face finder was given"
        return cls(camera.privacy_masks, camera.privacy, pose, problem, faces)

    @classmethod
    def load(cls, camera: CameraConfig) -> Redactor:
        """`for_camera` with the camera's pose model and face detector loaded (once per
        process). When one cannot be loaded the reason is logged and recorded in every
        evidence's record (a live camera refuses to start instead:
        edge.analysis.pipeline.load_redactor)."""
        options = camera.privacy
        if not options.blur_faces:
            return cls.for_camera(camera)
        pose: PoseEstimator | None = None
        faces: FaceModel | None = None
        pose_problem = faces_problem = None
        try:
            pose = load_pose_estimator(options.face_model)
        except (KeyError, ValueError, EdgeError) as error:  # not registered, missing, corrupt
            pose_problem = f"pose model {options.face_model} unavailable: {error}"
            logger.error("camera %s: %s", camera.id, pose_problem)
        if options.face_detector is not None:
            try:
                faces = load_face_model(options.face_detector)
            except (KeyError, ValueError, EdgeError) as error:
                faces_problem = f"face detector {options.face_detector} unavailable: {error}"
                logger.error("camera %s: %s", camera.id, faces_problem)
        return cls(camera.privacy_masks, options, pose, pose_problem, faces, faces_problem)

    @property
    def mask_style(self) -> MaskStyle:
        return self.options.mask_style

    def mask(self, image: Image) -> Image:
        """The privacy masks alone (for frames kept in memory until evidence is made)."""
        return obscure_polygons(image, self._masks, self.options.mask_style)

    def image(
        self, image: Image, blur_faces: bool = True, people: Sequence[Box] = ()
    ) -> tuple[Image, RedactionRecord]:
        """A snapshot as it may be written: masks hidden, faces blurred unless `blur_faces`
        is False (the rule's `evidence_faces: keep`). `image` itself is not changed.

        `people`: boxes of people the caller's detector found in this frame; one for whom no
        face is located has its head region blurred (`head_region`), and without any face
        finder these are the only heads found.

        Raises:
            RedactionError: a face finder failed; nothing may be written.
        """
        skipped = self._skip_reason(blur_faces)
        if skipped is not None and people and self._no_finder() and self._faces_wanted(blur_faces):
            skipped = None  # the person boxes alone
        heads = [] if skipped else self.locate(image, people)
        out = self._redact(image, [head.box for head in heads])
        searched = 0 if skipped else 1
        return out, self._record(heads, skipped, frames=1, searched=searched)

    def frames(
        self,
        images: Sequence[Image],
        blur_faces: bool = True,
        pts_s: Sequence[float] | None = None,
    ) -> tuple[list[Image], RedactionRecord]:
        """The frames of a clip as they may be written. Faces are looked for every
        `options.clip_face_every_s` of stream time (`pts_s`; without it frames are taken as
        `ASSUMED_FPS` apart) and carried between (`carry_heads`); where two samples disagree
        (a head found in one only, or moved by more than `STEADY_MOVE` of its size: a fall,
        someone running), the frames between are looked at too (`refine_samples`), so a fast
        head is not left uncovered by the interpolation.

        Raises:
            RedactionError: a face finder failed; nothing may be written.
        """
        skipped = self._skip_reason(blur_faces)
        if skipped or not images:
            masked = [self._redact(image, []) for image in images]
            return masked, self._record([], skipped, frames=len(images), searched=0)
        first = sample_indices(len(images), self.options.clip_face_every_s, pts_s)
        located: dict[int, list[Head]] = {}

        def find(index: int) -> list[Box]:
            """Search frame `index`; the heads that decide whether to search between samples
            (faces found weakly come and go between frames: they are carried, not chased)."""
            located[index] = self.locate(images[index])
            return [head.box for head in located[index] if _steady(head)]

        anchors = {index: find(index) for index in first}
        samples = refine_samples(anchors, find)
        found = {index: [head.box for head in heads] for index, heads in located.items()}
        out = [
            self._redact(image, _heads_at(index, samples, found))
            for index, image in enumerate(images)
        ]
        per_frame = tuple((index, tuple(located[index])) for index in samples)
        most = max(len(heads) for heads in located.values())
        record = self._record(
            [], None, frames=len(images), searched=len(samples), per_frame=per_frame
        )
        return out, _with_count(record, most)

    def find_heads(self, image: Image, people: Sequence[Box] = ()) -> list[Box]:
        """The boxes `locate` blurs in `image` (normalised)."""
        return [head.box for head in self.locate(image, people)]

    def locate(self, image: Image, people: Sequence[Box] = ()) -> list[Head]:
        """Every head to blur in `image`, with how it was located: the faces the face detector
        finds (`face_square`), the heads of the pose model's people by their head keypoints,
        and, for each person (the pose model's, and those of `people` it did not find) with no
        detected face in their head region, that whole region (`head_region`) unless the head
        keypoints place the head of an upright body.

        Raises:
            RedactionError: a face finder failed.
        """
        h, w = image.shape[:2]
        aspect = w / h
        try:
            faces: list[FoundFace] = [] if self._finder is None else self._finder.find(image)
            found = (
                []
                if self._pose is None
                else [
                    person
                    for person in self._pose.detect_pose(image)
                    if person.detection.score >= self.options.face_min_score
                ]
            )
        except Exception as error:  # onnxruntime and the service raise their own errors
            raise RedactionError(f"the face finder failed: {error}") from error
        heads = [
            Head(face_square(face.box, aspect), DETECTOR_METHOD, face.score, face.rotation)
            for face in faces
        ]
        persons: list[tuple[Box, npt.NDArray[np.float32] | None]] = [
            (person.detection.box, person.keypoints) for person in found
        ]
        seen = [person.detection.box for person in found]
        persons += [
            (box, None)
            for box in people
            if all(box_iou(box, other) < SAME_PERSON_IOU for other in seen)
        ]
        for box, points in persons:
            placed = None
            if points is not None and _head_points_seen(points):
                placed = head_box(points, box, aspect=aspect)
                if placed is not None:
                    heads.append(Head(placed, FACE_METHOD))
            regions = head_region(points, box, aspect=aspect)
            if any(_holds(region, face.box) for region in regions for face in faces):
                continue  # the detector found this person's face
            # no face found: the keypoints' head stands for it only on an upright body; a person
            # lying, bent or seen without head points has the whole head region blurred
            if placed is None or not is_upright(points if points is not None else [], aspect):
                heads += [Head(region, HEAD_REGION_METHOD) for region in regions]
        return heads

    def _redact(self, image: Image, heads: Sequence[Box]) -> Image:
        """Masks then heads, on one new array (never `image` itself)."""
        out = self.mask(image)
        if out is image:
            out = image.copy()
        _blur_boxes_into(out, heads)
        return out

    def _no_finder(self) -> bool:
        return self._pose is None and self._faces is None

    def _faces_wanted(self, blur_faces: bool) -> bool:
        return blur_faces and self.options.blur_faces

    def _skip_reason(self, blur_faces: bool) -> str | None:
        if not self.options.blur_faces:
            return "blur_faces is off for this camera"
        if not blur_faces:
            return "the rule keeps faces (evidence_faces: keep)"
        if self._no_finder():
            problems = [p for p in (self._pose_problem, self._faces_problem) if p]
            return "; ".join(problems) or "no face finder"
        return None

    def _record(
        self,
        heads: Sequence[Head],
        skipped: str | None,
        frames: int,
        searched: int,
        per_frame: tuple[tuple[int, tuple[Head, ...]], ...] = (),
    ) -> RedactionRecord:
        used = {head.method for head in heads} | {
            head.method for _, frame in per_frame for head in frame
        }
        method = "+".join(m for m in METHODS if m in used) or self._default_method()
        return RedactionRecord(
            masks=tuple(range(len(self._masks))),
            mask_style=self.options.mask_style,
            faces_blurred=len(heads),
            face_method=None if skipped else method,
            face_model=None if skipped or self._faces is None else self._faces.info.name,
            faces_skipped=skipped,
            frames=frames,
            face_frames=searched,
            pose_model=None if skipped or self._pose is None else self._pose.info.name,
            heads=tuple(heads) if frames == 1 and not skipped else (),
            frame_heads=per_frame,
            problems=()
            if skipped
            else tuple(p for p in (self._pose_problem, self._faces_problem) if p),
        )

    def _default_method(self) -> str:
        """The record's method when nothing was found: what would have found faces."""
        used = []
        if self._faces is not None:
            used.append(DETECTOR_METHOD)
        if self._pose is not None:
            used.append(FACE_METHOD)
        return "+".join(used) or HEAD_REGION_METHOD


def _steady(head: Head) -> bool:
    """Whether a head is sure enough to decide where a clip is searched again: a face the
    detector found weakly (below `STEADY_FACE_SCORE`) is blurred and carried like any other,
    but one that is in one sample and not the next does not make the frames between searched
    (`carry_heads` keeps it over the whole gap)."""
    return head.method != DETECTOR_METHOD or (head.score or 0.0) >= STEADY_FACE_SCORE


def _with_count(record: RedactionRecord, faces: int) -> RedactionRecord:
    return replace(record, faces_blurred=faces)


def _heads_at(index: int, samples: Sequence[int], found: dict[int, list[Box]]) -> list[Box]:
    if index in found:
        return found[index]
    after = next(s for s in samples if s > index)  # the last frame is always sampled
    before = max(s for s in samples if s < index)
    return carry_heads(found[before], found[after], (index - before) / (after - before))
