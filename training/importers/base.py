"""What every importer shares: the class mapping, the box checks, video and image sizes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from training.labels import Box, LabelledFrame, LabelSet, Problem, Source

PROJECT_CLASSES: tuple[str, ...] = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "bus",
    "truck",
    "tricycle",
    "van",
    "e-bike",
    "backpack",
    "handbag",
    "suitcase",
    "garbage_bag",
    "bin",
    "box",
)
"""The classes the project's rules judge (vehicles, people, objects left in lanes, rubbish);
the default target of a mapping file. Vehicle names are those of `VEHICLE_CLASSES`."""

EDGE_TOLERANCE_PX = 1.0
"""A box may overshoot the image border by this much (annotation tools round)."""
DUPLICATE_IOU = 0.9
"""Two boxes of one class overlapping this much on one frame are one object labelled twice."""
DEFAULT_CLIP_PATTERN = r"^(?P<clip>.+?)[_-]?(?:frame)?[_-]?(?P<frame>\d+)$"
"""Image names like `gate-east_000123` or `frame_000123`: the clip and the frame number."""


class ClassMapping(BaseModel):
    """The mapping file: which source class becomes which project class.

    ```yaml
    classes: [person, car, truck, garbage_bag]   # target classes, in class-id order
    map:
      pedestrian: person     # source name -> target name
      lorry: truck
      rubbish: garbage_bag
      shadow: null           # dropped on purpose, not an error
    ```
    A source name equal to a target class maps to itself; any other name is an error.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    classes: list[str] = Field(default_factory=lambda: list(PROJECT_CLASSES), min_length=1)
    map: dict[str, str | None] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _targets_known(self) -> ClassMapping:
        unknown = sorted({t for t in self.map.values() if t is not None} - set(self.classes))
        if unknown:
            raise ValueError(f"map targets {unknown} are not in classes {self.classes}")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("classes must be unique")
        return self

    def target(self, name: str) -> int | None:
        """Class id of a source name; None when it is dropped on purpose.

        Raises:
            KeyError: the name is neither mapped nor a target class.
        """
        if name in self.map:
            mapped = self.map[name]
            return None if mapped is None else self.classes.index(mapped)
        if name in self.classes:
            return self.classes.index(name)
        raise KeyError(name)


def load_mapping(path: Path | None) -> ClassMapping:
    if path is None:
        return ClassMapping()
    return ClassMapping.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


@dataclass(frozen=True, slots=True)
class PixelBox:
    """A box as a tool wrote it, in pixels of a `width` x `height` image."""

    label: str
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass
class ImportResult:
    """The sources read so far and every problem met."""

    classes: list[str]
    sources: list[Source] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def label_set(self) -> LabelSet:
        return LabelSet(classes=self.classes, sources=self.sources)

    def extend(self, other: ImportResult) -> None:
        self.sources.extend(other.sources)
        self.problems.extend(other.problems)


def iou(a: PixelBox, b: PixelBox) -> float:
    """Intersection over union of two boxes.

    >>> iou(PixelBox("a", 0, 0, 2, 2), PixelBox("a", 1, 0, 3, 2))
    0.3333333333333333
    """
    w = min(a.x2, b.x2) - max(a.x1, b.x1)
    h = min(a.y2, b.y2) - max(a.y1, b.y1)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter
    return inter / union if union > 0 else 0.0


def convert_frame(
    file: str,
    frame: int,
    boxes: list[PixelBox],
    size_wh: tuple[int, int],
    mapping: ClassMapping,
    problems: list[Problem],
    duplicate_iou: float = DUPLICATE_IOU,
) -> LabelledFrame:
    """Check and normalise one frame's boxes; each bad box adds a `Problem` and is left out."""
    width, height = size_wh
    kept: list[tuple[int, int, PixelBox]] = []  # (box number, class id, box)
    for number, box in enumerate(boxes):
        where = f"box {number} ({box.label} {box.x1:.0f},{box.y1:.0f},{box.x2:.0f},{box.y2:.0f})"
        try:
            cls = mapping.target(box.label)
        except KeyError:
            problems.append(Problem(file, frame, f"{where}: unknown class {box.label!r}"))
            continue
        if box.x2 <= box.x1 or box.y2 <= box.y1:
            problems.append(Problem(file, frame, f"{where}: empty box"))
            continue
        tol = EDGE_TOLERANCE_PX
        if box.x1 < -tol or box.y1 < -tol or box.x2 > width + tol or box.y2 > height + tol:
            problems.append(Problem(file, frame, f"{where}: outside the {width}x{height} image"))
            continue
        if cls is None:
            continue
        twin = next(
            (n for n, c, other in kept if c == cls and iou(box, other) >= duplicate_iou), None
        )
        if twin is not None:
            problems.append(Problem(file, frame, f"{where}: overlapping duplicate of box {twin}"))
            continue
        kept.append((number, cls, box))
    return LabelledFrame(index=frame, boxes=[_normalise(c, b, width, height) for _, c, b in kept])


def _normalise(cls: int, box: PixelBox, width: int, height: int) -> Box:
    def clamp(value: float) -> float:
        return min(1.0, max(0.0, value))

    return Box(
        cls=cls,
        x1=clamp(box.x1 / width),
        y1=clamp(box.y1 / height),
        x2=clamp(box.x2 / width),
        y2=clamp(box.y2 / height),
    )


def yolo_box(
    label: str, values: tuple[float, float, float, float], wh: tuple[int, int]
) -> PixelBox:
    """A YOLO `cx cy w h` (normalised) line's box in pixels."""
    cx, cy, bw, bh = values
    width, height = wh
    return PixelBox(
        label,
        (cx - bw / 2) * width,
        (cy - bh / 2) * height,
        (cx + bw / 2) * width,
        (cy + bh / 2) * height,
    )


@dataclass(frozen=True, slots=True)
class VideoInfo:
    width: int
    height: int
    frames: int


def probe_video(path: Path) -> VideoInfo | None:
    """Size and frame count of a video file, or None when it cannot be opened."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            return None
        return VideoInfo(
            int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
        )
    finally:
        capture.release()


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the image header, or None when it is missing or unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, UnidentifiedImageError):
        return None


def clip_and_frame(stem: str, pattern: str = DEFAULT_CLIP_PATTERN) -> tuple[str, int] | None:
    """The clip name and frame number in an extracted frame's file name.

    >>> clip_and_frame("gate-east_000123")
    ('gate-east', 123)
    >>> clip_and_frame("frame_000007")
    ('frame', 7)
    """
    match = re.match(pattern, stem)
    if match is None:
        return None
    return match.group("clip") or stem, int(match.group("frame"))


def source_for_image(
    path: Path, size: tuple[int, int], frame: LabelledFrame, pattern: str, group: str | None = None
) -> Source:
    """A still image as a source; its group (unless given) is the clip its name says it came
    from, so frames extracted from one clip stay on one side of the split."""
    parsed = clip_and_frame(path.stem, pattern)
    return Source(
        kind="image",
        path=str(path.resolve()),
        group=group or (parsed[0] if parsed else path.stem),
        width=size[0],
        height=size[1],
        frames=[frame.model_copy(update={"index": 0})],
    )
