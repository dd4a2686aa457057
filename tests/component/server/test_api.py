"""Every route of the REST API through FastAPI's TestClient on a temporary SQLite file."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from common.events import CameraStatus, Event, StatusMessage
from server.api import create_app
from server.auth import revoke_token, verify_token
from server.db.models import EventRow, EvidenceRow
from server.ingest import IngestService
from server.metrics import MESSAGES_REJECTED
from server.settings import ServerSettings

EVENTS = "/api/v1/events"
Headers = Callable[[str], dict[str, str]]
Message = Callable[..., dict[str, Any]]


def evidence_url(sha256: str) -> str:
    return f"/api/v1/evidence/{sha256}"


def stored_rows(session_factory: sessionmaker[Session]) -> int:
    with session_factory() as session:
        return int(session.scalar(select(func.count(EventRow.id))) or 0)


# Health and metrics ----------------------------------------------------------------------------


def test_healthz_is_ok_without_auth_when_database_and_broker_answer(client: TestClient) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": True,
        "broker": True,
        "ingest": True,
        "media": True,
    }


def test_healthz_names_the_broker_when_it_is_down(
    client: TestClient, broker_state: dict[str, bool]
) -> None:
    broker_state["connected"] = False

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "database": True,
        "broker": False,
        "ingest": False,
        "media": True,
    }


def test_healthz_names_ingestion_when_the_consumer_cannot_store(
    settings: ServerSettings, engine: Engine, ingest: IngestService
) -> None:
    """Connected to the broker, yet the consumer's store does not answer or its worker died:
    /healthz says so (issue 14: it said ok while nothing was stored)."""
    app = create_app(
        settings, engine, ingest=ingest, broker_connected=lambda: True, ingest_healthy=lambda: False
    )

    response = TestClient(app).get("/healthz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "database": True,
        "broker": True,
        "ingest": False,
        "media": True,
    }


def test_healthz_names_the_database_when_it_is_unreachable(
    settings: ServerSettings, ingest: IngestService, tmp_path: Path
) -> None:
    unreachable = create_engine(f"sqlite:///{tmp_path}/no/such/dir/x.db")
    app = create_app(settings, unreachable, ingest=ingest, broker_connected=lambda: True)

    response = TestClient(app).get("/healthz")

    assert response.status_code == 503
    assert response.json()["database"] is False
    assert response.json()["broker"] is True


def test_metrics_are_prometheus_text_and_count_ingested_events(
    client: TestClient, auth: Headers, make_message: Message
) -> None:
    client.post(EVENTS, json=make_message(event_id="metrics-1"), headers=auth("edge"))
    client.post(EVENTS, json=make_message(event_id="metrics-1"), headers=auth("edge"))

    response = client.get("/metrics", headers=auth("viewer"))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'zhizhi_events_ingested_total{result="stored",source="http"}' in text
    assert 'zhizhi_events_ingested_total{result="duplicate",source="http"}' in text
    assert "zhizhi_ingest_latency_seconds_bucket" in text
    assert "zhizhi_edges_online" in text


# POST /api/v1/events ---------------------------------------------------------------------------


def test_post_event_is_idempotent_on_event_id_and_seq(
    client: TestClient,
    auth: Headers,
    make_message: Message,
    session_factory: sessionmaker[Session],
) -> None:
    message = make_message()

    first = client.post(EVENTS, json=message, headers=auth("edge"))
    again = client.post(EVENTS, json=message, headers=auth("edge"))
    next_seq = client.post(
        EVENTS, json={**message, "seq": 1, "state": "update"}, headers=auth("edge")
    )

    assert (first.status_code, first.json()) == (201, {"stored": True})
    assert (again.status_code, again.json()) == (200, {"stored": False})
    assert (next_seq.status_code, next_seq.json()) == (201, {"stored": True})
    assert stored_rows(session_factory) == 2


def test_posted_event_reads_back_as_the_same_contract_message(
    client: TestClient, auth: Headers, make_message: Message
) -> None:
    message = make_message(
        evidence=[
            {
                "kind": "snapshot",
                "sha256": "0f" * 32,
                "content_type": "image/jpeg",
                "url": "/ev/a.jpg",
                "role": "onset",
            }
        ],
        details={"trajectory": [[1.0, 0.5, 0.1], [1.2, 0.5, 0.4]]},
    )
    client.post(EVENTS, json=message, headers=auth("operator"))

    items = client.get(EVENTS, headers=auth("viewer")).json()["items"]

    assert items == [Event.model_validate(message).to_dict()]


@pytest.mark.parametrize(
    "change",
    [
        {"bbox": [0.5, 0.5, 0.1, 0.9]},
        {"state": "opened"},
        {"seq": -1},
        {"observed_at": "2026-11-23T02:00:00"},  # no timezone
        {"score": 1.5},
        {"event_id": None},
    ],
    ids=["bbox-unordered", "unknown-state", "negative-seq", "naive-time", "score>1", "no-id"],
)
def test_post_event_refuses_an_invalid_message_with_422_and_counts_it(
    client: TestClient,
    auth: Headers,
    make_message: Message,
    change: dict[str, Any],
    session_factory: sessionmaker[Session],
) -> None:
    before = MESSAGES_REJECTED.labels("invalid_event")._value.get()

    response = client.post(EVENTS, json=make_message(**change), headers=auth("edge"))

    assert response.status_code == 422
    assert MESSAGES_REJECTED.labels("invalid_event")._value.get() == before + 1
    assert stored_rows(session_factory) == 0


def test_post_event_refuses_a_body_that_is_not_json(client: TestClient, auth: Headers) -> None:
    headers = {**auth("edge"), "Content-Type": "application/json"}

    response = client.post(EVENTS, content=b'{"event_id": "x", "seq"', headers=headers)

    assert response.status_code == 422


def test_post_event_refuses_an_oversized_message_with_413(
    make_client: Callable[[ServerSettings], TestClient],
    settings: ServerSettings,
    auth: Headers,
    make_message: Message,
) -> None:
    client = make_client(settings.model_copy(update={"max_payload_bytes": 2048}))

    response = client.post(
        EVENTS, json=make_message(details={"pad": "x" * 4096}), headers=auth("edge")
    )

    assert response.status_code == 413


# Auth ------------------------------------------------------------------------------------------

PROTECTED = [
    ("POST", EVENTS),
    ("GET", EVENTS),
    ("PUT", evidence_url("ab" * 32)),
    ("GET", evidence_url("ab" * 32)),
    ("GET", "/api/v1/edges"),
]


@pytest.mark.parametrize(("method", "url"), PROTECTED)
def test_every_api_route_wants_a_bearer_token(client: TestClient, method: str, url: str) -> None:
    response = client.request(method, url)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "url"), PROTECTED)
def test_an_unknown_token_is_401(client: TestClient, method: str, url: str) -> None:
    response = client.request(method, url, headers={"Authorization": "Bearer not-a-token"})

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_a_revoked_token_is_401(
    client: TestClient,
    tokens: dict[str, str],
    auth: Headers,
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session:
        principal = verify_token(session, tokens["viewer"])
        assert principal is not None
        assert revoke_token(session, principal.token_id)

    assert client.get(EVENTS, headers=auth("viewer")).status_code == 401
    assert client.get(EVENTS, headers=auth("admin")).status_code == 200


def test_a_basic_auth_header_is_401(client: TestClient) -> None:
    response = client.get(EVENTS, headers={"Authorization": "Basic dXNlcjpwYXNz"})

    assert response.status_code == 401


# Who may do what: (method, url, role) -> expected status.
ROLE_MATRIX = [
    ("POST", EVENTS, "edge", 201),
    ("POST", EVENTS, "operator", 201),
    ("POST", EVENTS, "admin", 201),
    ("POST", EVENTS, "viewer", 403),
    ("GET", EVENTS, "viewer", 200),
    ("GET", EVENTS, "operator", 200),
    ("GET", EVENTS, "admin", 200),
    ("GET", EVENTS, "edge", 403),
    ("GET", "/api/v1/edges", "viewer", 200),
    ("GET", "/api/v1/edges", "edge", 403),
    ("PUT", "evidence", "edge", 201),
    ("PUT", "evidence", "admin", 201),
    ("PUT", "evidence", "operator", 403),
    ("PUT", "evidence", "viewer", 403),
    ("GET", "evidence", "edge", 403),
]


@pytest.mark.parametrize(("method", "url", "role", "expected"), ROLE_MATRIX)
def test_roles_are_enforced(
    client: TestClient,
    auth: Headers,
    make_message: Message,
    method: str,
    url: str,
    role: str,
    expected: int,
) -> None:
    data = b"\xff\xd8\xff a jpeg"
    kwargs: dict[str, Any] = {"headers": auth(role)}
    if url == "evidence":
        url = evidence_url(hashlib.sha256(data).hexdigest())
        kwargs["content"] = data
    elif method == "POST":
        kwargs["json"] = make_message()

    response = client.request(method, url, **kwargs)

    assert response.status_code == expected


# GET /api/v1/events ----------------------------------------------------------------------------


@pytest.fixture
def stored_events(
    client: TestClient,
    auth: Headers,
    make_message: Message,
    observed: Callable[[float], str],
) -> list[dict[str, Any]]:
    """Six events posted out of time order, over two cameras, two types and two states."""
    specs = [
        ("e3", 30, "gate-east", "fire_lane", "new"),
        ("e1", 10, "gate-east", "fire_lane", "new"),
        ("e5", 50, "facade-1", "falling_object", "new"),
        ("e2", 20, "facade-1", "falling_object", "new"),
        ("e6", 60, "gate-east", "fire_lane", "end"),
        ("e4", 40, "gate-east", "garbage_pile", "new"),
    ]
    messages = [
        make_message(event_id=event_id, observed_at=observed(t), camera_id=cam, type=kind, state=st)
        for event_id, t, cam, kind, st in specs
    ]
    for message in messages:
        assert client.post(EVENTS, json=message, headers=auth("edge")).status_code == 201
    return messages


def ids_of(response_json: dict[str, Any]) -> list[str]:
    return [item["event_id"] for item in response_json["items"]]


def test_events_are_listed_newest_first(
    client: TestClient, auth: Headers, stored_events: list[dict[str, Any]]
) -> None:
    body = client.get(EVENTS, headers=auth("viewer")).json()

    assert ids_of(body) == ["e6", "e5", "e4", "e3", "e2", "e1"]
    assert body["total"] == 6


def test_events_page_with_limit_and_offset(
    client: TestClient, auth: Headers, stored_events: list[dict[str, Any]]
) -> None:
    pages = [
        client.get(EVENTS, params={"limit": 4, "offset": offset}, headers=auth("viewer")).json()
        for offset in (0, 4, 8)
    ]

    assert [ids_of(page) for page in pages] == [["e6", "e5", "e4", "e3"], ["e2", "e1"], []]
    assert {page["total"] for page in pages} == {6}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"camera_id": "facade-1"}, ["e5", "e2"]),
        ({"type": "fire_lane"}, ["e6", "e3", "e1"]),
        ({"state": "end"}, ["e6"]),
        ({"camera_id": "gate-east", "state": "new"}, ["e4", "e3", "e1"]),
        ({"site_id": "garden-court", "type": "garbage_pile"}, ["e4"]),
        ({"site_id": "elsewhere"}, []),
    ],
)
def test_events_are_filtered(
    client: TestClient,
    auth: Headers,
    stored_events: list[dict[str, Any]],
    params: dict[str, str],
    expected: list[str],
) -> None:
    body = client.get(EVENTS, params=params, headers=auth("viewer")).json()

    assert ids_of(body) == expected
    assert body["total"] == len(expected)


def test_events_default_page_is_50(
    client: TestClient, auth: Headers, ingest: IngestService, make_message: Message
) -> None:
    ingest.ingest_many(
        [(Event.model_validate(make_message(event_id=f"bulk-{i:03d}")), None) for i in range(60)],
        source="http",
    )

    body = client.get(EVENTS, headers=auth("viewer")).json()

    assert len(body["items"]) == 50
    assert body["total"] == 60


@pytest.mark.parametrize(
    "params",
    [{"limit": 501}, {"limit": 0}, {"offset": -1}, {"type": "parking"}, {"state": "open"}],
)
def test_events_refuse_bad_query_parameters(
    client: TestClient, auth: Headers, params: dict[str, Any]
) -> None:
    assert client.get(EVENTS, params=params, headers=auth("viewer")).status_code == 422


def test_events_accept_the_largest_page(client: TestClient, auth: Headers) -> None:
    assert client.get(EVENTS, params={"limit": 500}, headers=auth("viewer")).status_code == 200


# Evidence --------------------------------------------------------------------------------------

JPEG = b"\xff\xd8\xff\xe0 not really a jpeg \xff\xd9"
JPEG_SHA = hashlib.sha256(JPEG).hexdigest()


def test_evidence_upload_is_stored_by_sha256_and_idempotent(
    client: TestClient, auth: Headers, settings: ServerSettings
) -> None:
    headers = {**auth("edge"), "Content-Type": "image/jpeg"}

    first = client.put(evidence_url(JPEG_SHA), content=JPEG, headers=headers)
    again = client.put(evidence_url(JPEG_SHA), content=JPEG, headers=headers)

    assert first.status_code == 201
    assert first.json()["stored"] is True
    assert again.status_code == 200
    assert again.json()["stored"] is False
    path = settings.media_dir / JPEG_SHA[:2] / JPEG_SHA[2:4] / JPEG_SHA
    assert path.read_bytes() == JPEG
    assert [p.name for p in path.parent.iterdir()] == [JPEG_SHA]  # no temporary left behind


def test_evidence_download_returns_the_file_with_its_content_type(
    client: TestClient, auth: Headers
) -> None:
    client.put(
        evidence_url(JPEG_SHA),
        content=JPEG,
        headers={**auth("edge"), "Content-Type": "image/jpeg"},
        params={"event_id": "ev-1"},
    )

    response = client.get(evidence_url(JPEG_SHA), headers=auth("viewer"))
    head = client.head(evidence_url(JPEG_SHA), headers=auth("viewer"))

    assert response.status_code == 200
    assert response.content == JPEG
    assert response.headers["content-type"] == "image/jpeg"
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(JPEG))
    assert head.headers["content-type"] == "image/jpeg"


def test_an_edge_may_ask_whether_evidence_is_stored_before_uploading(
    client: TestClient, auth: Headers
) -> None:
    before = client.head(evidence_url(JPEG_SHA), headers=auth("edge"))
    client.put(evidence_url(JPEG_SHA), content=JPEG, headers=auth("edge"))
    after = client.head(evidence_url(JPEG_SHA), headers=auth("edge"))

    assert (before.status_code, after.status_code) == (404, 200)


def test_evidence_whose_bytes_do_not_match_the_sha256_is_refused(
    client: TestClient,
    auth: Headers,
    settings: ServerSettings,
    session_factory: sessionmaker[Session],
) -> None:
    other = "0" * 64

    response = client.put(evidence_url(other), content=JPEG, headers=auth("edge"))

    assert response.status_code == 400
    assert JPEG_SHA in response.json()["detail"]
    assert client.get(evidence_url(other), headers=auth("viewer")).status_code == 404
    assert not settings.media_dir.exists() or not any(settings.media_dir.rglob("*"))
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(EvidenceRow)) == 0


def test_unknown_evidence_is_404(client: TestClient, auth: Headers) -> None:
    assert client.get(evidence_url("ab" * 32), headers=auth("viewer")).status_code == 404


@pytest.mark.parametrize("bad", ["AB" * 32, "ab" * 31, "..%2F..%2Fetc%2Fpasswd"])
def test_evidence_path_must_be_a_lowercase_sha256(
    client: TestClient, auth: Headers, bad: str
) -> None:
    response = client.put(f"/api/v1/evidence/{bad}", content=JPEG, headers=auth("edge"))

    assert response.status_code in (404, 422)


def test_oversized_evidence_is_refused_with_413(
    make_client: Callable[[ServerSettings], TestClient],
    settings: ServerSettings,
    auth: Headers,
) -> None:
    client = make_client(settings.model_copy(update={"max_evidence_bytes": 16}))

    response = client.put(evidence_url(JPEG_SHA), content=JPEG, headers=auth("edge"))

    assert response.status_code == 413


# Edges -----------------------------------------------------------------------------------------


def test_edges_show_edge_and_camera_state_and_last_seen(
    client: TestClient, auth: Headers, ingest: IngestService
) -> None:
    seen = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
    status = StatusMessage(
        state="online",
        cameras={
            "gate-east": CameraStatus(online=True),
            "facade-1": CameraStatus(online=False, reason="rtsp timeout"),
        },
        outbox={"pending": 3},
    )
    ingest.record_status("garden-court", "box-1", status, seen)

    body = client.get("/api/v1/edges", headers=auth("viewer")).json()

    assert body["total"] == 1
    edge = body["items"][0]
    assert (edge["site_id"], edge["edge_id"], edge["state"], edge["online"]) == (
        "garden-court",
        "box-1",
        "online",
        True,
    )
    assert edge["last_seen"] == "2026-11-23T03:00:00.000Z"
    assert edge["outbox"] == {"pending": 3}
    assert edge["cameras"] == [
        {"camera_id": "facade-1", "online": False, "reason": "rtsp timeout", "last_seen": None},
        {
            "camera_id": "gate-east",
            "online": True,
            "reason": "",
            "last_seen": "2026-11-23T03:00:00.000Z",
        },
    ]
