"""Faces for redaction, as pure functions and with a fake face detector: the views of a frame
(turns, tiles), boxes mapped back from a turned tile, CenterFace's maps decoded, the head region
by the body's orientation, and a redactor that finds a turned face only in the turned view."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from pydantic import ValidationError

from common.config import CameraConfig, PrivacyConfig
from common.events import ModelInfo
from edge.analysis.detect.centerface import decode_centerface
from edge.analysis.detect.yolo import Letterbox, PoseDetection
from edge.errors import ModelIntegrityError, ModelNotFoundError
from edge.evidence.faces import FoundFace, View, merge_faces, plan_views, to_frame, view_image
from edge.evidence.privacy import (
    FACE_GROW,
    RedactionError,
    Redactor,
    face_square,
    head_region,
    is_upright,
    refine_samples,
    top_of_person,
)
from edge.runtime.models import ModelSpec
from edge.types import Box, Detection
from tests.support.privacy import FakePose, box_pixels, laplacian_variance, textured_face

Image = npt.NDArray[np.uint8]


# views -------------------------------------------------------------------------------------


def test_a_small_frame_is_shown_whole_at_each_turn() -> None:
    views = plan_views((320, 240), (640, 640))
    assert views == [View((0, 0, 320, 240), r) for r in (0, 90, 180, 270)]
    assert plan_views((406, 720), (640, 640), rotations=[0]) == [View((0, 0, 406, 720), 0)]


def test_a_wide_frame_is_tiled_at_each_turn_and_also_shown_whole_upright() -> None:
    views = plan_views((1920, 1080), (640, 640))
    assert len(views) == 9  # 2 tiles x 4 turns + the whole frame
    tiles = {view.region for view in views if view.region != (0, 0, 1920, 1080)}
    assert tiles == {(0, 0, 1080, 1080), (840, 0, 1920, 1080)}
    assert views[-1] == View((0, 0, 1920, 1080), 0)
    # searched at full size instead: smaller tiles, more of them, overlapping by a face or more
    full = plan_views((1920, 1080), (640, 640), rotations=[0], search_px=1920)
    regions = sorted(view.region for view in full[:-1])
    assert len(regions) == 6
    assert all(b[0] < a[2] - 64 for a, b in itertools.pairwise(regions) if a[1] == b[1])


def test_views_refuse_what_cannot_be_planned() -> None:
    with pytest.raises(ValueError, match="positive"):
        plan_views((0, 10), (640, 640))
    with pytest.raises(ValueError, match="rotations"):
        plan_views((10, 10), (640, 640), rotations=[45])


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_a_box_found_in_a_turned_tile_maps_back_onto_the_frame(rotation: int) -> None:
    frame = np.zeros((300, 500, 3), np.uint8)
    marked: Box = (0.62, 0.3, 0.7, 0.42)
    rows, cols = box_pixels(marked, frame.shape)
    frame[rows, cols] = 255
    view = View((200, 50, 450, 300), rotation)
    seen = view_image(frame, view)
    ys, xs = np.nonzero(seen[..., 0])
    h, w = seen.shape[:2]
    found = (xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h)
    assert to_frame(found, view, (500, 300)) == pytest.approx(marked, abs=0.003)


def test_the_same_face_from_two_views_is_kept_once_with_its_best_score() -> None:
    a = FoundFace((0.1, 0.1, 0.2, 0.2), 0.4, 0)
    b = FoundFace((0.11, 0.1, 0.21, 0.2), 0.7, 90)
    c = FoundFace((0.6, 0.6, 0.7, 0.7), 0.3, 0)
    assert merge_faces([a, b, c]) == [b, c]
    assert merge_faces([]) == []


# CenterFace decoding ------------------------------------------------------------------------


def test_centerface_maps_decode_to_normalised_faces() -> None:
    heatmap = np.zeros((1, 1, 40, 40), np.float32)
    sizes = np.full((1, 2, 40, 40), math.log(5), np.float32)
    offsets = np.zeros((1, 2, 40, 40), np.float32)
    heatmap[0, 0, 10, 20] = 0.9
    heatmap[0, 0, 10, 21] = 0.5  # the same face a cell over: suppressed
    heatmap[0, 0, 30, 5] = 0.1  # below the score
    box = Letterbox(1.0, 0.0, 0.0, 160, 160, 160, 160)
    (face,) = decode_centerface((heatmap, sizes, offsets), box, min_score=0.2)
    assert face.label == "face" and face.score == pytest.approx(0.9)
    assert face.box == pytest.approx((72 / 160, 32 / 160, 92 / 160, 52 / 160))
    letterboxed = Letterbox(0.5, 0.0, 20.0, 320, 240, 160, 160)  # a 320x240 image in 160x160
    (moved,) = decode_centerface((heatmap, sizes, offsets), letterboxed, min_score=0.2)
    assert moved.box == pytest.approx((144 / 320, 24 / 240, 184 / 320, 64 / 240))
    nothing = np.zeros_like(heatmap)
    assert decode_centerface((nothing, sizes, offsets), box) == []


def test_face_models_are_registered_as_centerface_faces_only() -> None:
    entry = {
        "name": "faces",
        "version": "1",
        "file": "f.onnx",
        "sha256": "0" * 64,
        "layout": "centerface",
        "task": "faces",
        "input_wh": (640, 640),
    }
    assert ModelSpec.model_validate(entry).task == "faces"
    with pytest.raises(ValidationError, match="face models"):
        ModelSpec.model_validate({**entry, "task": "detect"})
    with pytest.raises(ValidationError, match="face models"):
        ModelSpec.model_validate({**entry, "layout": "yolov8"})


# the head region ----------------------------------------------------------------------------


def keypoints(points: dict[int, tuple[float, float]]) -> npt.NDArray[np.float32]:
    out = np.zeros((17, 3), np.float32)
    for index, (x, y) in points.items():
        out[index] = (x, y, 0.9)
    return out


LYING = keypoints({5: (0.30, 0.50), 6: (0.30, 0.60), 11: (0.60, 0.50), 12: (0.60, 0.60)})


def test_the_head_region_follows_the_body_when_it_lies() -> None:
    (region,) = head_region(LYING, (0.2, 0.45, 0.9, 0.65))
    assert region == pytest.approx((0.045, 0.40, 0.345, 0.70))
    assert is_upright(LYING) is False
    standing = keypoints({5: (0.45, 0.3), 6: (0.55, 0.3), 11: (0.46, 0.6), 12: (0.54, 0.6)})
    (above,) = head_region(standing, (0.4, 0.1, 0.6, 0.95))
    assert (above[1] + above[3]) / 2 < 0.3 and above[1] < 0.1  # centred above the shoulders
    assert is_upright(standing) is True
    assert is_upright(keypoints({0: (0.5, 0.5)})) is None  # a head point alone says nothing


def test_a_person_seen_only_as_a_box_has_the_top_or_both_ends_blurred() -> None:
    upright: Box = (0.4, 0.2, 0.5, 0.8)
    assert head_region(None, upright) == [top_of_person(upright)]
    left, right = head_region(None, (0.2, 0.6, 0.8, 0.8))
    assert left == pytest.approx((0.2, 0.6, 0.4, 0.8))
    assert right == pytest.approx((0.6, 0.6, 0.8, 0.8))
    assert head_region(None, (0.5, 0.5, 0.5, 0.6)) == []
    assert head_region(None, (0.1, math.nan, 0.2, 0.3)) == []


def test_a_detected_face_is_blurred_as_a_larger_square() -> None:
    # 0.2 x 0.2 frame heights on a frame twice as wide as high: a square FACE_GROW times that
    half = FACE_GROW * 0.2 / 2
    square = face_square((0.4, 0.4, 0.5, 0.6), aspect=2.0)
    assert square == pytest.approx((0.45 - half / 2, 0.5 - half, 0.45 + half / 2, 0.5 + half))


# the redactor with a fake face detector ---------------------------------------------------


class UprightFaces:
    """A face detector that, like the real one, finds a face only when it is upright: here a
    bright patch whose brighter half is on top (a 'forehead')."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(name="fake-faces", version="1", sha256="1" * 64)

    @property
    def input_wh(self) -> tuple[int, int]:
        return (640, 640)

    def detect_faces(self, images: Sequence[Image]) -> list[list[Detection]]:
        self.calls.append(len(images))
        out = []
        for image in images:
            grey = image[..., 1].astype(int)
            ys, xs = np.nonzero(grey >= 200)
            faces = []
            if len(ys):
                y1, y2, x1, x2 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
                top = grey[y1 : (y1 + y2) // 2, x1:x2].mean()
                bottom = grey[(y1 + y2) // 2 : y2, x1:x2].mean()
                if top > bottom + 20:
                    h, w = grey.shape
                    faces.append(Detection("face", 0, 0.8, (x1 / w, y1 / h, x2 / w, y2 / h)))
            out.append(faces)
        return out


class BrokenFaces(UprightFaces):
    def detect_faces(self, images: Sequence[Image]) -> list[list[Detection]]:
        raise RuntimeError("the detection service went away")


def turned_face_scene(rotation: int) -> tuple[Image, Box]:
    """A grey frame with a face-like patch (bright forehead over a textured chin) turned by
    `rotation` degrees clockwise; the patch's box in the turned frame."""
    image = np.full((240, 320, 3), 90, np.uint8)
    face: Box = (0.45, 0.4, 0.55, 0.6)
    rows, cols = box_pixels(face, image.shape)
    image[rows, cols] = 210
    lower = (face[0], 0.5, face[2], 0.6)
    textured_face(image, lower, seed=3)
    image[box_pixels(lower, image.shape)] //= 2
    image[box_pixels(lower, image.shape)] += 100  # 100..227: textured, darker than the top
    codes = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
    if rotation == 0:
        return image, face
    turned = np.asarray(cv2.rotate(image, codes[rotation]), np.uint8)
    ys, xs = np.nonzero(turned[..., 1] >= 100)
    h, w = turned.shape[:2]
    return turned, (xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h)


def camera(**privacy: object) -> CameraConfig:
    return CameraConfig.model_validate({"id": "c", "source": "x.mp4", "privacy": privacy})


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_a_turned_face_is_found_in_the_turned_view_and_blurred(rotation: int) -> None:
    image, face = turned_face_scene(rotation)
    faces = UprightFaces()
    out, record = Redactor.for_camera(camera(), None, faces).image(image)
    assert faces.calls == [4]  # the four turns in one call (one batch for the service)
    assert laplacian_variance(out, face, 0.1) < 0.05 * laplacian_variance(image, face)
    (head,) = record.heads
    upright_again = (360 - rotation) % 360  # the view that turns the face back upright
    assert (head.method, head.rotation, head.score) == ("face_detector", upright_again, 0.8)
    details = record.as_details()["faces"]
    assert (details["method"], details["model"]) == ("face_detector", "fake-faces")
    assert details["items"][0]["rotation"] == upright_again


def test_without_the_turns_a_lying_face_is_missed() -> None:
    image, face = turned_face_scene(90)
    redactor = Redactor.for_camera(camera(face_rotations=[0]), None, UprightFaces())
    out, record = redactor.image(image)
    assert record.heads == ()
    rows, cols = box_pixels(face, image.shape)
    assert np.array_equal(out[rows, cols], image[rows, cols])  # why the turns are needed


def lying_person(_call: int, _image: Image) -> list[PoseDetection]:
    return [PoseDetection(Detection("person", 0, 0.8, (0.2, 0.45, 0.9, 0.65)), LYING)]


def test_a_lying_person_with_no_face_found_has_the_head_region_blurred() -> None:
    image = np.full((240, 240, 3), 90, np.uint8)
    hidden: Box = (0.1, 0.45, 0.3, 0.65)  # where the head of LYING is
    textured_face(image, hidden)
    out, record = Redactor.for_camera(camera(), FakePose(lying_person), UprightFaces()).image(image)
    assert [head.method for head in record.heads] == ["head_region"]
    assert laplacian_variance(out, hidden, 0.1) < 0.05 * laplacian_variance(image, hidden)
    faces = record.as_details()["faces"]
    assert faces["method"] == "head_region"
    assert (faces["model"], faces["pose_model"]) == ("fake-faces", "fake-pose")


def test_a_person_whose_face_was_found_gets_no_extra_region() -> None:
    image, _ = turned_face_scene(0)
    person = (0.4, 0.35, 0.6, 0.95)

    def standing(_call: int, _image: Image) -> list[PoseDetection]:
        points = keypoints({5: (0.44, 0.65), 6: (0.56, 0.65), 11: (0.45, 0.85), 12: (0.55, 0.85)})
        return [PoseDetection(Detection("person", 0, 0.8, person), points)]

    _, record = Redactor.for_camera(camera(), FakePose(standing), UprightFaces()).image(image)
    assert [head.method for head in record.heads] == ["face_detector"]


def test_a_failing_face_detector_stops_the_evidence() -> None:
    redactor = Redactor.for_camera(camera(), None, BrokenFaces())
    with pytest.raises(RedactionError, match="service went away"):
        redactor.image(turned_face_scene(0)[0])
    with pytest.raises(RedactionError):
        redactor.frames([turned_face_scene(0)[0]] * 3)


def test_a_clip_records_the_methods_of_each_searched_frame() -> None:
    image, _ = turned_face_scene(90)
    faces = UprightFaces()
    _, record = Redactor.for_camera(camera(), None, faces).frames([image] * 11)
    details = record.as_details()["faces"]
    assert details["searched_frames"] == 3  # frames 0, 5 and 10 at the assumed 10 fps
    assert details["by_method"] == {"face_detector": 1}
    assert details["per_frame"] == [{"frame": i, "methods": ["face_detector"]} for i in (0, 5, 10)]


def test_refining_a_clip_stops_at_its_budget() -> None:
    found = {0: [(0.1, 0.1, 0.2, 0.2)], 16: [(0.1, 0.7, 0.2, 0.8)]}
    asked: list[int] = []

    def find(index: int) -> list[Box]:
        asked.append(index)
        return [(0.1, 0.1 + 0.6 * index / 16, 0.2, 0.2 + 0.6 * index / 16)]

    assert refine_samples(found, find, limit=3) == [0, 2, 4, 8, 16]
    assert len(asked) == 3


def test_face_rotations_are_quarter_turns_each_once() -> None:
    assert PrivacyConfig().face_rotations == [0, 90, 180, 270]
    assert PrivacyConfig.model_validate({"face_rotations": [0, 90]}).face_rotations == [0, 90]
    for bad in ([45], [0, 0], []):
        with pytest.raises(ValidationError):
            PrivacyConfig.model_validate({"face_rotations": bad})


# a missing or corrupt face model refuses the camera ------------------------------------------


class PoseOnly:
    """A `ModelSource` with a fake pose model and the real face-model loading."""

    def detector(
        self, model: str, min_score: float, iou: float, providers: tuple[str, ...]
    ) -> object:
        raise AssertionError("not used")

    def pose(self, model: str, priority: object) -> FakePose:
        return FakePose(lambda _c, _i: [])

    def faces(self, model: str, priority: object) -> object:
        from edge.analysis.faces import load_face_model

        return load_face_model(model)


@pytest.fixture
def face_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A registry of two face models, one whose file is missing and one whose file is not the
    registered one; model files looked for in tmp_path only."""
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "corrupt.onnx").write_bytes(b"not the registered file")
    entry = "version: '1'\n    layout: centerface\n    task: faces\n    input_wh: [640, 640]\n"
    registry = tmp_path / "registry.yaml"
    registry.write_text(
        "models:\n"
        f"  faces-missing:\n    file: missing.onnx\n    sha256: '{'1' * 64}'\n    {entry}"
        f"  faces-corrupt:\n    file: corrupt.onnx\n    sha256: '{'2' * 64}'\n    {entry}",
        encoding="utf-8",
    )
    monkeypatch.setenv("ZHIZHI_MODEL_REGISTRY", str(registry))
    monkeypatch.setenv("ZHIZHI_MODEL_DIR", str(folder))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return folder


@pytest.mark.parametrize(
    ("model", "error"),
    [
        ("faces-missing", ModelNotFoundError),
        ("faces-corrupt", ModelIntegrityError),
        ("faces-unregistered", ModelNotFoundError),
    ],
)
def test_a_camera_whose_face_model_is_missing_or_corrupt_is_refused_at_start_up(
    face_registry: Path, model: str, error: type[Exception]
) -> None:
    from edge.analysis.pipeline import load_redactor

    def fall_camera(evidence_faces: str) -> CameraConfig:
        rule = {"id": "f", "type": "person_fall", "zone": "z", "evidence_faces": evidence_faces}
        return CameraConfig.model_validate(
            {
                "id": "c",
                "source": "x.mp4",
                "zones": [{"id": "z", "polygon": [[0, 0], [1, 0], [1, 1]]}],
                "rules": [rule],
                "privacy": {"face_detector": model},
            }
        )

    with pytest.raises(error):
        load_redactor(fall_camera("blur"), PoseOnly())  # type: ignore[arg-type]
    # without a rule that blurs faces, nothing is loaded and the camera may start
    kept = load_redactor(fall_camera("keep"), PoseOnly())  # type: ignore[arg-type]
    assert kept.image(np.zeros((8, 8, 3), np.uint8))[1].faces_skipped is not None
