"""`zhizhi bench fall`: what one camera's `person_fall` rule costs.

The rule (`PersonFallWatch.on_frame`) gets every decoded frame of a clip, played `repeat` times
as one stream; decoding is not counted. Reported per second of stream: the CPU seconds the rule
took in all threads (the pose model's onnxruntime threads included), so `cpu / stream` is the
share of one core the rule needs per camera, and the wall time per pose-model run.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import cv2

from common.config import CameraConfig, PersonFallRuleConfig, SiteConfig, ZoneConfig
from edge.analysis.frame_rules import PersonFallWatch
from edge.analysis.pose import load_pose_estimator
from edge.capture.sources import open_video_file


@dataclass(frozen=True, slots=True)
class FallBench:
    label: str
    size: tuple[int, int]
    stream_s: float
    frames: int
    analysed: int
    model_runs: int
    events: int
    cpu_s: float  # process CPU seconds inside the rule, all threads
    wall_s: float  # wall seconds inside the rule
    model: str
    analysis_fps: float

    @property
    def core_share(self) -> float:
        """CPU seconds per second of stream (1.0 = one core busy)."""
        return self.cpu_s / self.stream_s if self.stream_s else 0.0

    def markdown_row(self) -> str:
        per_run = 1000 * self.wall_s / self.model_runs if self.model_runs else 0.0
        return (
            f"| {self.label} | {self.size[0]}x{self.size[1]} | {self.stream_s:.1f} s | "
            f"{self.analysis_fps:g} | {self.analysed} | {self.model_runs} | {per_run:.0f} ms | "
            f"{100 * self.core_share:.0f} % | {self.stream_s / self.wall_s:.1f}x | "
            f"{self.events} |"
        )

    def append_to(self, path: Path, command: str) -> None:
        header = (
            "| scene | frame | stream | analysis fps | analysed | pose-model runs | wall per "
            "run | CPU: share of one core | faster than real time | outputs |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n"
        )
        stamp = datetime.now(UTC).strftime("%Y-%m-%d")
        with path.open("a", encoding="utf-8") as out:
            out.write(
                f"\n`zhizhi {command}` ({stamp}, {platform.processor() or platform.machine()}, "
                f"model {self.model})\n\n"
            )
            out.write(header + self.markdown_row() + "\n")


def _rule_config(
    clip: Path, site: SiteConfig | None, camera_id: str | None
) -> tuple[PersonFallRuleConfig, ZoneConfig, CameraConfig]:
    """The camera's person_fall rule, or the defaults over the whole picture."""
    if site is not None and camera_id is not None:
        camera = site.camera(camera_id)
    else:
        camera = CameraConfig.model_validate(
            {
                "id": "bench",
                "source": str(clip),
                "zones": [{"id": "all", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}],
                "rules": [{"id": "fall", "type": "person_fall", "zone": "all"}],
            }
        )
    for rule in camera.rules:
        if isinstance(rule, PersonFallRuleConfig):
            return rule, camera.zone(rule.zone), camera
    raise ValueError(f"camera {camera.id} has no person_fall rule")


def bench_fall(
    clip: Path,
    label: str = "",
    repeat: int = 1,
    site: SiteConfig | None = None,
    camera_id: str | None = None,
) -> FallBench:
    cv2.setNumThreads(1)
    config, zone, camera = _rule_config(clip, site, camera_id)
    del camera
    pose = load_pose_estimator(config.model)
    rule = PersonFallWatch(config, zone, pose, pose.info)
    cpu = wall = offset = 0.0
    frames = events = 0
    size = (0, 0)
    for _ in range(repeat):
        last = 0.0
        with open_video_file(clip) as video:
            for frame in video:
                last, size = frame.pts_s, frame.size_wh
                shifted = replace(frame, pts_s=offset + frame.pts_s)
                started_cpu, started = time.process_time(), time.perf_counter()
                events += len(rule.on_frame(shifted))
                cpu += time.process_time() - started_cpu
                wall += time.perf_counter() - started
                frames += 1
        offset += last + 1.0 / video.fps
    return FallBench(
        label=label or clip.name,
        size=size,
        stream_s=offset,
        frames=frames,
        analysed=rule.analysed,
        model_runs=rule.model_runs,
        events=events,
        cpu_s=cpu,
        wall_s=wall,
        model=config.model,
        analysis_fps=config.analysis_fps,
    )
