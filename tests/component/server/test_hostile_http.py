"""The REST API attacked as an outsider and as a careless or compromised edge (issue 14).

Each test reproduces one attack of the issue; on the code before the fix it fails.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from server.db.models import EventRow

Headers = Callable[[str], dict[str, str]]
Message = Callable[..., dict[str, Any]]
EVENTS = "/api/v1/events"


def stored_events(session_factory: sessionmaker[Session]) -> int:
    with session_factory() as session:
        return int(session.scalar(select(func.count(EventRow.id))) or 0)


def chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    """A body sent with Transfer-Encoding: chunked: no Content-Length to check."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


# Item 6: chunked requests bypassed the 256 KiB event limit ---------------------------------


def test_a_chunked_event_larger_than_the_limit_is_refused(
    client: TestClient,
    auth: Headers,
    make_message: Message,
    session_factory: sessionmaker[Session],
) -> None:
    big = json.dumps(make_message(event_id="ev-big", details={"pad": "x" * 2_000_000})).encode()

    response = client.post(
        EVENTS,
        content=chunks(big),
        headers={**auth("edge"), "Content-Type": "application/json"},
    )

    assert response.status_code == 413, response.text[:200]
    assert stored_events(session_factory) == 0


def test_a_chunked_event_within_the_limit_is_stored(
    client: TestClient, auth: Headers, make_message: Message
) -> None:
    body = json.dumps(make_message(event_id="ev-chunked")).encode()

    response = client.post(
        EVENTS,
        content=chunks(body, 100),
        headers={**auth("edge"), "Content-Type": "application/json"},
    )

    assert response.status_code == 201, response.text


# Item 7: NaN, Infinity, 1e400 or a lone surrogate in any JSON body gave a 500 ---------------

POISON = {
    "NaN": "NaN",
    "Infinity": "Infinity",
    "-Infinity": "-Infinity",
    "1e400": "1e400",
    "lone surrogate": '"\\ud800"',
    "NUL": '"a\\u0000b"',
}
# (path, body with {} where the poison goes, role or None for anonymous)
BODIES: list[tuple[str, str, str | None]] = [
    ("/api/v1/auth/login", '{{"username": {}, "password": "whatever1"}}', None),
    ("/api/v1/auth/login", '{{"username": "admin", "password": "x", "extra": {}}}', None),
    (EVENTS, "EVENT", "edge"),
    ("/api/v1/silences", '{{"ends_at": "2030-01-01T00:00:00Z", "comment": {}}}', "operator"),
    ("/api/v1/incidents/1/ack", '{{"note": {}}}', "operator"),
]


@pytest.mark.parametrize("poison", list(POISON))
@pytest.mark.parametrize(("path", "template", "role"), BODIES)
def test_a_json_body_with_a_poison_value_is_a_422_never_a_500(
    client: TestClient,
    auth: Headers,
    make_message: Message,
    session_factory: sessionmaker[Session],
    path: str,
    template: str,
    role: str | None,
    poison: str,
) -> None:
    value = POISON[poison]
    if template == "EVENT":
        body = json.dumps(make_message(event_id="ev-poison")).replace(
            '"pts_s": 135.2', f'"pts_s": {value}'
        )
        assert value in body
    else:
        body = template.format(value)
    headers = {"Content-Type": "application/json", **(auth(role) if role else {})}

    response = client.post(path, content=body.encode(), headers=headers)

    assert response.status_code == 422, f"{response.status_code}: {response.text[:300]}"
    assert stored_events(session_factory) == 0


def test_an_infinite_time_in_an_event_is_refused_not_stored_as_null(
    client: TestClient, auth: Headers, make_message: Message
) -> None:
    body = json.dumps(make_message(event_id="ev-inf")).replace('"pts_s": 135.2', '"pts_s": 1e999')

    response = client.post(
        EVENTS, content=body.encode(), headers={**auth("edge"), "Content-Type": "application/json"}
    )

    assert response.status_code == 422
    listed = client.get(EVENTS, headers=auth("viewer")).json()
    assert listed["total"] == 0


def test_a_body_without_content_type_is_held_to_the_same_limits(
    client: TestClient, auth: Headers, make_message: Message
) -> None:
    """FastAPI reads a body with no Content-Type as JSON: the limits apply to it too."""
    body = json.dumps(make_message(event_id="ev-bare")).replace('"score": 0.87', '"score": NaN')

    response = client.post(EVENTS, content=body.encode(), headers=auth("edge"))

    assert response.status_code == 422


# Item 10 (part): a 422 echoed a submitted password --------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"password": "s3cret-Echo-1"},  # username missing: the whole body was echoed
        {"username": "admin", "password": "s3cret-Echo-1" * 100},  # too long: echoed
        {"username": "admin", "password": "s3cret-Echo-1", "otp": 1},  # an extra key
    ],
)
def test_a_refused_login_never_echoes_the_password(
    client: TestClient, body: dict[str, Any]
) -> None:
    response = client.post("/api/v1/auth/login", json=body)

    assert response.status_code == 422
    assert "s3cret-Echo-1" not in response.text
    assert response.json()["detail"][0]["loc"][0] == "body"
