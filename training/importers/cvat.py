"""CVAT for video 1.1 XML: tracks of boxes, keyframes interpolated as CVAT does, `outside`
boxes ending a track's visibility. Parsed with defusedxml (no entity expansion, no DTDs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from xml.etree.ElementTree import Element

from defusedxml import ElementTree as SafeTree

from training.importers.base import ClassMapping, ImportResult, PixelBox, convert_frame, probe_video
from training.labels import Problem, Source


@dataclass(frozen=True, slots=True)
class TrackShape:
    frame: int
    outside: bool
    keyframe: bool
    x1: float
    y1: float
    x2: float
    y2: float


def interpolate_track(shapes: list[TrackShape], stop_frame: int) -> dict[int, tuple[float, ...]]:
    """Box of a track on every frame it is visible, from its shapes (CVAT semantics).

    Between two shapes the box moves linearly when the later one is visible, and stays when
    the later one is `outside`; an `outside` shape hides the track until the next shape; after
    the last visible shape the box stays until `stop_frame`.

    >>> a = TrackShape(0, False, True, 0, 0, 10, 10)
    >>> b = TrackShape(2, False, True, 2, 0, 12, 10)
    >>> interpolate_track([a, b], 3)[1]
    (1.0, 0.0, 11.0, 10.0)
    """
    ordered = sorted(shapes, key=lambda s: s.frame)
    boxes: dict[int, tuple[float, ...]] = {}
    if not ordered:
        return boxes
    for current, following in zip(ordered, [*ordered[1:], None], strict=True):
        if current.outside:
            continue
        start = (current.x1, current.y1, current.x2, current.y2)
        end_frame = following.frame if following is not None else stop_frame + 1
        for frame in range(current.frame, end_frame):
            if following is None or following.outside:
                boxes[frame] = start
                continue
            t = (frame - current.frame) / (following.frame - current.frame)
            target = (following.x1, following.y1, following.x2, following.y2)
            boxes[frame] = tuple(a + (b - a) * t for a, b in zip(start, target, strict=True))
    return boxes


def import_cvat_video(
    xml_path: Path, mapping: ClassMapping, clip: Path | None = None
) -> ImportResult:
    """Read a CVAT for video 1.1 export; `clip` is the video it labels (default: the task's
    `<source>` name beside the XML file)."""
    result = ImportResult(classes=list(mapping.classes))
    file = str(xml_path)
    try:
        root = SafeTree.parse(xml_path).getroot()
    except (OSError, SafeTree.ParseError) as error:
        result.problems.append(Problem(file, None, f"unreadable XML: {error}"))
        return result
    task = root.find("meta/task")
    task = task if task is not None else root.find("meta/job")
    if task is None:
        result.problems.append(Problem(file, None, "no <meta><task> (not a CVAT for video export)"))
        return result
    video = clip or xml_path.parent / (task.findtext("source") or "").strip()
    width, height = _size(task)
    start = int(task.findtext("start_frame") or 0)
    stop = int(task.findtext("stop_frame") or int(task.findtext("size") or 1) - 1)
    info = probe_video(video) if video.is_file() else None
    if info is None:
        result.problems.append(Problem(file, None, f"video {video} is missing or unreadable"))
    else:
        width, height = width or info.width, height or info.height
        stop = min(stop, info.frames - 1) if info.frames > 0 else stop
    if not width or not height:
        result.problems.append(Problem(file, None, "image size unknown (no <original_size>)"))
        return result
    per_frame: dict[int, list[PixelBox]] = {f: [] for f in range(start, stop + 1)}
    for track in root.iter("track"):
        label = track.get("label", "")
        shapes = [_shape(box) for box in track.iter("box")]
        for shape in shapes:
            if not start <= shape.frame <= stop:
                where = f"track {track.get('id')} ({label})"
                result.problems.append(
                    Problem(file, shape.frame, f"{where}: frame beyond the clip ({start}-{stop})")
                )
        visible = interpolate_track([s for s in shapes if start <= s.frame <= stop], stop)
        for frame, (x1, y1, x2, y2) in visible.items():
            per_frame[frame].append(PixelBox(label, x1, y1, x2, y2))
    frames = [
        convert_frame(file, index, boxes, (width, height), mapping, result.problems)
        for index, boxes in sorted(per_frame.items())
    ]
    result.sources.append(
        Source(
            kind="video",
            path=str(video.resolve()),
            group=video.stem,
            width=width,
            height=height,
            frames=frames,
        )
    )
    return result


def _size(task: Element) -> tuple[int, int]:
    size = task.find("original_size")
    if size is None:
        return 0, 0
    return int(size.findtext("width") or 0), int(size.findtext("height") or 0)


def _shape(box: Element) -> TrackShape:
    return TrackShape(
        frame=int(box.get("frame", "0")),
        outside=box.get("outside", "0") == "1",
        keyframe=box.get("keyframe", "1") == "1",
        x1=float(box.get("xtl", "0")),
        y1=float(box.get("ytl", "0")),
        x2=float(box.get("xbr", "0")),
        y2=float(box.get("ybr", "0")),
    )
