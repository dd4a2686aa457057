"""Multi-object tracking with Norfair (the maintained tracker Frigate also uses).

A thin adapter: our `Detection`s in, our `TrackedObject`s out. Boxes are tracked as two points
(top-left, bottom-right) with Norfair's IoU distance. People are tracked apart from everything
else; all other classes share one group, because the detector's label for the same object
flickers (a car seen from above is "car", then "cell phone", then "truck"). Each track's label
is the score-weighted vote of all its detections. docs/tracker-choice.md has the measurement
behind the choice of Norfair over ByteTrack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from norfair.tracker import Detection as NorfairDetection
from norfair.tracker import Tracker

from edge.types import Detection, TrackedObject, clamp_box


@dataclass(frozen=True, slots=True)
class TrackerParams:
    max_distance: float = 0.85  # 1 - IoU: a detection further than this starts a new track
    hit_counter_max: int = 8  # analysed frames a track survives without a detection
    initialization_delay: int = 1  # detections needed before a track is reported


def track_group(label: str) -> str:
    return "person" if label == "person" else "thing"


class ObjectTracker:
    """Tracks detections across analysed frames. Call `update` only when the detector ran."""

    def __init__(self, params: TrackerParams | None = None) -> None:
        self.params = params or TrackerParams()
        self._tracker = Tracker(
            distance_function="iou",
            distance_threshold=self.params.max_distance,
            hit_counter_max=self.params.hit_counter_max,
            initialization_delay=self.params.initialization_delay,
        )
        self._first_seen: dict[int, float] = {}
        self._votes: dict[int, dict[str, float]] = {}  # per track: label -> summed score

    def update(self, detections: Sequence[Detection], pts_s: float) -> list[TrackedObject]:
        converted = [
            NorfairDetection(
                points=np.array([[d.box[0], d.box[1]], [d.box[2], d.box[3]]], np.float64),
                scores=np.array([d.score, d.score]),
                label=track_group(d.label),
                data=d,
            )
            for d in detections
        ]
        active = self._tracker.update(detections=converted)
        current = {id(d) for d in detections}
        tracked = []
        for obj in active:
            if obj.id is None:
                continue
            last: Detection = obj.last_detection.data
            first = self._first_seen.setdefault(int(obj.id), pts_s)
            matched_now = id(last) in current
            # a fresh detection is the best box; the Kalman estimate bridges a missed one
            estimate = tuple(float(v) for v in obj.estimate.reshape(-1))
            box = last.box if matched_now else clamp_box(estimate)  # type: ignore[arg-type]
            votes = self._votes.setdefault(int(obj.id), {})
            if matched_now:
                votes[last.label] = votes.get(last.label, 0.0) + last.score
            tracked.append(
                TrackedObject(
                    track_id=int(obj.id),
                    label=max(votes, key=votes.__getitem__) if votes else last.label,
                    score=last.score if matched_now else last.score * 0.8,
                    box=box,
                    first_seen_s=first,
                )
            )
        known = {int(o.id) for o in self._tracker.tracked_objects if o.id is not None}
        for gone in set(self._first_seen) - known:
            del self._first_seen[gone]
            self._votes.pop(gone, None)
        return tracked
