"""YOLO pre- and post-processing as pure numpy functions: letterbox, decode, NMS.

Two output layouts are understood:

* `yolov8` (YOLOv8 and YOLO11 exported by Ultralytics): input RGB / 255, letterboxed to the
  centre with grey 114; output `(1, 4 + nc, N)` of centre-x, centre-y, width, height in input
  pixels followed by sigmoid class scores, no objectness. The pose variant appends
  `3 * K` keypoint rows (x, y in input pixels, visibility).
* `yolox` (Megvii YOLOX exported with the raw head): input BGR 0..255, resized into the
  top-left corner and padded bottom-right with 114; output `(1, N, 5 + nc)` of grid offsets,
  log sizes, sigmoid objectness and sigmoid class scores, decoded over strides 8, 16, 32.

Every decoder returns `Detection`s whose boxes are normalised to the original image.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import numpy.typing as npt

from edge.types import Detection

if TYPE_CHECKING:
    from edge.runtime.models import Layout

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.intp]

PAD_VALUE = 114
MAX_DETECTIONS = 300
MAX_NMS_CANDIDATES = 5000
"""Highest-scoring candidates kept before NMS, so a very low `min_score` stays fast."""
YOLOX_STRIDES = (8, 16, 32)


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How a source image was mapped into the network input: `input = source * scale + pad`."""

    scale: float
    pad_x: float
    pad_y: float
    src_w: int
    src_h: int
    input_w: int = 0
    input_h: int = 0

    def to_source_norm(self, xyxy_px: FloatArray) -> FloatArray:
        """Boxes in input pixels `(N, 4)` → `x1, y1, x2, y2` normalised to the source, in 0..1.

        Example: with scale 0.5 and pad_y 140 (1280x720 into 640x640), the input box
        `[0, 140, 640, 500]` is the whole source image `[0, 0, 1, 1]`.
        """
        out = np.empty_like(xyxy_px, dtype=np.float32)
        out[:, 0::2] = (xyxy_px[:, 0::2] - self.pad_x) / (self.scale * self.src_w)
        out[:, 1::2] = (xyxy_px[:, 1::2] - self.pad_y) / (self.scale * self.src_h)
        return np.clip(out, 0.0, 1.0, out=out)


@dataclass(frozen=True, slots=True)
class PoseDetection:
    """A person and its keypoints: `(K, 3)` of x, y normalised to the source, and visibility."""

    detection: Detection
    keypoints: FloatArray


def letterbox(
    image_bgr: npt.NDArray[np.uint8], size_wh: tuple[int, int], layout: Layout = "yolov8"
) -> tuple[FloatArray, Letterbox]:
    """Resize keeping the aspect ratio, pad with 114 and return an NCHW float32 tensor.

    `yolov8`/`yolov8-pose`: centred padding, RGB scaled to 0..1 (as Ultralytics' LetterBox).
    `yolox`: top-left placement, padding bottom-right, BGR left at 0..255.
    """
    padded, box = letterbox_image(image_bgr, size_wh, layout)
    return to_tensor(padded[None], layout), box


def letterbox_image(
    image_bgr: npt.NDArray[np.uint8], size_wh: tuple[int, int], layout: Layout = "yolov8"
) -> tuple[npt.NDArray[np.uint8], Letterbox]:
    """The first half of `letterbox`: the BGR image resized and padded to the network's input
    size, still uint8 HxWx3 (what a camera hands the box's detection service)."""
    _check_image(image_bgr)
    src_h, src_w = image_bgr.shape[:2]
    input_w, input_h = size_wh
    scale = min(input_w / src_w, input_h / src_h)
    new_w = min(input_w, max(1, round(src_w * scale)))
    new_h = min(input_h, max(1, round(src_h * scale)))
    resized: npt.NDArray[np.integer[Any] | np.floating[Any]] = image_bgr
    if (new_w, new_h) != (src_w, src_h):
        resized = cv2.resize(image_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    yolox = layout == "yolox"
    left, top = (0, 0) if yolox else (_centre_pad(input_w - new_w), _centre_pad(input_h - new_h))
    padded = cv2.copyMakeBorder(
        resized,
        top,
        input_h - new_h - top,
        left,
        input_w - new_w - left,
        cv2.BORDER_CONSTANT,
        value=(PAD_VALUE, PAD_VALUE, PAD_VALUE),
    )
    box = Letterbox(scale, float(left), float(top), src_w, src_h, input_w, input_h)
    return np.asarray(padded, dtype=np.uint8), box


def to_tensor(images: npt.NDArray[np.uint8], layout: Layout = "yolov8") -> FloatArray:
    """The second half of `letterbox`: `(B, H, W, 3)` letterboxed BGR images as the network's
    NCHW float32 input (RGB / 255 for YOLOv8, BGR 0..255 for YOLOX)."""
    yolox = layout == "yolox"
    blob = cv2.dnn.blobFromImages(list(images), 1.0 if yolox else 1.0 / 255.0, swapRB=not yolox)
    return blob.astype(np.float32, copy=False)


def _check_image(image: npt.NDArray[np.uint8]) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.size == 0:
        raise ValueError(
            "image must be a BGR HxWx3 uint8 array, "
            f"but got shape {image.shape} and dtype {image.dtype}"
        )


def _centre_pad(total: int) -> int:
    """Left/top share of `total` padding pixels, rounded as Ultralytics does."""
    return round(total / 2 - 0.1)


def nms(
    boxes: FloatArray,
    scores: FloatArray,
    iou: float,
    class_ids: IntArray | None = None,
    max_det: int | None = None,
) -> IntArray:
    """Greedy non-maximum suppression; indices of the boxes kept, best score first.

    Args:
        boxes: `(N, 4)` x1, y1, x2, y2 in any one unit.
        scores: `(N,)`.
        iou: a box overlapping an already kept box by more than this is dropped.
        class_ids: when given, boxes only suppress boxes of their own class.
        max_det: stop after keeping this many.
    """
    if len(boxes) == 0:
        return np.empty(0, dtype=np.intp)
    boxes = boxes.astype(np.float32, copy=False)
    if class_ids is not None:
        span = float(boxes.max() - boxes.min()) + 1.0
        boxes = boxes + (class_ids.astype(np.float32) * span)[:, None]
    x1, y1, x2, y2 = boxes.T
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.argsort(-scores, kind="stable")
    limit = len(order) if max_det is None else max_det
    keep: list[int] = []
    while order.size and len(keep) < limit:
        best, rest = int(order[0]), order[1:]
        keep.append(best)
        width = np.maximum(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0)
        height = np.maximum(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0)
        inter = width * height
        overlap = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9)
        order = rest[overlap <= iou]
    return np.asarray(keep, dtype=np.intp)


def decode_yolov8(
    output: FloatArray,
    lb: Letterbox,
    names: Sequence[str],
    min_score: float = 0.25,
    iou: float = 0.45,
    class_ids: Collection[int] | None = None,
    max_det: int = MAX_DETECTIONS,
) -> list[Detection]:
    """Decode a YOLOv8/YOLO11 output `(1, 4 + nc, N)`; `nc` is `len(names)`.

    Args:
        output: the raw network output; extra rows after the class scores are ignored.
        lb: the `Letterbox` the input was made with.
        names: class names by class id.
        min_score: candidates scoring below this are dropped before NMS.
        iou: NMS overlap threshold (per class).
        class_ids: keep only these classes (filtered before NMS); None keeps all.
        max_det: at most this many detections, best first.
    """
    pred = _rows_by_anchor(output)
    anchors, scores, classes = _best_class(pred[:, 4 : 4 + len(names)], min_score, class_ids)
    kept, boxes = _suppress(_xywh_to_xyxy(pred[anchors, :4]), scores, classes, lb, iou, max_det)
    return _to_detections(boxes, scores[kept], classes[kept], names)


def decode_yolov8_pose(
    output: FloatArray,
    lb: Letterbox,
    names: Sequence[str],
    num_keypoints: int,
    min_score: float = 0.25,
    iou: float = 0.45,
    max_det: int = MAX_DETECTIONS,
) -> list[PoseDetection]:
    """Decode a YOLOv8-pose output `(1, 4 + nc + 3K, N)` into people with keypoints."""
    pred = _rows_by_anchor(output)
    nc = len(names)
    anchors, scores, classes = _best_class(pred[:, 4 : 4 + nc], min_score, None)
    kept, boxes = _suppress(_xywh_to_xyxy(pred[anchors, :4]), scores, classes, lb, iou, max_det)
    detections = _to_detections(boxes, scores[kept], classes[kept], names)
    raw = pred[anchors[kept], 4 + nc : 4 + nc + 3 * num_keypoints].reshape(-1, num_keypoints, 3)
    return [
        PoseDetection(detection, _keypoints_to_source(points, lb))
        for detection, points in zip(detections, raw, strict=True)
    ]


def decode_yolox(
    output: FloatArray,
    lb: Letterbox,
    names: Sequence[str],
    min_score: float = 0.25,
    iou: float = 0.45,
    class_ids: Collection[int] | None = None,
    max_det: int = MAX_DETECTIONS,
    strides: tuple[int, ...] = YOLOX_STRIDES,
) -> list[Detection]:
    """Decode a raw YOLOX head output `(1, N, 5 + nc)`: grid/stride decode, then obj × cls.

    Arguments as for `decode_yolov8`; `lb` must carry the input size (`letterbox` sets it).
    """
    pred = output[0] if output.ndim == 3 else output
    grid, stride = _yolox_grid(lb.input_w, lb.input_h, strides)
    if len(pred) != len(grid):
        raise ValueError(
            f"yolox output has {len(pred)} rows, but a {lb.input_w}x{lb.input_h} input "
            f"with strides {strides} gives {len(grid)}"
        )
    rows = np.flatnonzero(pred[:, 4] >= min_score)  # class scores are at most 1
    class_scores = pred[rows, 4:5] * pred[rows, 5 : 5 + len(names)]
    picked, scores, classes = _best_class(class_scores, min_score, class_ids)
    anchors = rows[picked]
    centre = (pred[anchors, :2] + grid[anchors]) * stride[anchors]
    size = np.exp(np.minimum(pred[anchors, 2:4], 20.0)) * stride[anchors]
    xyxy = np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(np.float32)
    kept, boxes = _suppress(xyxy, scores, classes, lb, iou, max_det)
    return _to_detections(boxes, scores[kept], classes[kept], names)


def _rows_by_anchor(output: FloatArray) -> FloatArray:
    """`(1, C, N)` or `(C, N)` → `(N, C)` (a view, no copy)."""
    pred = output[0] if output.ndim == 3 else output
    return pred.T


def _best_class(
    class_scores: FloatArray, min_score: float, class_ids: Collection[int] | None
) -> tuple[IntArray, FloatArray, IntArray]:
    """Per anchor, the best wanted class; anchors at or above `min_score`, capped by score.

    Returns anchor indices, their scores and their class ids.
    """
    wanted = None
    if class_ids is not None:
        nc = class_scores.shape[1]
        wanted = np.array(sorted(c for c in set(class_ids) if 0 <= c < nc), dtype=np.intp)
        class_scores = class_scores[:, wanted]
    if class_scores.shape[1] == 0:
        return np.empty(0, np.intp), np.empty(0, np.float32), np.empty(0, np.intp)
    scores = class_scores.max(axis=1)
    anchors = np.flatnonzero(scores >= min_score)
    if len(anchors) > MAX_NMS_CANDIDATES:
        top = np.argpartition(-scores[anchors], MAX_NMS_CANDIDATES)[:MAX_NMS_CANDIDATES]
        anchors = anchors[top]
    best = class_scores[anchors].argmax(axis=1)
    classes = best if wanted is None else wanted[best]
    return anchors, scores[anchors].astype(np.float32), classes.astype(np.intp)


def _xywh_to_xyxy(xywh: FloatArray) -> FloatArray:
    half = xywh[:, 2:4] / 2
    return np.concatenate([xywh[:, :2] - half, xywh[:, :2] + half], axis=1).astype(np.float32)


@lru_cache(maxsize=8)
def _yolox_grid(
    input_w: int, input_h: int, strides: tuple[int, ...]
) -> tuple[FloatArray, FloatArray]:
    """Cell origins `(N, 2)` and strides `(N, 1)` in YOLOX's anchor order (row-major per level)."""
    grids, steps = [], []
    for stride in strides:
        cols, rows = input_w // stride, input_h // stride
        xs, ys = np.meshgrid(np.arange(cols), np.arange(rows))
        grids.append(np.stack([xs, ys], axis=2).reshape(-1, 2))
        steps.append(np.full((cols * rows, 1), stride))
    grid = np.concatenate(grids).astype(np.float32)
    step = np.concatenate(steps).astype(np.float32)
    grid.setflags(write=False)
    step.setflags(write=False)
    return grid, step


def _suppress(
    xyxy_px: FloatArray,
    scores: FloatArray,
    classes: IntArray,
    lb: Letterbox,
    iou: float,
    max_det: int,
) -> tuple[IntArray, FloatArray]:
    """Class-aware NMS, then boxes mapped to the source; drops boxes empty after clamping.

    Returns the indices kept (into the candidates) and their normalised boxes.
    """
    kept = nms(xyxy_px, scores, iou, classes, max_det)
    boxes = lb.to_source_norm(xyxy_px[kept])
    visible = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return kept[visible], boxes[visible]


def _to_detections(
    boxes_norm: FloatArray, scores: FloatArray, classes: IntArray, names: Sequence[str]
) -> list[Detection]:
    rows = zip(boxes_norm.tolist(), scores.tolist(), classes.tolist(), strict=True)
    return [
        Detection(
            label=names[class_id] if class_id < len(names) else str(class_id),
            class_id=class_id,
            score=score,
            box=(box[0], box[1], box[2], box[3]),
        )
        for box, score, class_id in rows
    ]


def _keypoints_to_source(points: FloatArray, lb: Letterbox) -> FloatArray:
    out = points.astype(np.float32, copy=True)
    out[:, 0] = (out[:, 0] - lb.pad_x) / (lb.scale * lb.src_w)
    out[:, 1] = (out[:, 1] - lb.pad_y) / (lb.scale * lb.src_h)
    return out
