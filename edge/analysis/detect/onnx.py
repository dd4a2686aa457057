"""ONNX Runtime detector: loads a registered, checksum-verified model and runs it on frames."""

from __future__ import annotations

import ast
import logging
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from common.events import ModelInfo
from edge.analysis.detect.yolo import (
    MAX_DETECTIONS,
    Letterbox,
    PoseDetection,
    decode_yolov8,
    decode_yolov8_pose,
    decode_yolox,
    letterbox,
    to_tensor,
)
from edge.errors import ModelIntegrityError
from edge.runtime.models import ONNX_METADATA, ModelSpec, resolve_model_path, verify_model_file
from edge.types import Detection

logger = logging.getLogger(__name__)

PREFERRED_PROVIDERS = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "OpenVINOExecutionProvider",
    "CoreMLExecutionProvider",
    "CPUExecutionProvider",
)


def select_providers(requested: Sequence[str], available: Sequence[str]) -> list[str]:
    """Execution providers to ask onnxruntime for, best first.

    With nothing requested: every installed provider of `PREFERRED_PROVIDERS`, in that order.
    Otherwise the requested ones that are installed (a warning names the others), falling back
    to the preference order when none is. The CPU provider always closes the list.
    """
    if requested:
        missing = [name for name in requested if name not in available]
        if missing:
            logger.warning(
                "Execution providers %s are not available (installed: %s)",
                ", ".join(missing),
                ", ".join(available),
            )
        chosen = [name for name in requested if name in available]
    else:
        chosen = []
    if not chosen:
        chosen = [name for name in PREFERRED_PROVIDERS if name in available]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def parse_names_metadata(text: str) -> list[str]:
    """Class names from Ultralytics' `names` metadata, e.g. `"{0: 'person', 1: 'bicycle'}"`.

    Ids missing from the dict get their number as name, so list index == class id.
    """
    value = ast.literal_eval(text)
    if isinstance(value, list | tuple):
        return [str(name) for name in value]
    if not isinstance(value, dict) or not value:
        raise ValueError(f"names metadata must be a dict of id to name, got {text[:80]!r}")
    names = {int(key): str(name) for key, name in value.items()}
    return [names.get(index, str(index)) for index in range(max(names) + 1)]


class OnnxModel:
    """One opened ONNX session of a registered model: what every model kind tells about it."""

    _session: Any
    _spec: ModelSpec
    _info: ModelInfo

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def spec(self) -> ModelSpec:
        return self._spec

    @property
    def input_wh(self) -> tuple[int, int]:
        return self._spec.input_wh

    @property
    def providers(self) -> list[str]:
        """The execution providers the session actually uses, best first."""
        return list(self._session.get_providers())

    @property
    def batchable(self) -> bool:
        """True when the file takes several images in one run (a dynamic batch dimension)."""
        first = self._session.get_inputs()[0].shape[0]
        return not isinstance(first, int) or first > 1


class OnnxDetector(OnnxModel):
    """Runs one registered YOLO-family ONNX model; implements
    `edge.analysis.detect.base.Detector`."""

    def __init__(
        self,
        session: Any,
        spec: ModelSpec,
        names: Sequence[str],
        *,
        min_score: float = 0.25,
        iou: float = 0.5,
        class_ids: Collection[int] | None = None,
        max_det: int = MAX_DETECTIONS,
    ) -> None:
        self._session = session
        self._spec = spec
        self._names = tuple(names)
        self._input_name: str = session.get_inputs()[0].name
        self.min_score = min_score
        self.iou = iou
        self.class_ids = None if class_ids is None else frozenset(class_ids)
        self.max_det = max_det
        self._info = ModelInfo(name=spec.name, version=spec.version, sha256=spec.sha256)

    @classmethod
    def load(
        cls,
        spec: ModelSpec,
        min_score: float = 0.25,
        iou: float = 0.5,
        providers: Sequence[str] = (),
        *,
        classes: Collection[str] | None = None,
        intra_op_threads: int | None = None,
        path: Path | None = None,
        spinning: bool = True,
    ) -> Self:
        """Find, verify and open the model file, then warm it up with one blank frame.

        Args:
            spec: the registry entry.
            min_score: detections scoring below this are dropped.
            iou: NMS overlap threshold, per class.
            providers: onnxruntime execution providers in order of preference; empty: the
                best installed (TensorRT, CUDA, OpenVINO, CoreML, CPU).
            classes: class names to keep (e.g. `{"car", "truck"}`); None keeps all.
            intra_op_threads: threads for one inference; None leaves onnxruntime's default.
            spinning: let idle inference threads spin for the next run (fast when the cores are
                otherwise idle; on a busy box it only burns the other processes' time).
            path: the ONNX file; None searches with `resolve_model_path(spec)`.

        Raises:
            ModelNotFoundError: the file is in none of the model folders.
            ModelIntegrityError: its sha256, input size or class count is not the registered one.
            ValueError: `classes` names a class the model does not have.
        """
        started = time.perf_counter()
        model_path = path if path is not None else resolve_model_path(spec)
        verify_model_file(spec, model_path)
        session = _open_session(model_path, providers, intra_op_threads, spinning)
        names = _class_names(spec, session)
        _check_shapes(spec, session, names, model_path)
        class_ids = None if classes is None else _class_ids(classes, names, spec.name)
        detector = cls(session, spec, names, min_score=min_score, iou=iou, class_ids=class_ids)
        detector.detect(np.zeros((spec.input_wh[1], spec.input_wh[0], 3), np.uint8))
        logger.info(
            "Loaded model %s from %s on %s in %.0f ms",
            spec.name,
            model_path,
            ", ".join(detector.providers),
            (time.perf_counter() - started) * 1000,
        )
        return detector

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def infer(self, image_bgr: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.float32], Letterbox]:
        """Letterbox and run the network; the raw output and the `Letterbox` used."""
        tensor, box = letterbox(image_bgr, self._spec.input_wh, self._spec.layout)
        output = self._session.run(None, {self._input_name: tensor})[0]
        return np.asarray(output, dtype=np.float32), box

    def run_letterboxed(self, images: npt.NDArray[np.uint8]) -> list[npt.NDArray[np.float32]]:
        """Raw outputs for `(B, H, W, 3)` images already letterboxed to the input size (by
        `letterbox_image`): one run when the model is `batchable`, else one run each."""
        tensor = to_tensor(images, self._spec.layout)
        if len(images) > 1 and self.batchable:
            output = np.asarray(self._session.run(None, {self._input_name: tensor})[0])
            return [output[i : i + 1].astype(np.float32, copy=False) for i in range(len(images))]
        return [
            np.asarray(
                self._session.run(None, {self._input_name: tensor[i : i + 1]})[0], np.float32
            )
            for i in range(len(images))
        ]

    def decode(self, output: npt.NDArray[np.float32], box: Letterbox) -> list[Detection]:
        """Detections from one raw output, boxes normalised to the image `box` was made from."""
        args = (self._names, self.min_score, self.iou, self.class_ids, self.max_det)
        if self._spec.layout == "yolox":
            return decode_yolox(output, box, *args)
        return decode_yolov8(output, box, *args)

    def decode_pose(self, output: npt.NDArray[np.float32], box: Letterbox) -> list[PoseDetection]:
        """People with keypoints from one raw output of a `yolov8-pose` model."""
        if self._spec.layout != "yolov8-pose":
            raise ValueError(f"model {self._spec.name} is not a pose model")
        return decode_yolov8_pose(
            output, box, self._names, self._spec.keypoints, self.min_score, self.iou, self.max_det
        )

    def detect(self, image_bgr: npt.NDArray[np.uint8]) -> list[Detection]:
        """Detections in `image_bgr` (BGR HxWx3 uint8), boxes normalised to it, best first."""
        output, box = self.infer(image_bgr)
        return self.decode(output, box)

    def detect_pose(self, image_bgr: npt.NDArray[np.uint8]) -> list[PoseDetection]:
        """People with keypoints; only for models registered with layout `yolov8-pose`."""
        if self._spec.layout != "yolov8-pose":
            raise ValueError(f"model {self._spec.name} is not a pose model")
        output, box = self.infer(image_bgr)
        return self.decode_pose(output, box)


def _open_session(
    path: Path, requested: Sequence[str], intra_op_threads: int | None, spinning: bool = True
) -> Any:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if intra_op_threads is not None:
        options.intra_op_num_threads = intra_op_threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    chosen = select_providers(requested, ort.get_available_providers())
    providers = [(name, _provider_options(name)) for name in chosen]
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as error:  # onnxruntime raises its own untyped Fail/InvalidGraph errors
        raise ModelIntegrityError(f"onnxruntime cannot load {path}: {error}") from error


def _provider_options(name: str) -> dict[str, str]:
    """TensorRT keeps its built engines on disk, so only the first start pays for the build."""
    if name != "TensorrtExecutionProvider":
        return {}
    cache = Path.home() / ".cache" / "zhizhi" / "tensorrt"
    cache.mkdir(parents=True, exist_ok=True)
    return {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache)}


def _class_names(spec: ModelSpec, session: Any) -> list[str]:
    if spec.labels != ONNX_METADATA:
        return list(spec.labels)
    text = session.get_modelmeta().custom_metadata_map.get("names")
    if not text:
        raise ModelIntegrityError(
            f"model {spec.name}: the ONNX file has no 'names' metadata; list labels in the registry"
        )
    try:
        return parse_names_metadata(text)
    except (ValueError, SyntaxError) as error:
        raise ModelIntegrityError(
            f"model {spec.name}: unreadable 'names' metadata: {error}"
        ) from error


def _check_shapes(spec: ModelSpec, session: Any, names: Sequence[str], path: Path) -> None:
    """Refuse a file whose static input size or output width disagrees with the registry."""
    input_shape = session.get_inputs()[0].shape
    if all(isinstance(dim, int) for dim in input_shape[2:4]):
        file_wh = (input_shape[3], input_shape[2])
        if file_wh != spec.input_wh:
            raise ModelIntegrityError(
                f"model {spec.name}: {path} takes {file_wh[0]}x{file_wh[1]} input, "
                f"the registry says {spec.input_wh[0]}x{spec.input_wh[1]}"
            )
    output_shape = session.get_outputs()[0].shape
    if spec.layout == "yolox":
        actual, expected = output_shape[-1], 5 + len(names)
    else:
        actual, expected = output_shape[1], 4 + len(names) + 3 * spec.keypoints
    if isinstance(actual, int) and actual != expected:
        raise ModelIntegrityError(
            f"model {spec.name}: {path} outputs {actual} values per box, but {len(names)} "
            f"classes and {spec.keypoints} keypoints with layout {spec.layout} need {expected}"
        )


def _class_ids(classes: Collection[str], names: Sequence[str], model: str) -> set[int]:
    unknown = sorted(set(classes) - set(names))
    if unknown:
        raise ValueError(f"model {model} has no classes {unknown}; it knows {list(names)}")
    return {index for index, name in enumerate(names) if name in classes}
