"""Tiny synthetic clips with boxes known by construction, for the training tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from edge.offline.synthetic import LaneScene, frames, with_left_object, write_frames
from training.labels import Box, LabelledFrame, LabelSet, Source

SIZE_WH = (160, 120)


def moving_box_clip(path: Path, frames: int = 12, seed: int = 0) -> Source:
    """A grey scene with a red 'car' rectangle crossing it; every frame labelled."""
    rng = np.random.default_rng(seed)
    width, height = SIZE_WH
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, SIZE_WH)
    labelled = []
    background = rng.integers(90, 140, size=(height, width, 3), dtype=np.uint8)
    for index in range(frames):
        image = background.copy()
        x1 = 8 + index * 8
        y1 = 40 + (seed % 3) * 10
        x2, y2 = x1 + 40, y1 + 30
        cv2.rectangle(image, (x1, y1), (x2, y2), (30, 30, 200), thickness=-1)
        writer.write(image)
        box = Box(cls=0, x1=x1 / width, y1=y1 / height, x2=x2 / width, y2=y2 / height)
        labelled.append(LabelledFrame(index=index, boxes=[box]))
    writer.release()
    return Source(
        kind="video", path=str(path), group=path.stem, width=width, height=height, frames=labelled
    )


def synthetic_label_set(folder: Path, clips: int = 3, frames: int = 12) -> LabelSet:
    folder.mkdir(parents=True, exist_ok=True)
    sources = [
        moving_box_clip(folder / f"clip-{n}.mp4", frames=frames, seed=n) for n in range(clips)
    ]
    return LabelSet(classes=["car", "garbage_bag"], sources=sources)


def bus_patch() -> npt.NDArray[np.uint8]:
    """The bus of Ultralytics' sample image `bus.jpg` (shipped with the package), cropped to
    the box a COCO detector draws around it: a real vehicle to park in a synthetic lane."""
    from ultralytics.utils import ASSETS

    image = cv2.imread(str(ASSETS / "bus.jpg"))
    assert image is not None, "ultralytics' bus.jpg is missing"
    height, width = image.shape[:2]
    x1, y1, x2, y2 = (0.005, 0.21, 0.986, 0.696)  # the bus, as a fraction of the image
    return np.ascontiguousarray(
        image[int(y1 * height) : int(y2 * height), int(x1 * width) : int(x2 * width)]
    )


def parked_vehicle_clip(
    path: Path, patch: npt.NDArray[np.uint8], park_s: float, seconds: float = 8.0
) -> None:
    """A small lane scene (320x180, 10 fps) where `patch` stands in the lane from `park_s`."""
    scene = LaneScene(width=320, height=180, seconds=seconds, drop_s=None, passers_every_s=1e6)
    box = (0.3, 0.45, 0.75, 0.95)  # inside edge.offline.synthetic.LANE
    write_frames(with_left_object(frames(scene), patch, box, park_s), str(path), scene.fps)
