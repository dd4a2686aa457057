"""The REST API on a temporary SQLite file, with one token per role."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from server.api import create_app
from server.auth import create_token
from server.db.session import make_engine, make_session_factory, migrate
from server.ingest import IngestService
from server.settings import ServerSettings

BASE_TIME = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
ROLES = ("admin", "operator", "viewer", "edge")


def event_message(**overrides: Any) -> dict[str, Any]:
    """A valid contract event message as JSON-ready dict."""
    message: dict[str, Any] = {
        "schema": "zhizhi.event/1",
        "event_id": "ev-1",
        "seq": 0,
        "state": "new",
        "type": "fire_lane",
        "site_id": "garden-court",
        "camera_id": "gate-east",
        "zone_id": "lane-north",
        "rule_id": "lane-north-blocked",
        "observed_at": BASE_TIME.isoformat().replace("+00:00", "Z"),
        "pts_s": 135.2,
        "onset_pts_s": 15.0,
        "bbox": [0.1, 0.5, 0.4, 0.9],
        "score": 0.87,
        "details": {"blocked_s": 120.2},
        "model": {"name": "yolov8n-640", "version": "8.3", "sha256": "ab" * 32},
        "evidence": [],
    }
    message.update(overrides)
    return message


def at(seconds: float) -> str:
    """RFC 3339 of BASE_TIME + seconds."""
    return (BASE_TIME + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file, copied for each test (migrating each time is slower)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture
def settings(tmp_path: Path, migrated_template: Path) -> ServerSettings:
    database = tmp_path / "zhizhi.db"
    shutil.copyfile(migrated_template, database)
    return ServerSettings(db_url=f"sqlite:///{database}", media_dir=tmp_path / "media")


@pytest.fixture
def engine(settings: ServerSettings) -> Iterator[Engine]:
    engine = make_engine(settings.db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def ingest(session_factory: sessionmaker[Session]) -> IngestService:
    return IngestService(session_factory)


@pytest.fixture
def broker_state() -> dict[str, bool]:
    return {"connected": True}


@pytest.fixture
def make_client(
    engine: Engine, ingest: IngestService, broker_state: dict[str, bool]
) -> Callable[[ServerSettings], TestClient]:
    def build(settings: ServerSettings) -> TestClient:
        app = create_app(
            settings, engine, ingest=ingest, broker_connected=lambda: broker_state["connected"]
        )
        return TestClient(app)

    return build


@pytest.fixture
def client(
    make_client: Callable[[ServerSettings], TestClient], settings: ServerSettings
) -> TestClient:
    return make_client(settings)


@pytest.fixture
def tokens(session_factory: sessionmaker[Session]) -> dict[str, str]:
    with session_factory() as session:
        return {role: create_token(session, role, f"test-{role}") for role in ROLES}


@pytest.fixture
def auth(tokens: dict[str, str]) -> Callable[[str], dict[str, str]]:
    def headers(role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[role]}"}

    return headers


@pytest.fixture
def make_message() -> Callable[..., dict[str, Any]]:
    """event_message(**overrides): a valid event message; `at(s)` gives observed_at values."""
    return event_message


@pytest.fixture
def observed() -> Callable[[float], str]:
    return at
