"""`zhizhi bench privacy`: what redacting one evidence file costs, on one core.

Measured on real frames of a clip, scaled to the sizes evidence comes in: a 1920x1080 and a
1280x720 snapshot, a 320x240 one (a fall room's camera, as the shared fall clips), and 10 s
clips at 10 frames per second at 1280x720 and 320x240 (frames taken every 0.1 s of the clip,
the clip replayed from its start when it is shorter). Two privacy masks cover a fifth of the
frame (`BENCH_MASKS`). OpenCV and onnxruntime are held to one thread each, so the figures are
what one core of the edge box spends.

Faces come from the face detector (CenterFace, shown each frame turned four ways and, above its
input size, in tiles: `plan_views`) and the pose model's keypoints, as the edge runs them; the
pose model alone (the edge before issue 19) is measured beside it for scale.

- snapshot: masks alone in each style; faces by the pose model alone; faces by the detector
  and the pose model (the edge's default); both with masks; one face-model run; the JPEG
  encoding the snapshot needs anyway, for scale. Medians of `repeat` runs.
- clip: masks alone; masks and faces with the finder every `clip_face_every_s` (the default)
  and on the frames between where two samples disagree; per clip and per second of clip.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime

from common.config import CameraConfig
from edge.analysis.detect.centerface import CenterFaceDetector
from edge.analysis.detect.onnx import OnnxDetector
from edge.analysis.faces import DEFAULT_FACE_MODEL, FACE_IOU, FACE_MIN_SCORE
from edge.analysis.pose import DEFAULT_POSE_MODEL, POSE_MIN_SCORE
from edge.capture.sources import open_video_file
from edge.evidence.faces import plan_views
from edge.evidence.privacy import MaskStyle, RedactionRecord, Redactor
from edge.evidence.store import encode_jpeg
from edge.runtime.models import load_registry

Image = npt.NDArray[np.uint8]
SNAPSHOT_SIZES = ((1920, 1080), (1280, 720), (320, 240))
CLIP_SIZES = ((1280, 720), (320, 240))
CLIP_FPS = 10.0
CLIP_S = 10.0
STYLES: tuple[MaskStyle, ...] = ("black", "blur", "pixelate")
BENCH_MASKS = [  # two windows of a facade: about 20 % of the frame
    [(0.05, 0.05), (0.30, 0.05), (0.30, 0.40), (0.05, 0.40)],
    [(0.62, 0.08), (0.92, 0.04), (0.95, 0.40), (0.65, 0.42)],
]


@dataclass(frozen=True, slots=True)
class ClipCost:
    seconds: dict[str, float]  # what -> seconds per 10 s clip
    faces: int  # the most heads blurred in one frame
    searched: int  # frames the face finders ran on


@dataclass(frozen=True, slots=True)
class PrivacyBench:
    clip: str
    pose_model: str
    face_model: str
    face_run_ms: float  # one face-model run (one view), median
    snapshot_ms: dict[tuple[int, int], dict[str, float]]  # frame size -> what -> median ms
    snapshot_views: dict[tuple[int, int], int]
    snapshot_faces: dict[tuple[int, int], str]  # heads blurred by method
    clip_cost: dict[tuple[int, int], ClipCost]

    def markdown(self) -> str:
        first = next(iter(self.snapshot_ms.values()))
        lines = [
            "| snapshot, ms | views | " + " | ".join(first) + " | heads blurred |",
            "|---|---|" + "---|" * len(first) + "---|",
        ]
        for size, row in self.snapshot_ms.items():
            values = " | ".join(f"{value:.1f}" for value in row.values())
            lines.append(
                f"| {size[0]}x{size[1]} | {self.snapshot_views[size]} | {values} | "
                f"{self.snapshot_faces[size]} |"
            )
        lines += [
            "",
            f"One face-model run ({self.face_model}, one view): {self.face_run_ms:.1f} ms.",
            "",
        ]
        names = list(next(iter(self.clip_cost.values())).seconds)
        lines += [
            "| 10 s clip, 100 frames, s | " + " | ".join(names) + " | per second of clip |",
            "|---|" + "---|" * len(names) + "---|",
        ]
        for size, cost in self.clip_cost.items():
            values = " | ".join(f"{value:.2f}" for value in cost.seconds.values())
            per_second = list(cost.seconds.values())[-1] / CLIP_S
            lines.append(
                f"| {size[0]}x{size[1]} (up to {cost.faces} heads a frame; finders on "
                f"{cost.searched} frames) | {values} | {per_second:.2f} |"
            )
        return "\n".join(lines) + "\n"

    def append_to(self, path: Path, command: str) -> None:
        when = datetime.now(UTC).strftime("%Y-%m-%d")
        machine = f"{platform.machine()}, one core, onnxruntime {onnxruntime.__version__}"
        block = (
            f"\n### privacy redaction per evidence file ({when}, {machine}, "
            f"{self.face_model} + {self.pose_model}, {self.clip})\n\n```\nzhizhi {command}\n"
            f"```\n\n{self.markdown()}"
        )
        with path.open("a", encoding="utf-8") as stream:
            stream.write(block)


def _clip_frames(clip: Path, size: tuple[int, int]) -> list[Image]:
    """100 frames, one every 0.1 s of the clip (replayed from the start when shorter)."""
    wanted = round(CLIP_S * CLIP_FPS)
    out: list[Image] = []
    while len(out) < wanted:
        before = len(out)
        next_s = 0.0
        with open_video_file(clip) as video:
            for frame in video:
                if frame.pts_s + 1e-6 >= next_s:
                    resized = cv2.resize(frame.image, size, interpolation=cv2.INTER_AREA)
                    out.append(np.asarray(resized, np.uint8))
                    next_s += 1.0 / CLIP_FPS
                    if len(out) == wanted:
                        break
        if len(out) == before:
            raise ValueError(f"{clip} has no frames")
    return out


def _median_ms(run: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _seconds(run: Callable[[], Any]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def _redactor(
    style: MaskStyle,
    masks: Sequence[Any],
    pose: OnnxDetector | None = None,
    faces: CenterFaceDetector | None = None,
) -> Redactor:
    privacy: dict[str, Any] = {"mask_style": style}
    if faces is None:
        privacy["face_detector"] = None
    camera = CameraConfig.model_validate(
        {"id": "bench", "source": "bench", "privacy_masks": masks, "privacy": privacy}
    )
    return Redactor.for_camera(camera, pose, faces)


def _by_method(record: RedactionRecord) -> str:
    counts = record.as_details()["faces"].get("by_method", {})
    return ", ".join(f"{method} {count}" for method, count in counts.items()) or "none"


def bench_privacy(
    clip: Path,
    model: str = DEFAULT_POSE_MODEL,
    repeat: int = 7,
    face_model: str = DEFAULT_FACE_MODEL,
) -> PrivacyBench:
    cv2.setNumThreads(1)
    registry = load_registry()
    pose = OnnxDetector.load(registry[model], min_score=POSE_MIN_SCORE, intra_op_threads=1)
    faces = CenterFaceDetector.load(
        registry[face_model], FACE_MIN_SCORE, FACE_IOU, intra_op_threads=1
    )
    view = np.zeros((faces.input_wh[1], faces.input_wh[0], 3), np.uint8)
    face_run_ms = _median_ms(lambda: faces.detect_faces([view]), repeat)
    clip_frames = {size: _clip_frames(clip, size) for size in CLIP_SIZES}
    base = clip_frames[CLIP_SIZES[0]][len(clip_frames[CLIP_SIZES[0]]) // 2]  # scaled up to 1080p
    pose_only = _redactor("black", [], pose)
    detector_and_pose = _redactor("black", [], pose, faces)
    both = _redactor("blur", BENCH_MASKS, pose, faces)
    snapshot_ms: dict[tuple[int, int], dict[str, float]] = {}
    views: dict[tuple[int, int], int] = {}
    found: dict[tuple[int, int], str] = {}
    for size in SNAPSHOT_SIZES:
        snapshot = np.asarray(cv2.resize(base, size, interpolation=cv2.INTER_LINEAR), np.uint8)
        row: dict[str, float] = {}
        for style in STYLES:
            row[f"masks {style}"] = _median_ms(
                partial(_redactor(style, BENCH_MASKS).mask, snapshot), repeat
            )
        row["faces, pose only"] = _median_ms(partial(pose_only.image, snapshot), repeat)
        row["faces, detector + pose"] = _median_ms(
            partial(detector_and_pose.image, snapshot), repeat
        )
        row["masks blur + faces"] = _median_ms(partial(both.image, snapshot), repeat)
        row["JPEG encode (for scale)"] = _median_ms(partial(encode_jpeg, snapshot), repeat)
        snapshot_ms[size] = row
        views[size] = len(plan_views(size, faces.input_wh, both.options.face_rotations))
        found[size] = _by_method(both.image(snapshot)[1])
    times = [i / CLIP_FPS for i in range(round(CLIP_S * CLIP_FPS))]
    masked = _redactor("blur", BENCH_MASKS)
    clip_cost: dict[tuple[int, int], ClipCost] = {}
    for size in CLIP_SIZES:
        frames = clip_frames[size]
        masking = _seconds(partial(masked.frames, frames, pts_s=times))
        started = time.perf_counter()
        _, record = both.frames(frames, pts_s=times)
        seconds = {
            "masks blur": masking,
            f"masks + faces, finders every {both.options.clip_face_every_s:g} s": (
                time.perf_counter() - started
            ),
        }
        clip_cost[size] = ClipCost(seconds, record.faces_blurred, record.face_frames)
    return PrivacyBench(
        clip=clip.name,
        pose_model=registry[model].name,
        face_model=registry[face_model].name,
        face_run_ms=face_run_ms,
        snapshot_ms=snapshot_ms,
        snapshot_views=views,
        snapshot_faces=found,
        clip_cost=clip_cost,
    )
