"""Site scope and bad input on the REST API (SQLite): a user scoped to some sites neither sees
nor changes anything of another site, whichever list or upload it comes through; times that
cannot be stored are refused; an ended silence stays on record."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from common.events import CameraStatus, StatusMessage
from server.auth import create_token
from server.db.models import WebhookDeliveryRow
from server.ingest import IngestService
from server.users import create_user

Headers = Callable[[str], dict[str, str]]
Message = Callable[..., dict[str, Any]]
PASSWORD = "correct horse battery"  # noqa: S105 (a test user)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
NORTH, SOUTH = "north-park", "south-park"


@pytest.fixture
def scoped(session_factory: sessionmaker[Session], client: TestClient) -> dict[str, Any]:
    """Session headers of users scoped to the north park: a viewer, an operator, an admin."""
    with session_factory() as session:
        for role in ("viewer", "operator", "admin"):
            create_user(
                session, username=f"north-{role}", password=PASSWORD, role=role, sites=[NORTH]
            )
    headers = {}
    for role in ("viewer", "operator", "admin"):
        response = client.post(
            "/api/v1/auth/login", json={"username": f"north-{role}", "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        headers[role] = {"Authorization": f"Bearer {response.json()['token']}"}
    return headers


def send(client: TestClient, auth: Headers, message: dict[str, Any]) -> None:
    response = client.post("/api/v1/events", json=message, headers=auth("edge"))
    assert response.status_code == 201, response.text


def test_events_list_only_the_callers_sites(
    client: TestClient, auth: Headers, make_message: Message, scoped: dict[str, Any]
) -> None:
    send(client, auth, make_message(event_id="n", site_id=NORTH))
    send(client, auth, make_message(event_id="s", site_id=SOUTH))

    mine = client.get("/api/v1/events", headers=scoped["viewer"]).json()
    everything = client.get("/api/v1/events", headers=auth("viewer")).json()
    other = client.get("/api/v1/events", params={"site_id": SOUTH}, headers=scoped["viewer"])

    assert [item["site_id"] for item in mine["items"]] == [NORTH]
    assert mine["total"] == 1
    assert everything["total"] == 2
    assert other.status_code == 403


def test_edges_list_only_the_callers_sites(
    client: TestClient, auth: Headers, ingest: IngestService, scoped: dict[str, Any]
) -> None:
    status = StatusMessage(state="online", cameras={"cam": CameraStatus(online=True)})
    ingest.record_status(NORTH, "box-n", status, datetime.now(UTC))
    ingest.record_status(SOUTH, "box-s", status, datetime.now(UTC))

    mine = client.get("/api/v1/edges", headers=scoped["viewer"]).json()
    cameras = client.get("/api/v1/cameras", headers=scoped["viewer"]).json()

    assert [(item["site_id"], item["edge_id"]) for item in mine["items"]] == [(NORTH, "box-n")]
    assert mine["total"] == 1
    assert [item["site_id"] for item in cameras["items"]] == [NORTH]
    assert client.get("/api/v1/edges", headers=auth("viewer")).json()["total"] == 2


def test_a_scoped_operator_cannot_send_events_for_another_site(
    client: TestClient, auth: Headers, make_message: Message, scoped: dict[str, Any]
) -> None:
    foreign = client.post(
        "/api/v1/events", json=make_message(event_id="s", site_id=SOUTH), headers=scoped["operator"]
    )
    own = client.post(
        "/api/v1/events", json=make_message(event_id="n", site_id=NORTH), headers=scoped["operator"]
    )
    viewer = client.post(
        "/api/v1/events", json=make_message(event_id="v", site_id=NORTH), headers=scoped["viewer"]
    )

    assert (foreign.status_code, own.status_code, viewer.status_code) == (403, 201, 403)
    stored = client.get("/api/v1/events", headers=auth("viewer")).json()["items"]
    assert [item["event_id"] for item in stored] == ["n"]


def test_an_edge_token_of_one_site_sends_events_of_that_site_only(
    client: TestClient,
    auth: Headers,
    make_message: Message,
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session:
        box = create_token(session, "edge", "north box", sites=[NORTH])
        everywhere = create_token(session, "edge", "lab box", sites=["*"])
    north = {"Authorization": f"Bearer {box}"}

    own = client.post(
        "/api/v1/events", json=make_message(event_id="n", site_id=NORTH), headers=north
    )
    foreign = client.post(
        "/api/v1/events", json=make_message(event_id="s", site_id=SOUTH), headers=north
    )
    lab = client.post(
        "/api/v1/events",
        json=make_message(event_id="l", site_id=SOUTH),
        headers={"Authorization": f"Bearer {everywhere}"},
    )

    assert (own.status_code, foreign.status_code, lab.status_code) == (201, 403, 201)
    stored = client.get("/api/v1/events", headers=auth("viewer")).json()["items"]
    assert sorted(item["event_id"] for item in stored) == ["l", "n"]


def test_a_scoped_admin_cannot_change_another_sites_plan(
    client: TestClient, scoped: dict[str, Any]
) -> None:
    admin = scoped["admin"]
    png = {**admin, "Content-Type": "image/png"}

    assert client.put(f"/api/v1/sites/{SOUTH}/plan", content=PNG, headers=png).status_code == 403
    assert client.put(f"/api/v1/sites/{NORTH}/plan", content=PNG, headers=png).status_code == 204
    placed = client.put(
        f"/api/v1/sites/{SOUTH}/cameras/cam/plan-position", json={"x": 0.5, "y": 0.5}, headers=admin
    )
    assert placed.status_code == 403
    assert client.get(f"/api/v1/sites/{SOUTH}/plan", headers=admin).status_code == 403


def test_the_audit_log_needs_an_admin_of_every_site_and_dead_letters_keep_to_sites(
    client: TestClient,
    auth: Headers,
    make_message: Message,
    scoped: dict[str, Any],
    session_factory: sessionmaker[Session],
) -> None:
    send(client, auth, make_message(event_id="n", site_id=NORTH))
    send(client, auth, make_message(event_id="s", site_id=SOUTH))
    ids = {
        item["site_id"]: item["id"]
        for item in client.get("/api/v1/incidents", headers=auth("viewer")).json()["items"]
    }
    now = datetime.now(UTC)
    with session_factory() as session:
        for site, incident_id in sorted(ids.items()):
            session.add(
                WebhookDeliveryRow(
                    webhook="sms",
                    url="http://127.0.0.1:9/hook",
                    incident_id=incident_id,
                    kind="created",
                    payload={"kind": "incident.created", "incident": {"site_id": site}},
                    status="dead",
                    attempts=8,
                    next_attempt_at=now,
                    created_at=now,
                    finished_at=now,
                    last_error="HTTP 500",
                )
            )
        session.commit()

    assert client.get("/api/v1/audit", headers=scoped["admin"]).status_code == 403
    assert client.get("/api/v1/audit", headers=auth("admin")).status_code == 200
    mine = client.get("/api/v1/webhooks/dead-letters", headers=scoped["admin"]).json()["items"]
    every = client.get("/api/v1/webhooks/dead-letters", headers=auth("admin")).json()["items"]
    assert [item["incident_id"] for item in mine] == [ids[NORTH]]
    assert len(every) == 2


def test_a_scoped_viewer_cannot_probe_evidence_of_another_site(
    client: TestClient, auth: Headers, make_message: Message, scoped: dict[str, Any]
) -> None:
    data = b"\xff\xd8\xff south only"
    sha = hashlib.sha256(data).hexdigest()
    client.put(f"/api/v1/evidence/{sha}", content=data, headers=auth("edge"))
    evidence = [{"kind": "snapshot", "sha256": sha, "content_type": "image/jpeg", "url": "s.jpg"}]
    send(client, auth, make_message(site_id=SOUTH, evidence=evidence))

    assert client.head(f"/api/v1/evidence/{sha}", headers=scoped["viewer"]).status_code == 403
    assert client.head(f"/api/v1/evidence/{sha}", headers=auth("edge")).status_code == 200
    assert client.head(f"/api/v1/evidence/{sha}", headers=auth("viewer")).status_code == 200


def edge_of(session_factory: sessionmaker[Session], site: str) -> dict[str, str]:
    with session_factory() as session:
        return {"Authorization": f"Bearer {create_token(session, 'edge', site, sites=[site])}"}


def test_an_edge_of_another_site_cannot_touch_an_incident_by_its_event_id(
    client: TestClient,
    auth: Headers,
    make_message: Message,
    session_factory: sessionmaker[Session],
) -> None:
    """Issue 14, item 5: an edge of site B posting a site-A event_id ended site A's incident
    and changed its score. Now the id is checked against the sender's site first."""
    north, south = edge_of(session_factory, NORTH), edge_of(session_factory, SOUTH)
    events = "/api/v1/events"
    assert client.post(events, json=make_message(event_id="ev-a", site_id=NORTH), headers=north)
    hijack = make_message(event_id="ev-a", seq=1, state="end", site_id=SOUTH, score=0.01)
    same_key = make_message(event_id="ev-a", site_id=SOUTH)
    other_camera = make_message(event_id="ev-a", seq=2, site_id=NORTH, camera_id="door-9")

    answers = [
        client.post(events, json=body, headers=headers).status_code
        for body, headers in ((hijack, south), (same_key, south), (other_camera, north))
    ]

    assert answers == [409, 409, 409]
    (incident,) = client.get("/api/v1/incidents", headers=auth("viewer")).json()["items"]
    assert (incident["site_id"], incident["state"], incident["score"]) == (NORTH, "new", 0.87)
    stored = client.get(events, headers=auth("viewer")).json()
    assert [(e["event_id"], e["seq"], e["site_id"]) for e in stored["items"]] == [
        ("ev-a", 0, NORTH)
    ]


def test_citing_another_sites_evidence_does_not_open_it_to_this_site(
    client: TestClient,
    auth: Headers,
    make_message: Message,
    scoped: dict[str, Any],
    session_factory: sessionmaker[Session],
) -> None:
    """Issue 14, item 5: a site-A event citing site B's evidence sha256 turned a site-A
    operator's 403 on that file into 200."""
    data = b"\xff\xd8\xff south's snapshot"
    sha = hashlib.sha256(data).hexdigest()
    south, north = edge_of(session_factory, SOUTH), edge_of(session_factory, NORTH)
    assert client.put(f"/api/v1/evidence/{sha}", content=data, headers=south).status_code == 201
    evidence = [{"kind": "snapshot", "sha256": sha, "content_type": "image/jpeg", "url": "s.jpg"}]
    own = make_message(event_id="ev-s", site_id=SOUTH, evidence=evidence)
    assert client.post("/api/v1/events", json=own, headers=south).status_code == 201

    citing = make_message(event_id="ev-n", site_id=NORTH, evidence=evidence)
    answer = client.post("/api/v1/events", json=citing, headers=north)

    assert answer.status_code == 201  # the alert itself is kept
    assert client.get(f"/api/v1/evidence/{sha}", headers=scoped["operator"]).status_code == 403
    assert client.head(f"/api/v1/evidence/{sha}", headers=north).status_code == 403
    incidents = client.get("/api/v1/incidents", headers=scoped["operator"]).json()["items"]
    assert [i["evidence"] for i in incidents] == [[]]


def test_an_edge_cannot_upload_evidence_under_another_sites_event(
    client: TestClient, make_message: Message, session_factory: sessionmaker[Session]
) -> None:
    north, south = edge_of(session_factory, NORTH), edge_of(session_factory, SOUTH)
    client.post("/api/v1/events", json=make_message(event_id="ev-n", site_id=NORTH), headers=north)
    data = b"\xff\xd8\xff planted"
    sha = hashlib.sha256(data).hexdigest()

    planted = client.put(
        f"/api/v1/evidence/{sha}", content=data, params={"event_id": "ev-n"}, headers=south
    )
    own = client.put(
        f"/api/v1/evidence/{sha}", content=data, params={"event_id": "ev-n"}, headers=north
    )

    assert (planted.status_code, own.status_code) == (403, 201)


@pytest.mark.parametrize(
    "body",
    [
        {"ends_at": "9999-12-31T23:59:59-10:00"},
        {"starts_at": "0001-01-01T00:00:00+10:00", "ends_at": "2030-01-01T00:00:00Z"},
    ],
)
def test_a_silence_time_beyond_the_calendar_in_utc_is_422(
    client: TestClient, auth: Headers, body: dict[str, str]
) -> None:
    response = client.post("/api/v1/silences", json=body, headers=auth("operator"))

    assert response.status_code == 422


@pytest.mark.parametrize("observed_at", ["9999-12-31T23:59:59-10:00", "0001-01-01T00:00:00+10:00"])
def test_an_event_time_beyond_the_calendar_in_utc_is_422(
    client: TestClient, auth: Headers, make_message: Message, observed_at: str
) -> None:
    response = client.post(
        "/api/v1/events", json=make_message(observed_at=observed_at), headers=auth("edge")
    )

    assert response.status_code == 422
    assert client.get("/api/v1/events", headers=auth("viewer")).json()["total"] == 0


def test_an_ended_silence_stays_on_record_with_who_set_it(
    client: TestClient, auth: Headers
) -> None:
    now = datetime.now(UTC)
    created = client.post(
        "/api/v1/silences",
        json={"site_id": NORTH, "ends_at": (now + timedelta(hours=2)).isoformat()},
        headers=auth("operator"),
    ).json()
    future = client.post(
        "/api/v1/silences",
        json={
            "site_id": NORTH,
            "starts_at": (now + timedelta(hours=5)).isoformat(),
            "ends_at": (now + timedelta(hours=6)).isoformat(),
        },
        headers=auth("operator"),
    ).json()

    for silence in (created, future):
        ended = client.delete(f"/api/v1/silences/{silence['id']}", headers=auth("operator"))
        assert ended.status_code == 204

    assert client.get("/api/v1/silences", headers=auth("viewer")).json()["items"] == []
    kept = client.get("/api/v1/silences", params={"expired": True}, headers=auth("viewer"))
    by_id = {item["id"]: item for item in kept.json()["items"]}
    assert set(by_id) == {created["id"], future["id"]}
    assert all(not item["active"] for item in by_id.values())
    assert by_id[created["id"]]["created_by"] == "test-operator"
    assert by_id[created["id"]]["ends_at"] < created["ends_at"]
    assert by_id[future["id"]]["ends_at"] == future["starts_at"]
    log = client.get("/api/v1/audit", params={"action": "end_silence"}, headers=auth("admin"))
    assert log.json()["total"] == 2
