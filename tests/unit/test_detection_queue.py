"""The detection service's queue: most needed first, ageing, expiry, batches (pure)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from edge.analysis.detect.base import Priority
from edge.analysis.detect.yolo import Letterbox
from edge.runtime.detection import AGING_S, ModelSlot, Request, RequestQueue, may_start

DETECT = ModelSlot("yolov8n-640")
POSE = ModelSlot("yolov8n-pose-640", "pose")
BOX = Letterbox(0.5, 0.0, 140.0, 1280, 720, 640, 640)
_ids = iter(range(1, 10_000))


def request(
    priority: Priority, sent: float, slot: ModelSlot = DETECT, expires: float | None = None
) -> Request:
    return Request(next(_ids), slot, int(priority), expires, "shm", 0, BOX, sent)


def order(queue: RequestQueue, now: float, batchable: bool = False) -> list[int]:
    taken = []
    while len(queue):
        batch, _ = queue.take(now, 4, lambda _slot: batchable)
        taken.extend(r.priority for _, r in batch)
    return taken


def test_the_most_needed_request_runs_first_whatever_came_first() -> None:
    queue = RequestQueue()
    for priority in (Priority.RECHECK, Priority.ROUTINE, Priority.DUE, Priority.FRAME_RULE):
        queue.push("cam", request(priority, 100.0), 100.0)
    assert order(queue, 100.0) == [
        Priority.FRAME_RULE,
        Priority.DUE,
        Priority.ROUTINE,
        Priority.RECHECK,
    ]


def test_a_fall_room_pose_run_goes_before_a_quiet_lanes_recheck() -> None:
    queue = RequestQueue()
    queue.push("lane", request(Priority.RECHECK, 99.0), 99.0)
    queue.push("room", request(Priority.FRAME_RULE, 100.0, POSE), 100.0)
    batch, _ = queue.take(100.0, 4, lambda _slot: True)
    assert [camera for camera, _ in batch] == ["room"]


def test_waiting_promotes_a_request_so_nobody_starves() -> None:
    queue = RequestQueue()
    old = request(Priority.RECHECK, 100.0)
    queue.push("quiet-lane", old, 100.0)
    now = 100.0 + 2 * AGING_S + 0.1  # a recheck (4) aged by more than two classes
    queue.push("busy-lane", request(Priority.DUE, now), now)
    batch, _ = queue.take(now, 4, lambda _slot: False)
    assert batch[0][1] is old


def test_no_wait_lifts_a_request_past_the_alerts_evidence_and_the_frame_rules() -> None:
    queue = RequestQueue()
    clip = request(Priority.CLIPS, 100.0)
    queue.push("facade", clip, 100.0)
    now = 100.0 + 60.0  # a crowd's clip has waited a minute
    queue.push("room", request(Priority.FRAME_RULE, now, POSE), now)
    queue.push("lane", request(Priority.EVIDENCE, now), now)
    assert order(queue, now) == [Priority.EVIDENCE, Priority.FRAME_RULE, Priority.CLIPS]


def test_an_expired_request_is_shed_not_run() -> None:
    queue = RequestQueue()
    late = request(Priority.ROUTINE, 100.0, expires=1.0)
    queue.push("lane", late, 100.0)
    queue.push("other", request(Priority.DUE, 100.5), 100.5)
    batch, shed = queue.take(101.5, 4, lambda _slot: False)
    assert [r for _, r in shed] == [late]
    assert [r.priority for _, r in batch] == [Priority.DUE]


def test_requests_for_one_model_run_together_when_it_takes_batches() -> None:
    queue = RequestQueue()
    for camera in ("a", "b", "c"):
        queue.push(camera, request(Priority.ROUTINE, 100.0), 100.0)
    queue.push("room", request(Priority.ROUTINE, 100.0, POSE), 100.0)
    batch, _ = queue.take(100.0, 4, lambda slot: slot == DETECT)
    assert [camera for camera, _ in batch] == ["a", "b", "c"]
    assert len(queue) == 1
    queue.push("d", request(Priority.ROUTINE, 100.0), 100.0)
    queue.push("e", request(Priority.ROUTINE, 100.0), 100.0)
    single, _ = queue.take(100.0, 4, lambda _slot: False)
    assert len(single) == 1  # a model without a batch dimension runs one image at a time


def test_work_ahead_counts_what_waits_in_the_same_or_a_more_urgent_class() -> None:
    queue = RequestQueue()
    queue.push("a", request(Priority.FRAME_RULE, 100.0, POSE), 100.0)
    queue.push("b", request(Priority.DUE, 100.0), 100.0)
    queue.push("c", request(Priority.RECHECK, 100.0), 100.0)
    costs = {POSE: 0.1, DETECT: 0.05}
    assert queue.work_ahead(request(Priority.ROUTINE, 100.0), costs.__getitem__) == (
        pytest.approx(0.15)
    )
    assert queue.work_ahead(request(Priority.FRAME_RULE, 100.0, POSE), costs.__getitem__) == (
        pytest.approx(0.1)
    )


def test_a_camera_that_leaves_takes_its_requests_with_it() -> None:
    queue = RequestQueue()
    queue.push("gone", request(Priority.DUE, 100.0), 100.0)
    queue.push("stays", request(Priority.ROUTINE, 100.0), 100.0)
    assert len(queue.drop_camera("gone")) == 1
    batch, _ = queue.take(100.0, 4, lambda _slot: False)
    assert [camera for camera, _ in batch] == ["stays"]


def test_work_a_worker_may_not_take_waits_for_one_that_may() -> None:
    queue = RequestQueue()
    queue.push("facade", request(Priority.CLIPS, 100.0), 100.0)
    queue.push("room", request(Priority.FRAME_RULE, 100.1, POSE), 100.1)

    def urgent_only(r: Request) -> bool:
        return r.priority < Priority.CLIPS

    batch, _ = queue.take(100.2, 4, lambda _slot: False, urgent_only)
    assert [r.priority for _, r in batch] == [Priority.FRAME_RULE]
    assert not queue.has_work(urgent_only) and queue.has_work()
    batch, _ = queue.take(100.3, 4, lambda _slot: False, urgent_only)
    assert batch == [] and len(queue) == 1  # the clip's faces wait for a free worker


def test_a_worker_is_kept_for_urgent_work_while_it_comes() -> None:
    urgent, lane, clip = (
        request(Priority.FRAME_RULE, 0.0, POSE),
        request(Priority.ROUTINE, 0.0),
        request(Priority.CLIPS, 0.0),
    )

    def allowed(rule: Callable[[Request], bool] | None) -> list[bool]:
        return [rule is None or rule(r) for r in (urgent, lane, clip)]

    # two workers, a fall room's pose model asking: one lane look at a time, the other worker
    # waits for the pose model (it never queues behind a lane's look)
    assert allowed(may_start(2, routine=0, background=0, urgent_recent=True)) == [True] * 3
    assert allowed(may_start(2, routine=1, background=0, urgent_recent=True)) == [
        True,
        False,
        False,
    ]
    # no urgent work for a while: both workers may take the lanes' looks...
    assert allowed(may_start(2, routine=1, background=0, urgent_recent=False)) == [True] * 3
    # ...but never two batches of a clip's faces
    assert allowed(may_start(2, routine=1, background=1, urgent_recent=False)) == [
        True,
        True,
        False,
    ]
    assert allowed(may_start(2, routine=2, background=0, urgent_recent=False)) == [
        True,
        False,
        False,
    ]
    # a single worker keeps nothing back
    assert allowed(may_start(1, routine=0, background=0, urgent_recent=True)) == [True] * 3
