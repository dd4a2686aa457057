"""The live stream across server processes through PostgreSQL LISTEN/NOTIFY (issue 16).

Two hubs on one fresh database see each other's messages, in order, one at a time and a
batch's in one go, a message too long for a notification included (it travels as a
reference, resolved by the receiver); then two `zhizhi server` processes: an event stored by
one shows on the other's SSE stream. An ingest's live push travels in its transaction: it
reaches the other process with the commit even when nothing runs after it (a process killed
between its commit and a later NOTIFY), and never for a transaction that fails."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.db.session import make_engine, make_session_factory
from server.dispatch import DispatchConfig
from server.incidents import IncidentChange
from server.ingest import IngestService
from server.live.pg import MAX_NOTIFY_BYTES, PgFanout, encode
from server.notify import Notifier, StreamHub, StreamMessage
from tests.support.databases import fresh_postgres_url
from tests.support.events import numbered_event
from tests.support.mosquitto import PrivateBroker
from tests.support.servers import ServerProcess, zhizhi_binary

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from fresh_postgres_url()


def test_two_hubs_on_one_database_deliver_each_others_messages(pg_url: str) -> None:
    engines = [make_engine(pg_url), make_engine(pg_url)]
    long_text = "x" * (2 * MAX_NOTIFY_BYTES)
    resolved = StreamMessage("incident", {"id": 7, "note": "re-read"}, "site-a")
    hubs = [StreamHub(PgFanout(engine)) for engine in engines]
    for hub in hubs:
        hub.start(resolve=lambda event, ref: resolved if (event, ref) == ("incident", 7) else None)
    try:
        for hub in hubs:
            assert hub.fanout is not None
            assert hub.fanout.wait_listening(10)  # type: ignore[attr-defined]

        async def scenario() -> list[list[StreamMessage]]:
            subscribers = [hub.subscribe(None) for hub in hubs]
            small = StreamMessage("camera", {"camera_id": "gate-east"}, "site-a")
            large = StreamMessage("incident", {"id": 7, "note": long_text}, "site-a")
            assert "ref" in json.loads(encode(large))  # the long one goes by reference
            await asyncio.to_thread(hubs[0].publish, small)
            await asyncio.to_thread(hubs[1].publish, large)
            # an ingest batch's changes go in one notification round, in their order
            batch = [StreamMessage("incident", {"id": n}, "site-a") for n in (11, 12)]
            await asyncio.to_thread(hubs[0].publish_many, [batch[0], large, batch[1]])
            got: list[list[StreamMessage]] = []
            for subscriber in subscribers:
                got.append([await asyncio.wait_for(subscriber.queue.get(), 10) for _ in range(5)])
            return got

        for received in asyncio.run(scenario()):
            assert [m.event for m in received] == ["camera", "incident", *["incident"] * 3]
            assert received[0].data == {"camera_id": "gate-east"}
            assert received[1] == resolved
            assert [m.data for m in received[2:]] == [{"id": 11}, resolved.data, {"id": 12}]
    finally:
        for hub in hubs:
            hub.stop()
        for engine in engines:
            engine.dispose()


def test_an_ingests_live_push_goes_out_with_its_commit_and_only_then(pg_url: str) -> None:
    engines = [make_engine(pg_url), make_engine(pg_url)]
    writer_hub, other_hub = (StreamHub(PgFanout(engine)) for engine in engines)
    sessions = make_session_factory(engines[0])
    notifier = Notifier(sessions, writer_hub, DispatchConfig())
    posted: list[list[IncidentChange]] = []

    def crash(session: Any, changes: list[IncidentChange]) -> list[IncidentChange]:
        notifier.write_outbox(session, changes)
        raise RuntimeError("the process dies inside the transaction")

    other_hub.start()
    try:
        assert other_hub.fanout is not None
        assert other_hub.fanout.wait_listening(10)  # type: ignore[attr-defined]

        async def scenario() -> list[StreamMessage]:
            subscriber = other_hub.subscribe(None)
            failing = IngestService(sessions)
            failing.add_outbox(crash)
            with pytest.raises(RuntimeError):
                await asyncio.to_thread(failing.ingest, numbered_event(1), source="mqtt")
            ingest = IngestService(sessions)  # the outbox in the transaction, nothing after it
            ingest.add_outbox(notifier.write_outbox)
            ingest.add_listener(type("Spy", (), {"incidents_changed": posted.append})())
            assert await asyncio.to_thread(ingest.ingest, numbered_event(2), source="mqtt")
            first = await asyncio.wait_for(subscriber.queue.get(), 10)
            (changes,) = posted
            assert all(change.pushed and change.webhooks_queued for change in changes)
            await asyncio.to_thread(notifier.incidents_changed, changes)  # pushes nothing more
            await asyncio.sleep(1.0)  # room for a second copy, or the failed one, to arrive
            return [
                first,
                *(subscriber.queue.get_nowait() for _ in range(subscriber.queue.qsize())),
            ]

        received = asyncio.run(scenario())
        assert [m.data["event_id"] for m in received] == ["ev-0002"]  # not ev-0001
    finally:
        other_hub.stop()
        for engine in engines:
            engine.dispose()


def _token(db_url: str, role: str) -> str:
    made = subprocess.run(
        [str(zhizhi_binary()), "token", "create", "--db", db_url, "--role", role],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return made.stdout.strip().splitlines()[-1]


def test_an_event_stored_by_one_process_shows_on_the_other_processs_stream(
    tmp_path: Path, pg_url: str
) -> None:
    broker = PrivateBroker(tmp_path / "broker")
    env = {"ZHIZHI_DB_URL": pg_url, "ZHIZHI_MQTT_URL": broker.url}
    first = ServerProcess(tmp_path / "srv-1", "srv-1", env)
    second = ServerProcess(tmp_path / "srv-2", "srv-2", env)
    frames: list[str] = []
    stop = threading.Event()
    try:
        broker.start()
        first.start()
        second.start()
        first.wait_healthy()
        second.wait_healthy()
        viewer, edge = _token(pg_url, "viewer"), _token(pg_url, "edge")

        def listen() -> None:
            url = f"{second.base}/api/v1/stream?token={viewer}"
            try:
                with httpx.stream("GET", url, timeout=httpx.Timeout(5, read=None)) as response:
                    for line in response.iter_lines():
                        frames.append(line)
                        if stop.is_set():
                            return
            except httpx.HTTPError:  # the server is stopped at the end
                return

        reader = threading.Thread(target=listen, daemon=True)
        reader.start()
        deadline = time.monotonic() + 10
        while not any(line.startswith(": connected") for line in frames):
            assert time.monotonic() < deadline, "the stream did not open"
            time.sleep(0.05)
        event = {
            "event_id": "fanout-1",
            "seq": 0,
            "state": "new",
            "type": "falling_object",
            "site_id": "garden-court",
            "camera_id": "facade-1",
            "zone_id": "facade",
            "rule_id": "throws",
            "observed_at": datetime.now(UTC).isoformat(),
            "pts_s": 9.0,
            "onset_pts_s": 8.6,
            "bbox": [0.4, 0.1, 0.45, 0.2],
            "score": 0.8,
            "details": {"trajectory": [[8.6, 0.42, 0.1], [9.0, 0.43, 0.6]]},
        }
        posted = httpx.post(
            f"{first.base}/api/v1/events",
            json=event,
            headers={"Authorization": f"Bearer {edge}"},
            timeout=10,
        )
        assert posted.status_code == 201, posted.text
        deadline = time.monotonic() + 10
        while not any("fanout-1" in line for line in frames if line.startswith("data:")):
            assert time.monotonic() < deadline, f"srv-2's stream never showed it: {frames[-5:]}"
            time.sleep(0.05)
        assert "event: incident" in frames
    finally:
        stop.set()
        first.stop()
        second.stop()
        broker.stop()
