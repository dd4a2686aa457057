"""Pre-annotation (`zhizhi data preannotate`): a teacher detector labels the clips, a labelling
plan corrects it, and each clip's labels are written as CVAT for video 1.1 XML, the file the
`cvat-video` importer reads and CVAT opens for review.

The plan (`training/labels/plan.yaml`) is what a labeller's corrections amount to, kept in the
repository so the labels can be regenerated, reviewed and diffed:

* the teacher (weights, input size, score threshold) and how often it looks (`every_s`);
* `map`: teacher class → project class for every clip; a class not listed is dropped (the
  teacher's COCO classes are mostly irrelevant to the project's rules);
* per clip, `map` overrides (a car seen from above that the teacher calls "cell phone" is a
  `car`), `drop` regions (a teacher box that is no object), and `add`: tracks the teacher
  cannot give (a `garbage_bag`: COCO has no such class), as keyframes in normalised
  coordinates, interpolated between keyframes as CVAT interpolates them.

The teacher's detections on the sampled frames are linked into tracks by IoU, one keyframe per
sampled frame, so CVAT (and the importer) interpolate the frames in between. The detections
are cached (JSON per clip), so a changed plan is applied without running the teacher again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as Tree

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from training.importers.base import PROJECT_CLASSES, PixelBox, iou
from training.importers.cvat import TrackShape

logger = logging.getLogger(__name__)

NormBox = tuple[float, float, float, float]


class TeacherConfig(BaseModel):
    """The detector that pre-annotates."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weights: str = Field(default="yolo11n.pt", description="File name in $ZHIZHI_MODEL_DIR")
    imgsz: int = Field(default=1280, ge=32, multiple_of=32)
    min_score: float = Field(default=0.25, ge=0.0, le=1.0)


class Keyframe(BaseModel):
    """A box of an added track on one frame, normalised x1 y1 x2 y2 (0..1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    frame: int = Field(ge=0)
    box: NormBox

    @model_validator(mode="after")
    def _ordered(self) -> Keyframe:
        x1, y1, x2, y2 = self.box
        if not (0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1):
            raise ValueError(f"frame {self.frame}: box {self.box} is not x1<x2, y1<y2 in 0..1")
        return self


class AddedTrack(BaseModel):
    """An object the teacher does not give, labelled by hand: visible from the first keyframe
    to `until` (inclusive; default the end of the clip)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str
    keyframes: list[Keyframe] = Field(min_length=1)
    until: int | None = Field(default=None, ge=0)
    note: str = ""


class DropRegion(BaseModel):
    """Teacher boxes of `label` (any label when None) whose centre lies in `box` on frames
    `start`..`stop` are not objects (a sign, a reflection); they are removed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    box: NormBox
    label: str | None = None
    start: int = 0
    stop: int | None = None
    note: str = ""


class ClipPlan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    every_s: float | None = Field(default=None, gt=0, description="Default: the plan's")
    max_missed: int | None = Field(default=None, ge=0, description="Default: the plan's")
    map: dict[str, str | None] = Field(
        default_factory=dict, description="Teacher class → project class, over the plan's map"
    )
    drop: list[DropRegion] = Field(default_factory=list)
    add: list[AddedTrack] = Field(default_factory=list)
    segments: dict[str, tuple[int, int]] = Field(
        default_factory=dict,
        description="Parts of the clip written as separate CVAT tasks (first, last frame), "
        "so that one long clip can be split between train and val (import each with its own "
        "--group); a boundary must fall where no track is visible",
    )
    note: str = ""


class LabelPlan(BaseModel):
    """`training/labels/plan.yaml`: the teacher, the class map and every clip's corrections."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    every_s: float = Field(default=0.2, gt=0, description="The teacher looks this often")
    link_iou: float = Field(default=0.3, gt=0, le=1, description="IoU that links two sightings")
    max_missed: int = Field(
        default=2, ge=0, description="Sampled frames in a row a track may be missed and go on"
    )
    merge_iou: float = Field(
        default=0.6,
        gt=0,
        le=1,
        description="Boxes mapped to one class that overlap this much are one object (the "
        "teacher's 'toilet' and 'truck' on one car from above): the best-scored is kept",
    )
    classes: list[str] = Field(default_factory=lambda: list(PROJECT_CLASSES), min_length=1)
    map: dict[str, str | None] = Field(default_factory=dict)
    clips: dict[str, ClipPlan] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _targets_known(self) -> LabelPlan:
        targets = {t for t in self.map.values() if t is not None}
        for plan in self.clips.values():
            targets |= {t for t in plan.map.values() if t is not None}
            targets |= {track.label for track in plan.add}
        unknown = sorted(targets - set(self.classes))
        if unknown:
            raise ValueError(f"labels {unknown} are not in classes {self.classes}")
        return self

    def class_map(self, clip: str) -> dict[str, str | None]:
        plan = self.clips.get(clip)
        return {**self.map, **(plan.map if plan else {})}

    def step_frames(self, clip: str, fps: float) -> int:
        plan = self.clips.get(clip)
        every_s = plan.every_s if plan and plan.every_s else self.every_s
        return max(1, round(every_s * fps))


def load_plan(path: Path) -> LabelPlan:
    return LabelPlan.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


@dataclass(frozen=True, slots=True)
class TeacherBox:
    """One detection of the teacher, in its own class name and image pixels."""

    label: str
    score: float
    x1: float
    y1: float
    x2: float
    y2: float

    def pixel_box(self, label: str | None = None) -> PixelBox:
        return PixelBox(label or self.label, self.x1, self.y1, self.x2, self.y2)


@dataclass(frozen=True, slots=True)
class TeacherRun:
    """The teacher's detections on the sampled frames of one clip (the cache file)."""

    clip: str
    width: int
    height: int
    frames: int
    fps: float
    step: int
    teacher: dict[str, Any]
    detections: dict[int, list[TeacherBox]]

    def save(self, path: Path) -> None:
        body = {
            **{k: getattr(self, k) for k in ("clip", "width", "height", "frames", "fps", "step")},
            "teacher": self.teacher,
            "detections": {
                str(f): [asdict(b) for b in boxes] for f, boxes in sorted(self.detections.items())
            },
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(body), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> TeacherRun:
        body = json.loads(path.read_text(encoding="utf-8"))
        detections = {
            int(f): [TeacherBox(**b) for b in boxes] for f, boxes in body["detections"].items()
        }
        return cls(**{**body, "detections": detections})


@dataclass(frozen=True, slots=True)
class Track:
    label: str
    shapes: list[TrackShape]
    source: str  # "teacher" or "plan"


def map_detections(
    detections: Mapping[int, list[TeacherBox]],
    class_map: Mapping[str, str | None],
    drops: Iterable[DropRegion],
    size_wh: tuple[int, int],
    merge_iou: float = 0.6,
) -> dict[int, list[PixelBox]]:
    """The teacher's boxes in project classes: unmapped and null-mapped classes dropped, boxes
    in a drop region removed, boxes of one project class overlapping by `merge_iou` merged
    into the best-scored one. Pure.

    >>> phone, tv = TeacherBox("cell phone", 0.5, 10, 10, 50, 30), TeacherBox("tv", 0.9, 0, 0, 5, 5)
    >>> boxes = {0: [phone, tv]}
    >>> map_detections(boxes, {"cell phone": "car"}, [], (100, 100))[0]
    [PixelBox(label='car', x1=10, y1=10, x2=50, y2=30)]
    """
    width, height = size_wh
    regions = list(drops)
    mapped: dict[int, list[PixelBox]] = {}
    for frame, boxes in detections.items():
        kept: list[PixelBox] = []
        for box in sorted(boxes, key=lambda b: -b.score):
            target = class_map.get(box.label)
            if target is None:
                continue
            cx, cy = (box.x1 + box.x2) / 2 / width, (box.y1 + box.y2) / 2 / height
            if any(_dropped(region, frame, box.label, target, cx, cy) for region in regions):
                continue
            mapped_box = box.pixel_box(target)
            if any(k.label == target and iou(k, mapped_box) >= merge_iou for k in kept):
                continue
            kept.append(mapped_box)
        mapped[frame] = kept
    return mapped


def _dropped(
    region: DropRegion, frame: int, source: str, target: str, cx: float, cy: float
) -> bool:
    if region.label is not None and region.label not in (source, target):
        return False
    if frame < region.start or (region.stop is not None and frame > region.stop):
        return False
    x1, y1, x2, y2 = region.box
    return x1 <= cx <= x2 and y1 <= cy <= y2


@dataclass
class _OpenTrack:
    box: PixelBox
    frame: int
    shapes: list[TrackShape]
    velocity: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # x1 y1 x2 y2 a frame
    missed: int = 0  # sampled frames since the last sighting

    def predicted(self, frame: int) -> PixelBox:
        dt = frame - self.frame
        b, v = self.box, self.velocity
        return PixelBox(
            b.label, b.x1 + v[0] * dt, b.y1 + v[1] * dt, b.x2 + v[2] * dt, b.y2 + v[3] * dt
        )

    def extend(self, frame: int, box: PixelBox) -> None:
        dt = frame - self.frame
        old = self.box
        self.velocity = (
            (box.x1 - old.x1) / dt,
            (box.y1 - old.y1) / dt,
            (box.x2 - old.x2) / dt,
            (box.y2 - old.y2) / dt,
        )
        self.box, self.frame, self.missed = box, frame, 0
        self.shapes.append(_shape(frame, box))


def link_tracks(
    boxes: Mapping[int, list[PixelBox]], last_frame: int, min_iou: float, max_missed: int = 0
) -> list[Track]:
    """Tracks from the boxes of the sampled frames: a box continues the track of the same
    class whose box, moved on at its last velocity, overlaps it most (IoU ≥ `min_iou`, greedy,
    best pair first). A track the teacher misses on up to `max_missed` sampled frames in a row
    bridges them (CVAT interpolates across); a track not continued ends with an `outside`
    shape on the frame after its last box, so nothing is extrapolated past the teacher's last
    sighting, unless it was seen on the last sampled frame (then it stays to the end). Pure.

    >>> a = {0: [PixelBox("car", 0, 0, 10, 10)], 2: [PixelBox("car", 1, 0, 11, 10)], 4: []}
    >>> [(s.frame, s.outside) for s in link_tracks(a, 9, 0.3)[0].shapes]
    [(0, False), (2, False), (3, True)]
    """
    finished: list[Track] = []
    open_tracks: list[_OpenTrack] = []
    for frame in sorted(boxes):
        current = boxes[frame]
        pairs = sorted(
            (
                (iou(track.predicted(frame), box), t, b)
                for t, track in enumerate(open_tracks)
                for b, box in enumerate(current)
                if box.label == track.box.label
            ),
            reverse=True,
        )
        taken_t: set[int] = set()
        taken_b: set[int] = set()
        for overlap, t, b in pairs:
            if overlap < min_iou or t in taken_t or b in taken_b:
                continue
            taken_t.add(t)
            taken_b.add(b)
            open_tracks[t].extend(frame, current[b])
        still = []
        for t, track in enumerate(open_tracks):
            if t not in taken_t:
                track.missed += 1
            if track.missed > max_missed:
                finished.append(_closed(track, last_frame))
            else:
                still.append(track)
        still.extend(
            _OpenTrack(box, frame, [_shape(frame, box)])
            for b, box in enumerate(current)
            if b not in taken_b
        )
        open_tracks = still
    last_sampled = max(boxes, default=0)
    for track in open_tracks:
        finished.append(_closed(track, last_frame, at_end=track.frame == last_sampled))
    return sorted(finished, key=lambda track: (track.shapes[0].frame, track.label))


def _shape(frame: int, box: PixelBox, outside: bool = False) -> TrackShape:
    return TrackShape(frame, outside, True, box.x1, box.y1, box.x2, box.y2)


def _closed(track: _OpenTrack, last_frame: int, at_end: bool = False) -> Track:
    """A track ends where the teacher last saw it; one still seen on the last sampled frame
    stays to the end of the clip (CVAT's meaning of a track without an `outside` shape)."""
    shapes = track.shapes
    end = shapes[-1].frame + 1
    if not at_end and end <= last_frame:
        shapes = [*shapes, _shape(end, track.box, outside=True)]
    return Track(track.box.label, shapes, "teacher")


def added_tracks(
    added: Iterable[AddedTrack], size_wh: tuple[int, int], last_frame: int
) -> list[Track]:
    """The plan's hand-made tracks in pixels, with an `outside` shape after `until`."""
    width, height = size_wh
    tracks = []
    for item in added:
        shapes = []
        for key in sorted(item.keyframes, key=lambda k: k.frame):
            x1, y1, x2, y2 = key.box
            box = PixelBox(item.label, x1 * width, y1 * height, x2 * width, y2 * height)
            shapes.append(_shape(min(key.frame, last_frame), box))
        if item.until is not None and item.until < last_frame:
            last = shapes[-1]
            shapes.append(
                TrackShape(item.until + 1, True, True, last.x1, last.y1, last.x2, last.y2)
            )
        tracks.append(Track(item.label, shapes, "plan"))
    return tracks


def cvat_video_xml(
    tracks: list[Track],
    clip: str,
    size_wh: tuple[int, int],
    frames: int,
    labels: list[str],
    segment: tuple[int, int] | None = None,
) -> str:
    """CVAT for video 1.1 XML of the tracks (what CVAT exports and the importer reads); a
    `segment` (first, last frame) makes it a task of that part of the clip."""
    start, stop = segment or (0, frames - 1)
    root = Tree.Element("annotations")
    Tree.SubElement(root, "version").text = "1.1"
    meta = Tree.SubElement(root, "meta")
    task = Tree.SubElement(meta, "task")
    for key, value in (
        ("name", Path(clip).stem),
        ("size", str(frames)),
        ("mode", "interpolation"),
        ("start_frame", str(start)),
        ("stop_frame", str(stop)),
    ):
        Tree.SubElement(task, key).text = value
    label_list = Tree.SubElement(task, "labels")
    for name in labels:
        label = Tree.SubElement(label_list, "label")
        Tree.SubElement(label, "name").text = name
        Tree.SubElement(label, "type").text = "rectangle"
    original = Tree.SubElement(task, "original_size")
    Tree.SubElement(original, "width").text = str(size_wh[0])
    Tree.SubElement(original, "height").text = str(size_wh[1])
    Tree.SubElement(task, "source").text = clip
    for number, track in enumerate(tracks):
        node = Tree.SubElement(
            root, "track", id=str(number), label=track.label, source=track.source
        )
        for shape in track.shapes:
            Tree.SubElement(
                node,
                "box",
                frame=str(shape.frame),
                keyframe="1",
                outside="1" if shape.outside else "0",
                occluded="0",
                xtl=f"{shape.x1:.2f}",
                ytl=f"{shape.y1:.2f}",
                xbr=f"{shape.x2:.2f}",
                ybr=f"{shape.y2:.2f}",
                z_order="0",
            )
    Tree.indent(root)
    return Tree.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def clip_tracks(run: TeacherRun, plan: LabelPlan) -> list[Track]:
    """Every track of a clip: the teacher's (mapped, dropped where the plan says) and the
    plan's added ones."""
    clip_plan = plan.clips.get(run.clip, ClipPlan())
    size = (run.width, run.height)
    boxes = map_detections(
        run.detections, plan.class_map(run.clip), clip_plan.drop, size, plan.merge_iou
    )
    last = run.frames - 1
    return [
        *link_tracks(boxes, last, plan.link_iou, _or(clip_plan.max_missed, plan.max_missed)),
        *added_tracks(clip_plan.add, size, last),
    ]


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def segment_tracks(tracks: list[Track], start: int, stop: int, last_frame: int) -> list[Track]:
    """The tracks of frames `start`..`stop` of a clip of `last_frame + 1` frames (a CVAT task
    of that range).

    Raises:
        ValueError: a track is visible on both sides of a boundary (the split would cut it).
    """
    kept = []
    for track in tracks:
        first = track.shapes[0].frame
        last = track.shapes[-1].frame - 1 if track.shapes[-1].outside else last_frame
        if last < start or first > stop:
            continue
        if first < start or last > stop:
            raise ValueError(
                f"a {track.label} track visible on frames {first}-{last} crosses the segment "
                f"{start}-{stop}: move the boundary"
            )
        shapes = [shape for shape in track.shapes if shape.frame <= stop]
        kept.append(Track(track.label, shapes, track.source))
    return kept


def run_teacher(clip: Path, plan: LabelPlan, model_dir: Path) -> TeacherRun:
    """The teacher on every `step`-th frame of the clip (CPU, ultralytics)."""
    import cv2

    from training.ultra import yolo

    weights = model_dir / plan.teacher.weights
    model = yolo(weights)
    capture = cv2.VideoCapture(str(clip))
    if not capture.isOpened():
        raise OSError(f"cannot open video {clip}")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    step = plan.step_frames(clip.name, fps)
    detections: dict[int, list[TeacherBox]] = {}
    count = 0
    try:
        for index, image in _frames(capture):
            count = index + 1
            if index % step:
                continue
            result = model.predict(
                image,
                imgsz=plan.teacher.imgsz,
                conf=plan.teacher.min_score,
                device="cpu",
                verbose=False,
            )[0]
            names = result.names
            detections[index] = [
                TeacherBox(names[int(c)], round(float(s), 3), *(round(float(v), 1) for v in xyxy))
                for xyxy, c, s in zip(
                    result.boxes.xyxy.tolist(),
                    result.boxes.cls.tolist(),
                    result.boxes.conf.tolist(),
                    strict=True,
                )
            ]
    finally:
        capture.release()
    teacher = plan.teacher.model_dump() | {"sha256": _sha256(weights)}
    return TeacherRun(clip.name, width, height, count, fps, step, teacher, detections)


def _frames(capture: Any) -> Iterator[tuple[int, Any]]:
    index = 0
    while True:
        ok, image = capture.read()
        if not ok:
            return
        yield index, image
        index += 1


def _sha256(path: Path) -> str:
    from training.dataset import file_sha256

    return file_sha256(path)


def teacher_run(
    clip: Path, plan: LabelPlan, model_dir: Path, cache: Path, refresh: bool = False
) -> TeacherRun:
    """The cached teacher run of a clip when it was made with the same teacher and step, else
    a new one (cached)."""
    path = cache / f"{clip.stem}.json"
    if path.is_file() and not refresh:
        cached = TeacherRun.load(path)
        same = {k: cached.teacher.get(k) for k in plan.teacher.model_dump()}
        if same == plan.teacher.model_dump() and cached.step == plan.step_frames(
            clip.name, cached.fps
        ):
            return cached
    run = run_teacher(clip, plan, model_dir)
    run.save(path)
    return run
