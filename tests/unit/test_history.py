"""The rolling frame history behind 'who was there' evidence."""

from __future__ import annotations

import cv2
import numpy as np

from edge.evidence.history import FrameHistory

FRAME = np.full((60, 80, 3), 200, np.uint8)
MASK = [(0.0, 0.0), (0.5, 0.0), (0.5, 0.5), (0.0, 0.5)]
PERSON = (0.4, 0.4, 0.5, 0.9)


def test_quiet_frames_are_kept_once_per_interval_busy_ones_every_time() -> None:
    history = FrameHistory([], keep_s=100.0, every_s=1.0)
    for i in range(20):  # 4 s at 5 fps, nobody in view
        history.put(i / 5, FRAME, [])
    assert len(history) == 4
    for i in range(20, 30):  # 2 s with a person in view
        history.put(i / 5, FRAME, [PERSON])
    assert len(history) == 14


def test_old_frames_are_dropped_after_keep_s() -> None:
    history = FrameHistory([], keep_s=10.0, every_s=1.0)
    for t in range(30):
        history.put(float(t), FRAME, [])
    frame = history.at(0.0)
    assert frame is not None and frame.pts_s == 19.0  # 19..29 kept


def test_the_actor_near_the_spot_just_before_is_found() -> None:
    history = FrameHistory([], keep_s=60.0)
    far = (0.9, 0.1, 0.95, 0.2)
    history.put(1.0, FRAME, [PERSON])
    history.put(2.0, FRAME, [far])
    history.put(3.0, FRAME, [])
    found = history.actor_before(5.0, (0.45, 0.7, 0.55, 0.9))
    assert found is not None and found[0].pts_s == 1.0 and found[1] == PERSON
    assert history.actor_before(0.5, (0.45, 0.7, 0.55, 0.9)) is None  # nothing before 0.5 s


def test_kept_frames_are_masked() -> None:
    history = FrameHistory([MASK])
    history.put(0.0, FRAME, [PERSON])
    kept = history.at(0.0)
    assert kept is not None
    image = cv2.imdecode(np.frombuffer(kept.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert int(image[2:25, 2:35].max()) <= 10 and int(image[40:, 50:].min()) >= 190


def test_kept_frames_are_scaled_down_to_max_width() -> None:
    history = FrameHistory([], max_width=40)
    history.put(0.0, FRAME, [])
    kept = history.at(0.0)
    assert kept is not None
    image = cv2.imdecode(np.frombuffer(kept.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[:2] == (30, 40)


def test_memory_is_bounded_by_max_bytes_oldest_first() -> None:
    noisy = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    probe = FrameHistory([])
    probe.put(0.0, noisy, [])
    one = probe.nbytes
    history = FrameHistory([], keep_s=1e9, every_s=0.0, max_bytes=5 * one)
    for t in range(20):
        history.put(float(t), noisy, [])
    assert 3 <= len(history) <= 6 and history.nbytes <= 5 * one
    assert [f.pts_s for f in history.between(0.0, 100.0)][-1] == 19.0


def test_frames_between_two_times_in_order() -> None:
    history = FrameHistory([], every_s=0.5)
    for i in range(10):
        history.put(i * 0.25, FRAME, [])
    assert [f.pts_s for f in history.between(0.4, 1.6)] == [0.5, 1.0, 1.5]
