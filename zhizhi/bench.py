"""`zhizhi bench edge`: decode alone, detector alone on every frame, and the whole pipeline.

All three are measured on the same clip, in frames of the clip per second of wall time, on
this machine. Peak and final resident memory of the pipeline run show whether memory stays
flat. Figures are appended to docs/benchmarks.md with the command that produced them.
"""

from __future__ import annotations

import platform
import resource
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import onnxruntime

from common.config import CameraConfig, SiteConfig, SiteInfo
from edge.analysis.detect.onnx import OnnxDetector
from edge.analysis.pipeline import CameraPipeline
from edge.capture.sources import open_video_file
from edge.runtime.models import load_registry

MAX_DETECTOR_FRAMES = 150  # the detector-alone figure is a rate: a sample of frames suffices


@dataclass(frozen=True, slots=True)
class EdgeBench:
    clip: str
    label: str
    frames: int
    decode_fps: float
    detect_fps: float
    decode_detect_fps: float
    pipeline_fps: float
    detector_runs: int
    analysed: int
    rss_start_mb: float
    rss_end_mb: float
    model: str
    repeat: int

    @property
    def speedup(self) -> float:
        return self.pipeline_fps / self.decode_detect_fps if self.decode_detect_fps else 0.0

    def markdown_row(self) -> str:
        return (
            f"| {self.label or self.clip} | {self.frames} | {self.decode_fps:.0f} | "
            f"{self.detect_fps:.1f} | {self.decode_detect_fps:.1f} | {self.pipeline_fps:.0f} | "
            f"{self.speedup:.1f}x | {self.detector_runs}/{self.analysed} | "
            f"{self.rss_start_mb:.0f} → {self.rss_end_mb:.0f} ({self.repeat}x clip) |"
        )

    def append_to(self, path: Path, command: str) -> None:
        header = (
            "| scene | frames | decode fps | detector fps | decode+detect fps | pipeline fps | "
            "pipeline vs decode+detect | detector runs / analysed | "
            "RSS MB after 1st → last pass |\n"
            "|---|---|---|---|---|---|---|---|---|\n"
        )
        when = datetime.now(UTC).strftime("%Y-%m-%d")
        machine = (
            f"{platform.machine()}, {_cpu_count()} cores, onnxruntime {onnxruntime.__version__}"
        )
        block = (
            f"\n### {self.label or self.clip} ({when}, {machine}, model {self.model})\n\n"
            f"```\nzhizhi {command}\n```\n\n{header}{self.markdown_row()}\n"
        )
        with path.open("a", encoding="utf-8") as stream:
            stream.write(block)


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _rss_mb() -> float:
    """Current resident set size in MB (Linux /proc; falls back to the peak)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _decode(clip: Path) -> tuple[int, float]:
    started = time.perf_counter()
    with open_video_file(clip) as video:
        frames = sum(1 for _ in video)
    return frames, time.perf_counter() - started


def _detect(clip: Path, detector: OnnxDetector) -> float:
    """Seconds per frame of the detector alone, on the clip's own frames."""
    with open_video_file(clip) as video:
        images = [frame.image for _, frame in zip(range(MAX_DETECTOR_FRAMES), video, strict=False)]
    started = time.perf_counter()
    for image in images:
        detector.detect(image)
    return (time.perf_counter() - started) / max(1, len(images))


def _bench_site(
    site: SiteConfig | None, camera_id: str | None, clip: Path
) -> tuple[SiteConfig, CameraConfig]:
    if site is not None and camera_id is not None:
        return site, site.camera(camera_id)
    # no config: a full-frame fire lane, the heaviest analysis a camera can be given
    camera = CameraConfig.model_validate(
        {
            "id": "bench",
            "source": str(clip),
            "zones": [{"id": "all", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}],
            "rules": [{"id": "lane", "type": "fire_lane", "zone": "all"}],
        }
    )
    return SiteConfig(site=SiteInfo(id="bench"), cameras=[camera]), camera


def bench_edge(
    clip: Path,
    site: SiteConfig | None,
    camera_id: str | None,
    model: str,
    label: str,
    repeat: int = 1,
) -> EdgeBench:
    site, camera = _bench_site(site, camera_id, clip)
    spec = load_registry()[camera.detector.model if site.site.id != "bench" else model]
    detector = OnnxDetector.load(spec, camera.detector.min_score, camera.detector.iou)
    frames, decode_s = _decode(clip)
    detect_s = _detect(clip, detector)
    pipeline = CameraPipeline(site, camera, detector, None)
    rss: list[float] = []
    started = time.perf_counter()
    offset = 0.0
    for _ in range(repeat):  # the clip again and again, as one long stream: memory must stay flat
        last = 0.0
        with open_video_file(clip) as video:
            for frame in video:
                last = frame.pts_s
                pipeline.process(replace(frame, pts_s=offset + frame.pts_s))
        offset += last + 1.0 / video.fps
        rss.append(_rss_mb())
    pipeline_s = (time.perf_counter() - started) / repeat
    per_frame_decode = decode_s / frames
    return EdgeBench(
        clip=clip.name,
        label=label,
        frames=frames,
        decode_fps=frames / decode_s,
        detect_fps=1.0 / detect_s,
        decode_detect_fps=1.0 / (per_frame_decode + detect_s),
        pipeline_fps=frames / pipeline_s,
        detector_runs=pipeline.stats.detector_runs,
        analysed=pipeline.stats.frames_analysed,
        rss_start_mb=rss[0],
        rss_end_mb=rss[-1],
        repeat=repeat,
        model=spec.name,
    )
