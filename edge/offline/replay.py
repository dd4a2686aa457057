"""Replay a video file through one camera's analysis, and evaluate labelled clips.

Replay runs as fast as the machine allows (not paced to real time) and writes every event
message as one JSON line, in the order produced (contract section 1).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import IO, Any

from common.config import CameraConfig, DetectorConfig, SiteConfig
from common.events import Event
from edge.analysis.detect.base import Detector
from edge.analysis.detect.onnx import OnnxDetector
from edge.analysis.pipeline import WEAK_DETECTION_SCORE, CameraPipeline, PipelineStats
from edge.capture.sources import open_video_file
from edge.evidence.store import DirectoryStore, EvidenceStore
from edge.offline.evaluation import ClipResult, LabelsFile, match_clip, report
from edge.runtime.models import load_registry

logger = logging.getLogger(__name__)


@cache
def load_detector(config: DetectorConfig) -> Detector:
    """The ONNX detector a camera config asks for, loaded and verified once per process."""
    spec = load_registry()[config.model]
    # weak detections are kept for masking people and vehicles out of the scene model; the
    # pipeline applies `config.min_score` to everything a rule judges
    min_score = min(config.min_score, WEAK_DETECTION_SCORE)
    return OnnxDetector.load(spec, min_score, config.iou, config.providers)


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    frames: int
    analysed: int
    detector_runs: int
    events: int
    seconds: float
    truncated: bool
    stage_seconds: dict[str, float]

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (
            f"replay done: frames={self.frames} analysed={self.analysed} "
            f"detector_runs={self.detector_runs} events={self.events} "
            f"seconds={self.seconds:.2f} fps={self.fps:.1f}"
            + (" truncated=yes" if self.truncated else "")
        )


def replay_events(
    site: SiteConfig,
    camera: CameraConfig,
    source: Path,
    evidence: EvidenceStore | None = None,
    detector: Detector | None = None,
    on_frame: Callable[[int, int | None], None] | None = None,
) -> Iterator[Event | ReplaySummary]:
    """Yield each event as it is produced, then the summary."""
    detector = detector or load_detector(camera.detector)
    pipeline = CameraPipeline(site, camera, detector, evidence)
    started = time.perf_counter()
    with open_video_file(source) as video:
        for frame in video:
            yield from pipeline.process(frame)
            if on_frame is not None:
                on_frame(frame.index, video.frame_count)
        truncated = video.truncated
    yield from pipeline.finish()
    yield _summary(pipeline.stats, time.perf_counter() - started, truncated)


def _summary(stats: PipelineStats, seconds: float, truncated: bool) -> ReplaySummary:
    return ReplaySummary(
        frames=stats.frames_seen,
        analysed=stats.frames_analysed,
        detector_runs=stats.detector_runs,
        events=stats.events,
        seconds=seconds,
        truncated=truncated,
        stage_seconds={k: round(v, 3) for k, v in stats.seconds.items()},
    )


def replay_to_file(
    site: SiteConfig,
    camera_id: str,
    source: Path,
    out: IO[str],
    evidence_dir: Path | None = None,
    on_frame: Callable[[int, int | None], None] | None = None,
) -> tuple[list[Event], ReplaySummary]:
    camera = site.camera(camera_id)
    store = DirectoryStore(evidence_dir) if evidence_dir is not None else None
    events: list[Event] = []
    summary: ReplaySummary | None = None
    for item in replay_events(site, camera, source, store, on_frame=on_frame):
        if isinstance(item, ReplaySummary):
            summary = item
            continue
        events.append(item)
        out.write(item.to_json() + "\n")
        out.flush()
    assert summary is not None  # noqa: S101 - replay_events always ends with it
    return events, summary


def evaluate(
    site: SiteConfig,
    labels: LabelsFile,
    clips_dir: Path,
    evidence_dir: Path | None = None,
    on_clip: Callable[[str, ReplaySummary], None] | None = None,
) -> dict[str, Any]:
    """Replay every labelled clip with its camera's rules and score the events."""
    results: list[ClipResult] = []
    runs = []
    for clip in labels.clips:
        camera = site.camera(clip.camera)
        store = None
        if evidence_dir is not None:
            store = DirectoryStore(evidence_dir / Path(clip.file).stem)
        events: list[Event] = []
        summary: ReplaySummary | None = None
        for item in replay_events(site, camera, clips_dir / clip.file, store):
            if isinstance(item, ReplaySummary):
                summary = item
            else:
                events.append(item)
        assert summary is not None  # noqa: S101
        results.append(match_clip(clip, events))
        runs.append(
            {
                "file": clip.file,
                "camera": clip.camera,
                "frames": summary.frames,
                "fps": round(summary.fps, 1),
                "events": [json.loads(e.to_json()) for e in events if e.state == "new"],
            }
        )
        if on_clip is not None:
            on_clip(clip.file, summary)
    return report(results, {"runs": runs})
