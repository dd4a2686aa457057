"""`zhizhi bench pile`: what one camera's `garbage_pile` rule costs, at the analysis rate.

The whole pipeline runs on a clip as one long stream (played `repeat` times), with the rule's
evidence written to a temporary folder, OpenCV limited to one thread. Reported per second of
stream: the seconds of CPU each stage took, so `(scene + rules + history + evidence) / stream`
is the share of one core the rule itself needs per camera; the detector's share depends on how
much moves (it runs only on motion and at the periodic re-check) and is reported beside it.
"""

from __future__ import annotations

import platform
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import cv2

from common.config import CameraConfig, SiteConfig, SiteInfo
from edge.analysis.detect.onnx import OnnxDetector
from edge.analysis.pipeline import CameraPipeline
from edge.capture.sources import open_video_file
from edge.evidence.store import DirectoryStore
from edge.runtime.models import load_registry

RULE_STAGES = ("scene", "rules", "history", "evidence")


@dataclass(frozen=True, slots=True)
class PileBench:
    label: str
    size: tuple[int, int]
    stream_s: float
    analysed: int
    detector_runs: int
    events: int
    seconds: dict[str, float]
    wall_s: float
    model: str
    detect_fps: float

    def share(self, *stages: str) -> float:
        """Seconds of CPU per second of stream, for these stages (1.0 = one core)."""
        return sum(self.seconds.get(s, 0.0) for s in stages) / self.stream_s

    def markdown_row(self) -> str:
        per_frame_ms = 1000 * sum(self.seconds.get(s, 0.0) for s in RULE_STAGES) / self.analysed
        return (
            f"| {self.label} | {self.size[0]}x{self.size[1]} | {self.stream_s:.0f} s | "
            f"{self.detect_fps:g} | {self.analysed} | {per_frame_ms:.1f} ms | "
            f"{100 * self.share(*RULE_STAGES):.1f} % | "
            f"{100 * self.share('detect', 'track'):.1f} % ({self.detector_runs} runs, "
            f"{self.model}) | {self.events} |"
        )

    def append_to(self, path: Path, command: str) -> None:
        header = (
            "| scene | frame | stream | analysed fps | analysed frames | rule per analysed "
            "frame | rule: share of one core | detector: share of one core | events |\n"
            "|---|---|---|---|---|---|---|---|---|\n"
        )
        stamp = datetime.now(UTC).strftime("%Y-%m-%d")
        stages = ", ".join(f"{k} {v:.2f} s" for k, v in sorted(self.seconds.items()))
        with path.open("a", encoding="utf-8") as out:
            out.write(
                f"\n`zhizhi {command}` ({stamp}, {platform.processor() or platform.machine()}; "
                f"stage seconds: {stages}; wall {self.wall_s:.1f} s)\n\n"
            )
            out.write(header + self.markdown_row() + "\n")


def _camera(clip: Path, detect_fps: float) -> tuple[SiteConfig, CameraConfig]:
    """A no-dumping zone over the whole picture: the most a camera can ask of the rule."""
    camera = CameraConfig.model_validate(
        {
            "id": "bench",
            "source": str(clip),
            "detect_fps": detect_fps,
            "zones": [{"id": "all", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}],
            "rules": [{"id": "pile", "type": "garbage_pile", "zone": "all", "dwell_s": 5}],
        }
    )
    return SiteConfig(site=SiteInfo(id="bench"), cameras=[camera]), camera


def bench_pile(
    clip: Path,
    label: str,
    model: str = "yolov8n-640",
    detect_fps: float = 5.0,
    repeat: int = 1,
    site: SiteConfig | None = None,
    camera_id: str | None = None,
) -> PileBench:
    cv2.setNumThreads(1)
    if site is not None and camera_id is not None:
        camera = site.camera(camera_id)
        model = camera.detector.model
    else:
        site, camera = _camera(clip, detect_fps)
    spec = load_registry()[model]
    detector = OnnxDetector.load(spec, camera.detector.min_score, camera.detector.iou)
    with tempfile.TemporaryDirectory(prefix="zhizhi-bench-pile-") as folder:
        pipeline = CameraPipeline(site, camera, detector, DirectoryStore(Path(folder)))
        started = time.perf_counter()
        offset, size = 0.0, (0, 0)
        for _ in range(repeat):
            last = 0.0
            with open_video_file(clip) as video:
                for frame in video:
                    last, size = frame.pts_s, frame.size_wh
                    pipeline.process(replace(frame, pts_s=offset + frame.pts_s))
            offset += last + 1.0 / video.fps
        pipeline.finish()
        wall = time.perf_counter() - started
    return PileBench(
        label=label or clip.name,
        size=size,
        stream_s=offset,
        analysed=pipeline.stats.frames_analysed,
        detector_runs=pipeline.stats.detector_runs,
        events=pipeline.stats.events,
        seconds=dict(pipeline.stats.seconds),
        wall_s=wall,
        model=spec.name,
        detect_fps=camera.detect_fps,
    )
