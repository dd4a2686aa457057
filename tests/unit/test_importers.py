"""Label importers: each format read, mapped and checked; every bad label reported with its
file and frame. Fixture files are written by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from training.importers import (
    ClassMapping,
    import_coco,
    import_cvat_video,
    import_cvat_yolo,
    import_yolo_folder,
)
from training.importers.cvat import TrackShape, interpolate_track

MAPPING = ClassMapping(classes=["car", "person"], map={"vehicle": "car", "shadow": None})


def write_video(path: Path, frames: int, size_wh: tuple[int, int] = (100, 80)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, size_wh)
    for _ in range(frames):
        writer.write(np.full((size_wh[1], size_wh[0], 3), 120, np.uint8))
    writer.release()
    return path


def write_image(path: Path, size_wh: tuple[int, int] = (100, 80)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((size_wh[1], size_wh[0], 3), 90, np.uint8))
    return path


CVAT_XML = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><size>10</size><start_frame>0</start_frame><stop_frame>9</stop_frame>
    <original_size><width>100</width><height>80</height></original_size>
    <source>clip.mp4</source></task></meta>
  <track id="0" label="vehicle" source="manual">
    <box frame="0" outside="0" occluded="0" keyframe="1" xtl="0" ytl="0" xbr="10" ybr="10"/>
    <box frame="4" outside="0" occluded="0" keyframe="1" xtl="40" ytl="0" xbr="50" ybr="10"/>
    <box frame="6" outside="1" occluded="0" keyframe="1" xtl="40" ytl="0" xbr="50" ybr="10"/>
  </track>
  {extra}
</annotations>
"""


def track(
    track_id: int, label: str, boxes: list[tuple[int, int, float, float, float, float]]
) -> str:
    """A CVAT <track> with boxes (frame, outside, xtl, ytl, xbr, ybr)."""
    inner = "".join(
        f'<box frame="{f}" outside="{o}" keyframe="1" xtl="{x1}" ytl="{y1}" xbr="{x2}" ybr="{y2}"/>'
        for f, o, x1, y1, x2, y2 in boxes
    )
    return f'<track id="{track_id}" label="{label}">{inner}</track>'


def test_cvat_tracks_are_interpolated_and_end_at_outside(tmp_path: Path) -> None:
    write_video(tmp_path / "clip.mp4", 10)
    xml = tmp_path / "annotations.xml"
    xml.write_text(CVAT_XML.format(extra=""))
    result = import_cvat_video(xml, MAPPING)
    assert result.problems == []
    (source,) = result.sources
    assert source.kind == "video" and len(source.frames) == 10
    frame2 = source.frames[2].boxes[0]
    assert frame2.cls == 0 and frame2.x1 == pytest.approx(0.2)  # halfway from 0 to 40 px
    assert source.frames[5].boxes[0].x1 == pytest.approx(0.4)  # held until the outside box
    assert source.frames[6].boxes == [] and source.frames[9].boxes == []


def test_cvat_problems_are_all_listed_with_file_and_frame(tmp_path: Path) -> None:
    write_video(tmp_path / "clip.mp4", 10)
    bad = "\n".join(
        [
            track(1, "tree", [(1, 0, 0, 0, 5, 5)]),
            track(2, "person", [(2, 0, 90, 70, 130, 79)]),
            track(3, "person", [(15, 0, 1, 1, 5, 5)]),
            track(4, "car", [(0, 0, 0, 0, 10, 10), (1, 1, 0, 0, 10, 10)]),
        ]
    )
    xml = tmp_path / "annotations.xml"
    xml.write_text(CVAT_XML.format(extra=bad))
    problems = [str(p) for p in import_cvat_video(xml, MAPPING).problems]
    assert any("frame 1" in p and "unknown class 'tree'" in p for p in problems)
    assert any("frame 2" in p and "outside the 100x80 image" in p for p in problems)
    assert any("frame 15" in p and "beyond the clip" in p for p in problems)
    assert any("frame 0" in p and "overlapping duplicate" in p for p in problems)
    assert all(p.startswith(str(xml)) for p in problems)


def test_interpolation_holds_after_the_last_visible_shape() -> None:
    shapes = [TrackShape(3, False, True, 0, 0, 4, 4)]
    assert sorted(interpolate_track(shapes, 5)) == [3, 4, 5]


def test_yolo_folder_with_background_and_missing_image(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write_image(root / "images" / "train" / "gate_000001.jpg")
    write_image(root / "images" / "val" / "gate_000002.jpg")
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    (root / "labels" / "train" / "gate_000001.txt").write_text(
        "0 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.1 0.1\n"
    )
    (root / "labels" / "train" / "lost_000003.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: images/val\nnames: {0: vehicle, 1: person, 2: shadow}\n"
    )
    result = import_yolo_folder(root / "data.yaml", MAPPING)
    assert [str(p) for p in result.problems] == [
        f"{root / 'labels' / 'train' / 'lost_000003.txt'}: labels for a missing image"
    ]
    by_name = {Path(s.path).name: s for s in result.sources}
    assert by_name["gate_000001.jpg"].frames[0].boxes[0].cls == 0  # vehicle -> car; shadow dropped
    assert len(by_name["gate_000001.jpg"].frames[0].boxes) == 1
    assert by_name["gate_000002.jpg"].frames[0].boxes == []  # background
    assert {s.group for s in result.sources} == {"gate"}  # one clip: split together


def test_cvat_yolo_export_against_its_clip(tmp_path: Path) -> None:
    export = tmp_path / "export"
    (export / "obj_train_data").mkdir(parents=True)
    (export / "obj.names").write_text("vehicle\nperson\n")
    (export / "obj_train_data" / "frame_000003.txt").write_text("1 0.5 0.5 0.2 0.4\n")
    (export / "obj_train_data" / "frame_000030.txt").write_text("1 0.5 0.5 0.2 0.4\n")
    (export / "obj_train_data" / "frame_000004.txt").write_text("7 0.5 0.5 0.2 0.4\nnot a box\n")
    clip = write_video(tmp_path / "gate.mp4", 10)
    result = import_cvat_yolo(export, MAPPING, clip=clip)
    problems = [str(p) for p in result.problems]
    assert any("frame_000030.txt: frame 30: frame beyond the clip" in p for p in problems)
    assert any("frame 4: line 1: unknown class id 7" in p for p in problems)
    assert any("frame 4: line 2: not 'class cx cy w h'" in p for p in problems)
    (source,) = result.sources
    frame3 = next(f for f in source.frames if f.index == 3)
    assert frame3.boxes[0].cls == 1 and frame3.boxes[0].y1 == pytest.approx(0.3)


def test_cvat_yolo_export_with_images_reports_a_missing_image(tmp_path: Path) -> None:
    export = tmp_path / "task-7"
    write_image(export / "obj_train_data" / "frame_000001.jpg")
    (export / "obj_train_data" / "frame_000001.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (export / "obj.names").write_text("vehicle\n")
    (export / "train.txt").write_text(
        "data/obj_train_data/frame_000001.jpg\ndata/obj_train_data/frame_000002.jpg\n"
    )
    result = import_cvat_yolo(export, MAPPING)
    assert [p.message for p in result.problems] == ["missing or unreadable image"]
    assert result.sources[0].group == "task-7"


def test_coco_mapping_and_problems(tmp_path: Path) -> None:
    write_image(tmp_path / "a.jpg")
    coco = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
            {"id": 2, "file_name": "missing.jpg", "width": 100, "height": 80},
        ],
        "categories": [{"id": 3, "name": "vehicle"}, {"id": 4, "name": "kite"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 3, "bbox": [10, 10, 20, 20]},
            {"id": 11, "image_id": 1, "category_id": 3, "bbox": [10, 10, 20, 20.5]},
            {"id": 12, "image_id": 1, "category_id": 4, "bbox": [0, 0, 5, 5]},
            {"id": 13, "image_id": 1, "category_id": 9, "bbox": [0, 0, 5, 5]},
            {"id": 14, "image_id": 1, "category_id": 3, "bbox": [90, 70, 30, 30]},
        ],
    }
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(coco))
    result = import_coco(path, MAPPING)
    messages = [str(p) for p in result.problems]
    assert len(messages) == 5, messages
    assert any("missing.jpg" in m and "missing or unreadable image" in m for m in messages)
    assert any("unknown category id 9" in m for m in messages)
    assert any("unknown class 'kite'" in m for m in messages)
    assert any("overlapping duplicate of box 0" in m for m in messages)
    assert any("outside the 100x80 image" in m for m in messages)
    assert result.sources[0].frames[0].boxes[0].x1 == pytest.approx(0.1)


def test_mapping_refuses_a_target_that_is_not_a_class() -> None:
    with pytest.raises(ValueError, match="not in classes"):
        ClassMapping(classes=["car"], map={"lorry": "truck"})
