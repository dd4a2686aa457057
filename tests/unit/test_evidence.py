"""Evidence: privacy masks applied before anything is written, annotations on top, the store."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from edge.analysis.scene.model import polygons_mask
from edge.evidence.recorder import stamp
from edge.evidence.store import (
    BOX_COLOUR,
    Annotation,
    DirectoryStore,
    annotate,
    apply_privacy_masks,
    encode_jpeg,
    snapshot,
)
from edge.offline.synthetic import LaneScene, frames

Image = npt.NDArray[np.uint8]
Polygon = Sequence[tuple[float, float]]
H, W = 360, 640
MASKS: list[Polygon] = [
    [(0.10, 0.10), (0.50, 0.15), (0.40, 0.60), (0.05, 0.50)],  # a skewed quadrilateral
    [(0.60, 0.60), (0.95, 0.60), (0.95, 0.95)],  # a triangle
]
JPEG_RINGING = 32  # grey levels JPEG may leave a few pixels inside a black area's border


def scene_image() -> Image:
    return next(frames(LaneScene(width=W, height=H, seconds=0.1))).image


def bright_pattern() -> Image:
    """What a mask must hide: white with dark stripes (a window, a face)."""
    image = np.full((H, W, 3), 255, np.uint8)
    image[::6] = 30
    cv2.putText(image, "PRIVATE", (40, 120), cv2.FONT_HERSHEY_SIMPLEX, 2.0, (0, 0, 255), 4)
    return image


def decode(data: bytes) -> Image:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return np.asarray(image, np.uint8)


def inside(masks: Sequence[Polygon], margin_px: int) -> npt.NDArray[np.bool_]:
    """Pixels at least `margin_px` inside one of the polygons."""
    mask = polygons_mask(masks, (H, W))
    kernel = np.ones((2 * margin_px + 1, 2 * margin_px + 1), np.uint8)
    return np.asarray(cv2.erode(mask, kernel) > 0 if margin_px else mask > 0, bool)


def outside(masks: Sequence[Polygon], margin_px: int) -> npt.NDArray[np.bool_]:
    mask = polygons_mask(masks, (H, W))
    grown = cv2.dilate(mask, np.ones((2 * margin_px + 1, 2 * margin_px + 1), np.uint8))
    return np.asarray(grown == 0, bool)


# Masks -------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [scene_image, bright_pattern])
def test_masked_pixels_are_black_and_the_rest_untouched(make: object) -> None:
    image = make()  # type: ignore[operator]
    original = image.copy()
    masked = apply_privacy_masks(image, MASKS)
    assert np.array_equal(image, original)  # the caller's frame is not changed
    assert masked[inside(MASKS, 0)].max() == 0
    keep = outside(MASKS, 1)
    assert np.array_equal(masked[keep], original[keep])


def test_no_masks_returns_the_image() -> None:
    image = scene_image()
    assert np.array_equal(apply_privacy_masks(image, []), image)


@pytest.mark.parametrize("make", [scene_image, bright_pattern])
def test_nothing_under_a_mask_survives_in_the_written_jpeg(make: object) -> None:
    image = make()  # type: ignore[operator]
    decoded = decode(snapshot(image, MASKS, Annotation()))
    assert decoded.shape == image.shape
    near_border = decoded[inside(MASKS, 3)]
    assert near_border.max() <= JPEG_RINGING  # ringing only, no content
    assert near_border.mean() < 1.0
    assert decoded[inside(MASKS, 16)].max() == 0  # a whole JPEG block in: exactly black
    # and the picture under the masks really was bright
    assert image[inside(MASKS, 3)].mean() > 90


def test_pixels_outside_the_masks_are_kept() -> None:
    image = scene_image()
    decoded = decode(snapshot(image, MASKS, Annotation()))
    keep = outside(MASKS, 3)
    error = np.abs(decoded[keep].astype(np.int16) - image[keep].astype(np.int16))
    assert error.mean() < 5.0
    assert decoded[keep].mean() == pytest.approx(image[keep].mean(), abs=2.0)


def test_the_annotation_is_drawn_on_top_of_the_masks() -> None:
    box = (0.15, 0.2, 0.35, 0.45)  # lies inside the first mask
    image = bright_pattern()
    drawn = annotate(apply_privacy_masks(image, MASKS), Annotation(boxes=[box]))
    x1, y1, x2 = round(box[0] * W), round(box[1] * H), round(box[2] * W)
    top_edge = drawn[y1, x1 + 5 : x2 - 5]
    assert (top_edge == BOX_COLOUR).all()
    decoded = decode(snapshot(image, MASKS, Annotation(boxes=[box])))
    red = decoded[y1 - 1 : y1 + 2, x1 + 8 : x2 - 8].astype(np.int16)
    assert red[..., 2].mean() > 100
    assert red[..., 2].mean() > red[..., 1].mean() + 60
    # next to the line, still black: the drawing did not bring back what was under the mask
    assert decoded[y1 + 12 : y1 + 20, x1 + 12 : x2 - 12].max() <= JPEG_RINGING


def test_zone_and_caption_are_drawn() -> None:
    image = np.zeros((H, W, 3), np.uint8)
    zone = [(0.2, 0.5), (0.8, 0.5), (0.8, 0.9), (0.2, 0.9)]
    drawn = annotate(image, Annotation(zone=zone, caption="gate-east lane new"))
    assert drawn[round(0.7 * H), round(0.2 * W)].any()  # on the zone's left edge
    assert not drawn[round(0.7 * H), round(0.5 * W)].any()  # inside the zone: untouched
    assert drawn[:40, :300].min(axis=2).max() > 200  # white caption text at the top left
    assert not image.any()  # drawn on a copy


def test_encode_jpeg_gives_a_jpeg() -> None:
    data = encode_jpeg(scene_image())
    assert data[:3] == b"\xff\xd8\xff"
    assert decode(data).shape == (H, W, 3)


# The store ---------------------------------------------------------------------------------


def test_directory_store_put_writes_the_file_and_describes_it(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "evidence")
    data = snapshot(scene_image(), MASKS, Annotation(caption="x"))
    evidence = store.put("e1-0000-onset.jpg", data, "snapshot", "image/jpeg", "onset")
    path = Path(evidence.url)
    assert path.is_absolute()
    assert path == (tmp_path / "evidence" / "e1-0000-onset.jpg").resolve()
    assert path.read_bytes() == data
    assert evidence.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (evidence.kind, evidence.content_type, evidence.role) == (
        "snapshot",
        "image/jpeg",
        "onset",
    )
    assert sorted(p.name for p in path.parent.iterdir()) == ["e1-0000-onset.jpg"]


def test_directory_store_url_is_absolute_for_a_relative_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    evidence = DirectoryStore(Path("out")).put("a.jpg", b"abc", "snapshot", "image/jpeg", "onset")
    assert Path(evidence.url).is_absolute()
    assert Path(evidence.url).read_bytes() == b"abc"


def test_directory_store_replaces_an_existing_file(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    store.put("a.jpg", b"old", "snapshot", "image/jpeg", "onset")
    evidence = store.put("a.jpg", b"new", "snapshot", "image/jpeg", "onset")
    assert (tmp_path / "a.jpg").read_bytes() == b"new"
    assert evidence.sha256 == hashlib.sha256(b"new").hexdigest()
    assert [p.name for p in tmp_path.iterdir()] == ["a.jpg"]


def test_directory_store_never_leaves_half_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DirectoryStore(tmp_path)
    store.put("a.jpg", b"complete old file", "snapshot", "image/jpeg", "onset")

    def crash(self: Path, target: object) -> Path:
        raise OSError("disk gone")

    monkeypatch.setattr(Path, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        store.put("a.jpg", b"new" * 1000, "snapshot", "image/jpeg", "onset")
    # the file under its final name was never written in place
    assert (tmp_path / "a.jpg").read_bytes() == b"complete old file"


def test_the_caption_burnt_into_evidence_is_the_time_in_digits_only() -> None:
    # no ids or English words on a picture a zh-CN command center reads: the dashboard names
    # the camera and the rule from the event in the operator's language
    caption = stamp(1_765_000_000.4)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", caption), caption
    assert caption == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1_765_000_000))
