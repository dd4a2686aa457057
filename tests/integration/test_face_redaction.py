"""Faces in stored evidence, checked by an independent face detector (YuNet, `yuface`; the edge
runs CenterFace) at every turn of the picture (tests/support/face_oracle.py).

- Every snapshot and every clip frame the edge writes for the shared clips' events: where the
  source frame the picture was made from has a face (`FACE_SCORE`), the picture has nothing
  scoring `NEAR_SCORE` (the sources of every other picture are looked at); and nothing anywhere
  scores `ORACLE_SCORE` where the picture keeps its source's detail (a blurred blob the check
  takes for a face is no face). The same check finds the faces in the source frames (so it can
  fail).
- The shared faces turned 0/90/180/270 degrees and scaled to faces of 12 to 40 pixels: found
  by the check before redaction, not after.
- The face model through the box's detection service answers what it answers in-process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Listener
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt
import pytest

from common.config import CameraConfig, load_site_config
from common.events import Event
from edge.analysis.detect.base import Priority
from edge.analysis.faces import DEFAULT_FACE_MODEL, load_face_model
from edge.analysis.pose import load_pose_estimator
from edge.capture.sources import open_video_file
from edge.evidence.faces import View, to_frame
from edge.evidence.privacy import Redactor
from edge.evidence.store import DirectoryStore
from edge.offline.replay import replay_events
from edge.runtime.camera import ServiceModels, camera_slots
from edge.runtime.detection import DetectionClient, DetectionService, ModelSlot
from edge.runtime.models import load_registry
from edge.types import Box
from tests.support.face_oracle import (
    FACE_SCORE,
    NEAR_SCORE,
    best_score_near,
    faces_in,
    faces_left,
    grown,
)

pytestmark = pytest.mark.integration
Image = npt.NDArray[np.uint8]
REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "configs" / "eval" / "shared-clips.yaml"
FALL_CAMERAS = ["urfd-side", "urfd-overhead", "dorm-03", "dorm-06"]
OTHER_CAMERAS = ["stair-landing", "sidewalk"]  # events with people in the pictures
_TURN = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


@pytest.fixture(scope="module")
def redactor(models_dir: Path) -> Redactor:
    camera = CameraConfig.model_validate({"id": "cam", "source": "x.mp4"})
    return Redactor.for_camera(camera, load_pose_estimator(), load_face_model())


# --------------------------------------------------------------------- the clips' evidence


@dataclass(frozen=True)
class Stored:
    """A picture the edge wrote and the source frame it was made from."""

    name: str
    written: Image
    source: Image | None


def _source_frames(path: Path) -> list[tuple[float, Image]]:
    with open_video_file(path) as video:
        return [(frame.pts_s, frame.image) for frame in video]


def _at(frames: list[tuple[float, Image]], pts_s: float) -> Image:
    return min(frames, key=lambda f: abs(f[0] - pts_s))[1]


def _stored_pictures(events: list[Event], source: Path) -> Iterator[Stored]:
    originals = _source_frames(source)
    for event in events:
        for evidence in event.evidence:
            path = Path(evidence.url)
            if evidence.kind == "snapshot":
                written = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
                same_frame = evidence.role in ("onset", "latest", "closing")
                original = _at(originals, event.pts_s) if same_frame else None
                yield Stored(path.name, np.asarray(written, np.uint8), original)
                continue
            assert evidence.start_pts_s is not None
            with av.open(str(path)) as container:
                for frame in container.decode(video=0):
                    assert frame.pts is not None and frame.time_base is not None
                    at = float(frame.pts * frame.time_base)
                    image = np.asarray(frame.to_ndarray(format="bgr24"), np.uint8)
                    original = _at(originals, evidence.start_pts_s + at)
                    yield Stored(f"{path.name}@{at:.2f}", image, original)


@dataclass
class Checked:
    pictures: int = 0
    faces_before: int = 0  # faces (FACE_SCORE) the check finds in the source frames
    worst: float = 0.0  # the best score the check gave anything in a stored picture


def _check_camera(camera_id: str, tmp_path: Path, clips_dir: Path) -> Checked:
    """Replay the camera's clip with evidence kept; every stored picture is checked at every
    turn (see the module's docstring)."""
    site = load_site_config(SITE)
    camera = site.camera(camera_id)
    assert camera.privacy.face_detector == DEFAULT_FACE_MODEL
    source = clips_dir / Path(str(camera.source)).name
    made = replay_events(site, camera, source, DirectoryStore(tmp_path))
    events = [e for e in made if isinstance(e, Event)]
    assert any(e.evidence for e in events), f"{camera_id}: no evidence written"
    checked = Checked()
    left: list[str] = []
    for index, stored in enumerate(_stored_pictures(events, source)):
        after = faces_in(stored.written)
        checked.pictures += 1
        checked.worst = max([checked.worst, *(face.score for face in after)])
        for face, share in faces_left(stored.written, stored.source, after):
            left.append(f"{stored.name}: {face.score:.2f} with {share:.2f} of the detail")
        if stored.source is None or index % 2:  # the sources of every other picture: time
            continue
        sure = faces_in(stored.source, FACE_SCORE)
        checked.faces_before += len(sure)
        for face in sure:
            near = best_score_near(after, grown(face.box, 0.5))
            if near >= NEAR_SCORE:
                left.append(f"{stored.name}: {near:.2f} where a face scored {face.score:.2f}")
    assert not left, f"{camera_id}: faces found in stored pictures: {left}"
    methods = {"face_detector", "pose_keypoints", "head_region"}
    for event in events:
        for evidence in event.evidence:
            faces = (evidence.redaction or {}).get("faces", {})
            assert "skipped" not in faces, faces
            assert faces.get("model") == DEFAULT_FACE_MODEL
            assert {item["method"] for item in faces.get("items", [])} <= methods
            for frame in faces.get("per_frame", []):
                assert set(frame["methods"]) <= methods
    return checked


@pytest.mark.parametrize("camera_id", FALL_CAMERAS)
def test_no_face_is_left_in_any_stored_picture_of_a_fall(
    camera_id: str, tmp_path: Path, models_dir: Path, clips_dir: Path
) -> None:
    checked = _check_camera(camera_id, tmp_path, clips_dir)
    assert checked.pictures >= 20  # the snapshot and every frame of the clip
    # the person's face seen from the ceiling is a face to the check only while he lies turned
    least = 1 if camera_id == "urfd-overhead" else 3
    assert checked.faces_before >= least, f"{camera_id}: the check found no face in the sources"


@pytest.mark.parametrize("camera_id", OTHER_CAMERAS)
def test_no_face_is_left_in_the_pictures_of_the_other_clips_events(
    camera_id: str, tmp_path: Path, models_dir: Path, clips_dir: Path
) -> None:
    assert _check_camera(camera_id, tmp_path, clips_dir).pictures >= 1


# ------------------------------------------------------------- the shared faces, turned


SHARED_FACES = [  # frames of the shared clips with a face the check finds upright
    ("personfall_urfd_side.mp4", 1.0),
    ("personfall_dorm_03.mp4", 3.3),
    ("personfall_dorm_06.mp4", 2.0),
    ("personfall_dorm_06.mp4", 5.5),
]
FACE_PX = (12, 24, 40)


def _frame_at(path: Path, seconds: float) -> Image:
    capture = cv2.VideoCapture(str(path))
    try:
        capture.set(cv2.CAP_PROP_POS_MSEC, seconds * 1000)
        ok, image = capture.read()
    finally:
        capture.release()
    assert ok, f"no frame at {seconds} s in {path.name}"
    return np.asarray(image, np.uint8)


def _turned_box(box: Box, rotation: int) -> Box:
    """Where a box of a picture lies once the picture is turned `rotation` degrees clockwise."""
    inverse = {0: 0, 90: 270, 180: 180, 270: 90}[rotation]
    return to_frame(box, View((0, 0, 1, 1), inverse), (1, 1))


@pytest.mark.parametrize(("clip", "at_s"), SHARED_FACES)
def test_turned_and_small_faces_are_found_before_and_gone_after(
    clip: str, at_s: float, clips_dir: Path, redactor: Redactor
) -> None:
    original = _frame_at(clips_dir / clip, at_s)
    w = original.shape[1]
    upright = [face for face in faces_in(original, FACE_SCORE) if face.rotation == 0]
    face = max(upright, key=lambda f: f.score)
    width_px = (face.box[2] - face.box[0]) * w
    results = []
    for px in FACE_PX:
        k = px / width_px
        interpolation = cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC
        scaled = np.asarray(cv2.resize(original, None, fx=k, fy=k, interpolation=interpolation))
        for rotation in (0, 90, 180, 270):
            image = scaled if rotation == 0 else np.asarray(cv2.rotate(scaled, _TURN[rotation]))
            where = grown(_turned_box(face.box, rotation), 0.5)
            before = best_score_near(faces_in(image), where)
            out, record = redactor.image(image)
            after = faces_in(out)
            left = faces_left(out, image, after)
            methods = {head.method for head in record.heads}
            results.append((px, rotation, before, left, methods, best_score_near(after, where)))
    missed = [r[:3] for r in results if r[2] < FACE_SCORE]
    assert not missed, missed  # the check finds every face before redaction
    left = [r for r in results if r[3] or r[5] >= NEAR_SCORE]
    assert not left, left
    assert all("face_detector" in r[4] for r in results), results  # found, not only covered


# ----------------------------------------------------- the face model through the service


def test_the_face_model_through_the_detection_service_answers_as_in_process(
    tmp_path: Path, clips_dir: Path, models_dir: Path
) -> None:
    """A faces slot loaded by the service before the cameras; the views of one frame asked at
    EVIDENCE priority come back as the model finds them in this process."""
    site = load_site_config(SITE)
    slots = camera_slots(site, "dorm-06")
    faces_slot = next(slot for slot in slots if slot.task == "faces")
    assert faces_slot == ModelSlot(DEFAULT_FACE_MODEL, "faces", 0.1, 0.3)
    service = DetectionService([faces_slot])
    service.load()
    address = str(tmp_path / "detect.sock")
    stop = threading.Event()
    with Listener(address, family="AF_UNIX", authkey=b"k") as listener:
        accept = threading.Thread(target=service.accept_forever, args=(listener, stop), daemon=True)
        serve = threading.Thread(target=service.serve, args=(stop,), daemon=True)
        accept.start()
        serve.start()
        registry = load_registry()
        client = DetectionClient(
            address, b"k", "dorm-06", {DEFAULT_FACE_MODEL: registry[DEFAULT_FACE_MODEL]}
        )
        try:
            image = _frame_at(clips_dir / "personfall_dorm_06.mp4", 8.0)
            views = [image, np.asarray(cv2.rotate(image, _TURN[90]))]
            remote = ServiceModels(client, registry.models).faces(
                DEFAULT_FACE_MODEL, Priority.EVIDENCE
            )
            answered = remote.detect_faces(views)
            local = load_face_model().detect_faces(views)
        finally:
            client.close()
            stop.set()
            serve.join(5)
            service.close()
    assert remote.input_wh == (640, 640) and remote.info.name == DEFAULT_FACE_MODEL
    assert [len(faces) for faces in answered] == [len(faces) for faces in local]
    assert sum(len(faces) for faces in answered) >= 1
    for got, want in zip(answered, local, strict=True):
        for a, b in zip(got, want, strict=True):
            assert a.box == pytest.approx(b.box, abs=1e-4)
            assert a.score == pytest.approx(b.score, abs=1e-4)
