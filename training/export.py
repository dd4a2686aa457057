"""Export a trained model to ONNX, check it with the edge's own detector, decide on INT8, and
register it (`zhizhi models export`).

The ONNX file has a fixed 1x3xSxS input, opset `OPSET`, no NMS inside, and Ultralytics' metadata
(`names`, `imgsz`, `stride`), which the edge reads the class names from.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge.analysis.detect.onnx import OnnxDetector
from edge.runtime.models import ModelSpec, file_sha256
from training.ultra import yolo

logger = logging.getLogger(__name__)

OPSET = 17
Image = npt.NDArray[np.uint8]


def export_onnx(weights: Path, imgsz: int, target: Path) -> Path:
    """Export `weights` (.pt) to ONNX at `imgsz` and move the file to `target`."""
    simplify = importlib.util.find_spec("onnxslim") is not None  # else ultralytics installs it
    exported = yolo(weights).export(
        format="onnx", imgsz=imgsz, opset=OPSET, simplify=simplify, dynamic=False, batch=1
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(exported), target)
    return target


def candidate_spec(
    name: str,
    version: str,
    path: Path,
    imgsz: int,
    *,
    base: str,
    metrics: dict[str, float],
    dataset_sha256: str | None,
) -> ModelSpec:
    return ModelSpec(
        name=name,
        version=version,
        file=path.name,
        sha256=file_sha256(path),
        layout="yolov8",
        input_wh=(imgsz, imgsz),
        licence="AGPL-3.0 (fine-tuned from Ultralytics weights)",
        source=f"zhizhi train from {base}",
        obtain="zhizhi models export (docs/training.md), or download from the server",
        trained_from=base,
        metrics=metrics,
        dataset_sha256=dataset_sha256,
    )


def verify_with_edge(spec: ModelSpec, path: Path, images: Sequence[Image]) -> OnnxDetector:
    """Load the file through the edge's `OnnxDetector` (sha256, shapes, names metadata, warm-up)
    and run it on `images`: what the edge will do, checked before anything ships.

    Raises:
        ModelIntegrityError: the file is not what the registry entry says.
    """
    detector = OnnxDetector.load(spec, min_score=0.25, path=path)
    for image in images:
        detector.detect(image)
    return detector


def median_latency_ms(detector: OnnxDetector, images: Sequence[Image], runs: int = 30) -> float:
    """Median wall time of `detect()` over `runs` calls cycling through `images`."""
    times = []
    for index in range(runs):
        started = time.perf_counter()
        detector.detect(images[index % len(images)])
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def sample_images(folder: Path, limit: int = 32) -> list[Image]:
    """Up to `limit` images of a dataset split (calibration and timing)."""
    images = []
    for path in sorted(folder.glob("*.jpg"))[:limit]:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is not None:
            images.append(image.astype(np.uint8))
    return images


@dataclass(frozen=True, slots=True)
class QuantDecision:
    use_int8: bool
    reasons: tuple[str, ...]


def decide_int8(
    float_ms: float,
    int8_ms: float,
    float_map50: float,
    int8_map50: float,
    *,
    min_speedup: float = 1.1,
    max_map_drop: float = 0.01,
) -> QuantDecision:
    """INT8 only when it is at least `min_speedup` times faster AND loses at most
    `max_map_drop` of mAP50 (absolute). Pure.

    >>> decide_int8(50.0, 30.0, 0.60, 0.595).use_int8
    True
    >>> decide_int8(50.0, 48.0, 0.60, 0.60).use_int8
    False
    """
    speedup = float_ms / int8_ms if int8_ms > 0 else 0.0
    drop = float_map50 - int8_map50
    fast = speedup >= min_speedup
    accurate = drop <= max_map_drop
    reasons = (
        f"speed: float {float_ms:.1f} ms, int8 {int8_ms:.1f} ms, x{speedup:.2f} "
        f"({'enough' if fast else 'not enough'}, need x{min_speedup:.2f})",
        f"accuracy: mAP50 float {float_map50:.4f}, int8 {int8_map50:.4f}, drop {drop:+.4f} "
        f"({'within' if accurate else 'beyond'} the margin {max_map_drop:.4f})",
    )
    return QuantDecision(fast and accurate, reasons)


class _Calibration:
    """onnxruntime's CalibrationDataReader over letterboxed dataset images."""

    def __init__(self, images: Sequence[Image], input_name: str, imgsz: int) -> None:
        from edge.analysis.detect.yolo import letterbox

        self._tensors: Iterator[dict[str, npt.NDArray[np.float32]]] = iter(
            [{input_name: letterbox(image, (imgsz, imgsz))[0]} for image in images]
        )

    def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
        return next(self._tensors, None)


COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})


def decode_nodes(graph: Any) -> list[str]:
    """Names of the nodes between the last compute layers (convolutions, matmuls) and the
    outputs of an ONNX graph: the head's decoding (box distances times strides, sigmoid class
    scores) ending in one tensor that mixes pixels (0..640) with scores (0..1). Quantised with
    one uint8 scale, every score rounds to 0, so these nodes stay in float."""
    producer = {output: node for node in graph.node for output in node.output}
    excluded: list[str] = []
    seen: set[str] = set()
    pending = [output.name for output in graph.output]
    while pending:
        node = producer.get(pending.pop())
        if node is None or node.name in seen or node.op_type in COMPUTE_OPS:
            continue
        seen.add(node.name)
        excluded.append(node.name)
        pending.extend(node.input)
    return excluded


def quantize_int8(float_path: Path, target: Path, images: Sequence[Image], imgsz: int) -> Path:
    """Static INT8 (QDQ, per-channel weights) calibrated on `images`, the head's decoding left
    in float (`decode_nodes`); the metadata (class names) is copied over, so the edge reads the
    file like the float one."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = target.with_name(target.stem + ".pre.onnx")
    quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
    input_name = onnx.load(str(float_path), load_external_data=False).graph.input[0].name
    quantize_static(
        str(prepared),
        str(target),
        _Calibration(images, input_name, imgsz),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=decode_nodes(onnx.load(str(prepared)).graph),
    )
    prepared.unlink(missing_ok=True)
    source = onnx.load(str(float_path))
    quantized = onnx.load(str(target))
    del quantized.metadata_props[:]
    quantized.metadata_props.extend(source.metadata_props)
    onnx.save(quantized, str(target))
    return target


@dataclass(frozen=True, slots=True)
class ExportResult:
    spec: ModelSpec
    path: Path
    lines: tuple[str, ...]


def export_and_register(
    run_dir: Path,
    name: str,
    version: str,
    model_dir: Path,
    registry: Path,
    *,
    imgsz: int | None = None,
    int8: str = "auto",
    min_speedup: float = 1.1,
    max_map_drop: float = 0.01,
) -> ExportResult:
    """Export the run's best weights, verify, optionally quantise, register in `registry`."""
    from edge.runtime.models import register_model
    from training.train import read_run

    run = read_run(run_dir)
    size = imgsz or int(run["params"]["imgsz"])
    data_yaml = Path(run["params"]["data"])
    val_images = sample_images(data_yaml.parent / "images" / "val") or sample_images(
        data_yaml.parent / "images" / "train"
    )
    if not val_images:
        raise ValueError(f"no images under {data_yaml.parent / 'images'} to verify the export on")
    float_path = export_onnx(Path(run["best"]), size, model_dir / f"{name}-{version}.onnx")
    base = Path(run["params"]["base"]).name
    metrics = dict(run.get("metrics", {}))
    common = {"base": base, "metrics": metrics, "dataset_sha256": run["dataset_manifest_sha256"]}
    spec = candidate_spec(name, version, float_path, size, **common)
    detector = verify_with_edge(spec, float_path, val_images[:4])
    lines = [f"exported {float_path} (sha256 {spec.sha256[:12]}), verified with OnnxDetector"]
    chosen = (spec, float_path)
    if int8 != "never":
        int8_path = quantize_int8(
            float_path, model_dir / f"{name}-{version}-int8.onnx", val_images, size
        )
        int8_spec = candidate_spec(name, version, int8_path, size, **common)
        int8_detector = verify_with_edge(int8_spec, int8_path, val_images[:4])
        float_ms = median_latency_ms(detector, val_images)
        int8_ms = median_latency_ms(int8_detector, val_images)
        float_map = _onnx_map50(float_path, data_yaml, size)
        int8_map = _onnx_map50(int8_path, data_yaml, size)
        decision = decide_int8(
            float_ms,
            int8_ms,
            float_map,
            int8_map,
            min_speedup=min_speedup,
            max_map_drop=max_map_drop,
        )
        use = decision.use_int8 or int8 == "always"
        lines += [f"int8: {reason}" for reason in decision.reasons]
        lines.append(f"int8: {'using' if use else 'not using'} the INT8 file")
        metrics_int8 = {**metrics, "onnx_map50": round(int8_map, 4), "cpu_ms": round(int8_ms, 1)}
        metrics_float = {**metrics, "onnx_map50": round(float_map, 4), "cpu_ms": round(float_ms, 1)}
        if use:
            chosen = (int8_spec.model_copy(update={"metrics": metrics_int8}), int8_path)
        else:
            chosen = (spec.model_copy(update={"metrics": metrics_float}), float_path)
            int8_path.unlink(missing_ok=True)
    register_model(chosen[0], registry)
    lines.append(f"registered {name} {version} in {registry}")
    return ExportResult(chosen[0], chosen[1], tuple(lines))


def _onnx_map50(path: Path, data_yaml: Path, imgsz: int) -> float:
    metrics = yolo(path).val(
        data=str(data_yaml), imgsz=imgsz, batch=1, device="cpu", plots=False, verbose=False
    )
    return float(metrics.box.map50)
