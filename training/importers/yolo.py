"""YOLO text labels: Ultralytics dataset folders (data.yaml, images/, labels/) and CVAT's
"YOLO 1.1" export (obj.names, obj.data, train.txt, obj_train_data/)."""

from __future__ import annotations

from pathlib import Path

import yaml

from training.importers.base import (
    DEFAULT_CLIP_PATTERN,
    ClassMapping,
    ImportResult,
    PixelBox,
    clip_and_frame,
    convert_frame,
    image_size,
    probe_video,
    source_for_image,
    yolo_box,
)
from training.labels import LabelledFrame, Problem, Source

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def parse_yolo_lines(
    text: str, names: list[str], file: str, frame: int, problems: list[Problem]
) -> list[tuple[str, tuple[float, float, float, float]]]:
    """`class cx cy w h` lines (normalised) → (source class name, values); bad lines reported.

    >>> parse_yolo_lines("0 0.5 0.5 0.2 0.2", ["car"], "a.txt", 0, [])
    [('car', (0.5, 0.5, 0.2, 0.2))]
    """
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            cls = int(parts[0])
            cx, cy, w, h = (float(v) for v in parts[1:5])
            if len(parts) != 5:
                raise ValueError
        except ValueError:
            problems.append(Problem(file, frame, f"line {number}: not 'class cx cy w h': {line!r}"))
            continue
        if not 0 <= cls < len(names):
            problems.append(Problem(file, frame, f"line {number}: unknown class id {cls}"))
            continue
        rows.append((names[cls], (cx, cy, w, h)))
    return rows


def _frame_of(
    label_file: Path,
    names: list[str],
    frame: int,
    wh: tuple[int, int],
    mapping: ClassMapping,
    problems: list[Problem],
) -> LabelledFrame:
    file = str(label_file)
    text = label_file.read_text(encoding="utf-8") if label_file.is_file() else ""
    rows = parse_yolo_lines(text, names, file, frame, problems)
    boxes: list[PixelBox] = [yolo_box(name, values, wh) for name, values in rows]
    return convert_frame(file, frame, boxes, wh, mapping, problems)


def import_yolo_folder(
    data_yaml: Path, mapping: ClassMapping, clip_pattern: str = DEFAULT_CLIP_PATTERN
) -> ImportResult:
    """An Ultralytics dataset: `data.yaml` with `names` and the image folders of each split;
    labels in the parallel `labels/` folders. Images without a label file are background."""
    result = ImportResult(classes=list(mapping.classes))
    config = yaml.safe_load(data_yaml.read_text(encoding="utf-8")) or {}
    raw_names = config.get("names", [])
    names = (
        [str(raw_names[k]) for k in sorted(raw_names)]
        if isinstance(raw_names, dict)
        else [str(n) for n in raw_names]
    )
    root = data_yaml.parent / str(config.get("path", ""))
    image_files: list[Path] = []
    for split in ("train", "val", "test"):
        for entry in _as_list(config.get(split)):
            folder = root / entry
            if folder.is_dir():
                image_files += sorted(
                    p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                )
            elif folder.is_file() and folder.suffix == ".txt":
                image_files += [
                    root / line.strip() for line in folder.read_text().splitlines() if line.strip()
                ]
            else:
                result.problems.append(
                    Problem(str(data_yaml), None, f"{split}: {folder} not found")
                )
    seen_labels: set[Path] = set()
    for image in image_files:
        label_file = _label_path(image)
        seen_labels.add(label_file.resolve())
        _add_image(result, image, label_file, names, mapping, clip_pattern)
    for split_labels in {_label_path(i).parent for i in image_files}:
        for orphan in sorted(split_labels.glob("*.txt")):
            if orphan.resolve() not in seen_labels:
                result.problems.append(Problem(str(orphan), None, "labels for a missing image"))
    return result


def import_cvat_yolo(
    folder: Path,
    mapping: ClassMapping,
    clip: Path | None = None,
    clip_pattern: str = DEFAULT_CLIP_PATTERN,
) -> ImportResult:
    """CVAT's YOLO 1.1 export (unzipped): `obj.names`, `train.txt` and `obj_train_data/`.

    With `clip`, the label files name frames of that video (`frame_000123.txt` = frame 123),
    so the export needs no images; without it, each listed image must be there.
    """
    result = ImportResult(classes=list(mapping.classes))
    names_file = folder / "obj.names"
    if not names_file.is_file():
        result.problems.append(Problem(str(folder), None, "no obj.names (not a CVAT YOLO export)"))
        return result
    names = [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
    label_files = sorted(folder.rglob("*.txt"))
    label_files = [p for p in label_files if p.name not in ("train.txt", "valid.txt", "test.txt")]
    if clip is not None:
        _from_clip(result, clip, label_files, names, mapping, clip_pattern)
        return result
    listed: list[Path] = []
    for listing in ("train.txt", "valid.txt", "test.txt"):
        if (folder / listing).is_file():
            lines = (folder / listing).read_text().splitlines()
            listed += [
                folder / line.strip().removeprefix("data/") for line in lines if line.strip()
            ]
    images = listed or [_image_beside(p) for p in label_files]
    group = folder.name
    for image in images:
        _add_image(result, image, image.with_suffix(".txt"), names, mapping, clip_pattern, group)
    return result


def _from_clip(
    result: ImportResult,
    clip: Path,
    label_files: list[Path],
    names: list[str],
    mapping: ClassMapping,
    pattern: str,
) -> None:
    info = probe_video(clip)
    if info is None:
        result.problems.append(Problem(str(clip), None, "video missing or unreadable"))
        return
    frames: list[LabelledFrame] = []
    for label_file in label_files:
        parsed = clip_and_frame(label_file.stem, pattern)
        if parsed is None:
            result.problems.append(Problem(str(label_file), None, "no frame number in the name"))
            continue
        frame = parsed[1]
        if frame >= info.frames:
            result.problems.append(
                Problem(str(label_file), frame, f"frame beyond the clip ({info.frames} frames)")
            )
            continue
        wh = (info.width, info.height)
        frames.append(_frame_of(label_file, names, frame, wh, mapping, result.problems))
    result.sources.append(
        Source(
            kind="video",
            path=str(clip.resolve()),
            group=clip.stem,
            width=info.width,
            height=info.height,
            frames=sorted(frames, key=lambda f: f.index),
        )
    )


def _add_image(
    result: ImportResult,
    image: Path,
    label_file: Path,
    names: list[str],
    mapping: ClassMapping,
    pattern: str,
    group: str | None = None,
) -> None:
    size = image_size(image)
    if size is None:
        result.problems.append(Problem(str(image), None, "missing or unreadable image"))
        return
    frame = _frame_of(label_file, names, 0, size, mapping, result.problems)
    result.sources.append(source_for_image(image, size, frame, pattern, group))


def _label_path(image: Path) -> Path:
    """Ultralytics' rule: the last `images` folder in the path becomes `labels`, suffix .txt."""
    parts = list(image.parts)
    for index in range(len(parts) - 1, -1, -1):
        if parts[index] == "images":
            parts[index] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _image_beside(label_file: Path) -> Path:
    for suffix in IMAGE_SUFFIXES:
        if label_file.with_suffix(suffix).is_file():
            return label_file.with_suffix(suffix)
    return label_file.with_suffix(".jpg")


def _as_list(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]
