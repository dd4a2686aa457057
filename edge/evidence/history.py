"""A rolling history of frames, for evidence about what happened before an alert.

Frames are kept as JPEGs with the privacy masks already applied (nothing unmasked is ever kept
for longer than one frame), one every `every_s` when nothing is going on and one every
`busy_every_s` (default: every frame given) while people or vehicles are in view, for the
last `keep_s` seconds, scaled down to at most `max_width` pixels wide. `max_bytes` bounds the
memory of one camera's history whatever the scene does: past it, the oldest frames go first.

The pipeline keeps two: a long, sparse one of the analysed frames (who was there when a pile
appeared, the clip of a vehicle arriving) and, for the rules that watch every frame (falls), a
short dense one: the pre-event buffer their clips start from.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from edge.evidence.privacy import MaskStyle
from edge.evidence.store import Polygon, apply_privacy_masks, encode_jpeg
from edge.rules.geometry import expand_box
from edge.types import Box, box_iou


@dataclass(frozen=True, slots=True)
class PastFrame:
    pts_s: float
    jpeg: bytes
    actors: tuple[Box, ...]  # people and vehicles in view in that frame
    people: tuple[Box, ...] = ()  # the people among them (their faces are blurred in evidence)


class FrameHistory:
    def __init__(
        self,
        masks: Sequence[Polygon],
        keep_s: float = 60.0,
        every_s: float = 1.0,
        max_width: int = 1280,
        max_bytes: int = 64 * 2**20,
        style: MaskStyle = "black",
        busy_every_s: float = 0.0,
    ) -> None:
        self._masks = [list(m) for m in masks]
        self._style: MaskStyle = style
        self._keep_s = keep_s
        self._every_s = every_s
        self._busy_every_s = busy_every_s  # while people or vehicles are in view
        self._max_width = max_width
        self._max_bytes = max_bytes
        self._bytes = 0
        self._frames: deque[PastFrame] = deque()
        # the live box writes from a lane's thread and reads from the recorder's
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def wants(self, pts_s: float, busy: bool = False) -> bool:
        """Whether a frame at `pts_s` would be kept (callers skip preparing it otherwise)."""
        with self._lock:
            last = self._frames[-1].pts_s if self._frames else float("-inf")
        return pts_s - last >= (self._busy_every_s if busy else self._every_s)

    def put(
        self,
        pts_s: float,
        image: npt.NDArray[np.uint8],
        actors: Sequence[Box],
        people: Sequence[Box] = (),
    ) -> None:
        if not self.wants(pts_s, bool(actors)):
            return
        jpeg = encode_jpeg(self._shrink(apply_privacy_masks(image, self._masks, self._style)))
        with self._lock:
            self._frames.append(PastFrame(pts_s, jpeg, tuple(actors), tuple(people)))
            self._bytes += len(jpeg)
            while self._frames and (
                pts_s - self._frames[0].pts_s > self._keep_s or self._bytes > self._max_bytes
            ):
                self._bytes -= len(self._frames.popleft().jpeg)

    def _shrink(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        h, w = image.shape[:2]
        if w <= self._max_width:
            return image
        size = (self._max_width, max(1, round(h * self._max_width / w)))
        return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA))

    def between(self, start_s: float, end_s: float) -> list[PastFrame]:
        """The kept frames from `start_s` to `end_s`, in time order."""
        with self._lock:
            return [f for f in self._frames if start_s <= f.pts_s <= end_s]

    def at(self, pts_s: float) -> PastFrame | None:
        """The kept frame closest to `pts_s`."""
        with self._lock:
            return min(self._frames, key=lambda f: abs(f.pts_s - pts_s), default=None)

    def actor_before(
        self, pts_s: float, near: Box, window_s: float = 30.0
    ) -> tuple[PastFrame, Box] | None:
        """The last frame before `pts_s` (within `window_s`) with a person or vehicle near the
        box `near`, and that actor's box: who or what was there when something appeared."""
        zone = expand_box(near, 1.0)
        with self._lock:
            frames = list(self._frames)
        for frame in reversed(frames):
            if frame.pts_s > pts_s:
                continue
            if pts_s - frame.pts_s > window_s:
                break
            touching = [a for a in frame.actors if box_iou(a, zone) > 0.0]
            if touching:
                return frame, max(touching, key=lambda a: box_iou(a, zone))
        return None
