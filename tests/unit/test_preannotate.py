"""Pre-annotation: the teacher's classes mapped onto the project's, drop regions, tracks linked
across sampled frames, hand-made tracks added, and the CVAT XML read back by the real importer.
No teacher runs here: its detections are given."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from training.importers import ClassMapping, import_cvat_video
from training.importers.base import PixelBox
from training.preannotate import (
    AddedTrack,
    ClipPlan,
    DropRegion,
    Keyframe,
    LabelPlan,
    TeacherBox,
    TeacherRun,
    added_tracks,
    clip_tracks,
    cvat_video_xml,
    link_tracks,
    map_detections,
    segment_tracks,
)
from training.train import head_rows

CLASSES = ["person", "car", "garbage_bag"]
PLAN = LabelPlan(
    classes=CLASSES,
    map={"person": "person", "car": "car", "truck": "car"},
    clips={
        "top.mp4": ClipPlan(
            map={"cell phone": "car", "person": None},
            drop=[DropRegion(box=(0.0, 0.0, 0.2, 0.2), note="a sign")],
            add=[
                AddedTrack(
                    label="garbage_bag",
                    keyframes=[
                        Keyframe(frame=4, box=(0.5, 0.5, 0.6, 0.6)),
                        Keyframe(frame=8, box=(0.6, 0.5, 0.7, 0.6)),
                    ],
                )
            ],
        )
    },
)


def teacher(label: str, x1: float, y1: float, x2: float, y2: float) -> TeacherBox:
    return TeacherBox(label, 0.8, x1, y1, x2, y2)


def test_the_plan_map_applies_to_every_clip_and_a_clip_overrides_it() -> None:
    detections = {
        0: [
            teacher("cell phone", 40, 40, 60, 60),
            teacher("person", 10, 50, 20, 80),
            teacher("truck", 60, 10, 90, 40),
            teacher("tv", 0, 60, 10, 70),  # not in the map: dropped
        ]
    }
    top = map_detections(detections, PLAN.class_map("top.mp4"), [], (100, 100))[0]
    other = map_detections(detections, PLAN.class_map("street.mp4"), [], (100, 100))[0]
    assert [b.label for b in top] == ["car", "car"]  # phone seen from above is a car
    assert [b.label for b in other] == ["person", "car"]  # elsewhere a phone is no car


def test_a_drop_region_removes_boxes_centred_in_it_on_its_frames() -> None:
    detections = {
        f: [teacher("car", 2, 2, 12, 12), teacher("car", 50, 50, 70, 70)] for f in (0, 5, 10)
    }
    region = DropRegion(box=(0.0, 0.0, 0.2, 0.2), label="car", start=5, stop=5)
    kept = map_detections(detections, {"car": "car"}, [region], (100, 100))
    assert [len(kept[f]) for f in (0, 5, 10)] == [2, 1, 2]
    other_label = DropRegion(box=(0.0, 0.0, 0.2, 0.2), label="person")
    assert len(map_detections(detections, {"car": "car"}, [other_label], (100, 100))[5]) == 2


def test_tracks_link_by_iou_and_class_and_end_after_the_last_sighting() -> None:
    boxes = {
        0: [PixelBox("car", 0, 0, 10, 10), PixelBox("person", 50, 50, 60, 70)],
        3: [PixelBox("car", 2, 0, 12, 10), PixelBox("car", 80, 80, 90, 90)],
        6: [PixelBox("car", 4, 0, 14, 10)],
    }
    tracks = link_tracks(boxes, last_frame=20, min_iou=0.3)
    summary = [(t.label, [(s.frame, s.outside) for s in t.shapes]) for t in tracks]
    assert summary == [
        ("car", [(0, False), (3, False), (6, False)]),  # seen on the last sampled frame: stays
        ("person", [(0, False), (1, True)]),
        ("car", [(3, False), (4, True)]),
    ]


def test_a_box_of_another_class_does_not_continue_a_track() -> None:
    boxes = {0: [PixelBox("car", 0, 0, 10, 10)], 2: [PixelBox("person", 0, 0, 10, 10)]}
    tracks = link_tracks(boxes, last_frame=2, min_iou=0.3)
    assert sorted(t.label for t in tracks) == ["car", "person"]


def test_added_tracks_are_in_pixels_and_end_after_until() -> None:
    track = AddedTrack(
        label="garbage_bag", keyframes=[Keyframe(frame=2, box=(0.1, 0.2, 0.3, 0.4))], until=5
    )
    (made,) = added_tracks([track], (200, 100), last_frame=9)
    assert [(s.frame, s.outside) for s in made.shapes] == [(2, False), (6, True)]
    assert (made.shapes[0].x1, made.shapes[0].y2) == pytest.approx((20.0, 40.0))


def test_a_plan_naming_an_unknown_class_is_refused() -> None:
    with pytest.raises(ValidationError, match="garbage"):
        LabelPlan(
            classes=["car"], map={"car": "car"}, clips={"a.mp4": ClipPlan(map={"x": "garbage"})}
        )
    with pytest.raises(ValidationError):
        Keyframe(frame=0, box=(0.5, 0.1, 0.4, 0.2))


def test_the_xml_reads_back_through_the_cvat_importer(tmp_path: Path) -> None:
    size, frames = (100, 80), 10
    clip = tmp_path / "top.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, size)
    for _ in range(frames):
        writer.write(np.full((size[1], size[0], 3), 100, np.uint8))
    writer.release()
    detections = {
        0: [teacher("cell phone", 10, 20, 30, 40), teacher("person", 60, 20, 70, 60)],
        2: [teacher("cell phone", 14, 20, 34, 40), teacher("car", 2, 2, 12, 12)],  # a sign
        4: [],
        6: [],
        8: [],
    }
    run = TeacherRun("top.mp4", size[0], size[1], frames, 10.0, 2, {}, detections)
    xml = tmp_path / "top.xml"
    xml.write_text(cvat_video_xml(clip_tracks(run, PLAN), "top.mp4", size, frames, CLASSES))
    result = import_cvat_video(xml, ClassMapping(classes=CLASSES))
    assert result.problems == []
    (source,) = result.sources
    by_frame = {f.index: f for f in source.frames}
    assert len(by_frame) == frames
    car = by_frame[1].boxes  # interpolated between the teacher's frames 0 and 2
    assert [(CLASSES[b.cls], round(b.x1 * 100)) for b in car] == [("car", 12)]
    assert by_frame[3].boxes == []  # the teacher lost it after frame 2
    bag = by_frame[6].boxes  # the plan's bag, between its keyframes 4 and 8
    assert [(CLASSES[b.cls], round(b.x1, 3)) for b in bag] == [("garbage_bag", 0.55)]
    assert [CLASSES[b.cls] for b in by_frame[9].boxes] == ["garbage_bag"]  # stays to the end


def test_head_rows_match_by_name_then_by_alias() -> None:
    base = ["person", "bicycle", "car", "handbag", "cell phone"]
    rows = head_rows(["car", "person", "garbage_bag", "bin"], base, {"garbage_bag": "handbag"})
    assert rows == {0: 2, 1: 0, 2: 3}


def test_boxes_mapped_to_one_class_on_one_object_are_merged_into_the_best() -> None:
    detections = {0: [teacher("toilet", 10, 10, 50, 90), TeacherBox("truck", 0.9, 11, 10, 50, 90)]}
    (kept,) = map_detections(detections, {"toilet": "car", "truck": "car"}, [], (100, 100))[0]
    assert (kept.label, kept.x1) == ("car", 11)  # the truck box scored higher


def test_a_track_bridges_missed_looks_and_follows_a_moving_object() -> None:
    # a car moving 5 px a frame, seen every 2 frames, missed on frames 4 and 6
    boxes = {f: [PixelBox("car", 5 * f, 0, 5 * f + 30, 20)] for f in (0, 2, 8, 10)}
    boxes |= {4: [], 6: []}
    bridged = link_tracks(boxes, last_frame=20, min_iou=0.3, max_missed=2)
    assert [[s.frame for s in t.shapes] for t in bridged] == [[0, 2, 8, 10]]
    split = link_tracks(boxes, last_frame=20, min_iou=0.3, max_missed=1)
    assert len(split) == 2


def test_segments_keep_their_own_tracks_and_refuse_a_cut_object() -> None:
    boxes = {0: [PixelBox("car", 0, 0, 10, 10)], 2: [PixelBox("car", 0, 0, 10, 10)], 4: []}
    boxes |= {8: [PixelBox("car", 50, 50, 60, 60)], 9: []}
    tracks = link_tracks(boxes, last_frame=9, min_iou=0.3)
    first, second = segment_tracks(tracks, 0, 5, 9), segment_tracks(tracks, 6, 9, 9)
    assert [t.shapes[0].frame for t in first] == [0]
    assert [t.shapes[0].frame for t in second] == [8]
    with pytest.raises(ValueError, match="crosses"):
        segment_tracks(tracks, 0, 1, 9)
