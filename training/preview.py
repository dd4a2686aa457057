"""Labels drawn on their frames (`zhizhi data preview`), to check them by eye."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from training.dataset import Image, iter_source_frames
from training.labels import LabelledFrame, Source

COLOURS = ((0, 220, 0), (0, 140, 255), (255, 60, 60), (0, 230, 230), (230, 0, 230), (255, 255, 0))


def draw_boxes(image: Image, frame: LabelledFrame, classes: list[str]) -> Image:
    """A copy of the image with the frame's boxes and class names drawn on it."""
    out = image.copy()
    height, width = out.shape[:2]
    for box in frame.boxes:
        colour = COLOURS[box.cls % len(COLOURS)]
        p1 = (round(box.x1 * width), round(box.y1 * height))
        p2 = (round(box.x2 * width), round(box.y2 * height))
        cv2.rectangle(out, p1, p2, colour, 2)
        cv2.putText(
            out,
            classes[box.cls],
            (p1[0], max(12, p1[1] - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            colour,
            1,
            cv2.LINE_AA,
        )
    cv2.putText(
        out, f"frame {frame.index}", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2
    )
    return out.astype(np.uint8)


def render_frames(
    source: Source, classes: list[str], frames: Iterable[int], out: Path
) -> list[Path]:
    """PNGs `out/<clip>_f<frame>.png` of the wanted frames with their labels."""
    wanted = set(frames)
    subset = source.model_copy(update={"frames": [f for f in source.frames if f.index in wanted]})
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for frame, _, image in iter_source_frames(subset):
        path = out / f"{Path(source.path).stem}_f{frame.index:05d}.png"
        cv2.imwrite(str(path), draw_boxes(image, frame, classes))
        written.append(path)
    return written
