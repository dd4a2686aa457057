"""Pure parts of `zhizhi bench int8`: mAP50, frame spreading, the clip split, and which ONNX
nodes `quantize_int8` leaves in float."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from edge.types import Box, Detection
from training.bench_int8 import (
    average_precision,
    map50,
    share_out,
    split_clips,
    spread_indices,
    video_files,
)
from training.export import decode_nodes


def det(label: str, box: Box, score: float = 1.0) -> Detection:
    return Detection(label=label, class_id=0, score=score, box=box)


A = (0.1, 0.1, 0.3, 0.3)
B = (0.5, 0.5, 0.9, 0.9)
SHIFTED_A = (0.12, 0.1, 0.32, 0.3)  # IoU with A about 0.82
FAR_FROM_A = (0.25, 0.25, 0.45, 0.45)  # IoU with A about 0.03


def test_perfect_predictions_score_one() -> None:
    refs = [[det("person", A), det("car", B)], [det("car", A)]]
    preds = [[det("person", SHIFTED_A, 0.9), det("car", B, 0.8)], [det("car", A, 0.7)]]
    result = map50(preds, refs)
    assert result.map50 == pytest.approx(1.0)
    assert result.references == {"car": 2, "person": 1}


def test_a_better_scored_false_positive_halves_precision() -> None:
    refs = [[det("person", A)]]
    preds = [[det("person", B, 0.9), det("person", A, 0.5)]]
    assert map50(preds, refs).map50 == pytest.approx(0.5)


def test_wrong_class_or_little_overlap_does_not_match() -> None:
    refs = [[det("person", A)]]
    assert map50([[det("car", A)]], refs).map50 == 0.0
    assert map50([[det("person", FAR_FROM_A)]], refs).map50 == 0.0
    assert map50([[det("person", A)]], [[det("car", A)]]).per_class == {"car": 0.0}


def test_one_reference_matches_one_prediction_only() -> None:
    refs = [[det("person", A)], [det("person", B)]]
    preds = [[det("person", A, 0.9), det("person", SHIFTED_A, 0.8)], []]
    # ranked: hit (R .5, P 1), duplicate (R .5, P .5); the second reference is never found
    assert map50(preds, refs).map50 == pytest.approx(51 / 101)


def test_classes_without_references_are_left_out_of_the_mean() -> None:
    refs = [[det("person", A), det("car", B)]]
    preds = [[det("person", A, 0.9), det("bus", B, 0.9)]]
    result = map50(preds, refs)
    assert result.per_class == {"car": 0.0, "person": pytest.approx(1.0)}
    assert result.map50 == pytest.approx(0.5)
    assert map50([[det("person", A)]], [[]]).map50 == 0.0


def test_map50_needs_one_prediction_list_per_image() -> None:
    with pytest.raises(ValueError, match="2 prediction lists for 1 images"):
        map50([[], []], [[]])


def test_average_precision_is_the_101_point_interpolated_area() -> None:
    assert average_precision([], []) == 0.0
    assert average_precision([1.0], [1.0]) == pytest.approx(1.0)
    # precision rises later on: the envelope takes the best precision at higher recall
    assert average_precision([0.5, 0.5, 1.0], [0.5, 0.33, 0.67]) == pytest.approx(0.67)


def test_spread_indices_and_share_out() -> None:
    assert spread_indices(100, 4) == [12, 37, 62, 87]
    assert spread_indices(3, 5) == [0, 1, 2]
    assert spread_indices(0, 5) == spread_indices(10, 0) == []
    assert share_out(64, 7) == [10, 9, 9, 9, 9, 9, 9]
    assert sum(share_out(5, 3)) == 5


def test_split_clips_puts_no_clip_on_both_sides() -> None:
    clips = [Path(f"/c/{name}.mp4") for name in "edcba"]
    calibration, evaluation = split_clips(clips)
    assert [p.stem for p in calibration] == ["b", "d"]
    assert [p.stem for p in evaluation] == ["a", "c", "e"]
    with pytest.raises(ValueError, match="at least two clips"):
        split_clips([Path("/c/a.mp4"), Path("/c/a.mp4")])


def test_video_files_expands_folders(tmp_path: Path) -> None:
    for name in ("b.mp4", "a.AVI", "notes.md"):
        (tmp_path / name).write_bytes(b"")
    single = Path("/elsewhere/x.mp4")
    assert video_files([tmp_path, single]) == [tmp_path / "a.AVI", tmp_path / "b.mp4", single]


def test_decode_nodes_are_those_after_the_last_convolutions() -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["features"], name="backbone"),
        helper.make_node("Relu", ["features"], ["act"], name="relu"),
        helper.make_node("Conv", ["act", "w"], ["box"], name="box_conv"),
        helper.make_node("Conv", ["act", "w"], ["cls"], name="cls_conv"),
        helper.make_node("Mul", ["box", "stride"], ["pixels"], name="to_pixels"),
        helper.make_node("Sigmoid", ["cls"], ["scores"], name="sigmoid"),
        helper.make_node("Concat", ["pixels", "scores"], ["y"], name="concat", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "head",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])],
        [
            helper.make_tensor("w", TensorProto.FLOAT, [1, 1, 1, 1], [1.0]),
            helper.make_tensor("stride", TensorProto.FLOAT, [1], [8.0]),
        ],
    )
    onnx.checker.check_graph(graph)
    assert sorted(decode_nodes(graph)) == ["concat", "sigmoid", "to_pixels"]
