"""The live push: server-sent events from a real uvicorn server on loopback, read with httpx."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from common.events import CameraStatus, StatusMessage
from server.api import create_app
from server.db.models import UserRow
from server.ingest import IngestService
from server.settings import ServerSettings
from server.users import create_user

Message = Callable[..., dict[str, Any]]
PASSWORD = "correct horse battery"  # noqa: S105 (a test user)


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def base_url(settings: ServerSettings, engine: Engine, ingest: IngestService) -> Iterator[str]:
    app = create_app(settings, engine, ingest=ingest, broker_connected=lambda: True)
    port = _free_port()
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def read_events(
    lines: Iterator[str], wanted: int, timeout_s: float = 10.0
) -> list[tuple[str, Any]]:
    """The first `wanted` (event, data) pairs of an SSE response."""
    found: list[tuple[str, Any]] = []
    kind = ""
    deadline = time.monotonic() + timeout_s
    for line in lines:
        assert time.monotonic() < deadline, f"only {found} before the deadline"
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            found.append((kind, json.loads(line.removeprefix("data: "))))
            if len(found) == wanted:
                return found
    return found


def test_a_dashboard_receives_new_incidents_changes_and_camera_states(
    base_url: str,
    tokens: dict[str, str],
    make_message: Message,
    ingest: IngestService,
) -> None:
    edge = {"Authorization": f"Bearer {tokens['edge']}"}
    operator = {"Authorization": f"Bearer {tokens['operator']}"}
    with (
        httpx.Client(base_url=base_url, timeout=10) as client,
        client.stream("GET", "/api/v1/stream", params={"token": tokens["viewer"]}) as stream,
    ):
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines) == ": connected"
        client.post("/api/v1/events", json=make_message(), headers=edge)
        incident_id = client.get("/api/v1/incidents", headers=operator).json()["items"][0]["id"]
        client.post(f"/api/v1/incidents/{incident_id}/ack", headers=operator)
        status = StatusMessage(state="online", cameras={"gate-east": CameraStatus(online=True)})
        ingest.record_status("garden-court", "box-1", status, datetime.now(UTC))

        received = read_events(lines, 3)

    assert [(kind, data.get("status")) for kind, data in received[:2]] == [
        ("incident", "reported"),
        ("incident", "filed"),
    ]
    assert received[0][1]["id"] == incident_id
    assert received[2][0] == "camera"
    assert received[2][1]["camera_id"] == "gate-east" and received[2][1]["online"] is True


def test_the_stream_refuses_a_missing_or_wrong_token(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        assert client.get("/api/v1/stream").status_code == 401
        assert client.get("/api/v1/stream", params={"token": "forged"}).status_code == 401


@pytest.fixture
def quick_recheck_url(
    settings: ServerSettings, engine: Engine, ingest: IngestService
) -> Iterator[str]:
    """The API on uvicorn with open streams re-checking their token every 0.2 s."""
    quick = settings.model_copy(update={"stream_recheck_s": 0.2})
    app = create_app(quick, engine, ingest=ingest, broker_connected=lambda: True)
    port = _free_port()
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _login(client: httpx.Client, session_factory: sessionmaker[Session], sites: list[str]) -> str:
    with session_factory() as session:
        create_user(session, username="north", password=PASSWORD, role="viewer", sites=sites)
    response = client.post("/api/v1/auth/login", json={"username": "north", "password": PASSWORD})
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


def test_a_scoped_dashboard_receives_its_sites_only(
    base_url: str,
    tokens: dict[str, str],
    make_message: Message,
    ingest: IngestService,
    session_factory: sessionmaker[Session],
) -> None:
    edge = {"Authorization": f"Bearer {tokens['edge']}"}
    with httpx.Client(base_url=base_url, timeout=10) as client:
        token = _login(client, session_factory, ["north-park"])
        with client.stream("GET", "/api/v1/stream", params={"token": token}) as stream:
            lines = stream.iter_lines()
            assert next(lines) == ": connected"
            client.post(
                "/api/v1/events",
                json=make_message(event_id="s", site_id="south-park"),
                headers=edge,
            )
            status = StatusMessage(state="online", cameras={"cam": CameraStatus(online=True)})
            ingest.record_status("south-park", "box-s", status, datetime.now(UTC))
            ingest.record_status("north-park", "box-n", status, datetime.now(UTC))
            client.post(
                "/api/v1/events",
                json=make_message(event_id="n", site_id="north-park"),
                headers=edge,
            )

            received = read_events(lines, 2)

    assert [(kind, data["site_id"]) for kind, data in received] == [
        ("camera", "north-park"),
        ("incident", "north-park"),
    ]


def test_a_stream_ends_once_its_token_is_revoked(
    quick_recheck_url: str, session_factory: sessionmaker[Session]
) -> None:
    with httpx.Client(base_url=quick_recheck_url, timeout=10) as client:
        token = _login(client, session_factory, ["north-park"])
        headers = {"Authorization": f"Bearer {token}"}
        with client.stream("GET", "/api/v1/stream", params={"token": token}) as stream:
            lines = stream.iter_lines()
            assert next(lines) == ": connected"
            assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
            started = time.monotonic()
            rest = list(lines)  # returns when the server closes the stream

    assert time.monotonic() - started < 5
    assert all(not line.startswith("data:") for line in rest)


def test_a_stream_ends_once_its_user_is_disabled_or_rescoped(
    quick_recheck_url: str, session_factory: sessionmaker[Session]
) -> None:
    with httpx.Client(base_url=quick_recheck_url, timeout=10) as client:
        token = _login(client, session_factory, ["north-park"])
        with client.stream("GET", "/api/v1/stream", params={"token": token}) as stream:
            lines = stream.iter_lines()
            assert next(lines) == ": connected"
            with session_factory() as session:
                user = session.scalars(select(UserRow)).one()
                user.sites = ["south-park"]
                session.commit()
            started = time.monotonic()
            list(lines)

        assert time.monotonic() - started < 5
        reconnected = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert reconnected.json()["sites"] == ["south-park"]
