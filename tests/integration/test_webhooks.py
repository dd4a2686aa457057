"""Outgoing webhooks against a real HTTP receiver on loopback: signed bodies, retries with
backoff, dead letters after the last attempt, nothing sent for silenced incidents."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from common.events import Event
from server.api import create_app
from server.auth import create_token
from server.db.models import SilenceRow, WebhookDeliveryRow
from server.dispatch import DispatchConfig, parse_dispatch_config
from server.incidents import IncidentChange, IncidentPolicy
from server.ingest import IngestService
from server.notify import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Notifier,
    StreamHub,
    WebhookSender,
    signature_valid,
)
from server.settings import ServerSettings
from tests.support.databases import sqlite_sessions

pytestmark = pytest.mark.integration

SECRET = "webhook-secret-for-tests-0123456789"  # noqa: S105 (a test key)
T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


@dataclass
class Receiver:
    url: str
    statuses: list[int]  # answered in turn; the last one repeats
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="", statuses=[200])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append((dict(self.headers.items()), body))
            code = state.statuses[min(len(state.requests), len(state.statuses)) - 1]
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    yield from sqlite_sessions(tmp_path)


def dispatch_for(receiver: Receiver, attempts: int = 3) -> DispatchConfig:
    return parse_dispatch_config(
        {
            "webhooks": [{"id": "bridge", "url": receiver.url, "secret": SECRET}],
            "webhook_max_attempts": attempts,
            "webhook_backoff_s": 10,
        }
    )


def make_event(event_id: str = "ev-1", **fields: Any) -> Event:
    message: dict[str, Any] = {
        "event_id": event_id,
        "seq": 0,
        "state": "new",
        "type": "falling_object",
        "site_id": "garden-court",
        "camera_id": "facade-1",
        "zone_id": "facade",
        "rule_id": "throws",
        "observed_at": T0,
        "pts_s": 9.0,
        "onset_pts_s": 8.6,
        "bbox": (0.4, 0.1, 0.45, 0.2),
        "score": 0.8,
        "details": {"trajectory": [[8.6, 0.42, 0.1], [9.0, 0.43, 0.6]], "origin_floor": 12},
    }
    message.update(fields)
    return Event.model_validate(message)


def build(
    sessions: sessionmaker[Session], dispatch: DispatchConfig, clock: Clock, tmp_path: Path
) -> tuple[IngestService, WebhookSender, TestClient]:
    ingest = IngestService(sessions, clock=clock, policy=IncidentPolicy(dispatch=dispatch))
    settings = ServerSettings(db_url="sqlite:///unused.db", media_dir=tmp_path / "media")
    notifier = Notifier(sessions, StreamHub(), dispatch, clock=clock)
    ingest.add_listener(notifier)
    app = create_app(
        settings,
        sessions.kw["bind"],
        ingest=ingest,
        broker_connected=lambda: True,
        notifier=notifier,
    )
    return ingest, WebhookSender(sessions, dispatch, clock=clock), TestClient(app)


def test_a_new_incident_is_posted_signed_to_the_receiver(
    receiver: Receiver, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    clock = Clock()
    ingest, sender, _ = build(sessions, dispatch_for(receiver), clock, tmp_path)

    ingest.ingest(make_event(), source="http")
    delivered = sender.deliver_due()

    assert delivered == 1
    ((headers, body),) = receiver.requests
    assert signature_valid(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    assert headers[TIMESTAMP_HEADER] == str(int(T0.timestamp()))
    payload = json.loads(body)
    assert payload["kind"] == "incident.created"
    assert payload["incident"]["severity"] == "critical"
    assert payload["incident"]["details"]["origin_floor"] == 12
    assert sender.deliver_due() == 0  # delivered once


def test_failures_retry_with_backoff_then_land_in_the_dead_letters(
    receiver: Receiver, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    receiver.statuses = [503]
    clock = Clock()
    ingest, sender, client = build(sessions, dispatch_for(receiver, attempts=3), clock, tmp_path)
    ingest.ingest(make_event(), source="http")

    sender.deliver_due()  # attempt 1 at T0; next at +10 s
    clock.now = T0 + timedelta(seconds=9)
    sender.deliver_due()  # not due yet
    clock.now = T0 + timedelta(seconds=10)
    sender.deliver_due()  # attempt 2; next at +20 s more
    clock.now = T0 + timedelta(seconds=29)
    sender.deliver_due()
    clock.now = T0 + timedelta(seconds=30)
    sender.deliver_due()  # attempt 3: the last

    assert len(receiver.requests) == 3
    with sessions() as session:
        row = session.scalars(select(WebhookDeliveryRow)).one()
    assert (row.status, row.attempts, row.last_error) == ("dead", 3, "HTTP 503")
    with sessions() as session:
        admin = create_token(session, "admin", "a")
        operator = create_token(session, "operator", "o")
    letters = client.get(
        "/api/v1/webhooks/dead-letters", headers={"Authorization": f"Bearer {admin}"}
    ).json()["items"]
    assert [(item["webhook"], item["kind"], item["attempts"]) for item in letters] == [
        ("bridge", "created", 3)
    ]
    forbidden = client.get(
        "/api/v1/webhooks/dead-letters", headers={"Authorization": f"Bearer {operator}"}
    )
    assert forbidden.status_code == 403


def test_an_unreachable_receiver_counts_as_a_failed_attempt(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    closed = Receiver(url="http://127.0.0.1:9/hook", statuses=[200])
    clock = Clock()
    ingest, sender, _ = build(sessions, dispatch_for(closed, attempts=1), clock, tmp_path)
    ingest.ingest(make_event(), source="http")

    assert sender.deliver_due() == 0

    with sessions() as session:
        row = session.scalars(select(WebhookDeliveryRow)).one()
    assert row.status == "dead"
    assert row.last_error and "Connect" in row.last_error


def test_silenced_incidents_are_not_sent(
    receiver: Receiver, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    clock = Clock()
    ingest, sender, _ = build(sessions, dispatch_for(receiver), clock, tmp_path)
    with sessions() as session, session.begin():
        session.add(
            SilenceRow(
                camera_id="facade-1",
                starts_at=T0 - timedelta(hours=1),
                ends_at=T0 + timedelta(hours=1),
                created_by="test",
                created_at=T0,
                comment="scaffolding",
            )
        )

    ingest.ingest(make_event(), source="http")

    assert sender.deliver_due() == 0
    assert receiver.requests == []


def test_deliveries_commit_with_the_ingest_even_when_nothing_runs_after_it(
    receiver: Receiver, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """The transactional outbox (issue 16): a process that dies right after the ingest commit
    (here: the post-commit notification never runs) has still queued the delivery."""
    clock = Clock()
    dispatch = dispatch_for(receiver)
    ingest = IngestService(sessions, clock=clock, policy=IncidentPolicy(dispatch=dispatch))
    notifier = Notifier(sessions, StreamHub(), dispatch, clock=clock)
    ingest.add_outbox(notifier.write_outbox)  # in the transaction; no listener after it

    ingest.ingest(make_event(), source="mqtt")

    with sessions() as session:
        (row,) = session.scalars(select(WebhookDeliveryRow)).all()
    assert (row.kind, row.status) == ("created", "pending")
    assert WebhookSender(sessions, dispatch, clock=clock).deliver_due() == 1
    assert json.loads(receiver.requests[0][1])["kind"] == "incident.created"


def test_a_failed_ingest_queues_no_delivery(
    receiver: Receiver, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    clock = Clock()
    dispatch = dispatch_for(receiver)
    ingest = IngestService(sessions, clock=clock, policy=IncidentPolicy(dispatch=dispatch))
    notifier = Notifier(sessions, StreamHub(), dispatch, clock=clock)

    def crash(session: Session, changes: list[IncidentChange]) -> list[IncidentChange]:
        notifier.write_outbox(session, changes)
        session.flush()
        raise RuntimeError("the process dies inside the transaction")

    ingest.add_outbox(crash)
    with pytest.raises(RuntimeError):
        ingest.ingest(make_event(), source="mqtt")
    with sessions() as session:
        assert session.scalars(select(WebhookDeliveryRow)).all() == []


def test_every_attempt_of_a_delivery_carries_the_same_idempotency_key(
    receiver: Receiver, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    receiver.statuses = [503, 200]
    clock = Clock()
    ingest, sender, _ = build(sessions, dispatch_for(receiver), clock, tmp_path)
    ingest.ingest(make_event("ev-a"), source="http")
    ingest.ingest(make_event("ev-b", camera_id="facade-2"), source="http")

    sender.deliver_due()
    clock.now = T0 + timedelta(seconds=10)
    sender.deliver_due()

    keys = [headers[IDEMPOTENCY_HEADER] for headers, _ in receiver.requests]
    assert len(keys) == 3  # the first failed, was retried; the second went through at once
    assert keys[0] == keys[2] != keys[1]
    assert all(key.startswith("zhizhi-delivery-") for key in keys)
