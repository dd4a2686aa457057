"""`zhizhi bench int8`: is the INT8 file of a registry model faster on this CPU, and as accurate?

Frames are sampled from real clips, spread evenly over each clip. The clips are split in two
(alternately, by name), so the calibration frames come from other clips than the evaluation
frames: a frame is never on both sides.

- The float model is quantised with `training.export.quantize_int8` on the calibration frames.
- Latency: `detect()` of the edge's own `OnnxDetector` (letterbox, onnxruntime, decode, NMS) on
  the evaluation frames, with onnxruntime on ONE intra-op thread (the per-camera CPU budget of
  an edge box) and with its default threads; the float and INT8 models take turns in several
  rounds so a change of load on the machine hits both; the median of the rounds' medians.
- Accuracy: mAP50 of each model against reference labels drawn by a stronger teacher
  (Ultralytics at a larger image size) on the evaluation frames, restricted to the classes the
  project judges, and the agreement of INT8 with float (mAP50 of INT8 taking float's
  detections as the reference).

Then `decide_int8` decides on the one-thread figures. Ultralytics (torch) is imported lazily,
only for the teacher.
"""

from __future__ import annotations

import platform
import statistics
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from edge.types import Detection, box_iou

if TYPE_CHECKING:
    from edge.analysis.detect.onnx import OnnxDetector

Image = npt.NDArray[np.uint8]

TARGET_CLASSES: tuple[str, ...] = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "bus",
    "truck",
    "backpack",
    "handbag",
    "suitcase",
)
"""The COCO classes the project's rules judge: people, vehicles, objects left behind."""

IOU_MATCH = 0.5
EVAL_MIN_SCORE = 0.001
"""Score floor of the models under test for mAP (the whole precision-recall curve, as `val`)."""
EDGE_MIN_SCORE = 0.25
"""Score floor for timing and for the float reference of the agreement figure (the edge's)."""


# --- pure parts -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MapResult:
    map50: float
    per_class: dict[str, float]  # AP50 of each class with at least one reference box
    references: dict[str, int]  # reference boxes per class


def average_precision(recall: Sequence[float], precision: Sequence[float]) -> float:
    """Area under a precision-recall curve, COCO style: precision made monotone from the right,
    sampled at 101 recall points. Pure.

    >>> average_precision([0.5, 1.0], [1.0, 0.5])
    0.7524752475247525
    """
    if not recall:
        return 0.0
    envelope = np.maximum.accumulate(np.asarray(precision, dtype=np.float64)[::-1])[::-1]
    recalls = np.asarray(recall, dtype=np.float64)
    points = np.linspace(0.0, 1.0, 101)
    where = np.searchsorted(recalls, points, side="left")
    sampled = [float(envelope[i]) if i < len(envelope) else 0.0 for i in where]
    return float(np.mean(sampled))


def map50(
    predictions: Sequence[Sequence[Detection]],
    references: Sequence[Sequence[Detection]],
    iou: float = IOU_MATCH,
) -> MapResult:
    """mAP at IoU `iou` of `predictions` against `references`, one list per image. Pure.

    Per class, predictions are taken best score first; each matches the unmatched reference of
    its class on its image that it overlaps most, if by at least `iou`. Classes with no reference
    box are left out of the mean (as COCO and Ultralytics do); no reference at all gives 0.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} prediction lists for {len(references)} images")
    counts: dict[str, int] = {}
    for image_refs in references:
        for ref in image_refs:
            counts[ref.label] = counts.get(ref.label, 0) + 1
    per_class = {
        label: _class_ap(label, total, predictions, references, iou)
        for label, total in sorted(counts.items())
    }
    mean = float(np.mean(list(per_class.values()))) if per_class else 0.0
    return MapResult(mean, per_class, dict(sorted(counts.items())))


def _class_ap(
    label: str,
    total: int,
    predictions: Sequence[Sequence[Detection]],
    references: Sequence[Sequence[Detection]],
    iou: float,
) -> float:
    ranked = sorted(
        (
            (det.score, image, det)
            for image, dets in enumerate(predictions)
            for det in dets
            if det.label == label
        ),
        key=lambda item: -item[0],
    )
    taken: dict[int, set[int]] = {}
    hits = 0
    recall: list[float] = []
    precision: list[float] = []
    for rank, (_, image, det) in enumerate(ranked, start=1):
        used = taken.setdefault(image, set())
        best, best_iou = -1, iou
        for index, ref in enumerate(references[image]):
            if ref.label != label or index in used:
                continue
            overlap = box_iou(det.box, ref.box)
            if overlap >= best_iou:
                best, best_iou = index, overlap
        if best >= 0:
            used.add(best)
            hits += 1
        recall.append(hits / total)
        precision.append(hits / rank)
    return average_precision(recall, precision)


def spread_indices(total: int, count: int) -> list[int]:
    """`count` frame indices spread evenly over `total` frames (centred in equal slices), all
    of them when there are fewer. Pure.

    >>> spread_indices(10, 2)
    [2, 7]
    """
    if count <= 0 or total <= 0:
        return []
    if count >= total:
        return list(range(total))
    return [int((slot + 0.5) * total / count) for slot in range(count)]


def share_out(count: int, parts: int) -> list[int]:
    """`count` split over `parts` as evenly as possible, the first parts taking the remainder.

    >>> share_out(10, 3)
    [4, 3, 3]
    """
    if parts <= 0:
        return []
    base, extra = divmod(count, parts)
    return [base + (1 if part < extra else 0) for part in range(parts)]


def split_clips(clips: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """(calibration clips, evaluation clips): sorted by name, every second one calibrates, so
    no clip gives frames to both sides. Pure.

    Raises:
        ValueError: fewer than two clips.
    """
    ordered = sorted(set(clips), key=lambda path: (path.name, str(path)))
    if len(ordered) < 2:
        raise ValueError("give at least two clips: calibration and evaluation use different clips")
    return ordered[1::2], ordered[0::2]


# --- measuring --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Int8Bench:
    model: str
    teacher: str
    teacher_imgsz: int
    calibration_clips: int
    calibration_frames: int
    evaluation_clips: int
    evaluation_frames: int
    float_mb: float
    int8_mb: float
    float_ms_1: float
    int8_ms_1: float
    float_ms_default: float
    int8_ms_default: float
    float_map: MapResult
    int8_map: MapResult
    agreement_map50: float
    use_int8: bool
    reasons: tuple[str, ...]
    onnxruntime: str

    def markdown(self) -> str:
        speed_1 = self.float_ms_1 / self.int8_ms_1 if self.int8_ms_1 else 0.0
        speed_d = self.float_ms_default / self.int8_ms_default if self.int8_ms_default else 0.0
        refs = ", ".join(f"{name} {count}" for name, count in self.float_map.references.items())
        lines = [
            f"Model {self.model}; calibration: {self.calibration_frames} frames from "
            f"{self.calibration_clips} clips; evaluation: {self.evaluation_frames} frames from "
            f"{self.evaluation_clips} other clips; reference labels: {self.teacher} at imgsz "
            f"{self.teacher_imgsz} ({refs}).",
            "",
            "| | float | INT8 | INT8 speed-up |",
            "|---|---|---|---|",
            f"| file | {self.float_mb:.1f} MB | {self.int8_mb:.1f} MB | |",
            f"| detect(), 1 onnxruntime thread (median) | {self.float_ms_1:.1f} ms | "
            f"{self.int8_ms_1:.1f} ms | x{speed_1:.2f} |",
            f"| detect(), default threads (median) | {self.float_ms_default:.1f} ms | "
            f"{self.int8_ms_default:.1f} ms | x{speed_d:.2f} |",
            f"| mAP50 vs reference labels | {self.float_map.map50:.4f} | "
            f"{self.int8_map.map50:.4f} | |",
            f"| INT8 agreement with float (mAP50, float at score ≥ {EDGE_MIN_SCORE}) | | "
            f"{self.agreement_map50:.4f} | |",
        ]
        per_class = [
            f"| AP50 {name} | {ap:.4f} | {self.int8_map.per_class.get(name, 0.0):.4f} | |"
            for name, ap in self.float_map.per_class.items()
        ]
        decision = "use the INT8 file" if self.use_int8 else "keep the float file"
        tail = ["", f"Decision (`decide_int8`, one-thread figures): **{decision}**."]
        tail += [f"- {reason}" for reason in self.reasons]
        return "\n".join(lines + per_class + tail)

    def append_to(self, path: Path, command: str, load: str) -> None:
        when = datetime.now(UTC).strftime("%Y-%m-%d")
        block = (
            f"\n### INT8 vs float, {self.model} ({when}, {platform.machine()}, "
            f"onnxruntime {self.onnxruntime}; load average {load})\n\n"
            f"```\nzhizhi {command}\n```\n\n{self.markdown()}\n"
        )
        with path.open("a", encoding="utf-8") as stream:
            stream.write(block)


def sample_clip_frames(clips: Sequence[Path], count: int) -> list[Image]:
    """`count` frames spread over `clips` (shared out evenly, spread evenly inside each)."""
    from edge.capture.sources import open_video_file

    images: list[Image] = []
    for clip, wanted in zip(clips, share_out(count, len(clips)), strict=True):
        with open_video_file(clip) as video:
            total = video.frame_count
            if total is None:
                total = sum(1 for _ in video)
        keep = set(spread_indices(total, wanted))
        with open_video_file(clip) as video:
            for frame in video:
                if frame.index in keep:
                    images.append(frame.image)
                if frame.index >= max(keep, default=-1):
                    break
    return images


def teacher_labels(
    weights: Path, images: Sequence[Image], imgsz: int, min_score: float
) -> list[list[Detection]]:
    """Reference boxes of the `TARGET_CLASSES` drawn by an Ultralytics model (torch, lazily)."""
    from training.ultra import yolo

    teacher = yolo(weights)
    names: dict[int, str] = {int(key): str(value) for key, value in teacher.names.items()}
    ids = [index for index, name in names.items() if name in TARGET_CLASSES]
    labels: list[list[Detection]] = []
    for image in images:
        result = teacher.predict(
            image, imgsz=imgsz, conf=min_score, classes=ids, device="cpu", verbose=False
        )[0]
        boxes = result.boxes
        labels.append(
            [
                Detection(
                    label=names[int(cls)],
                    class_id=int(cls),
                    score=float(conf),
                    box=(float(xyxy[0]), float(xyxy[1]), float(xyxy[2]), float(xyxy[3])),
                )
                for xyxy, cls, conf in zip(
                    boxes.xyxyn.tolist(), boxes.cls.tolist(), boxes.conf.tolist(), strict=True
                )
            ]
        )
    return labels


def _interleaved_latency(
    detectors: Mapping[str, OnnxDetector], images: Sequence[Image], runs: int, rounds: int
) -> dict[str, float]:
    """Median over `rounds` of each detector's median `detect()` time, the detectors taking
    turns round by round."""
    from training.export import median_latency_ms

    medians: dict[str, list[float]] = {key: [] for key in detectors}
    per_round = max(1, runs // rounds)
    for _ in range(rounds):
        for key, detector in detectors.items():
            medians[key].append(median_latency_ms(detector, images, per_round))
    return {key: statistics.median(values) for key, values in medians.items()}


def _detect_all(detector: OnnxDetector, images: Iterable[Image]) -> list[list[Detection]]:
    return [detector.detect(image) for image in images]


def bench_int8(
    model: str,
    clips: Sequence[Path],
    teacher: Path,
    *,
    eval_frames: int = 64,
    calib_frames: int = 32,
    teacher_imgsz: int = 1280,
    teacher_min_score: float = 0.25,
    runs: int = 60,
    rounds: int = 3,
    min_speedup: float = 1.1,
    max_map_drop: float = 0.01,
) -> Int8Bench:
    """Quantise registry model `model`, time and score float and INT8; see the module doc."""
    import onnxruntime as ort

    from edge.analysis.detect.onnx import OnnxDetector
    from edge.runtime.models import file_sha256, load_registry, resolve_model_path
    from training.export import decide_int8, quantize_int8

    spec = load_registry()[model]
    float_path = resolve_model_path(spec)
    calib_clips, eval_clips = split_clips(clips)
    calibration = sample_clip_frames(calib_clips, calib_frames)
    evaluation = sample_clip_frames(eval_clips, eval_frames)
    if not calibration or not evaluation:
        raise ValueError("no frames could be read from the clips")
    imgsz = spec.input_wh[0]
    if spec.input_wh[0] != spec.input_wh[1]:
        raise ValueError(f"model {model}: quantize_int8 calibrates square inputs only")
    with tempfile.TemporaryDirectory(prefix="zhizhi-int8-") as folder:
        int8_path = quantize_int8(
            float_path, Path(folder) / f"{model}-int8.onnx", calibration, imgsz
        )
        int8_spec = spec.model_copy(
            update={
                "name": f"{model}-int8",
                "file": int8_path.name,
                "sha256": file_sha256(int8_path),
            }
        )
        files = {"float": (spec, float_path), "int8": (int8_spec, int8_path)}
        timed = {
            f"{kind}-{threads or 'default'}": OnnxDetector.load(
                s, EDGE_MIN_SCORE, classes=TARGET_CLASSES, intra_op_threads=threads, path=p
            )
            for threads in (1, None)
            for kind, (s, p) in files.items()
        }
        latency = _interleaved_latency(timed, evaluation, runs, rounds)
        scored = {
            kind: OnnxDetector.load(s, EVAL_MIN_SCORE, classes=TARGET_CLASSES, path=p)
            for kind, (s, p) in files.items()
        }
        float_dets = _detect_all(scored["float"], evaluation)
        int8_dets = _detect_all(scored["int8"], evaluation)
        int8_mb = int8_path.stat().st_size / 1e6
    references = teacher_labels(teacher, evaluation, teacher_imgsz, teacher_min_score)
    float_map = map50(float_dets, references)
    int8_map = map50(int8_dets, references)
    float_at_edge = [[d for d in dets if d.score >= EDGE_MIN_SCORE] for dets in float_dets]
    agreement = map50(int8_dets, float_at_edge).map50
    decision = decide_int8(
        latency["float-1"],
        latency["int8-1"],
        float_map.map50,
        int8_map.map50,
        min_speedup=min_speedup,
        max_map_drop=max_map_drop,
    )
    return Int8Bench(
        model=model,
        teacher=teacher.name,
        teacher_imgsz=teacher_imgsz,
        calibration_clips=len(calib_clips),
        calibration_frames=len(calibration),
        evaluation_clips=len(eval_clips),
        evaluation_frames=len(evaluation),
        float_mb=float_path.stat().st_size / 1e6,
        int8_mb=int8_mb,
        float_ms_1=latency["float-1"],
        int8_ms_1=latency["int8-1"],
        float_ms_default=latency["float-default"],
        int8_ms_default=latency["int8-default"],
        float_map=float_map,
        int8_map=int8_map,
        agreement_map50=agreement,
        use_int8=decision.use_int8,
        reasons=decision.reasons,
        onnxruntime=ort.__version__,
    )


VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".ts"})


def video_files(paths: Iterable[Path]) -> list[Path]:
    """The given clips, folders replaced by the video files directly inside them."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        else:
            found.append(path)
    return found
