"""What one camera's analysis did: frames, detector runs, events, time per stage."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class PipelineStats:
    """Counters of one camera's analysis. The live box updates them from several threads
    (one per lane); `add_seconds` is the only read-modify-write of a shared key."""

    frames_seen: int = 0
    frames_analysed: int = 0
    detector_runs: int = 0
    detections_missed: int = 0  # looks the box's shared detector declined (busy)
    starved: int = 0  # zone analyses whose rules held their judgement (too few looks)
    events: int = 0
    rule_errors: int = 0
    seconds: dict[str, float] = field(
        default_factory=lambda: {
            "scene": 0.0,
            "detect": 0.0,
            "track": 0.0,
            "rules": 0.0,
            "history": 0.0,
            "evidence": 0.0,
        }
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add_seconds(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
