"""Redacted evidence through the store: the written snapshot and clip files hide what is under
the masks (in every style), blur the faces, keep the drawing, and say what was hidden."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from common.config import CameraConfig
from edge.analysis.detect.yolo import PoseDetection
from edge.analysis.scene.model import polygons_mask
from edge.evidence.privacy import MaskStyle, Redactor
from edge.evidence.store import Annotation, DirectoryStore, redacted_snapshot
from edge.offline.synthetic import LaneScene, frames
from edge.types import Box
from tests.support.privacy import (
    FakePose,
    detail_correlation,
    laplacian_variance,
    person_with_head,
    secret_pattern,
    textured_face,
)

Image = npt.NDArray[np.uint8]
SCENE = LaneScene(width=640, height=360, fps=10.0, seconds=2.0, drop_s=None, clear_s=None)
WINDOWS = [
    [(0.05, 0.05), (0.35, 0.05), (0.35, 0.40), (0.05, 0.40)],
    [(0.60, 0.05), (0.95, 0.05), (0.90, 0.35), (0.65, 0.35)],
]
FACE: Box = (0.45, 0.08, 0.52, 0.22)  # between the windows


def scene_with_secrets() -> list[Image]:
    """The synthetic lane with text behind the windows and a face between them."""
    secret = secret_pattern(SCENE.height, SCENE.width, "FLAT 1204")
    inside = polygons_mask(WINDOWS, (SCENE.height, SCENE.width)) > 0
    images = []
    for frame in frames(SCENE):
        image = frame.image.copy()
        image[inside] = secret[inside]
        textured_face(image, FACE)
        images.append(image)
    return images


def pose_at_face(_call: int, _image: Image) -> list[PoseDetection]:
    return [person_with_head((0.485, 0.15), (0.44, 0.06, 0.53, 0.7), head_w=0.04)]


def redactor(style: MaskStyle) -> Redactor:
    camera = CameraConfig.model_validate(
        {
            "id": "facade",
            "source": "x.mp4",
            "privacy_masks": WINDOWS,
            "privacy": {"mask_style": style},
        }
    )
    return Redactor.for_camera(camera, FakePose(pose_at_face))


def inside_masks(margin_px: int) -> npt.NDArray[np.bool_]:
    mask = polygons_mask(WINDOWS, (SCENE.height, SCENE.width))
    kernel = np.ones((2 * margin_px + 1,) * 2, np.uint8)
    return np.asarray(cv2.erode(mask, kernel) > 0, bool)


def read_back(path: Path) -> list[Image]:
    capture = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        out.append(np.asarray(image, np.uint8))
    capture.release()
    return out


@pytest.mark.parametrize("style", ["black", "blur", "pixelate"])
def test_the_stored_snapshot_hides_the_windows_and_the_face(
    tmp_path: Path, style: MaskStyle
) -> None:
    original = scene_with_secrets()[0]
    store = DirectoryStore(tmp_path)
    data, record = redacted_snapshot(original, redactor(style), Annotation(caption="facade new"))
    evidence = store.put("e-0000-onset.jpg", data, "snapshot", "image/jpeg", "onset")
    written = Path(evidence.url).read_bytes()
    assert evidence.sha256 == hashlib.sha256(written).hexdigest()
    image = np.asarray(cv2.imdecode(np.frombuffer(written, np.uint8), cv2.IMREAD_COLOR), np.uint8)
    inside = inside_masks(4)
    assert abs(detail_correlation(original, image, inside)) < 0.05
    assert laplacian_variance(image, FACE, 0.15) < 0.05 * laplacian_variance(original, FACE, 0.15)
    assert record.as_details()["masks"] == [0, 1]
    assert record.as_details()["faces"]["blurred"] == 1
    # the rest of the lane is still there to show the hazard
    below = slice(round(0.5 * SCENE.height), None)
    assert np.abs(image[below].astype(int) - original[below].astype(int)).mean() < 4


@pytest.mark.parametrize("style", ["black", "blur", "pixelate"])
def test_the_stored_clip_hides_the_windows_and_the_face_in_every_frame(
    tmp_path: Path, style: MaskStyle
) -> None:
    originals = scene_with_secrets()
    times = [i / SCENE.fps for i in range(len(originals))]
    out, record = redactor(style).frames(originals, pts_s=times)
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter.fourcc(*"mp4v"), SCENE.fps, (SCENE.width, SCENE.height)
    )
    for image in out:
        writer.write(image)
    writer.release()
    written = read_back(path)
    assert len(written) == len(originals)
    inside = inside_masks(4)
    for original, image in zip(originals, written, strict=True):
        assert abs(detail_correlation(original, image, inside)) < 0.1  # kept: 1.0
        assert laplacian_variance(image, FACE, 0.15) < 0.05 * laplacian_variance(
            original, FACE, 0.15
        )
    assert (record.frames, record.face_frames) == (20, 5)
    assert record.as_details()["frames"] == 20
