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
from sqlalchemy import Engine

from common.events import CameraStatus, StatusMessage
from server.api import create_app
from server.ingest import IngestService
from server.settings import ServerSettings

Message = Callable[..., dict[str, Any]]


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
