"""Fuzz every operation of the OpenAPI schema against the app in-process (ASGI, SQLite), as an
admin and anonymously: whatever the input, the answer is never a 5xx.

The live stream is left out (an endless response); logout is left out (it would revoke the
token the rest of the run uses) and is tested on its own in test_incidents_api.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.generation.case import Case

from common.events import Event
from server.api import create_app
from server.auth import create_token
from server.db.session import make_engine, make_session_factory, migrate
from server.ingest import IngestService
from server.settings import ServerSettings

TOKENS: dict[str, str] = {}


def _app(folder: Path) -> FastAPI:
    engine = make_engine(f"sqlite:///{folder / 'zhizhi.db'}")
    return create_app(
        ServerSettings(db_url=f"sqlite:///{folder / 'zhizhi.db'}", media_dir=folder / "media"),
        engine,
        ingest=IngestService(make_session_factory(engine)),
        broker_connected=lambda: True,
    )


# The schema only (no database is touched to build it); the calls go to `fuzz_app`.
schema = (
    schemathesis.openapi.from_dict(_app(Path("unused")).openapi())
    .exclude(path="/api/v1/stream")
    .exclude(path="/api/v1/auth/logout")
)


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    folder: Path = tmp_path_factory.mktemp("fuzz")
    migrate(f"sqlite:///{folder / 'zhizhi.db'}")
    app = _app(folder)
    with make_session_factory(app.state.engine)() as session:
        TOKENS["admin"] = create_token(session, "admin", "fuzz-admin")
    # A few incidents, so generated ids (1, 2, ...) reach the real paths too.
    for index in range(3):
        event = Event.model_validate(
            {
                "event_id": f"fuzz-{index}",
                "seq": 0,
                "state": "new",
                "type": "fire_lane",
                "site_id": "garden-court",
                "camera_id": "gate-east",
                "zone_id": f"zone-{index}",
                "rule_id": "lane-blocked",
                "observed_at": "2026-11-23T02:00:00Z",
                "pts_s": 130.0,
                "onset_pts_s": 10.0,
                "bbox": [0.1, 0.5, 0.4, 0.9],
                "score": 0.9,
            }
        )
        app.state.ingest.ingest(event, source="http")
    yield app
    app.state.engine.dispose()


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,  # the same cases on every run: CI stays deterministic
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_input_makes_a_server_error(case: Case, fuzz_app: FastAPI) -> None:
    for headers in ({"Authorization": f"Bearer {TOKENS['admin']}"}, {}):
        response = case.call(headers=headers, app=fuzz_app)
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
        )
