"""The edge's durable outbox (issue 5): order, idempotence, acks, resend timing, the quota,
and survival across reopen and kill -9."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from common.events import Event, events_topic
from edge.delivery.outbox import Outbox
from tests.support.events import numbered_event

T0 = 1_700_000_000.0


def make_event(i: int, seq: int = 0, pad: int = 0) -> Event:
    return numbered_event(i, seq, details={"pad": "x" * pad})


def topic(event: Event) -> str:
    return events_topic(event.site_id, "edge-1", event.camera_id)


def add(outbox: Outbox, event: Event) -> bool:
    return outbox.add(event, topic(event))


def ids(outbox: Outbox, now: float = T0, limit: int = 1000) -> list[str]:
    return [item.event_id for item in outbox.due(now, 10.0, limit)]


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "outbox.sqlite", clock=lambda: T0)


def write_file(folder: Path, name: str, size: int) -> Path:
    path = folder / name
    path.write_bytes(os.urandom(size))
    return path


# Events ------------------------------------------------------------------------------------


def test_due_is_in_insertion_order_not_id_order(outbox: Outbox) -> None:
    for i in (5, 3, 9, 1):
        add(outbox, make_event(i))
    add(outbox, make_event(3, seq=1))

    items = outbox.due(T0, 10.0, 100)

    assert [item.key for item in items] == [
        ("ev-0005", 0),
        ("ev-0003", 0),
        ("ev-0009", 0),
        ("ev-0001", 0),
        ("ev-0003", 1),
    ]
    assert items[0].topic == "zhizhi/v1/site-a/edge-1/cam-1/events"
    assert Event.model_validate_json(items[0].payload) == make_event(5)


def test_add_is_idempotent_on_event_id_and_seq(outbox: Outbox) -> None:
    assert add(outbox, make_event(1)) is True
    assert add(outbox, make_event(1)) is False
    assert add(outbox, make_event(1, seq=1)) is True

    assert outbox.stats().pending_events == 2


def test_ack_removes_only_that_message(outbox: Outbox) -> None:
    add(outbox, make_event(1))
    add(outbox, make_event(1, seq=1))
    add(outbox, make_event(2))

    assert outbox.ack("ev-0001", 0) is True
    assert outbox.ack("ev-0001", 0) is False  # a duplicate ack
    assert outbox.ack("ev-9999", 0) is False

    assert [item.key for item in outbox.due(T0, 10.0, 10)] == [("ev-0001", 1), ("ev-0002", 0)]
    assert outbox.ack_many([("ev-0001", 1), ("ev-0002", 0), ("ev-0002", 0)]) == 2
    assert outbox.stats().pending_events == 0


def test_a_sent_event_is_due_again_only_after_resend_after_s(outbox: Outbox) -> None:
    add(outbox, make_event(1))
    add(outbox, make_event(2))
    outbox.mark_sent([("ev-0001", 0)], now=T0)

    assert ids(outbox, now=T0 + 9.9) == ["ev-0002"]
    assert ids(outbox, now=T0 + 10.0) == ["ev-0001", "ev-0002"]
    outbox.mark_sent([("ev-0001", 0), ("ev-0002", 0)], now=T0 + 10.0)
    assert ids(outbox, now=T0 + 15.0) == []
    assert [item.attempts for item in outbox.due(T0 + 20.0, 10.0, 10)] == [2, 1]


def test_everything_sent_before_a_reconnect_is_due_again(outbox: Outbox) -> None:
    add(outbox, make_event(1))
    add(outbox, make_event(2))
    outbox.mark_sent([("ev-0001", 0), ("ev-0002", 0)], now=T0)
    outbox.mark_sent([("ev-0002", 0)], now=T0 + 3.0)  # again, on the new connection

    due = outbox.due(T0 + 3.0, 10.0, 10, sent_before=T0 + 2.0)

    assert [item.event_id for item in due] == ["ev-0001"]


def test_a_clock_set_back_does_not_hold_resends_back(outbox: Outbox) -> None:
    add(outbox, make_event(1))
    outbox.mark_sent([("ev-0001", 0)], now=T0 + 3600.0)

    assert ids(outbox, now=T0) == ["ev-0001"]


def test_window_and_limit_bound_what_is_due(outbox: Outbox) -> None:
    for i in range(10):
        add(outbox, make_event(i))
    outbox.mark_sent([("ev-0000", 0), ("ev-0001", 0)], now=T0)

    in_window = outbox.due(T0 + 1.0, 10.0, 100, window=4)
    limited = outbox.due(T0 + 1.0, 10.0, 3)

    assert [item.event_id for item in in_window] == ["ev-0002", "ev-0003"]
    assert [item.event_id for item in limited] == ["ev-0002", "ev-0003", "ev-0004"]


def test_events_and_send_state_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    first = Outbox(path)
    for i in range(3):
        add(first, make_event(i))
    first.mark_sent([("ev-0000", 0)], now=T0)
    first.ack("ev-0001", 0)
    first.close()

    second = Outbox(path)

    assert [item.event_id for item in second.due(T0 + 1.0, 10.0, 10)] == ["ev-0002"]
    assert [item.event_id for item in second.due(T0 + 10.0, 10.0, 10)] == ["ev-0000", "ev-0002"]
    assert add(second, make_event(2)) is False


def test_the_database_is_wal_and_fully_synchronous(outbox: Outbox) -> None:
    db = sqlite3.connect(outbox.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # synchronous is per connection: check the outbox's own
    assert outbox._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_threads_can_add_and_ack_at_the_same_time(outbox: Outbox) -> None:
    errors: list[BaseException] = []

    def writer(base: int) -> None:
        try:
            for i in range(base, base + 50):
                add(outbox, make_event(i))
                if i % 2:
                    outbox.ack(f"ev-{i:04d}", 0)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(k * 100,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert outbox.stats().pending_events == 100


# Evidence ----------------------------------------------------------------------------------


def test_evidence_is_pending_until_uploaded(outbox: Outbox, tmp_path: Path) -> None:
    a = write_file(tmp_path, "a.jpg", 100)
    b = write_file(tmp_path, "b.jpg", 200)
    assert outbox.add_evidence("a" * 64, a, 100, "image/jpeg") is True
    assert outbox.add_evidence("a" * 64, a, 100, "image/jpeg") is False
    outbox.add_evidence("b" * 64, b, 200, "image/jpeg")

    assert [item.sha256[0] for item in outbox.pending_evidence(10)] == ["a", "b"]
    outbox.evidence_uploaded("a" * 64)

    assert [item.path for item in outbox.pending_evidence(10)] == [b]
    assert outbox.add_evidence("a" * 64, a, 100, "image/jpeg") is False  # done already
    assert outbox.stats().pending_evidence == 1


def test_a_file_that_keeps_failing_goes_behind_the_others(outbox: Outbox, tmp_path: Path) -> None:
    for name in "abc":
        outbox.add_evidence(name * 64, tmp_path / name, 1, "image/jpeg")

    outbox.evidence_failed("a" * 64, "HTTP 503")

    assert [item.sha256[0] for item in outbox.pending_evidence(10)] == ["b", "c", "a"]
    assert outbox.evidence_attempts("a" * 64) == (1, "HTTP 503", False)


def test_a_permanent_failure_is_kept_but_not_retried(outbox: Outbox, tmp_path: Path) -> None:
    outbox.add_evidence("a" * 64, tmp_path / "a", 10, "image/jpeg")
    outbox.evidence_failed("a" * 64, "HTTP 503")
    outbox.evidence_failed("a" * 64, "HTTP 400: sha256 mismatch", permanent=True)

    stats = outbox.stats()

    assert outbox.pending_evidence(10) == []
    assert outbox.evidence_attempts("a" * 64) == (2, "HTTP 400: sha256 mismatch", True)
    assert (stats.pending_evidence, stats.failed_evidence) == (0, 1)
    assert outbox.evidence_attempts("f" * 64) is None


# Quota -------------------------------------------------------------------------------------


def test_quota_sheds_evidence_oldest_first_before_any_event(
    outbox: Outbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = [write_file(tmp_path, f"{k}.jpg", 10_000) for k in range(3)]
    for k, path in enumerate(files):
        outbox.add_evidence(str(k) * 64, path, 10_000, "image/jpeg")
    for i in range(40):
        add(outbox, make_event(i, pad=2000))
    full = outbox.stats().bytes

    outbox.quota_bytes = full - 15_000
    with caplog.at_level(logging.WARNING, logger="edge.delivery.outbox"):
        outbox.enforce_quota()

    stats = outbox.stats()
    assert [path.exists() for path in files] == [False, False, True]
    assert [item.sha256[0] for item in outbox.pending_evidence(10)] == ["2"]
    assert (stats.shed_evidence, stats.shed_events, stats.pending_events) == (2, 0, 40)
    assert stats.bytes <= outbox.quota_bytes
    assert "shed 2 evidence file(s) and 0 event(s)" in caplog.text


def test_quota_then_sheds_the_oldest_events(outbox: Outbox, tmp_path: Path) -> None:
    path = write_file(tmp_path, "only.jpg", 10_000)
    outbox.add_evidence("0" * 64, path, 10_000, "image/jpeg")
    for i in range(40):
        add(outbox, make_event(i, pad=2000))

    outbox.quota_bytes = outbox.stats().bytes - 30_000
    outbox.enforce_quota()

    stats = outbox.stats()
    left = ids(outbox)
    assert not path.exists()
    assert stats.shed_evidence == 1
    assert 0 < stats.shed_events < 40
    assert stats.pending_events == 40 - stats.shed_events
    assert left == [f"ev-{i:04d}" for i in range(stats.shed_events, 40)]  # the newest stay
    assert stats.bytes <= outbox.quota_bytes


def test_add_enforces_the_quota_and_counters_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    first = Outbox(path, quota_bytes=150_000)
    for i in range(100):
        add(first, make_event(i, pad=2000))
    shed = first.stats().shed_events
    first.close()

    second = Outbox(path, quota_bytes=150_000)
    stats = second.stats()

    assert shed > 0
    assert stats.shed_events == shed
    assert stats.bytes <= 150_000
    assert ids(second)[-1] == "ev-0099"
    assert stats.as_status() == {
        "pending": 100 - shed,
        "pending_evidence": 0,
        "failed_evidence": 0,
        "shed_events": shed,
        "shed_evidence": 0,
        "bytes": stats.bytes,
        "late_acks": 0,
    }


def test_late_re_sends_are_counted_and_the_count_survives_reopen(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    event = make_event(7)
    add(outbox, event)
    outbox.mark_sent([(event.event_id, 0)], T0)
    assert outbox.due(T0 + 5, 10.0, 10) == []  # within its window: not due
    (item,) = outbox.due(T0 + 11, 10.0, 10)
    assert item.last_sent_at == T0  # what the sender tells a late re-send by
    outbox.mark_sent([item.key], T0 + 11, late=1)
    outbox.close()

    assert Outbox(tmp_path / "outbox.sqlite").stats().as_status()["late_acks"] == 1


# kill -9 -----------------------------------------------------------------------------------

WRITER = """
import sys
from pathlib import Path
from common.events import Event
from edge.delivery.outbox import Outbox

outbox = Outbox(Path(sys.argv[1]))
base = {
    "seq": 0, "state": "new", "type": "fire_lane", "site_id": "s", "camera_id": "c",
    "zone_id": "z", "rule_id": "r", "observed_at": "2026-11-23T02:12:35.120Z", "pts_s": 1.0,
    "onset_pts_s": 0.0, "bbox": [0, 0, 1, 1], "score": 0.5,
}
i = 0
while True:
    outbox.add(Event.model_validate({**base, "event_id": f"k-{i:06d}"}), "t")
    if i % 3 == 0:
        outbox.ack(f"k-{i:06d}", 0)
    print(i, flush=True)
    i += 1
"""


def test_kill_9_while_adding_loses_nothing_that_add_returned_for(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    returned: list[int] = []
    for line in process.stdout:
        returned.append(int(line))
        if len(returned) >= 300:
            break
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    returned.extend(int(line) for line in process.stdout.read().split())

    outbox = Outbox(path)
    left = ids(outbox, limit=100_000)

    assert outbox._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    expected = [f"k-{i:06d}" for i in returned if i % 3 != 0]
    assert left[: len(expected)] == expected
    assert len(left) <= len(expected) + 1  # at most the one add that had not returned yet
