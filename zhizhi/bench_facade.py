"""`zhizhi bench facade`: can the falling-object analysis keep up with every frame of a
camera on one core?

Only the rule's own work is timed (speck finding, linking, judging: `on_frame`), on one
OpenCV thread, frame by frame; decoding (or drawing the synthetic frames) is not. Measured on
a synthetic 1920x1080 25-fps facade (the zone is the whole picture: the heaviest case) and
on real clips. "Real-time ratio" is the frames per second analysed over the stream's frame
rate: above 1 keeps up; its inverse is the share of one core the rule takes.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2

from common.config import FallingObjectRuleConfig, SiteConfig, ZoneConfig
from edge.analysis.frame_rules import FacadeWatch
from edge.capture.sources import open_video_file
from edge.offline.falling_synthetic import FacadeScene, frames
from edge.types import Frame

WHOLE = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]


@dataclass(frozen=True, slots=True)
class FacadeRun:
    scene: str
    size: str
    stream_fps: float
    frames: int
    mean_ms: float
    p95_ms: float
    events: int

    @property
    def fps(self) -> float:
        return 1000.0 / self.mean_ms if self.mean_ms > 0 else 0.0

    @property
    def realtime(self) -> float:
        return self.fps / self.stream_fps if self.stream_fps > 0 else 0.0

    def markdown_row(self) -> str:
        return (
            f"| {self.scene} | {self.size} @ {self.stream_fps:.2f} | {self.frames} | "
            f"{self.mean_ms:.2f} | {self.p95_ms:.2f} | {self.fps:.0f} | {self.realtime:.1f}x | "
            f"{100 / self.realtime:.0f}% | {self.events} |"
        )


@dataclass(frozen=True, slots=True)
class FacadeBench:
    runs: list[FacadeRun]

    def markdown(self) -> str:
        header = (
            "| scene | size @ fps | frames | ms/frame | p95 ms | frames/s (1 core) | "
            "real-time ratio | share of one core | events |\n"
            "|---|---|---|---|---|---|---|---|---|\n"
        )
        return header + "\n".join(run.markdown_row() for run in self.runs)

    def append_to(self, path: Path, command: str, load: str) -> None:
        when = datetime.now(UTC).strftime("%Y-%m-%d")
        block = (
            f"\n### falling_object facade analysis ({when}, {platform.machine()}, "
            f"OpenCV {cv2.__version__}, 1 thread; load average {load})\n\n"
            f"```\nzhizhi {command}\n```\n\n{self.markdown()}\n"
        )
        with path.open("a", encoding="utf-8") as stream:
            stream.write(block)


def _time(rule: FacadeWatch, stream: Iterable[Frame], scene: str, fps: float) -> FacadeRun:
    spent: list[float] = []
    events = 0
    size = ""
    for frame in stream:
        size = f"{frame.size_wh[0]}x{frame.size_wh[1]}"
        started = time.perf_counter()
        outputs = rule.on_frame(frame)
        spent.append(time.perf_counter() - started)
        events += sum(1 for out in outputs if out.state == "new")
    if not spent:
        raise ValueError(f"{scene}: no frames")
    ordered = sorted(spent)
    return FacadeRun(
        scene=scene,
        size=size,
        stream_fps=fps,
        frames=len(spent),
        mean_ms=1000 * statistics.fmean(spent),
        p95_ms=1000 * ordered[int(0.95 * (len(ordered) - 1))],
        events=events,
    )


def _rule(config: FallingObjectRuleConfig | None, zone: ZoneConfig | None) -> FacadeWatch:
    zone = zone or ZoneConfig(id="all", polygon=WHOLE)
    config = config or FallingObjectRuleConfig(id="throw", zone=zone.id, type="falling_object")
    return FacadeWatch(config, zone)


def bench_facade(
    synthetic_s: float,
    clips: list[tuple[Path, str | None]],
    site: SiteConfig | None,
) -> FacadeBench:
    """The synthetic 1080p facade (day, a falling object), then each clip with its camera's
    falling_object rule (from `site`) or, without one, a rule watching the whole picture."""
    cv2.setNumThreads(1)
    runs = []
    if synthetic_s > 0:
        scene = FacadeScene(
            width=1920, height=1080, fps=25.0, seconds=synthetic_s, storey_px=78.0,
            release_s=synthetic_s / 3,
        )  # fmt: skip
        runs.append(_time(_rule(None, None), frames(scene), "synthetic facade, whole frame", 25.0))
    for clip, camera_id in clips:
        config, zone = None, None
        if site is not None and camera_id is not None:
            camera = site.camera(camera_id)
            found = [r for r in camera.rules if isinstance(r, FallingObjectRuleConfig)]
            if not found:
                raise ValueError(f"camera {camera_id} has no falling_object rule")
            config, zone = found[0], camera.zone(found[0].zone)
        with open_video_file(clip) as video:
            where = f"zone {zone.id}" if zone is not None else "whole frame"
            runs.append(_time(_rule(config, zone), video, f"{clip.name}, {where}", video.fps))
    return FacadeBench(runs)
