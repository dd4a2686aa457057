"""Dead letters (issue 14): refused MQTT messages kept for admins to inspect, replay, discard."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from common.events import events_topic
from server.ingest import IngestService
from server.services.dead_letters import DeadLetter
from server.users import create_user

Headers = Callable[[str], dict[str, str]]
Message = Callable[..., dict[str, Any]]
LETTERS = "/api/v1/dead-letters"
PASSWORD = "correct horse battery"  # noqa: S105 (a test user)


def letter(topic: str, payload: bytes, reason: str, **extra: Any) -> DeadLetter:
    return DeadLetter(
        topic=topic,
        payload=payload,
        reason=reason,
        detail=f"{reason} detail",
        received_at=datetime(2026, 12, 1, tzinfo=UTC),
        **extra,
    )


def north_admin(client: TestClient, session_factory: sessionmaker[Session]) -> dict[str, str]:
    with session_factory() as session:
        create_user(session, username="north", password=PASSWORD, role="admin", sites=["north"])
    token = client.post("/api/v1/auth/login", json={"username": "north", "password": PASSWORD})
    return {"Authorization": f"Bearer {token.json()['token']}"}


def test_refused_messages_are_listed_inspected_replayed_and_discarded(
    client: TestClient,
    auth: Headers,
    make_message: Message,
    ingest: IngestService,
    session_factory: sessionmaker[Session],
) -> None:
    good = json.dumps(make_message(event_id="ev-late")).encode()
    topic = events_topic("garden-court", "box1", "gate-east")
    ingest.keep_dead_letters(
        [
            letter(topic, good, "internal_error", event_id="ev-late", seq=0),  # a bug, now fixed
            letter(topic, b'{"event_id": "x", "seq": 1, "zone_id": "z\\u0000"}', "bad_text"),
            letter(events_topic("north", "box7", "cam"), b"\xff\xfe", "not_utf8"),
            letter("elsewhere/x", b"junk", "bad_topic"),
        ]
    )
    ingest.keep_dead_letters([letter(topic, good, "internal_error")])  # the same one again

    page = client.get(LETTERS, headers=auth("admin")).json()
    assert page["total"] == page["held"] == 4
    by_reason = {item["reason"]: item for item in page["items"]}
    assert by_reason["internal_error"]["times"] == 2
    assert by_reason["internal_error"]["site_id"] == "garden-court"
    assert by_reason["bad_topic"]["site_id"] is None
    north = client.get(LETTERS, headers=north_admin(client, session_factory)).json()
    assert [item["reason"] for item in north["items"]] == ["not_utf8"]
    assert client.get(LETTERS, headers=auth("operator")).status_code == 403

    poison = by_reason["bad_text"]["id"]
    detail = client.get(f"{LETTERS}/{poison}", headers=auth("admin")).json()
    assert "\\u0000" in detail["payload_text"]
    assert base64.b64decode(detail["payload_base64"]).startswith(b'{"event_id": "x"')
    again = client.post(f"{LETTERS}/{poison}/replay", headers=auth("admin"))
    assert again.status_code == 409 and "bad_text" in again.json()["detail"]

    late = by_reason["internal_error"]["id"]
    replayed = client.post(f"{LETTERS}/{late}/replay", headers=auth("admin"))
    assert replayed.status_code == 200, replayed.text
    assert replayed.json() == {"status": "replayed", "stored": True, "refused": None}
    events = client.get("/api/v1/events", headers=auth("viewer")).json()["items"]
    assert [e["event_id"] for e in events] == ["ev-late"]
    assert client.post(f"{LETTERS}/{late}/replay", headers=auth("admin")).status_code == 409

    discarded = client.post(f"{LETTERS}/{poison}/discard", headers=auth("admin"))
    assert discarded.json()["status"] == "discarded"
    held = client.get(LETTERS, headers=auth("admin")).json()
    assert sorted(item["reason"] for item in held["items"]) == ["bad_topic", "not_utf8"]
    done = client.get(LETTERS, params={"status": "discarded"}, headers=auth("admin")).json()
    assert [(item["reason"], item["handled_by"]) for item in done["items"]] == [
        ("bad_text", "test-admin")
    ]
    audit = client.get("/api/v1/audit", headers=auth("admin")).json()["items"]
    assert {"replay_dead_letter", "discard_dead_letter"} <= {entry["action"] for entry in audit}
