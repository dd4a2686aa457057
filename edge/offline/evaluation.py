"""Scoring events against labels (contract section 6). Pure: no video, no files."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from common.events import Event, EventType

TOLERANCE_S: dict[str, float] = {
    "falling_object": 1.0,
    "person_fall": 2.0,
    "fire_lane": 5.0,
    "garbage_pile": 5.0,
}


class LabelledEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: EventType
    onset_s: float = Field(ge=0)
    end_s: float | None = Field(default=None, ge=0)


class LabelledClip(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    file: str
    camera: str
    events: list[LabelledEvent] = Field(default_factory=list)


class LabelsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    clips: list[LabelledClip] = Field(min_length=1)


def load_labels(path: Path) -> LabelsFile:
    with path.open(encoding="utf-8") as stream:
        return LabelsFile.model_validate(yaml.safe_load(stream))


@dataclass(frozen=True, slots=True)
class Match:
    clip: str
    type: str
    label_onset_s: float
    event_onset_s: float
    alert_pts_s: float

    @property
    def latency_s(self) -> float:
        return self.alert_pts_s - self.label_onset_s


@dataclass
class TypeScore:
    true_positives: int = 0
    false_alarms: int = 0
    misses: int = 0
    latencies_s: list[float] = field(default_factory=list)

    @property
    def precision(self) -> float | None:
        found = self.true_positives + self.false_alarms
        return self.true_positives / found if found else None

    @property
    def recall(self) -> float | None:
        labelled = self.true_positives + self.misses
        return self.true_positives / labelled if labelled else None

    @property
    def median_latency_s(self) -> float | None:
        return statistics.median(self.latencies_s) if self.latencies_s else None

    def as_dict(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        return {
            "true_positives": self.true_positives,
            "false_alarms": self.false_alarms,
            "misses": self.misses,
            "precision": rounded(self.precision),
            "recall": rounded(self.recall),
            "median_latency_s": rounded(self.median_latency_s),
        }


@dataclass(frozen=True, slots=True)
class ClipResult:
    clip: str
    matches: tuple[Match, ...]
    false_alarms: tuple[Event, ...]
    misses: tuple[LabelledEvent, ...]


def match_clip(clip: LabelledClip, events: Iterable[Event]) -> ClipResult:
    """Match each `new` event to at most one label of its type, closest onset first."""
    alerts = sorted((e for e in events if e.state == "new"), key=lambda e: e.pts_s)
    pairs = []
    for ai, alert in enumerate(alerts):
        for li, label in enumerate(clip.events):
            gap = abs(alert.onset_pts_s - label.onset_s)
            if label.type == alert.type and gap <= TOLERANCE_S[label.type]:
                pairs.append((gap, ai, li))
    used_alerts: set[int] = set()
    used_labels: set[int] = set()
    matches = []
    for _, ai, li in sorted(pairs):
        if ai in used_alerts or li in used_labels:
            continue
        used_alerts.add(ai)
        used_labels.add(li)
        alert, label = alerts[ai], clip.events[li]
        matches.append(Match(clip.file, label.type, label.onset_s, alert.onset_pts_s, alert.pts_s))
    return ClipResult(
        clip=clip.file,
        matches=tuple(matches),
        false_alarms=tuple(a for i, a in enumerate(alerts) if i not in used_alerts),
        misses=tuple(lab for i, lab in enumerate(clip.events) if i not in used_labels),
    )


def score(results: Sequence[ClipResult]) -> dict[str, TypeScore]:
    per_type: dict[str, TypeScore] = {}
    for result in results:
        for match in result.matches:
            entry = per_type.setdefault(match.type, TypeScore())
            entry.true_positives += 1
            entry.latencies_s.append(match.latency_s)
        for alarm in result.false_alarms:
            per_type.setdefault(alarm.type, TypeScore()).false_alarms += 1
        for miss in result.misses:
            per_type.setdefault(miss.type, TypeScore()).misses += 1
    return dict(sorted(per_type.items()))


def report(results: Sequence[ClipResult], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON report: totals per type, then what happened in each clip."""
    return {
        "types": {name: entry.as_dict() for name, entry in score(results).items()},
        "clips": [
            {
                "file": r.clip,
                "matches": [
                    {
                        "type": m.type,
                        "label_onset_s": m.label_onset_s,
                        "event_onset_s": m.event_onset_s,
                        "alert_pts_s": m.alert_pts_s,
                        "latency_s": round(m.latency_s, 3),
                    }
                    for m in r.matches
                ],
                "false_alarms": [
                    {
                        "type": e.type,
                        "onset_pts_s": e.onset_pts_s,
                        "pts_s": e.pts_s,
                        "rule_id": e.rule_id,
                        "bbox": list(e.bbox),
                    }
                    for e in r.false_alarms
                ],
                "misses": [{"type": m.type, "onset_s": m.onset_s} for m in r.misses],
            }
            for r in results
        ],
        **(extra or {}),
    }
