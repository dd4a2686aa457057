"""Redaction of evidence: head boxes from keypoints, masks made unrecoverable, faces blurred,
the per-rule switch, clips with heads carried between sampled frames, and the record."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from common.config import CameraConfig, ConfigError, PrivacyConfig, parse_site_config
from edge.analysis.detect.yolo import PoseDetection
from edge.analysis.pose import load_pose_estimator
from edge.analysis.scene.model import polygons_mask
from edge.evidence.privacy import (
    CLIP_GROW,
    MaskStyle,
    RedactionError,
    RedactionRecord,
    Redactor,
    blur_boxes,
    carry_heads,
    head_box,
    mask_cell_px,
    obscure_polygons,
    sample_indices,
    top_of_person,
)
from edge.evidence.store import BOX_COLOUR, Annotation, apply_privacy_masks, redacted_snapshot
from edge.types import Box
from tests.support.privacy import (
    BrokenPose,
    FakePose,
    box_pixels,
    detail_correlation,
    laplacian_variance,
    person_with_head,
    secret_pattern,
    textured_face,
)

Image = npt.NDArray[np.uint8]
H, W = 360, 640
WINDOW = [(0.05, 0.05), (0.55, 0.05), (0.55, 0.65), (0.05, 0.65)]
TRIANGLE = [(0.60, 0.30), (0.95, 0.30), (0.95, 0.95)]
MASKS = [WINDOW, TRIANGLE]


def keypoints(
    points: dict[int, tuple[float, float]], visibility: float = 0.9
) -> npt.NDArray[np.float32]:
    out = np.zeros((17, 3), np.float32)
    for index, (x, y) in points.items():
        out[index] = (x, y, visibility)
    return out


def region(
    masks: Sequence[Sequence[tuple[float, float]]], margin_px: int = 0
) -> npt.NDArray[np.bool_]:
    mask = polygons_mask(masks, (H, W))
    if margin_px:
        mask = cv2.erode(mask, np.ones((2 * margin_px + 1,) * 2, np.uint8))
    return np.asarray(mask > 0, bool)


def camera(**privacy: object) -> CameraConfig:
    return CameraConfig.model_validate(
        {"id": "cam", "source": "x.mp4", "privacy_masks": MASKS, "privacy": privacy}
    )


# head_box ------------------------------------------------------------------------------------


def test_a_frontal_head_is_centred_on_its_keypoints_and_sized_by_the_shoulders() -> None:
    points = keypoints(
        {0: (0.5, 0.23), 1: (0.48, 0.2), 2: (0.52, 0.2), 5: (0.42, 0.32), 6: (0.58, 0.32)}
    )
    box = head_box(points, (0.4, 0.15, 0.6, 0.9))
    assert box == pytest.approx((0.411, 0.121, 0.589, 0.299), abs=0.002)


def test_the_head_box_is_square_in_pixels_on_a_wide_frame() -> None:
    aspect = 16 / 9
    points = keypoints({0: (0.5, 0.3), 3: (0.49, 0.29), 4: (0.51, 0.29)})
    box = head_box(points, (0.45, 0.25, 0.55, 0.8), aspect=aspect)
    assert box is not None
    width_px, height_px = (box[2] - box[0]) * 1280, (box[3] - box[1]) * 720
    assert width_px == pytest.approx(height_px, rel=0.01)
    assert box[0] < 0.49 and box[2] > 0.51  # covers both ears


def test_a_person_seen_from_behind_gets_the_top_of_the_box() -> None:
    hidden = keypoints({0: (0.5, 0.2), 1: (0.48, 0.19)}, visibility=0.1)
    hidden[5], hidden[6] = (0.45, 0.3, 0.95), (0.55, 0.3, 0.95)
    person = (0.4, 0.15, 0.6, 0.95)
    assert head_box(hidden, person) == top_of_person(person)
    assert head_box(np.zeros((0, 3)), person) == top_of_person(person)  # no keypoints at all


def test_top_of_person_is_a_fifth_of_a_standing_person_and_half_of_a_lying_one() -> None:
    assert top_of_person((0.4, 0.2, 0.5, 0.8)) == pytest.approx((0.4, 0.2, 0.5, 0.32))
    lying = top_of_person((0.1, 0.7, 0.7, 0.9))
    assert lying == pytest.approx((0.1, 0.7, 0.7, 0.8))


def test_a_lying_persons_head_is_found_where_the_keypoints_are() -> None:
    points = keypoints(
        {0: (0.15, 0.78), 1: (0.14, 0.76), 2: (0.14, 0.8), 5: (0.22, 0.74), 6: (0.22, 0.84)}
    )
    box = head_box(points, (0.1, 0.7, 0.7, 0.9))
    assert box is not None
    assert box[0] <= 0.13 and box[2] < 0.25  # the left end, not the whole body
    assert box[1] < 0.76 and box[3] > 0.8


def test_the_head_size_is_kept_within_the_person_box() -> None:
    lone_nose = keypoints({0: (0.5, 0.2)})  # no spread, no shoulders: the floor applies
    box = head_box(lone_nose, (0.4, 0.1, 0.6, 0.9))
    assert box is not None
    assert box[2] - box[0] == pytest.approx(0.25 * 0.2 * 1.8)
    wild = keypoints({0: (0.5, 0.2), 5: (0.0, 1.0)})  # a shoulder far away: the cap applies
    box = head_box(wild, (0.45, 0.15, 0.55, 0.35))
    assert box is not None and box[3] - box[1] <= 0.6 * 0.2 * 1.8 + 1e-9


def test_an_empty_person_box_has_no_head() -> None:
    assert head_box(keypoints({0: (0.5, 0.5)}), (0.5, 0.5, 0.5, 0.6)) is None
    assert head_box(keypoints({0: (0.5, 0.5)}), (0.5, float("nan"), 0.6, 0.6)) is None


def test_keypoints_the_model_answered_nan_for_are_not_seen() -> None:
    """A model fed something odd may answer NaN: the head is then placed by the keypoints
    that are finite, or by the top of the box, never lost (a NaN box would blur nothing)."""
    person = (0.4, 0.15, 0.6, 0.9)
    good = {0: (0.5, 0.23), 1: (0.48, 0.2), 2: (0.52, 0.2), 5: (0.42, 0.32), 6: (0.58, 0.32)}
    expected = head_box(keypoints(good), person)
    nan_nose = keypoints({**good, 0: (float("nan"), 0.23)})
    box = head_box(nan_nose, person)
    assert box is not None and expected is not None
    assert box == pytest.approx(expected, abs=0.03)  # from the eyes and shoulders
    assert all(np.isfinite(box))
    all_nan = keypoints({i: (float("nan"), float("inf")) for i in range(17)})
    assert head_box(all_nan, person) == top_of_person(person)


# masks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["blur", "pixelate"])
def test_text_under_a_mask_is_not_recoverable(style: MaskStyle) -> None:
    original = secret_pattern(H, W, "ROOM 1204 ZHANG")
    hidden = obscure_polygons(original, MASKS, style)
    inside = region(MASKS)
    assert abs(detail_correlation(original, hidden, inside)) < 0.05
    # and the fine detail is gone, not merely shifted: the masked area is smooth
    assert laplacian_variance(hidden, (0.1, 0.1, 0.5, 0.6)) < 0.05 * laplacian_variance(
        original, (0.1, 0.1, 0.5, 0.6)
    )


@pytest.mark.parametrize("style", ["blur", "pixelate"])
def test_two_different_secrets_give_the_same_masked_picture(style: MaskStyle) -> None:
    a = secret_pattern(H, W, "ROOM 1204 ZHANG", seed=1)
    b = secret_pattern(H, W, "FLAT 7 WANG LI", seed=2)
    inside = region(MASKS, margin_px=2)
    before = np.abs(a.astype(int) - b.astype(int))[inside].mean()
    after = np.abs(
        obscure_polygons(a, MASKS, style).astype(int)
        - obscure_polygons(b, MASKS, style).astype(int)
    )[inside].mean()
    assert before > 40
    # what is left is about the mean colour of large cells: nearly the same for both
    assert after < 0.15 * before


@pytest.mark.parametrize("style", ["black", "blur", "pixelate"])
def test_pixels_outside_the_masks_and_the_input_are_untouched(style: MaskStyle) -> None:
    original = secret_pattern(H, W, "ROOM")
    copy = original.copy()
    hidden = obscure_polygons(original, MASKS, style)
    outside = ~np.asarray(cv2.dilate(polygons_mask(MASKS, (H, W)), np.ones((3, 3))) > 0)
    assert np.array_equal(hidden[outside], original[outside])
    assert np.array_equal(original, copy)


def test_apply_privacy_masks_is_the_same_implementation_with_black_by_default() -> None:
    original = secret_pattern(H, W, "ROOM")
    assert np.array_equal(apply_privacy_masks(original, MASKS), obscure_polygons(original, MASKS))
    assert np.array_equal(
        apply_privacy_masks(original, MASKS, "blur"), obscure_polygons(original, MASKS, "blur")
    )
    assert apply_privacy_masks(original, MASKS)[region(MASKS)].max() == 0


def test_mosaic_cells_are_large_against_the_frame_and_the_mask() -> None:
    assert mask_cell_px((1080, 1920), (100, 100)) == 48  # a small window: 2 x 2 cells
    assert mask_cell_px((1080, 1920), (800, 1200)) == 100  # a big facade: 8 cells high
    assert mask_cell_px((24, 32), (10, 10)) == 4


def test_blurred_boxes_lose_their_detail() -> None:
    image = np.full((H, W, 3), 128, np.uint8)
    face = (0.4, 0.2, 0.5, 0.4)
    textured_face(image, face)
    out = blur_boxes(image, [face])
    assert laplacian_variance(out, face, inset=0.1) < 0.01 * laplacian_variance(image, face)
    assert np.array_equal(out[:, : round(0.39 * W)], image[:, : round(0.39 * W)])
    assert blur_boxes(image, []) is image


# the redactor --------------------------------------------------------------------------------

FACE: Box = (0.70, 0.05, 0.76, 0.16)  # outside both masks
HEAD_XY = (0.73, 0.105)


def face_scene() -> Image:
    image = secret_pattern(H, W, "ROOM 1204")
    textured_face(image, FACE)
    return image


def one_person(_call: int, _image: Image) -> list[PoseDetection]:
    return [person_with_head(HEAD_XY, (0.66, 0.04, 0.8, 0.6), head_w=0.03)]


def test_a_snapshot_has_masks_hidden_and_faces_blurred() -> None:
    image = face_scene()
    original = image.copy()
    pose = FakePose(one_person)
    redactor = Redactor.for_camera(camera(mask_style="blur"), pose)
    out, record = redactor.image(image)
    assert np.array_equal(image, original)  # the analysis' frame is not touched
    assert laplacian_variance(out, FACE, inset=0.15) < 0.02 * laplacian_variance(image, FACE)
    assert abs(detail_correlation(image, out, region(MASKS))) < 0.05
    details = record.as_details()
    assert (details["masks"], details["mask_style"]) == ([0, 1], "blur")
    faces = details["faces"]
    assert (faces["blurred"], faces["method"], faces["model"]) == (1, "pose_keypoints", None)
    assert faces["pose_model"] == "fake-pose"
    assert faces["by_method"] == {"pose_keypoints": 1}
    (item,) = faces["items"]
    assert item["method"] == "pose_keypoints" and len(item["box"]) == 4
    assert pose.calls == 1


def test_the_rule_switch_keeps_faces_but_not_what_the_masks_hide() -> None:
    image = face_scene()
    pose = FakePose(one_person)
    out, record = Redactor.for_camera(camera(), pose).image(image, blur_faces=False)
    rows, cols = box_pixels(FACE, (H, W))
    assert np.array_equal(out[rows, cols], image[rows, cols])
    assert out[region(MASKS)].max() == 0
    assert record.faces_skipped == "the rule keeps faces (evidence_faces: keep)"
    assert record.as_details()["faces"] == {"skipped": record.faces_skipped}
    assert pose.calls == 0  # the pose model is not even run


def test_faces_off_for_the_camera_or_no_face_finder_is_recorded() -> None:
    image = face_scene()
    _, off = Redactor.for_camera(camera(blur_faces=False), FakePose(one_person)).image(image)
    assert off.faces_skipped == "blur_faces is off for this camera"
    _, missing = Redactor.for_camera(camera()).image(image)
    assert missing.faces_skipped == "no face finder was given"
    assert (missing.masks, missing.mask_style) == ((0, 1), "black")


def test_a_failing_face_finder_stops_the_evidence() -> None:
    with pytest.raises(RedactionError, match="face finder failed"):
        Redactor.for_camera(camera(), BrokenPose()).image(face_scene())


def test_people_below_the_face_score_are_left_alone() -> None:
    faint = FakePose(lambda _c, _i: [person_with_head(HEAD_XY, (0.66, 0.04, 0.8, 0.6), score=0.05)])
    image = face_scene()
    out, record = Redactor.for_camera(camera(), faint).image(image)
    assert record.faces_blurred == 0
    rows, cols = box_pixels(FACE, (H, W))
    assert np.array_equal(out[rows, cols], image[rows, cols])


def test_boxes_drawn_on_top_of_a_mask_stay_visible() -> None:
    image = face_scene()
    box = (0.15, 0.2, 0.35, 0.45)  # inside the window mask
    redactor = Redactor.for_camera(camera(mask_style="pixelate"), FakePose(one_person))
    data, record = redacted_snapshot(
        image, redactor, Annotation(boxes=[box], paths=[[(0.2, 0.1), (0.3, 0.5)]])
    )
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    x1, y1, x2 = round(box[0] * W), round(box[1] * H), round(box[2] * W)
    red = decoded[y1 - 1 : y1 + 2, x1 + 8 : x2 - 8].astype(int)
    assert red[..., 2].mean() > 150 and red[..., 1].mean() < 90
    assert BOX_COLOUR == (0, 0, 255)
    assert record.faces_blurred == 1


def test_the_record_round_trips_to_event_details() -> None:
    record = RedactionRecord(
        (0,), "pixelate", 3, "pose_keypoints", "yolov8n-pose-640", None, 40, 14
    )
    assert record.as_details() == {
        "masks": [0],
        "mask_style": "pixelate",
        "faces": {
            "blurred": 3,
            "method": "pose_keypoints",
            "model": "yolov8n-pose-640",
            "searched_frames": 14,
        },
        "frames": 40,
    }


# clips ---------------------------------------------------------------------------------------


def test_sampled_frames_follow_stream_time_and_include_the_last() -> None:
    assert sample_indices(10, 0.3) == [0, 3, 6, 9]
    assert sample_indices(11, 0.3) == [0, 3, 6, 9, 10]
    assert sample_indices(5, 0.3, [0.0, 1.0, 1.1, 1.2, 1.5]) == [0, 1, 4]
    assert sample_indices(1, 0.3) == [0]
    assert sample_indices(0, 0.3) == []
    with pytest.raises(ValueError, match="timestamps"):
        sample_indices(3, 0.3, [0.0])


def test_a_head_moving_between_samples_is_carried_and_grown() -> None:
    a, b = (0.1, 0.1, 0.2, 0.2), (0.3, 0.1, 0.4, 0.2)
    assert carry_heads([a], [b], 0.0) == [a]
    assert carry_heads([a], [b], 1.0) == [b]
    (mid,) = carry_heads([a], [b], 0.5)
    grow = 0.1 * CLIP_GROW
    assert mid == pytest.approx((0.2 - grow, 0.1 - grow, 0.3 + grow, 0.2 + grow))


def test_unmatched_heads_are_kept_over_the_whole_gap() -> None:
    a, far = (0.1, 0.1, 0.15, 0.15), (0.8, 0.8, 0.85, 0.85)
    carried = carry_heads([a], [far], 0.5)  # too far apart to be the same head
    assert len(carried) == 2
    assert carry_heads([], [far], 0.1) == [pytest.approx((0.7875, 0.7875, 0.8625, 0.8625))]


def moving_face_frames(count: int) -> tuple[list[Image], list[Box]]:
    """A textured face moving right by 1 % of the width per frame."""
    frames, faces = [], []
    for i in range(count):
        image = np.full((H, W, 3), 120, np.uint8)
        face = (0.1 + 0.01 * i, 0.72, 0.16 + 0.01 * i, 0.83)  # below the masks
        textured_face(image, face, seed=i)
        frames.append(image)
        faces.append(face)
    return frames, faces


def test_a_clip_has_every_frames_face_blurred_with_the_finder_on_some_frames_only() -> None:
    images, faces = moving_face_frames(20)

    def follow(call: int, image: Image) -> list[PoseDetection]:
        # find the face where it really is in the frame given (the textured patch)
        lap = np.abs(cv2.Laplacian(image[..., 0].astype(np.float64), cv2.CV_64F)) > 30
        xs = np.nonzero(lap.any(axis=0))[0]
        cx = (xs.min() + xs.max()) / 2 / W
        return [person_with_head((cx, 0.775), (cx - 0.05, 0.72, cx + 0.05, 1.0), head_w=0.035)]

    pose = FakePose(follow)
    redactor = Redactor.for_camera(camera(), pose)
    out, record = redactor.frames(images, pts_s=[i / 10 for i in range(20)])
    assert pose.calls == len(sample_indices(20, 0.5)) == 5
    for image, redacted, face in zip(images, out, faces, strict=True):
        assert laplacian_variance(redacted, face, inset=0.1) < 0.02 * laplacian_variance(
            image, face
        )
    assert (record.frames, record.face_frames, record.faces_blurred) == (20, 5, 1)
    assert all(o[region(MASKS)].max() == 0 for o in out)


def test_a_clip_with_faces_kept_is_masked_only() -> None:
    images, faces = moving_face_frames(4)
    pose = FakePose(one_person)
    out, record = Redactor.for_camera(camera(), pose).frames(images, blur_faces=False)
    assert pose.calls == 0 and record.frames == 4
    rows, cols = box_pixels(faces[0], (H, W))
    assert np.array_equal(out[0][rows, cols], images[0][rows, cols])
    assert out[0] is not images[0]


# config --------------------------------------------------------------------------------------


def test_privacy_options_default_to_black_masks_and_blurred_faces() -> None:
    options = CameraConfig.model_validate({"id": "c", "source": "x.mp4"}).privacy
    assert options == PrivacyConfig()
    assert (options.mask_style, options.blur_faces, options.face_model) == (
        "black",
        True,
        "yolov8n-pose-640",
    )


def test_rules_blur_faces_unless_told_to_keep_them() -> None:
    raw = {
        "site": {"id": "s"},
        "cameras": [
            {
                "id": "c",
                "source": "x.mp4",
                "zones": [{"id": "z", "polygon": [[0, 0], [1, 0], [1, 1]]}],
                "privacy": {"mask_style": "pixelate"},
                "rules": [
                    {"id": "fall", "type": "person_fall", "zone": "z", "evidence_faces": "keep"},
                    {"id": "lane", "type": "fire_lane", "zone": "z"},
                ],
            }
        ],
    }
    cam = parse_site_config(raw).cameras[0]
    assert [rule.evidence_faces for rule in cam.rules] == ["keep", "blur"]
    assert cam.privacy.mask_style == "pixelate"


def test_an_unknown_mask_style_is_reported_with_its_key() -> None:
    raw = {
        "site": {"id": "s"},
        "cameras": [{"id": "c", "source": "x", "privacy": {"mask_style": "smudge"}}],
    }
    with pytest.raises(ConfigError) as error:
        parse_site_config(raw, "site.yaml")
    (problem,) = error.value.problems
    assert problem.location == "camera c, key privacy.mask_style"


def test_face_finders_that_cannot_be_loaded_are_recorded_in_every_record() -> None:
    redactor = Redactor.load(camera(face_model="no-such-model", face_detector="no-such-faces"))
    _, record = redactor.image(face_scene())
    assert record.faces_skipped is not None
    assert record.faces_skipped.startswith("pose model no-such-model unavailable")
    assert "face detector no-such-faces unavailable" in record.faces_skipped
    assert record.masks == (0, 1)
    alone = Redactor.load(camera(face_model="no-such-model", face_detector=None))
    skipped = alone.image(face_scene())[1].faces_skipped
    assert skipped is not None and skipped.startswith("pose model no-such-model unavailable")
    assert "face detector" not in skipped


def test_only_pose_models_are_loaded_as_pose_estimators() -> None:
    with pytest.raises(ValueError, match="not a pose model"):
        load_pose_estimator("yolov8n-640")


OTHER_FACE: Box = (0.62, 0.02, 0.68, 0.10)  # a second person the pose model misses
OTHER_PERSON: Box = (0.6, 0.02, 0.7, 0.5)  # top fifth: y 0.02 .. 0.116


def two_faces() -> Image:
    image = face_scene()
    textured_face(image, OTHER_FACE, seed=5)
    return image


def test_people_the_pose_model_missed_get_the_top_of_their_box_blurred() -> None:
    image = two_faces()
    same_person = (0.665, 0.05, 0.8, 0.6)  # the detector's box of the person the pose found
    redactor = Redactor.for_camera(camera(), FakePose(one_person))
    out, record = redactor.image(image, people=[same_person, OTHER_PERSON])
    assert record.faces_blurred == 2  # not 3: the first box is the pose model's person
    assert record.face_method == "pose_keypoints+head_region"
    assert [head.method for head in record.heads] == ["pose_keypoints", "head_region"]
    for face in (FACE, OTHER_FACE):
        assert laplacian_variance(out, face, 0.15) < 0.02 * laplacian_variance(image, face)


def test_without_a_pose_model_the_callers_person_boxes_still_hide_faces() -> None:
    image = two_faces()
    out, record = Redactor.for_camera(camera()).image(image, people=[OTHER_PERSON])
    faces = record.as_details()["faces"]
    assert (faces["blurred"], faces["method"], faces["model"]) == (1, "head_region", None)
    assert faces["items"] == [{"method": "head_region", "box": list(top_of_person(OTHER_PERSON))}]
    assert laplacian_variance(out, OTHER_FACE, 0.15) < 0.02 * laplacian_variance(image, OTHER_FACE)
    _, kept = Redactor.for_camera(camera()).image(image, blur_faces=False, people=[OTHER_PERSON])
    assert kept.faces_blurred == 0 and kept.faces_skipped is not None


def test_samples_are_refined_where_heads_disagree_and_only_there() -> None:
    from edge.evidence.privacy import heads_agree, refine_samples

    still = (0.1, 0.1, 0.2, 0.2)
    moved = (0.1, 0.6, 0.2, 0.7)  # five head sizes down: a fall
    assert heads_agree([still], [still]) and not heads_agree([still], [moved])
    assert not heads_agree([still], [still, moved])  # someone came in
    asked: list[int] = []

    def find(index: int) -> list[tuple[float, float, float, float]]:
        asked.append(index)
        return [still] if index < 7 else [moved]

    found = {0: [still], 5: [still], 10: [moved]}
    # halved until the change is pinned between two neighbouring frames (6 still, 7 moved);
    # 7 and 10 agree, so nothing between them is asked
    assert refine_samples(found, find) == [0, 5, 6, 7, 10]
    assert sorted(asked) == [6, 7]
