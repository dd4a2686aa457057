"""Input the database refuses (PostgreSQL: a NUL character in a text, in JSON too) is a 422,
never a 5xx, through every kind of route: login, lists with filters, bodies, event ingest.
Run on SQLite and PostgreSQL alike."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.api import create_app
from server.auth import create_token
from server.db.session import make_engine, make_session_factory, migrate
from server.ingest import IngestService
from server.settings import ServerSettings
from tests.support.databases import fresh_postgres_url

pytestmark = pytest.mark.integration

NUL = "a\x00b"


def event(**overrides: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "schema": "zhizhi.event/1",
        "event_id": "ev-nul",
        "seq": 0,
        "state": "new",
        "type": "fire_lane",
        "site_id": "garden-court",
        "camera_id": "gate-east",
        "zone_id": "lane-north",
        "rule_id": "lane-north-blocked",
        "observed_at": "2026-11-23T02:00:00Z",
        "pts_s": 135.2,
        "onset_pts_s": 15.0,
        "bbox": [0.1, 0.5, 0.4, 0.9],
        "score": 0.87,
        "details": {},
        "evidence": [],
    }
    message.update(overrides)
    return message


@pytest.fixture(scope="module")
def postgresql_url() -> Iterator[str]:
    yield from fresh_postgres_url()


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('bad-input') / 'zhizhi.db'}"
    migrate(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"], scope="module")
def client(request: pytest.FixtureRequest) -> Iterator[tuple[TestClient, dict[str, str]]]:
    url: str = request.getfixturevalue(f"{request.param}_url")
    engine = make_engine(url)
    sessions: sessionmaker[Session] = make_session_factory(engine)
    with tempfile.TemporaryDirectory() as media, sessions() as session:
        settings = ServerSettings(db_url=url, media_dir=Path(media))
        token = create_token(session, "admin", "bad-input-admin")
        app = create_app(
            settings, engine, ingest=IngestService(sessions), broker_connected=lambda: True
        )
        yield TestClient(app, raise_server_exceptions=False), {"Authorization": f"Bearer {token}"}
    engine.dispose()


Call = tuple[str, str, dict[str, Any]]
CALLS: list[Call] = [
    ("POST", "/api/v1/auth/login", {"json": {"username": NUL, "password": "whatever"}}),
    ("GET", "/api/v1/events", {"params": {"site_id": NUL}}),
    ("GET", "/api/v1/incidents", {"params": {"camera_id": NUL}}),
    ("GET", "/api/v1/stats", {"params": {"site_id": NUL}}),
    ("GET", "/api/v1/audit", {"params": {"actor": NUL}}),
    ("POST", "/api/v1/events", {"json": event(event_id=NUL)}),
    ("POST", "/api/v1/events", {"json": event(event_id="ev-json", details={"note": NUL})}),
    ("POST", "/api/v1/silences", {"json": {"comment": NUL}}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), CALLS)
def test_a_nul_character_is_never_a_server_error(
    client: tuple[TestClient, dict[str, str]], method: str, path: str, kwargs: dict[str, Any]
) -> None:
    http, headers = client
    if path == "/api/v1/silences":
        ends = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        kwargs = {"json": {**kwargs["json"], "ends_at": ends}}

    response = http.request(method, path, headers=headers, **kwargs)

    assert response.status_code < 500, response.text
    assert http.get("/api/v1/events", headers=headers).status_code == 200  # still serving


def test_an_offset_past_any_integer_is_422(client: tuple[TestClient, dict[str, str]]) -> None:
    http, headers = client

    response = http.get("/api/v1/events", params={"offset": 2**63}, headers=headers)

    assert response.status_code == 422
