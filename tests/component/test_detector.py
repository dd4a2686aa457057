"""OnnxDetector with the real shipped models on frames of the shared clips.

Models come from `ZHIZHI_MODEL_DIR` (default: `../shared/models` beside the repository), clips
from `../shared/clips`. Without them the module is skipped locally and fails under `CI=true`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from edge.analysis.detect.base import Detector
from edge.analysis.detect.onnx import OnnxDetector
from edge.runtime.models import load_registry, resolve_model_path
from edge.types import Box, Detection, box_iou

pytestmark = pytest.mark.integration

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
MODEL_DIR = Path(os.environ.get("ZHIZHI_MODEL_DIR", SHARED / "models"))
CLIP_DIR = SHARED / "clips"
DETECTORS = ("yolov8n-640", "yolov8n-320", "yolox-nano-416")
VEHICLES = {"car", "truck", "bus"}
# The white car in parkinglot_topdown_cars_passing.mp4 at 6 s, labelled by hand.
TOPDOWN_CAR: Box = (0.35, 0.30, 0.60, 0.97)
Image = npt.NDArray[np.uint8]


def require(path: Path, what: str) -> None:
    if path.exists():
        return
    reason = f"{what} not found at {path} (set ZHIZHI_MODEL_DIR or provide ../shared)"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(reason)
    pytest.skip(reason)


def read_frame(clip: str, at_s: float) -> Image:
    path = CLIP_DIR / clip
    require(path, "clip")
    capture = cv2.VideoCapture(str(path))
    try:
        capture.set(cv2.CAP_PROP_POS_MSEC, at_s * 1000)
        ok, frame = capture.read()
    finally:
        capture.release()
    assert ok, f"cannot read {path} at {at_s} s"
    return np.asarray(frame, dtype=np.uint8)


@pytest.fixture(scope="module")
def detectors() -> Iterator[dict[str, OnnxDetector]]:
    require(MODEL_DIR, "model folder")
    registry = load_registry()
    names = (*DETECTORS, "yolov8n-pose-640")
    yield {
        name: OnnxDetector.load(
            registry[name], path=resolve_model_path(registry[name], [MODEL_DIR])
        )
        for name in names
    }


@pytest.fixture(scope="module")
def motorway() -> Image:
    return read_frame("traffic_motorway_nostop.mp4", 5.0)


@pytest.fixture(scope="module")
def parking() -> Image:
    return read_frame("parkinglot_topdown_cars_passing.mp4", 6.0)


@pytest.fixture(scope="module")
def plaza() -> Image:
    return read_frame("pedestrians_plaza_overhead_bw.mp4", 3.0)


def labelled(detections: list[Detection], labels: set[str]) -> list[Detection]:
    return [d for d in detections if d.label in labels]


def best_iou(box: Box, detections: list[Detection]) -> float:
    return max((box_iou(box, d.box) for d in detections), default=0.0)


def test_loaded_detector_reports_what_it_runs(detectors: dict[str, OnnxDetector]) -> None:
    registry = load_registry()
    for name, detector in detectors.items():
        checked: Detector = detector
        assert checked.info.name == name
        assert checked.info.sha256 == registry[name].sha256
        assert "CPUExecutionProvider" in detector.providers
    assert detectors["yolov8n-640"].names[2] == "car"
    assert len(detectors["yolov8n-640"].names) == 80
    assert detectors["yolov8n-pose-640"].names == ("person",)
    assert detectors["yolox-nano-416"].input_wh == (416, 416)


@pytest.mark.parametrize("name", DETECTORS)
def test_cars_on_the_motorway_are_found(
    name: str, detectors: dict[str, OnnxDetector], motorway: Image
) -> None:
    cars = labelled(detectors[name].detect(motorway), {"car"})
    assert len(cars) >= 3
    for car in cars:
        assert 0.0 <= car.box[0] < car.box[2] <= 1.0
        assert 0.0 <= car.box[1] < car.box[3] <= 1.0


def test_v8_and_yolox_agree_on_the_motorway_cars(
    detectors: dict[str, OnnxDetector], motorway: Image
) -> None:
    v8_cars = labelled(detectors["yolov8n-640"].detect(motorway), {"car"})
    yolox_cars = labelled(detectors["yolox-nano-416"].detect(motorway), {"car"})
    matched = [car for car in v8_cars if best_iou(car.box, yolox_cars) > 0.5]
    assert len(matched) >= 3


@pytest.mark.parametrize("name", DETECTORS)
def test_topdown_white_car_is_found_at_its_place(
    name: str, detectors: dict[str, OnnxDetector], parking: Image
) -> None:
    # Seen from straight above, the COCO models call this car "cell phone" (score ~0.9)
    # rather than "car"; the box is right. So the place is checked here, not the label.
    assert best_iou(TOPDOWN_CAR, detectors[name].detect(parking)) > 0.7


def test_v8_and_yolox_agree_on_the_topdown_car(
    detectors: dict[str, OnnxDetector], parking: Image
) -> None:
    v8 = max(detectors["yolov8n-640"].detect(parking), key=lambda d: box_iou(d.box, TOPDOWN_CAR))
    yolox = detectors["yolox-nano-416"].detect(parking)
    assert best_iou(v8.box, [d for d in yolox if d.label == v8.label]) > 0.5


def test_topdown_car_entering_is_a_car_for_yolov8(detectors: dict[str, OnnxDetector]) -> None:
    entering = read_frame("parkinglot_topdown_cars_passing.mp4", 5.0)
    for name in ("yolov8n-640", "yolov8n-320"):
        vehicles = labelled(detectors[name].detect(entering), VEHICLES)
        assert vehicles, name


@pytest.mark.parametrize("name", (*DETECTORS, "yolov8n-pose-640"))
def test_people_on_the_plaza_are_found(
    name: str, detectors: dict[str, OnnxDetector], plaza: Image
) -> None:
    people = labelled(detectors[name].detect(plaza), {"person"})
    assert len(people) >= 5
    assert not labelled(detectors[name].detect(plaza), VEHICLES)


def test_pose_keypoints_lie_on_the_person(detectors: dict[str, OnnxDetector], plaza: Image) -> None:
    poses = detectors["yolov8n-pose-640"].detect_pose(plaza)
    assert poses
    for pose in poses:
        x1, y1, x2, y2 = pose.detection.box
        visible = pose.keypoints[pose.keypoints[:, 2] > 0.5]
        assert len(visible) > 0
        assert np.all((visible[:, 0] >= x1 - 0.02) & (visible[:, 0] <= x2 + 0.02))
        assert np.all((visible[:, 1] >= y1 - 0.02) & (visible[:, 1] <= y2 + 0.02))


def test_class_filter_at_load_keeps_only_those_classes(motorway: Image) -> None:
    require(MODEL_DIR, "model folder")
    spec = load_registry()["yolov8n-320"]
    detector = OnnxDetector.load(
        spec, classes={"person"}, path=resolve_model_path(spec, [MODEL_DIR])
    )
    assert not detector.detect(motorway)
    with pytest.raises(ValueError, match="no classes \\['lorry'\\]"):
        OnnxDetector.load(spec, classes={"lorry"}, path=resolve_model_path(spec, [MODEL_DIR]))


def test_detection_is_the_same_on_repeated_calls(
    detectors: dict[str, OnnxDetector], motorway: Image
) -> None:
    detector = detectors["yolov8n-640"]
    assert detector.detect(motorway) == detector.detect(motorway)
