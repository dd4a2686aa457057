"""Pure parts of edge.capture.sources: the mailbox, the backoff, the stream clock, source kinds."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.capture.sources import Backoff, LatestFrame, SourceKind, StreamClock, classify_source
from edge.types import Frame


def frame(index: int) -> Frame:
    return Frame(np.zeros((2, 2, 3), np.uint8), pts_s=index / 10, index=index, wall_s=0.0)


# LatestFrame -----------------------------------------------------------------------------------


def test_newest_frame_wins_and_drops_are_counted() -> None:
    slot = LatestFrame()
    for index in range(3):
        slot.put(frame(index))
    taken = slot.take(timeout_s=0.1)
    assert taken is not None and taken.index == 2
    assert slot.dropped == 2
    assert slot.take(timeout_s=0.01) is None


def test_take_after_take_is_not_a_drop() -> None:
    slot = LatestFrame()
    for index in range(3):
        slot.put(frame(index))
        assert slot.take(timeout_s=0.01) is not None
    assert slot.dropped == 0


def test_take_waits_for_the_timeout_when_empty() -> None:
    slot = LatestFrame()
    start = time.monotonic()
    assert slot.take(timeout_s=0.1) is None
    assert 0.09 <= time.monotonic() - start < 1.0


def test_take_wakes_as_soon_as_a_frame_is_put() -> None:
    slot = LatestFrame()
    threading.Timer(0.05, slot.put, args=(frame(7),)).start()
    start = time.monotonic()
    taken = slot.take(timeout_s=5.0)
    assert taken is not None and taken.index == 7
    assert time.monotonic() - start < 1.0


# Backoff ---------------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap() -> None:
    backoff = Backoff(initial_s=1.0, max_s=30.0, jitter=0.0)
    assert [backoff.next_s() for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_backoff_jitter_stays_within_bounds_and_varies() -> None:
    backoff = Backoff(initial_s=1.0, max_s=30.0, jitter=0.2, rng=random.Random(7))
    delays = []
    for _ in range(40):
        base = backoff.base_s()
        delay = backoff.next_s()
        assert base * 0.8 <= delay <= base <= 30.0
        delays.append(delay)
    assert len({round(d, 6) for d in delays[10:]}) > 1  # at the cap, still jittered


def test_backoff_reset_starts_again_from_initial() -> None:
    backoff = Backoff(initial_s=0.5, max_s=4.0, jitter=0.0)
    for _ in range(5):
        backoff.next_s()
    backoff.reset()
    assert backoff.next_s() == 0.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial_s": 0.0}, "initial_s"),
        ({"initial_s": 5.0, "max_s": 1.0}, "initial_s <= max_s"),
        ({"factor": 0.5}, "factor"),
        ({"jitter": 1.0}, "jitter"),
    ],
)
def test_backoff_rejects_nonsense(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)


# StreamClock -----------------------------------------------------------------------------------


def test_clock_uses_valid_stream_timestamps() -> None:
    clock = StreamClock()
    assert [clock.pts(raw, fallback_s=99.0) for raw in (0.0, 0.1, 0.2)] == [0.0, 0.1, 0.2]


def test_clock_falls_back_when_the_container_gives_zeros() -> None:
    clock = StreamClock()
    pts = [clock.pts(0.0, fallback_s=index / 10) for index in range(4)]
    assert pts == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_clock_never_goes_back_on_non_monotonic_timestamps() -> None:
    clock = StreamClock()
    pts = [clock.pts(raw, fallback_s=fb) for raw, fb in [(1.0, 0), (0.5, 0.1), (None, 0.2)]]
    assert pts == [1.0, 1.0, 1.0]


def test_clock_continues_after_restart_with_the_gap() -> None:
    clock = StreamClock()
    for raw in (0.0, 0.1, 0.2):
        clock.pts(raw, fallback_s=0.0)
    clock.restart(gap_s=5.0)
    assert clock.pts(0.0, fallback_s=0.0) == pytest.approx(5.2)
    assert clock.pts(0.1, fallback_s=0.0) == pytest.approx(5.3)


def test_clock_first_restart_changes_nothing() -> None:
    clock = StreamClock()
    clock.restart(gap_s=3.0)
    assert clock.pts(0.4, fallback_s=0.0) == 0.4


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("restart"), st.floats(0, 100)),
            st.tuples(
                st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
                st.floats(0, 1e6),
            ),
        ),
        max_size=50,
    )
)
def test_clock_output_never_decreases(steps: list[tuple[object, float]]) -> None:
    clock = StreamClock()
    last = -1.0
    for raw, value in steps:
        if raw == "restart":
            clock.restart(value)
            continue
        assert raw is None or isinstance(raw, float)
        pts = clock.pts(raw, fallback_s=value)
        assert pts >= last
        last = pts


# Source kinds ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        (0, SourceKind.DEVICE),
        ("2", SourceKind.DEVICE),
        ("rtsp://u:p@10.0.0.5/stream1", SourceKind.STREAM),
        ("http://cam.local/mjpeg", SourceKind.STREAM),
        ("/srv/clips/gate.mp4", SourceKind.FILE),
        ("clips/gate.mp4", SourceKind.FILE),
        ("file:///srv/clips/gate.mp4", SourceKind.FILE),
    ],
)
def test_classify_source(source: str | int, kind: SourceKind) -> None:
    assert classify_source(source) is kind
