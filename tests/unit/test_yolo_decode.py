"""Letterbox, decode and NMS on hand-built network outputs, for both YOLO layouts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from edge.analysis.detect.yolo import (
    MAX_DETECTIONS,
    Letterbox,
    decode_yolov8,
    decode_yolov8_pose,
    decode_yolox,
    letterbox,
    nms,
)
from edge.types import Box, Detection, box_iou

NAMES = ["person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck"]
PERSON, CAR, TRUCK = 0, 2, 7
Image = npt.NDArray[np.uint8]
Output = npt.NDArray[np.float32]
PixelBox = tuple[float, float, float, float]


def blank(width: int, height: int) -> Image:
    return np.zeros((height, width, 3), np.uint8)


def to_input_px(box: Box, lb: Letterbox) -> tuple[float, float, float, float]:
    """A normalised source box → x1, y1, x2, y2 in network input pixels."""
    x1, y1, x2, y2 = box
    return (
        x1 * lb.src_w * lb.scale + lb.pad_x,
        y1 * lb.src_h * lb.scale + lb.pad_y,
        x2 * lb.src_w * lb.scale + lb.pad_x,
        y2 * lb.src_h * lb.scale + lb.pad_y,
    )


def v8_output(
    boxes: Sequence[PixelBox],
    scores: Sequence[dict[int, float]],
    nc: int = len(NAMES),
    anchors: int = 8400,
    extra_rows: int = 0,
) -> Output:
    """A YOLOv8 output (1, 4 + nc + extra, anchors); box i (input px xyxy) in anchor i."""
    out = np.zeros((1, 4 + nc + extra_rows, anchors), np.float32)
    for anchor, ((x1, y1, x2, y2), by_class) in enumerate(zip(boxes, scores, strict=True)):
        out[0, :4, anchor] = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
        for class_id, score in by_class.items():
            out[0, 4 + class_id, anchor] = score
    return out


def yolox_output(
    boxes: Sequence[PixelBox],
    obj_cls: Sequence[tuple[float, int, float]],
    input_wh: tuple[int, int] = (416, 416),
    nc: int = len(NAMES),
) -> Output:
    """A raw YOLOX head output (1, N, 5 + nc): box i (input px xyxy) in the stride-8 cell
    holding its centre, encoded as grid offset and log size; (objectness, class, class score)."""
    cols, rows = input_wh[0] // 8, input_wh[1] // 8
    total = sum((input_wh[0] // s) * (input_wh[1] // s) for s in (8, 16, 32))
    out = np.zeros((1, total, 5 + nc), np.float32)
    out[0, :, 2:4] = -10.0  # tiny boxes everywhere else
    for (x1, y1, x2, y2), (obj, class_id, cls) in zip(boxes, obj_cls, strict=True):
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        gx, gy = int(cx // 8), int(cy // 8)
        row = gy * cols + gx
        assert row < cols * rows
        out[0, row, :4] = [cx / 8 - gx, cy / 8 - gy, np.log((x2 - x1) / 8), np.log((y2 - y1) / 8)]
        out[0, row, 4] = obj
        out[0, row, 5 + class_id] = cls
    return out


def assert_box_close(actual: Box, expected: Box, tol: float = 2e-3) -> None:
    assert actual == pytest.approx(expected, abs=tol)


# letterbox


def test_letterbox_centres_a_wide_image_and_scales_rgb_to_unit_range() -> None:
    image = blank(1280, 720)
    image[:, :] = (255, 0, 0)  # pure blue in BGR
    tensor, lb = letterbox(image, (640, 640))
    assert tensor.shape == (1, 3, 640, 640)
    assert tensor.dtype == np.float32
    assert lb == Letterbox(0.5, 0.0, 140.0, 1280, 720, 640, 640)
    assert tensor[0, :, 0, 320].tolist() == pytest.approx([114 / 255] * 3)  # top padding
    assert tensor[0, :, 639, 320].tolist() == pytest.approx([114 / 255] * 3)  # bottom padding
    assert tensor[0, :, 320, 320].tolist() == pytest.approx([0.0, 0.0, 1.0])  # RGB order


def test_letterbox_centres_a_tall_image_horizontally() -> None:
    tensor, lb = letterbox(blank(360, 720), (640, 640))
    assert lb.scale == pytest.approx(640 / 720)
    assert (lb.pad_x, lb.pad_y) == (160.0, 0.0)
    assert tensor[0, 0, 320, 0] == pytest.approx(114 / 255)
    assert tensor[0, 0, 320, 320] == 0.0


def test_yolox_letterbox_keeps_bgr_0_255_and_pads_bottom_right() -> None:
    image = blank(1280, 720)
    image[:, :] = (255, 0, 0)
    tensor, lb = letterbox(image, (416, 416), layout="yolox")
    assert (lb.pad_x, lb.pad_y) == (0.0, 0.0)
    assert lb.scale == pytest.approx(416 / 1280)
    assert tensor[0, :, 10, 10].tolist() == [255.0, 0.0, 0.0]  # BGR, unscaled
    assert tensor[0, :, 415, 10].tolist() == [114.0, 114.0, 114.0]  # padded below


def test_letterbox_refuses_a_grey_image() -> None:
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        letterbox(np.zeros((720, 1280), np.uint8), (640, 640))


# yolov8 layout


@pytest.mark.parametrize(
    ("source_wh", "input_wh"),
    [((1280, 720), (640, 640)), ((720, 1280), (640, 640)), ((768, 432), (320, 320))],
    ids=["landscape", "portrait", "small-input"],
)
def test_yolov8_box_comes_back_at_its_place_in_the_source(
    source_wh: tuple[int, int], input_wh: tuple[int, int]
) -> None:
    expected: Box = (0.25, 0.5, 0.5, 0.75)
    _, lb = letterbox(blank(*source_wh), input_wh)
    output = v8_output([to_input_px(expected, lb)], [{CAR: 0.9}])

    (detection,) = decode_yolov8(output, lb, NAMES)

    assert (detection.label, detection.class_id) == ("car", CAR)
    assert detection.score == pytest.approx(0.9)
    assert_box_close(detection.box, expected)


def test_yolov8_box_reaching_past_the_image_is_clamped_to_it() -> None:
    _, lb = letterbox(blank(1280, 720), (640, 640))
    output = v8_output([(-20.0, 100.0, 200.0, 300.0)], [{CAR: 0.9}])  # starts in the padding
    (detection,) = decode_yolov8(output, lb, NAMES)
    assert_box_close(detection.box, (0.0, 0.0, 200 / 640, (300 - 140) / 360))


def test_yolov8_box_entirely_in_the_padding_is_dropped() -> None:
    _, lb = letterbox(blank(1280, 720), (640, 640))
    output = v8_output([(100.0, 10.0, 200.0, 100.0)], [{CAR: 0.9}])
    assert decode_yolov8(output, lb, NAMES) == []


def test_overlapping_boxes_of_one_class_collapse_to_the_best() -> None:
    _, lb = letterbox(blank(640, 640), (640, 640))
    output = v8_output([(100, 100, 200, 200), (105, 102, 205, 203)], [{CAR: 0.6}, {CAR: 0.8}])
    (detection,) = decode_yolov8(output, lb, NAMES, iou=0.5)
    assert detection.score == pytest.approx(0.8)
    assert_box_close(detection.box, (105 / 640, 102 / 640, 205 / 640, 203 / 640))


def test_overlapping_boxes_of_different_classes_are_both_kept() -> None:
    _, lb = letterbox(blank(640, 640), (640, 640))
    output = v8_output([(100, 100, 200, 200), (105, 102, 205, 203)], [{CAR: 0.6}, {TRUCK: 0.8}])
    detections = decode_yolov8(output, lb, NAMES, iou=0.5)
    assert [d.label for d in detections] == ["truck", "car"]


def test_distant_boxes_of_one_class_are_both_kept() -> None:
    _, lb = letterbox(blank(640, 640), (640, 640))
    output = v8_output([(0, 0, 100, 100), (300, 300, 400, 400)], [{CAR: 0.6}, {CAR: 0.8}])
    assert len(decode_yolov8(output, lb, NAMES)) == 2


def test_class_filter_keeps_only_wanted_classes() -> None:
    _, lb = letterbox(blank(640, 640), (640, 640))
    output = v8_output([(0, 0, 100, 100), (300, 300, 400, 400)], [{PERSON: 0.9}, {CAR: 0.7}])
    detections = decode_yolov8(output, lb, NAMES, class_ids={CAR, TRUCK})
    assert [d.label for d in detections] == ["car"]


def test_class_filter_applies_before_choosing_the_best_class() -> None:
    _, lb = letterbox(blank(640, 640), (640, 640))
    output = v8_output([(0, 0, 100, 100)], [{PERSON: 0.9, CAR: 0.4}])
    (detection,) = decode_yolov8(output, lb, NAMES, class_ids={CAR})
    assert detection.label == "car"
    assert detection.score == pytest.approx(0.4)


def test_class_filter_with_no_known_class_finds_nothing() -> None:
    _, lb = letterbox(blank(640, 640), (640, 640))
    output = v8_output([(0, 0, 100, 100)], [{CAR: 0.9}])
    assert decode_yolov8(output, lb, NAMES, class_ids={999}) == []


def test_score_threshold_drops_weak_boxes() -> None:
    _, lb = letterbox(blank(640, 640), (640, 640))
    output = v8_output([(0, 0, 100, 100), (300, 300, 400, 400)], [{CAR: 0.9}, {CAR: 0.2}])
    assert [d.score for d in decode_yolov8(output, lb, NAMES, min_score=0.25)] == [
        pytest.approx(0.9)
    ]
    assert len(decode_yolov8(output, lb, NAMES, min_score=0.1)) == 2


def test_detections_are_capped_and_best_first() -> None:
    _, lb = letterbox(blank(640, 640), (640, 640))
    boxes = [(x * 10.0, y * 10.0, x * 10.0 + 8, y * 10.0 + 8) for y in range(20) for x in range(20)]
    scores = [{CAR: 0.3 + i / 1000} for i in range(len(boxes))]
    detections = decode_yolov8(v8_output(boxes, scores), lb, NAMES)
    assert len(detections) == MAX_DETECTIONS
    assert [d.score for d in detections] == sorted((d.score for d in detections), reverse=True)


def test_class_count_comes_from_the_names() -> None:
    _, lb = letterbox(blank(640, 640), (640, 640))
    output = v8_output([(0, 0, 100, 100)], [{TRUCK: 0.9}])
    assert [d.label for d in decode_yolov8(output, lb, NAMES)] == ["truck"]
    assert decode_yolov8(output, lb, NAMES[:TRUCK]) == []  # later rows are not class scores


def test_empty_output_gives_no_detections() -> None:
    _, lb = letterbox(blank(640, 640), (640, 640))
    assert decode_yolov8(np.zeros((1, 4 + len(NAMES), 8400), np.float32), lb, NAMES) == []


def test_pose_keypoints_come_back_in_source_coordinates() -> None:
    _, lb = letterbox(blank(1280, 720), (640, 640))
    person: Box = (0.4, 0.2, 0.5, 0.9)
    output = v8_output([to_input_px(person, lb)], [{0: 0.8}], nc=1, extra_rows=3 * 17)
    nose_x, nose_y = 0.45 * 1280 * 0.5, 0.25 * 720 * 0.5 + 140
    output[0, 5:8, 0] = [nose_x, nose_y, 0.95]

    (pose,) = decode_yolov8_pose(output, lb, ["person"], num_keypoints=17)

    assert_box_close(pose.detection.box, person)
    assert pose.keypoints.shape == (17, 3)
    assert pose.keypoints[0].tolist() == pytest.approx([0.45, 0.25, 0.95], abs=1e-4)


# yolox layout


@pytest.mark.parametrize(
    "source_wh", [(1280, 720), (480, 640), (416, 416)], ids=["wide", "tall", "exact"]
)
def test_yolox_box_comes_back_at_its_place_in_the_source(source_wh: tuple[int, int]) -> None:
    expected: Box = (0.3, 0.4, 0.45, 0.7)
    _, lb = letterbox(blank(*source_wh), (416, 416), layout="yolox")
    output = yolox_output([to_input_px(expected, lb)], [(0.9, CAR, 0.95)])

    (detection,) = decode_yolox(output, lb, NAMES)

    assert (detection.label, detection.class_id) == ("car", CAR)
    assert detection.score == pytest.approx(0.9 * 0.95)
    assert_box_close(detection.box, expected)


def test_yolox_score_is_objectness_times_class_score() -> None:
    _, lb = letterbox(blank(416, 416), (416, 416), layout="yolox")
    output = yolox_output([(10, 10, 60, 60)], [(0.4, CAR, 0.9)])  # 0.36
    assert decode_yolox(output, lb, NAMES, min_score=0.4) == []
    assert len(decode_yolox(output, lb, NAMES, min_score=0.3)) == 1


def test_yolox_nms_and_class_filter() -> None:
    _, lb = letterbox(blank(416, 416), (416, 416), layout="yolox")
    boxes = [(100, 100, 200, 200), (104, 104, 204, 204), (106, 100, 206, 200), (300, 300, 340, 340)]
    scores = [(0.9, CAR, 0.9), (0.9, CAR, 0.8), (0.9, TRUCK, 0.7), (0.9, PERSON, 0.9)]
    detections = decode_yolox(yolox_output(boxes, scores), lb, NAMES, iou=0.5)
    assert sorted(d.label for d in detections) == ["car", "person", "truck"]
    filtered = decode_yolox(yolox_output(boxes, scores), lb, NAMES, class_ids={CAR})
    assert [d.label for d in filtered] == ["car"]


def test_yolox_refuses_an_output_of_the_wrong_size() -> None:
    _, lb = letterbox(blank(640, 640), (640, 640), layout="yolox")
    with pytest.raises(ValueError, match="3549 rows"):
        decode_yolox(yolox_output([(0, 0, 10, 10)], [(0.9, CAR, 0.9)]), lb, NAMES)


# nms


def test_nms_keeps_best_first_and_drops_overlaps() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.5, 0.9, 0.7], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]


def test_nms_with_classes_only_suppresses_within_a_class() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11]], np.float32)
    scores = np.array([0.5, 0.9], np.float32)
    assert nms(boxes, scores, 0.5, class_ids=np.array([0, 1])).tolist() == [1, 0]
    assert nms(boxes, scores, 0.5, class_ids=np.array([3, 3])).tolist() == [1]


def test_nms_iou_threshold_is_exclusive_and_max_det_caps() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 20]], np.float32)  # IoU exactly 0.5
    scores = np.array([0.9, 0.8], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [0, 1]
    assert nms(boxes, scores, 0.49).tolist() == [0]
    assert nms(boxes, scores, 0.5, max_det=1).tolist() == [0]


def test_nms_of_nothing_is_nothing() -> None:
    empty = np.empty((0, 4), np.float32)
    assert nms(empty, np.empty(0, np.float32), 0.5).tolist() == []


def test_decoded_boxes_are_valid_detections() -> None:
    _, lb = letterbox(blank(1280, 720), (640, 640))
    rng = np.random.default_rng(7)
    output = rng.random((1, 4 + len(NAMES), 8400), dtype=np.float32)
    output[0, 0] = output[0, 0] * 400 + 120  # centres well inside the image, so no clamping
    output[0, 1] = output[0, 1] * 200 + 220
    output[0, 2:4] = output[0, 2:4] * 40 + 5
    detections = decode_yolov8(output, lb, NAMES, min_score=0.9, iou=0.3)
    assert detections
    for detection in detections:
        assert isinstance(detection, Detection)
        x1, y1, x2, y2 = detection.box
        assert 0.0 <= x1 < x2 <= 1.0
        assert 0.0 <= y1 < y2 <= 1.0
    same_class = [d for d in detections if d.class_id == detections[0].class_id]
    for i, a in enumerate(same_class):
        for b in same_class[i + 1 :]:
            assert box_iou(a.box, b.box) <= 0.3 + 1e-6
