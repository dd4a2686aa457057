"""Redaction on the shared clips with the real pose model: faces blurred in the written JPEGs
and MP4s, kept when the rule says so, masks unrecoverable, the drawing still legible."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt
import pytest

from common.config import CameraConfig
from edge.analysis.pose import load_pose_estimator
from edge.analysis.scene.model import polygons_mask
from edge.evidence.privacy import Redactor, head_box, sample_indices
from edge.evidence.store import Annotation, redacted_snapshot
from edge.types import Box
from tests.support.privacy import box_pixels, detail_correlation, laplacian_variance

pytestmark = pytest.mark.integration
Image = npt.NDArray[np.uint8]
FACE_CLIPS = [
    ("personfall_urfd_side.mp4", 1.5, 1),
    ("personfall_dorm_03.mp4", 1.0, 1),
    ("personfall_dorm_06.mp4", 4.5, 1),
    ("pedestrians_plaza_overhead_bw.mp4", 8.0, 6),
]
WINDOW = [(0.55, 0.05), (0.95, 0.05), (0.95, 0.45), (0.55, 0.45)]
INSET = 0.15  # measure inside the head box, away from its edge


def frame_at(path: Path, seconds: float) -> Image:
    capture = cv2.VideoCapture(str(path))
    try:
        capture.set(cv2.CAP_PROP_POS_MSEC, seconds * 1000)
        ok, image = capture.read()
    finally:
        capture.release()
    assert ok, f"no frame at {seconds} s in {path.name}"
    return np.asarray(image, np.uint8)


def frames_from(path: Path, start_s: float, count: int) -> tuple[list[Image], list[float]]:
    capture = cv2.VideoCapture(str(path))
    capture.set(cv2.CAP_PROP_POS_MSEC, start_s * 1000)
    images: list[Image] = []
    times: list[float] = []
    while len(images) < count:
        ok, image = capture.read()
        if not ok:
            break
        times.append(capture.get(cv2.CAP_PROP_POS_MSEC) / 1000)
        images.append(np.asarray(image, np.uint8))
    capture.release()
    return images, times


def decode(data: bytes) -> Image:
    return np.asarray(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), np.uint8)


def camera(masks: list[list[tuple[float, float]]], **privacy: object) -> CameraConfig:
    return CameraConfig.model_validate(
        {"id": "cam", "source": "x.mp4", "privacy_masks": masks, "privacy": privacy}
    )


@pytest.fixture(scope="module")
def redactor(models_dir: Path) -> Redactor:
    """Faces only: no mask may hide a head and make the measurement trivial."""
    return Redactor.for_camera(camera([]), load_pose_estimator())


def sharpness_kept(original: Image, written: Image, heads: list[Box]) -> list[float]:
    return [
        laplacian_variance(written, box, INSET) / laplacian_variance(original, box, INSET)
        for box in heads
    ]


@pytest.mark.parametrize(("clip", "at_s", "people"), FACE_CLIPS)
def test_faces_in_the_shared_clips_are_blurred_in_the_written_jpeg(
    clips_dir: Path, redactor: Redactor, clip: str, at_s: float, people: int
) -> None:
    original = frame_at(clips_dir / clip, at_s)
    heads = redactor.find_heads(original)
    assert len(heads) >= people
    data, record = redacted_snapshot(original, redactor, Annotation())
    kept = sharpness_kept(original, decode(data), heads)
    assert max(kept) < 0.06, kept  # the fine detail of every head is gone
    assert record.faces_blurred == len(heads)
    assert record.pose_model == "yolov8n-pose-640"  # the face detector is not given here


def test_the_rule_switch_keeps_the_fall_victims_face(clips_dir: Path, redactor: Redactor) -> None:
    original = frame_at(clips_dir / "personfall_urfd_side.mp4", 1.5)
    heads = redactor.find_heads(original)
    data, record = redacted_snapshot(original, redactor, Annotation(), blur_faces=False)
    assert min(sharpness_kept(original, decode(data), heads)) > 0.5  # JPEG noise only
    assert record.faces_skipped is not None and record.faces_blurred == 0


@pytest.mark.parametrize("style", ["black", "blur", "pixelate"])
def test_a_mask_on_a_real_frame_is_unrecoverable_and_the_drawing_on_it_visible(
    clips_dir: Path, style: str
) -> None:
    original = frame_at(clips_dir / "pedestrians_plaza_overhead_bw.mp4", 8.0)
    h, w = original.shape[:2]
    inside = np.asarray(
        cv2.erode(polygons_mask([WINDOW], (h, w)), np.ones((7, 7), np.uint8)) > 0, bool
    )
    box = (0.6, 0.1, 0.8, 0.3)  # drawn inside the mask, after it
    path = [(0.62, 0.12), (0.7, 0.25), (0.9, 0.4)]
    masked_only = Redactor.for_camera(camera([WINDOW], mask_style=style, blur_faces=False))
    plain, _ = redacted_snapshot(original, masked_only, Annotation())
    written = decode(plain)
    assert abs(detail_correlation(original, written, inside)) < 0.05
    assert original[inside].std() > 20  # there was something to hide
    drawn = decode(
        redacted_snapshot(original, masked_only, Annotation(boxes=[box], paths=[path]))[0]
    )
    x1, y1, x2 = round(box[0] * w), round(box[1] * h), round(box[2] * w)
    red = drawn[y1 - 1 : y1 + 2, x1 + 8 : x2 - 8].astype(int)
    assert red[..., 2].mean() > 150 and red[..., 1].mean() < 90
    px, py = round(0.66 * w), round(0.185 * h)  # halfway along the first trajectory segment
    magenta = drawn[py - 3 : py + 4, px - 3 : px + 4].astype(int)
    assert magenta[..., 0].max() > 150 and magenta[..., 2].max() > 150


def test_faces_stay_blurred_through_a_written_clip(
    clips_dir: Path, redactor: Redactor, tmp_path: Path
) -> None:
    """Faces are searched every 0.5 s, and on the frames between where two searches disagree
    (a crowd: people enter, leave, cross); on every frame, the heads the pose model finds there
    itself must be covered, whether searched or carried."""
    images, times = frames_from(clips_dir / "pedestrians_plaza_overhead_bw.mp4", 6.0, 30)
    out, record = redactor.frames(images, pts_s=times)
    sampled = set(sample_indices(len(images), redactor.options.clip_face_every_s, times))
    assert len(sampled) <= record.face_frames <= len(images)
    clip = tmp_path / "clip.mp4"
    h, w = images[0].shape[:2]
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"mp4v"), 25.0, (w, h))
    for image in out:
        writer.write(image)
    writer.release()
    written, _ = frames_from(clip, 0.0, len(out))
    assert len(written) == len(images)
    pose = load_pose_estimator()
    ratios = []
    for index in range(1, len(images), 2):  # half of them: time
        people = [p for p in pose.detect_pose(images[index]) if p.detection.score >= 0.5]
        heads = [
            box
            for p in people
            if (box := head_box(p.keypoints, p.detection.box, aspect=w / h)) is not None
        ]
        ratios += sharpness_kept(images[index], written[index], heads)
    assert len(ratios) >= 40
    assert float(np.quantile(ratios, 0.95)) < 0.1, sorted(ratios)[-5:]
    assert max(ratios) < 0.2, sorted(ratios)[-5:]


def test_the_pipeline_writes_fall_evidence_with_faces_blurred(
    tmp_path: Path, models_dir: Path, clips_dir: Path
) -> None:
    """End to end: `edge replay` of a real fall with evidence kept. The clip the pipeline wrote
    (masked, faces blurred, no drawing) shows the person's face without its detail, frame for
    frame against the source; the records say what was done."""
    from common.config import load_site_config
    from common.events import Event
    from edge.capture.sources import open_video_file
    from edge.evidence.store import DirectoryStore
    from edge.offline.replay import replay_events

    site = load_site_config(Path(__file__).parents[2] / "configs/eval/shared-clips.yaml")
    source = clips_dir / "personfall_urfd_side.mp4"
    made = [
        e
        for e in replay_events(site, site.camera("urfd-side"), source, DirectoryStore(tmp_path))
        if isinstance(e, Event)
    ]
    new = next(e for e in made if e.state == "new")
    assert new.details["privacy"]["faces_blurred"] >= 1
    # the alert's clip comes in the situation's next message
    follow_up = next(e for e in made if e.details.get("update_reason") == "clip")
    assert (follow_up.event_id, follow_up.seq) == (new.event_id, 1)
    clip = next(e for e in follow_up.evidence if e.kind == "clip")
    assert clip.redaction is not None and clip.redaction["faces"]["blurred"] >= 1
    assert clip.start_pts_s is not None
    pose = load_pose_estimator()
    kept: list[float] = []
    with av.open(clip.url) as container:
        decoded = [
            (float(f.pts * f.time_base), f.to_ndarray(format="bgr24"))
            for f in container.decode(video=0)
            if f.pts is not None and f.time_base is not None
        ]
    with open_video_file(source) as video:
        originals = [(frame.pts_s, frame.image) for frame in video]
    for at, image in decoded[::5]:
        when = clip.start_pts_s + at
        _, original = min(originals, key=lambda f: abs(f[0] - when))
        people = [p for p in pose.detect_pose(original) if p.detection.score >= 0.5]
        aspect = original.shape[1] / original.shape[0]
        heads = [head_box(p.keypoints, p.detection.box, aspect=aspect) for p in people]
        boxes = [h for h in heads if h is not None and (h[2] - h[0]) * image.shape[1] >= 8]
        for box in boxes:  # how much of the face's fine detail the written frame still shows
            region = np.zeros(original.shape[:2], bool)
            region[box_pixels(box, original.shape, INSET)] = True
            kept.append(detail_correlation(original, np.asarray(image, np.uint8), region))
    assert len(kept) >= 5, "the person's head should be in view in several frames"
    assert max(kept) < 0.3, kept  # (a face left as it was: about 0.9 through H.264)
