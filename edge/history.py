"""A rolling history of analysed frames, for evidence about what happened before an alert.

Frames are kept as JPEGs with the privacy masks already applied (nothing unmasked is ever kept
for longer than one frame), one every `every_s` when nothing is going on and every analysed
frame while people or vehicles are in view, for the last `keep_s` seconds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge.evidence import Polygon, apply_privacy_masks, encode_jpeg
from edge.rules.geometry import expand_box
from edge.types import Box, box_iou


@dataclass(frozen=True, slots=True)
class PastFrame:
    pts_s: float
    jpeg: bytes
    actors: tuple[Box, ...]  # people and vehicles in view in that frame


class FrameHistory:
    def __init__(
        self, masks: Sequence[Polygon], keep_s: float = 60.0, every_s: float = 1.0
    ) -> None:
        self._masks = [list(m) for m in masks]
        self._keep_s = keep_s
        self._every_s = every_s
        self._frames: deque[PastFrame] = deque()

    def __len__(self) -> int:
        return len(self._frames)

    def put(self, pts_s: float, image: npt.NDArray[np.uint8], actors: Sequence[Box]) -> None:
        last = self._frames[-1].pts_s if self._frames else float("-inf")
        if not actors and pts_s - last < self._every_s:
            return
        jpeg = encode_jpeg(apply_privacy_masks(image, self._masks))
        self._frames.append(PastFrame(pts_s, jpeg, tuple(actors)))
        while self._frames and pts_s - self._frames[0].pts_s > self._keep_s:
            self._frames.popleft()

    def at(self, pts_s: float) -> PastFrame | None:
        """The kept frame closest to `pts_s`."""
        return min(self._frames, key=lambda f: abs(f.pts_s - pts_s), default=None)

    def actor_before(
        self, pts_s: float, near: Box, window_s: float = 30.0
    ) -> tuple[PastFrame, Box] | None:
        """The last frame before `pts_s` (within `window_s`) with a person or vehicle near the
        box `near`, and that actor's box: who or what was there when something appeared."""
        zone = expand_box(near, 1.0)
        for frame in reversed(self._frames):
            if frame.pts_s > pts_s:
                continue
            if pts_s - frame.pts_s > window_s:
                break
            touching = [a for a in frame.actors if box_iou(a, zone) > 0.0]
            if touching:
                return frame, max(touching, key=lambda a: box_iou(a, zone))
        return None
