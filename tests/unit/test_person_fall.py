"""The person-fall decision as timelines of synthetic keypoints (no video, time passed in)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from common.config import PersonFallRuleConfig
from edge.rules.base import RuleOutput
from edge.rules.person_fall import (
    Body,
    FallMonitor,
    FallParams,
    PersonPose,
    Posture,
    classify_posture,
    detect_drop,
    measure_body,
    torso_angle,
)
from tests.support.poses import keypoints, person

FPS = 8.0
FLOOR = [(0.0, 0.4), (1.0, 0.4), (1.0, 1.0), (0.0, 1.0)]
FEET = (0.4, 0.85)
HEIGHT = 0.5
PARAMS = FallParams(lying_s=2.0, clear_s=5.0)

Scene = Callable[[float], list[PersonPose]]


def run(scene: Scene, until_s: float, params: FallParams = PARAMS) -> list[RuleOutput]:
    monitor = FallMonitor("fall", "floor", FLOOR, params)
    outputs: list[RuleOutput] = []
    for i in range(int(until_s * FPS) + 1):
        outputs.extend(monitor.step(i / FPS, scene(i / FPS)))
    return outputs


def ramp(t: float, start: float, duration: float, to: float) -> float:
    """0 before `start`, `to` after `start + duration`, linear between."""
    return to * min(1.0, max(0.0, (t - start) / duration))


def falling(start: float = 2.0, duration: float = 0.6, track_id: int = 1) -> Scene:
    """Standing, then turning about the feet to the floor in `duration`, then lying."""

    def scene(t: float) -> list[PersonPose]:
        angle = ramp(t, start, duration, 90.0)
        return [person(track_id, keypoints(FEET, HEIGHT, angle), HEIGHT)]

    return scene


def states(outputs: list[RuleOutput]) -> list[tuple[str, float]]:
    return [(o.state, round(o.pts_s, 2)) for o in outputs]


def test_a_fast_fall_then_lying_raises_new_after_lying_s_with_the_onset_of_the_fall() -> None:
    outputs = run(falling(), 10.0)
    assert [o.state for o in outputs] == ["new"]
    new = outputs[0]
    assert 1.9 <= new.onset_s <= 2.3  # the head starts down at 2.0 s
    assert 4.0 <= new.pts_s <= 5.0  # down from about 2.5 s, plus lying_s
    assert new.box[2] - new.box[0] > new.box[3] - new.box[1]  # the lying person's box
    assert new.highlight == (new.box,)
    details = new.details
    assert details["fall_speed"] >= PARAMS.min_drop_speed
    assert details["torso_angle_deg"] == pytest.approx(90.0, abs=1.0)
    assert details["lying_s"] >= PARAMS.lying_s


def test_no_alert_before_lying_s_has_passed() -> None:
    assert run(falling(), 4.0) == []


def test_lying_down_slowly_is_not_a_fall() -> None:
    assert run(falling(duration=4.0), 12.0) == []


def test_sitting_down_quickly_is_not_a_fall() -> None:
    def scene(t: float) -> list[PersonPose]:
        fold = ramp(t, 2.0, 0.5, 0.6)  # hips down to a chair, torso upright
        return [person(1, keypoints(FEET, HEIGHT, fold=fold), HEIGHT)]

    assert run(scene, 10.0) == []


def test_crouching_fast_and_staying_low_is_not_a_fall() -> None:
    def scene(t: float) -> list[PersonPose]:
        fold, bend = ramp(t, 2.0, 0.4, 0.8), ramp(t, 2.0, 0.4, 40.0)
        return [person(1, keypoints(FEET, HEIGHT, bend_deg=bend, fold=fold), HEIGHT)]

    assert run(scene, 10.0) == []


def test_bending_over_to_pick_something_up_is_not_a_fall() -> None:
    def scene(t: float) -> list[PersonPose]:
        bend = ramp(t, 2.0, 0.5, 100.0) - ramp(t, 5.0, 0.8, 100.0)
        return [person(1, keypoints(FEET, HEIGHT, bend_deg=bend), HEIGHT)]

    assert run(scene, 10.0) == []


def test_a_stumble_caught_upright_is_cancelled_before_the_alert() -> None:
    def scene(t: float) -> list[PersonPose]:
        angle = ramp(t, 2.0, 0.5, 90.0) - ramp(t, 2.7, 0.5, 90.0)
        return [person(1, keypoints(FEET, HEIGHT, angle), HEIGHT)]

    assert run(scene, 10.0) == []


def test_a_fall_with_the_head_out_of_frame_is_found_from_the_box_and_shoulders() -> None:
    upper = (5, 6, 11, 12, 13, 14, 15, 16)  # no head keypoints: out of the top of the view

    def scene(t: float) -> list[PersonPose]:
        angle = ramp(t, 2.0, 0.6, 90.0)
        return [person(1, keypoints(FEET, HEIGHT, angle, visible=upper), HEIGHT)]

    outputs = run(scene, 10.0)
    assert [o.state for o in outputs] == ["new"]


def test_a_fall_out_of_the_side_of_the_frame_is_found_from_what_stays_in_view() -> None:
    feet = (0.75, 0.9)  # falls to the right: head and shoulders end up beyond the edge

    def scene(t: float) -> list[PersonPose]:
        kp = keypoints(feet, HEIGHT, ramp(t, 2.0, 0.6, 90.0))
        kp[kp[:, 0] > 1.0, 2] = 0.0  # the model sees no keypoint outside the frame
        return [person(1, kp, HEIGHT)]

    outputs = run(scene, 10.0)
    assert [o.state for o in outputs] == ["new"]
    assert outputs[0].box[2] == 1.0


def test_a_person_lost_by_the_model_once_on_the_floor_is_still_down() -> None:
    base = falling()

    def scene(t: float) -> list[PersonPose]:
        return base(t) if t < 2.5 else []  # nothing detected from mid-fall on

    outputs = run(scene, 6.0)
    assert [o.state for o in outputs] == ["new"]
    assert outputs[0].details["last_seen_pts_s"] < 2.6


def test_getting_up_ends_the_event() -> None:
    def scene(t: float) -> list[PersonPose]:
        angle = ramp(t, 2.0, 0.6, 90.0) - ramp(t, 8.0, 1.5, 90.0)
        return [person(1, keypoints(FEET, HEIGHT, angle), HEIGHT)]

    outputs = run(scene, 15.0)
    assert [o.state for o in outputs] == ["new", "end"]
    end = outputs[1]
    assert end.details["end_reason"] == "got_up"
    assert 9.5 + PARAMS.upright_s - 0.5 <= end.pts_s <= 9.5 + PARAMS.upright_s + 0.5
    assert end.onset_s == outputs[0].onset_s
    assert end.details["situation"] == outputs[0].details["situation"]


def test_helped_up_by_someone_beside_them_ends_with_that_reason() -> None:
    fall = falling()
    helper_feet = (0.75, 0.85)

    def scene(t: float) -> list[PersonPose]:
        people = fall(t) if t < 7.0 else []
        if t >= 6.0:
            people.append(person(2, keypoints(helper_feet, HEIGHT), HEIGHT))
        if t >= 7.0:  # the fallen one is up (a new track id on the spot)
            angle = 90.0 - ramp(t, 7.0, 1.0, 90.0)
            people.append(person(3, keypoints(FEET, HEIGHT, angle), HEIGHT))
        return people

    outputs = run(scene, 14.0)
    assert [o.state for o in outputs] == ["new", "end"]
    assert outputs[1].details["end_reason"] == "helped_up"
    assert outputs[1].details["people_beside"] >= 1


def test_helped_away_when_someone_came_beside_them_and_both_left() -> None:
    fall = falling()
    helper = (0.75, 0.85)

    def scene(t: float) -> list[PersonPose]:
        if t < 5.0:
            return fall(t)
        if t < 6.0:
            return [*fall(t), person(2, keypoints(helper, HEIGHT), HEIGHT)]
        return []

    outputs = run(scene, 15.0)
    assert [o.state for o in outputs] == ["new", "end"]
    assert outputs[1].details["end_reason"] == "helped_away"


def test_out_of_view_for_clear_s_ends_the_event() -> None:
    fall = falling()

    def scene(t: float) -> list[PersonPose]:
        return fall(t) if t < 6.0 else []

    outputs = run(scene, 15.0)
    assert states(outputs)[1][0] == "end"
    assert outputs[1].details["end_reason"] == "out_of_view"
    assert outputs[1].pts_s == pytest.approx(6.0 - 1 / FPS + PARAMS.clear_s, abs=0.2)


def test_updates_while_lying_when_configured() -> None:
    params = FallParams(lying_s=2.0, clear_s=5.0, update_interval_s=2.0)
    outputs = run(falling(), 9.0, params)
    assert [o.state for o in outputs] == ["new", "update", "update"]


def test_a_fall_outside_the_zone_raises_nothing() -> None:
    def scene(t: float) -> list[PersonPose]:
        angle = ramp(t, 2.0, 0.6, 90.0)
        return [person(1, keypoints((0.4, 0.3), 0.25, angle), 0.25)]  # on a bed above the floor

    assert run(scene, 10.0) == []


def test_two_people_falling_are_two_situations() -> None:
    left, right = falling(track_id=1), falling(start=3.0, track_id=2)

    def scene(t: float) -> list[PersonPose]:
        a = left(t)[0]
        b = right(t)[0]
        shifted = b.keypoints.copy()  # type: ignore[union-attr]
        shifted[:, 0] = np.clip(shifted[:, 0] - 0.35, 0, 1)
        return [a, person(2, shifted, HEIGHT)]

    outputs = run(scene, 10.0)
    assert [o.state for o in outputs] == ["new", "new"]
    assert outputs[0].details["situation"] != outputs[1].details["situation"]


def test_torso_angle_is_measured_in_pixels_so_portrait_video_gives_the_same_angle() -> None:
    kp = keypoints((0.5, 0.9), 0.5, angle_deg=45.0)
    seen = kp[:, 2] > 0.5
    assert torso_angle(kp, seen, 1.0) == pytest.approx(45.0, abs=0.5)
    portrait = kp.copy()
    portrait[:, 0] = 0.5 + (kp[:, 0] - 0.5) / 0.5625  # the same body in a 9:16 frame
    assert torso_angle(portrait, seen, 0.5625) == pytest.approx(45.0, abs=0.5)


def test_a_head_down_torso_counts_as_lying() -> None:
    kp = keypoints((0.5, 0.2), 0.5, angle_deg=180.0)  # seen from above, head at the bottom
    assert torso_angle(kp, kp[:, 2] > 0.5, 1.0) == pytest.approx(180.0)
    assert classify_posture(180.0, 0.5, PARAMS) is Posture.LYING


@pytest.mark.parametrize(
    ("torso", "aspect", "posture"),
    [
        (5.0, 0.4, Posture.UPRIGHT),
        (80.0, 1.5, Posture.LYING),
        (45.0, 0.8, Posture.UNKNOWN),
        (None, 1.6, Posture.LYING),
        (None, 0.4, Posture.UPRIGHT),
        (None, 0.9, Posture.UNKNOWN),
    ],
)
def test_posture_from_the_torso_or_else_the_box(
    torso: float | None, aspect: float, posture: Posture
) -> None:
    assert classify_posture(torso, aspect, PARAMS) is posture


def test_detect_drop_needs_speed_and_the_hips_to_come_down() -> None:
    def bodies(bend: bool, duration: float) -> list[Body]:
        out = []
        for i in range(int(4 * FPS)):
            t = i / FPS
            amount = ramp(t, 2.0, duration, 90.0)
            kp = (
                keypoints(FEET, HEIGHT, bend_deg=amount)
                if bend
                else keypoints(FEET, HEIGHT, amount)
            )
            body = measure_body(t, person(1, kp, HEIGHT), 1.0, PARAMS)
            assert body is not None
            out.append(body)
        return out

    def first_drop(history: list[Body]) -> float | None:
        for end in range(2, len(history) + 1):
            drop = detect_drop(history[:end], PARAMS)
            if drop is not None:
                return drop.onset_s
        return None

    assert first_drop(bodies(bend=False, duration=0.6)) == pytest.approx(2.0, abs=0.13)
    assert first_drop(bodies(bend=False, duration=3.0)) is None  # too slow
    assert first_drop(bodies(bend=True, duration=0.5)) is None  # hips stay up


def test_params_come_from_the_rule_config() -> None:
    config = PersonFallRuleConfig(
        id="f", type="person_fall", zone="z", lying_s=3.0, min_drop=0.5, update_interval_s=30
    )
    params = FallParams.from_config(config)
    assert (params.lying_s, params.min_drop, params.update_interval_s) == (3.0, 0.5, 30)
    assert params.clear_s == config.clear_s


def test_a_body_moving_down_the_view_as_a_whole_is_not_a_fall() -> None:
    """Seen from high up, someone walking in at the top edge and on down the view: head, hips
    and feet all come down together (the feet as fast as the head), then they stand still in
    a pose the model reads as lying. A fall turns the body about the feet instead."""

    def scene(t: float) -> list[PersonPose]:
        feet = (0.5, 0.1 + 0.5 * min(t, 1.0))
        kp = keypoints(feet, HEIGHT, angle_deg=60.0)  # the head still above the top edge at first
        kp[kp[:, 1] < 0.0, 2] = 0.0
        return [person(1, kp, HEIGHT)]

    params = FallParams(lying_s=1.0, clear_s=5.0, min_hip_drop=0.0)
    assert run(scene, 6.0, params) == []


def test_walking_away_towards_the_top_of_the_picture_is_not_a_fall() -> None:
    """Someone walking away from the camera: the feet go up the view and the body shrinks
    (perspective); far away the model loses the legs and misreads the small body as lying.
    The head never comes down, so nothing is a drop."""

    def scene(t: float) -> list[PersonPose]:
        share = min(t / 3.0, 1.0)
        height = HEIGHT * (1.0 - 0.6 * share)
        feet = (0.5, 0.95 - 0.5 * share)
        far = t >= 3.0
        visible = tuple(range(13)) if far else None  # no knees or ankles once far
        kp = keypoints(feet, height, angle_deg=70.0 if far else 0.0, visible=visible)
        return [person(1, kp, height)]

    params = FallParams(lying_s=1.0, clear_s=5.0)
    assert run(scene, 6.0, params) == []
    # with the same parameters, a body turning about its feet to the floor is a fall
    assert [s for s, _ in states(run(falling(start=2.0), 6.0, params))] == ["new"]


# A busy box: analyses missed ------------------------------------------------------------------


def run_with_gap(
    scene: Scene, until_s: float, gap: tuple[float, float], params: FallParams = PARAMS
) -> list[RuleOutput]:
    """As `run`, with no analysis between `gap[0]` and `gap[1]` and the monitor told so at
    the first analysis after it (as `PersonFallWatch` does)."""
    monitor = FallMonitor("fall", "floor", FLOOR, params)
    outputs: list[RuleOutput] = []
    interrupted = False
    for i in range(int(until_s * FPS) + 1):
        t = i / FPS
        if gap[0] <= t < gap[1]:
            continue
        if gap[1] > gap[0] and t >= gap[1] and not interrupted:
            monitor.interrupt(t)
            interrupted = True
        outputs.extend(monitor.step(t, scene(t)))
    return outputs


def test_a_drop_is_never_measured_across_a_gap() -> None:
    # standing until 3 s, lying from 3.5 s on the same spot and track, nothing seen between:
    # a fall hidden in the gap, or someone already lying taken for the person who stood there;
    # measured across the gap it would be a drop at 2 heights a second
    def scene(t: float) -> list[PersonPose]:
        return [person(1, keypoints(FEET, HEIGHT, 0.0 if t < 3.0 else 90.0), HEIGHT)]

    gapless = run_with_gap(scene, 12.0, (3.0, 3.0))
    assert [o.state for o in gapless] == ["new"]  # seen without the gap: a fall
    assert run_with_gap(scene, 12.0, (3.0, 3.5)) == []


def test_a_fall_seen_falling_still_needs_lying_s_after_a_gap_and_is_then_raised() -> None:
    outputs = run_with_gap(falling(), 12.0, (2.8, 3.5))  # the drop seen, then a gap
    assert [o.state for o in outputs] == ["new"]
    assert outputs[0].pts_s >= 3.5 + PARAMS.lying_s - 1e-6


def test_a_gap_never_ends_an_alerted_fall() -> None:
    # alerted at 4.5 s; nothing seen from 6 to 12 s (longer than clear_s), and the model
    # misses the person at the first analysis after the gap: still down, not out of view
    lying = falling()

    def scene(t: float) -> list[PersonPose]:
        return [] if 12.0 <= t < 12.3 else lying(t)

    outputs = run_with_gap(scene, 14.0, (6.0, 12.0))
    assert [o.state for o in outputs] == ["new"]
