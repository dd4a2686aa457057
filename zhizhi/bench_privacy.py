"""`zhizhi bench privacy`: what redacting one evidence file costs, on one core.

Measured on real frames of a clip: a 1920x1080 snapshot (a frame scaled up) and a 10 s clip at
10 frames per second and 1280x720 (frames taken every 0.1 s of the clip, scaled to 720p, the
clip replayed from its start when it is shorter). Two privacy masks cover a fifth of the frame
(`BENCH_MASKS`). OpenCV and onnxruntime are held to one thread each, so the figures are what
one core of the edge box spends.

- snapshot: masks alone in each style, faces alone (pose model + blur), and the JPEG encoding
  the snapshot needs anyway, for scale; medians of `repeat` runs;
- clip: masks alone; masks and faces with the face finder every `clip_face_every_s` (the
  default), and with it on every frame (what carrying heads between frames saves).
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
from edge.analysis.detect.onnx import OnnxDetector
from edge.analysis.pose import DEFAULT_POSE_MODEL, POSE_MIN_SCORE
from edge.capture.sources import open_video_file
from edge.evidence.privacy import MaskStyle, Redactor
from edge.evidence.store import encode_jpeg
from edge.runtime.models import load_registry

Image = npt.NDArray[np.uint8]
SNAPSHOT_WH = (1920, 1080)
CLIP_WH = (1280, 720)
CLIP_FPS = 10.0
CLIP_S = 10.0
STYLES: tuple[MaskStyle, ...] = ("black", "blur", "pixelate")
BENCH_MASKS = [  # two windows of a facade: about 20 % of the frame
    [(0.05, 0.05), (0.30, 0.05), (0.30, 0.40), (0.05, 0.40)],
    [(0.62, 0.08), (0.92, 0.04), (0.95, 0.40), (0.65, 0.42)],
]


@dataclass(frozen=True, slots=True)
class PrivacyBench:
    clip: str
    model: str
    snapshot_ms: dict[str, float]  # what -> median milliseconds per 1080p snapshot
    snapshot_faces: int
    clip_s: dict[str, float]  # what -> seconds per 10 s clip
    clip_faces: int
    clip_face_frames: int

    def markdown(self) -> str:
        snap = " | ".join(f"{value:.1f}" for value in self.snapshot_ms.values())
        clip = " | ".join(f"{value:.2f}" for value in self.clip_s.values())
        return (
            "| 1080p snapshot, ms | " + " | ".join(self.snapshot_ms) + " |\n"
            "|---|" + "---|" * len(self.snapshot_ms) + "\n"
            f"| {self.clip} ({self.snapshot_faces} faces) | {snap} |\n\n"
            "| 10 s clip, 100 frames 1280x720, s | " + " | ".join(self.clip_s) + " |\n"
            "|---|" + "---|" * len(self.clip_s) + "\n"
            f"| {self.clip} (up to {self.clip_faces} faces a frame; finder on "
            f"{self.clip_face_frames} frames) | {clip} |\n"
        )

    def append_to(self, path: Path, command: str) -> None:
        when = datetime.now(UTC).strftime("%Y-%m-%d")
        machine = f"{platform.machine()}, one core, onnxruntime {onnxruntime.__version__}"
        block = (
            f"\n### privacy redaction per evidence file ({when}, {machine}, "
            f"model {self.model})\n\n```\nzhizhi {command}\n```\n\n{self.markdown()}"
        )
        with path.open("a", encoding="utf-8") as stream:
            stream.write(block)


def _clip_frames(clip: Path) -> list[Image]:
    """100 frames, one every 0.1 s of the clip (replayed from the start when shorter)."""
    wanted = round(CLIP_S * CLIP_FPS)
    out: list[Image] = []
    while len(out) < wanted:
        before = len(out)
        next_s = 0.0
        with open_video_file(clip) as video:
            for frame in video:
                if frame.pts_s + 1e-6 >= next_s:
                    out.append(np.asarray(cv2.resize(frame.image, CLIP_WH), np.uint8))
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


def _redactor(pose: OnnxDetector | None, style: MaskStyle, masks: Sequence[Any]) -> Redactor:
    camera = CameraConfig.model_validate(
        {"id": "bench", "source": "bench", "privacy_masks": masks, "privacy": {"mask_style": style}}
    )
    return Redactor.for_camera(camera, pose)


def bench_privacy(clip: Path, model: str = DEFAULT_POSE_MODEL, repeat: int = 7) -> PrivacyBench:
    cv2.setNumThreads(1)
    spec = load_registry()[model]
    pose = OnnxDetector.load(spec, min_score=POSE_MIN_SCORE, intra_op_threads=1)
    frames = _clip_frames(clip)
    snapshot = np.asarray(cv2.resize(frames[len(frames) // 2], SNAPSHOT_WH), np.uint8)
    snap: dict[str, float] = {}
    for style in STYLES:
        snap[f"masks {style}"] = _median_ms(
            partial(_redactor(None, style, BENCH_MASKS).mask, snapshot), repeat
        )
    faces_only = _redactor(pose, "black", [])
    snap["faces (pose + blur)"] = _median_ms(lambda: faces_only.image(snapshot), repeat)
    both = _redactor(pose, "blur", BENCH_MASKS)
    snap["masks blur + faces"] = _median_ms(lambda: both.image(snapshot), repeat)
    snap["JPEG encode (for scale)"] = _median_ms(lambda: encode_jpeg(snapshot), repeat)
    _, record = both.image(snapshot)
    masked = _redactor(None, "blur", BENCH_MASKS)
    every_frame = Redactor(
        BENCH_MASKS, both.options.model_copy(update={"clip_face_every_s": 1 / CLIP_FPS}), pose
    )
    times = [i / CLIP_FPS for i in range(len(frames))]
    _, clip_record = both.frames(frames, pts_s=times)
    return PrivacyBench(
        clip=clip.name,
        model=spec.name,
        snapshot_ms=snap,
        snapshot_faces=record.faces_blurred,
        clip_s={
            "masks blur": _seconds(lambda: masked.frames(frames, pts_s=times)),
            f"masks + faces, finder every {both.options.clip_face_every_s:g} s": _seconds(
                lambda: both.frames(frames, pts_s=times)
            ),
            "masks + faces, finder on every frame": _seconds(
                lambda: every_frame.frames(frames, pts_s=times)
            ),
        },
        clip_faces=clip_record.faces_blurred,
        clip_face_frames=clip_record.face_frames,
    )
