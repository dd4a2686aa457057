"""Fuzz every operation of the OpenAPI schema against the app in-process (ASGI, SQLite), as an
admin and anonymously: whatever the input, the answer is never a 5xx.

The second test (issue 14) takes every generated JSON body and poisons one value in it, the way
the attacks did: NaN, +-Infinity, 1e400, a lone surrogate, a NUL, an integer beyond 64 bits,
nesting deeper than the limit; half of the bodies go chunked (no Content-Length). Each must be
refused (422) by the shared input limits before any route sees it, never a 5xx, never stored.

The live stream is left out (an endless response); logout is left out (it would revoke the
token the rest of the run uses) and is tested on its own in test_incidents_api.py.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
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


POISONS = {
    "NaN": "NaN",
    "Infinity": "Infinity",
    "-Infinity": "-Infinity",
    "1e400": "1e400",
    "surrogate": '"\\udc80"',
    "NUL": '"x\\u0000"',
    "int65": str(2**65),
    "deep": "[" * 40 + "]" * 40,
}
MUTATED: Counter[str] = Counter()
MARK = "__poison__"


def _paths(value: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value where another value could stand."""
    found = [here]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*here, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*here, index))
    return found


def _put(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _put(value[head], rest, new)}
    copy = list(value)
    copy[head] = _put(copy[head], rest, new)
    return copy


def _chunks(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), 7):
        yield data[start : start + 7]


json_bodies = schema.include(method=["POST", "PUT", "PATCH"])


@json_bodies.given(data=st.data())
@json_bodies.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_a_poisoned_json_body_is_refused_never_a_server_error(
    case: Case, data: st.DataObject, fuzz_app: FastAPI
) -> None:
    body = case.body if isinstance(case.body, dict | list) else {}
    if isinstance(body, dict) and not body:
        body = {"note": "x"}
    where = data.draw(st.sampled_from(_paths(body)), label="where")
    poison = data.draw(st.sampled_from(sorted(POISONS)), label="poison")
    chunked = data.draw(st.booleans(), label="chunked")
    raw = json.dumps(_put(body, where, MARK)).replace(f'"{MARK}"', POISONS[poison]).encode()
    client = TestClient(fuzz_app, raise_server_exceptions=False)
    admin = {"Authorization": f"Bearer {TOKENS['admin']}"}
    before = client.get("/api/v1/events", headers=admin).json()["total"]
    for auth in ({"Authorization": f"Bearer {TOKENS['admin']}"}, {}):
        response = client.request(
            case.method,
            case.formatted_path,
            params=case.query,
            content=_chunks(raw) if chunked else raw,
            headers={**auth, "Content-Type": "application/json"},
        )
        assert response.status_code == 422, (
            f"{case.method} {case.formatted_path} with {poison} at {where} "
            f"({'chunked' if chunked else 'sized'}) -> {response.status_code}: "
            f"{response.text[:300]}"
        )
        MUTATED[poison] += 1
    after = client.get("/api/v1/events", headers=admin).json()["total"]
    assert after == before  # nothing poisoned was stored


def teardown_module() -> None:
    if MUTATED:
        sys.stdout.write(
            f"\n[fuzz rest] requests mutated={sum(MUTATED.values())} "
            f"by poison={dict(sorted(MUTATED.items()))} server errors=0\n"
        )
