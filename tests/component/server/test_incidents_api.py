"""Incidents through the REST API on SQLite: events join incidents, the lifecycle, roles and
sites, login limits, silences, inhibition, escalation, audit, retention, stats and plans."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from common.events import CameraStatus, Event, StatusMessage
from server.db.models import EvidenceRow, IncidentRow, SilenceRow
from server.dispatch import DispatchConfig, parse_dispatch_config
from server.incidents import IncidentPolicy, escalate_overdue
from server.ingest import IngestService
from server.retention import RetentionPolicy, sweep_evidence
from server.users import create_user

EVENTS = "/api/v1/events"
INCIDENTS = "/api/v1/incidents"
Headers = Callable[[str], dict[str, str]]
Message = Callable[..., dict[str, Any]]
PASSWORD = "correct horse battery"  # noqa: S105 (a test user)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@pytest.fixture
def users(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        create_user(session, username="ops", password=PASSWORD, role="operator", sites=["*"])
        create_user(
            session, username="north", password=PASSWORD, role="operator", sites=["north-park"]
        )
        create_user(session, username="boss", password=PASSWORD, role="admin", sites=["*"])


def login(client: TestClient, username: str) -> dict[str, str]:
    response = client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def post(client: TestClient, auth: Headers, message: dict[str, Any]) -> None:
    response = client.post(EVENTS, json=message, headers=auth("edge"))
    assert response.status_code in (200, 201), response.text


def incidents(client: TestClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = client.get(INCIDENTS, params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def only_incident(client: TestClient, auth: Headers) -> dict[str, Any]:
    page = incidents(client, auth("viewer"))
    assert page["total"] == 1
    item: dict[str, Any] = page["items"][0]
    return item


# Events become incidents -----------------------------------------------------------------------


def test_all_messages_of_a_situation_make_one_incident_whose_state_follows_the_latest(
    client: TestClient, auth: Headers, make_message: Message, observed: Callable[[float], str]
) -> None:
    post(client, auth, make_message(seq=0, state="new", observed_at=observed(0), pts_s=135.0))
    post(client, auth, make_message(seq=1, state="update", observed_at=observed(60), pts_s=195.0))
    post(client, auth, make_message(seq=1, state="update", observed_at=observed(60), pts_s=195.0))
    post(client, auth, make_message(seq=2, state="end", observed_at=observed(90), pts_s=225.0))

    incident = only_incident(client, auth)

    assert incident["status"] == "reported"  # an end never closes the work order
    assert incident["state"] == "end"
    assert incident["event_id"] == "ev-1"
    assert incident["event_ids"] == ["ev-1"]
    assert incident["alert_count"] == 1
    assert incident["severity"] == "high"
    assert incident["dwell_s"] == pytest.approx(225.0 - 15.0)
    assert incident["deadline_at"] is not None
    assert incident["opened_at"].endswith("Z")


def test_repeated_alerts_within_the_window_group_and_later_ones_open_a_new_incident(
    client: TestClient, auth: Headers, make_message: Message, observed: Callable[[float], str]
) -> None:
    post(client, auth, make_message(event_id="a", observed_at=observed(0)))
    post(client, auth, make_message(event_id="b", observed_at=observed(120)))
    post(client, auth, make_message(event_id="c", observed_at=observed(120 + 301)))
    post(client, auth, make_message(event_id="d", observed_at=observed(130), zone_id="other"))

    page = incidents(client, auth("viewer"))

    by_first = {item["event_id"]: item for item in page["items"]}
    assert page["total"] == 3
    assert by_first["a"]["event_ids"] == ["a", "b"]
    assert by_first["a"]["alert_count"] == 2
    assert by_first["c"]["alert_count"] == 1
    assert by_first["d"]["zone_id"] == "other"


def test_a_closed_incident_takes_no_new_alerts(
    client: TestClient, auth: Headers, make_message: Message, observed: Callable[[float], str]
) -> None:
    post(client, auth, make_message(event_id="a", observed_at=observed(0)))
    first = only_incident(client, auth)
    client.post(f"{INCIDENTS}/{first['id']}/resolve", headers=auth("operator"))

    post(client, auth, make_message(event_id="b", observed_at=observed(10)))

    assert incidents(client, auth("viewer"))["total"] == 2


def test_the_incident_detail_carries_its_events_and_history(
    client: TestClient, auth: Headers, make_message: Message, observed: Callable[[float], str]
) -> None:
    sha = "0f" * 32
    evidence = [{"kind": "snapshot", "sha256": sha, "content_type": "image/jpeg", "url": "x.jpg"}]
    post(client, auth, make_message(seq=0, observed_at=observed(0), evidence=evidence))
    post(client, auth, make_message(seq=1, state="update", observed_at=observed(5)))
    incident_id = only_incident(client, auth)["id"]
    client.post(f"{INCIDENTS}/{incident_id}/ack", json={"note": "seen"}, headers=auth("operator"))

    detail = client.get(f"{INCIDENTS}/{incident_id}", headers=auth("viewer")).json()

    assert [event["seq"] for event in detail["events"]] == [0, 1]
    assert detail["evidence"] == [
        {
            "kind": "snapshot",
            "sha256": sha,
            "content_type": "image/jpeg",
            "role": None,
            "url": f"/api/v1/evidence/{sha}",
            "event_id": "ev-1",
            "observed_at": "2026-11-23T02:00:00.000Z",
            "by": None,
            "state": "missing",  # named by the edge, never uploaded, long ago
        }
    ]
    assert [(h["action"], h["from_status"], h["to_status"]) for h in detail["history"]] == [
        ("report", None, "reported"),
        ("ack", "reported", "filed"),
    ]
    assert detail["history"][1]["by"] == "test-operator"
    assert detail["history"][1]["note"] == "seen"


# The lifecycle ---------------------------------------------------------------------------------


def test_an_operator_walks_the_whole_work_order_and_each_step_is_recorded(
    client: TestClient, auth: Headers, make_message: Message
) -> None:
    post(client, auth, make_message())
    incident_id = only_incident(client, auth)["id"]
    steps = [
        ("ack", None, "filed"),
        ("dispatch", {"team": "property_management"}, "dispatched"),
        ("handle", None, "handling"),
        ("feedback", {"note": "car towed"}, "feedback"),
        ("verify", None, "verified"),
        ("resolve", {"note": "done"}, "closed"),
    ]
    for action, body, expected in steps:
        response = client.post(
            f"{INCIDENTS}/{incident_id}/{action}", json=body, headers=auth("operator")
        )
        assert response.status_code == 200, (action, response.text)
        assert response.json()["status"] == expected

    final = client.get(f"{INCIDENTS}/{incident_id}", headers=auth("viewer")).json()
    assert final["assignee"] == "property_management"
    assert final["acked_at"] is not None and final["closed_at"] is not None
    assert final["deadline_at"] is None
    assert len(final["history"]) == 1 + len(steps)
    assert final["allowed_actions"] == ["reopen"]


def test_a_transition_not_allowed_from_the_current_status_is_409(
    client: TestClient, auth: Headers, make_message: Message
) -> None:
    post(client, auth, make_message())
    incident_id = only_incident(client, auth)["id"]

    assert (
        client.post(f"{INCIDENTS}/{incident_id}/verify", headers=auth("operator")).status_code
        == 409
    )
    client.post(f"{INCIDENTS}/{incident_id}/false-alarm", headers=auth("operator"))
    assert (
        client.post(f"{INCIDENTS}/{incident_id}/ack", headers=auth("operator")).status_code == 409
    )
    assert only_incident(client, auth)["status"] == "false_alarm"


def test_feedback_needs_a_note_and_dispatch_a_team(
    client: TestClient, auth: Headers, make_message: Message
) -> None:
    post(client, auth, make_message())
    incident_id = only_incident(client, auth)["id"]

    assert (
        client.post(
            f"{INCIDENTS}/{incident_id}/dispatch", json={}, headers=auth("operator")
        ).status_code
        == 422
    )
    assert (
        client.post(f"{INCIDENTS}/{incident_id}/feedback", headers=auth("operator")).status_code
        == 422
    )


def test_viewers_cannot_act_and_only_admins_reopen(
    client: TestClient, auth: Headers, make_message: Message
) -> None:
    post(client, auth, make_message())
    incident_id = only_incident(client, auth)["id"]

    assert client.post(f"{INCIDENTS}/{incident_id}/ack", headers=auth("viewer")).status_code == 403
    assert client.post(f"{INCIDENTS}/{incident_id}/ack", headers=auth("edge")).status_code == 403
    client.post(f"{INCIDENTS}/{incident_id}/resolve", headers=auth("operator"))
    assert (
        client.post(f"{INCIDENTS}/{incident_id}/reopen", headers=auth("operator")).status_code
        == 403
    )
    reopened = client.post(f"{INCIDENTS}/{incident_id}/reopen", headers=auth("admin"))
    assert reopened.status_code == 200
    assert reopened.json()["status"] == "filed"
    assert reopened.json()["closed_at"] is None


def test_every_incident_route_refuses_anonymous_callers(client: TestClient) -> None:
    for method, path in [
        ("GET", INCIDENTS),
        ("GET", f"{INCIDENTS}/1"),
        ("POST", f"{INCIDENTS}/1/ack"),
        ("GET", "/api/v1/cameras"),
        ("GET", "/api/v1/stats"),
        ("GET", "/api/v1/stream"),
        ("GET", "/api/v1/me"),
        ("GET", "/api/v1/silences"),
        ("GET", "/api/v1/audit"),
    ]:
        assert client.request(method, path).status_code == 401, path


def test_unknown_incidents_are_404(client: TestClient, auth: Headers) -> None:
    assert client.get(f"{INCIDENTS}/999", headers=auth("viewer")).status_code == 404
    assert client.post(f"{INCIDENTS}/999/ack", headers=auth("operator")).status_code == 404


# Users, login and sites ------------------------------------------------------------------------


@pytest.mark.usefixtures("users")
def test_login_returns_a_token_and_the_user_and_logout_revokes_it(client: TestClient) -> None:
    response = client.post("/api/v1/auth/login", json={"username": "north", "password": PASSWORD})

    assert response.status_code == 200
    body = response.json()
    assert body["user"] == {
        "username": "north",
        "display_name": "north",
        "role": "operator",
        "sites": ["north-park"],
        "locale": "zh-CN",
        "team": None,
    }
    headers = {"Authorization": f"Bearer {body['token']}"}
    assert client.get("/api/v1/me", headers=headers).json()["username"] == "north"
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert client.get("/api/v1/me", headers=headers).status_code == 401


def test_an_api_token_without_a_user_describes_itself_with_every_site(
    client: TestClient, auth: Headers
) -> None:
    me = client.get("/api/v1/me", headers=auth("operator")).json()

    assert me == {
        "username": "test-operator",
        "display_name": "test-operator",
        "role": "operator",
        "sites": ["*"],
        "locale": "zh-CN",
        "team": None,
    }


@pytest.mark.usefixtures("users")
def test_wrong_passwords_are_401_then_429_with_retry_after_even_for_the_right_one(
    client: TestClient,
) -> None:
    for _ in range(5):
        wrong = client.post("/api/v1/auth/login", json={"username": "ops", "password": "nope"})
        assert wrong.status_code == 401
    throttled = client.post("/api/v1/auth/login", json={"username": "ops", "password": PASSWORD})

    assert throttled.status_code == 429
    assert 0 < int(throttled.headers["Retry-After"]) <= 900
    other = client.post("/api/v1/auth/login", json={"username": "boss", "password": PASSWORD})
    assert other.status_code == 200  # the limit is per username (and per address, higher)


@pytest.mark.usefixtures("users")
def test_unknown_users_get_the_same_401(client: TestClient) -> None:
    response = client.post("/api/v1/auth/login", json={"username": "ghost", "password": PASSWORD})

    assert response.status_code == 401
    assert response.json()["detail"] == "wrong username or password"


@pytest.mark.usefixtures("users")
def test_a_user_sees_and_acts_on_their_own_sites_only(
    client: TestClient, auth: Headers, make_message: Message
) -> None:
    post(client, auth, make_message(event_id="south-1", site_id="south-park"))
    post(client, auth, make_message(event_id="north-1", site_id="north-park"))
    north = login(client, "north")
    south_id = next(
        item["id"]
        for item in incidents(client, auth("admin"))["items"]
        if item["site_id"] == "south-park"
    )

    page = incidents(client, north)

    assert [item["site_id"] for item in page["items"]] == ["north-park"]
    assert page["total"] == 1
    assert client.get(f"{INCIDENTS}/{south_id}", headers=north).status_code == 403
    assert client.post(f"{INCIDENTS}/{south_id}/ack", headers=north).status_code == 403
    assert (
        client.get("/api/v1/stats", params={"site_id": "south-park"}, headers=north).status_code
        == 403
    )


# Silences, inhibition, escalation --------------------------------------------------------------


def test_a_silenced_incident_is_recorded_but_marked_and_never_escalates(
    client: TestClient,
    auth: Headers,
    make_message: Message,
    session_factory: sessionmaker[Session],
) -> None:
    ends = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    created = client.post(
        "/api/v1/silences",
        json={
            "site_id": "garden-court",
            "camera_id": "gate-east",
            "ends_at": ends,
            "comment": "repaint",
        },
        headers=auth("operator"),
    )
    assert created.status_code == 201
    assert created.json()["created_by"] == "test-operator"
    assert created.json()["active"] is True

    post(client, auth, make_message())
    incident = only_incident(client, auth)
    assert incident["silenced"] is True
    with session_factory() as session, session.begin():
        late = datetime.now(UTC) + timedelta(days=1)
        assert escalate_overdue(session, parse_dispatch_config({}), late) == []

    listed = client.get("/api/v1/silences", headers=auth("viewer")).json()["items"]
    assert [item["comment"] for item in listed] == ["repaint"]
    silence_id = created.json()["id"]
    assert (
        client.delete(f"/api/v1/silences/{silence_id}", headers=auth("viewer")).status_code == 403
    )
    assert (
        client.delete(f"/api/v1/silences/{silence_id}", headers=auth("operator")).status_code == 204
    )
    assert client.get("/api/v1/silences", headers=auth("viewer")).json()["items"] == []


def test_a_silence_must_end_after_it_starts(client: TestClient, auth: Headers) -> None:
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()

    response = client.post("/api/v1/silences", json={"ends_at": past}, headers=auth("operator"))

    assert response.status_code == 422


def test_a_camera_reported_offline_inhibits_its_new_incidents(
    client: TestClient, auth: Headers, make_message: Message, ingest: IngestService
) -> None:
    status = StatusMessage(
        state="online", cameras={"gate-east": CameraStatus(online=False, reason="no signal")}
    )
    ingest.record_status("garden-court", "box-1", status, datetime.now(UTC))

    post(client, auth, make_message())

    incident = only_incident(client, auth)
    assert incident["inhibited"] is True
    cameras = client.get("/api/v1/cameras", headers=auth("viewer")).json()["items"]
    assert cameras == [
        {
            "site_id": "garden-court",
            "edge_id": "box-1",
            "camera_id": "gate-east",
            "online": False,
            "reason": "no signal",
            "reason_code": "other",  # an older edge's words without a code
            "last_seen": None,
            "plan_xy": None,
            "load": None,
            "latest_snapshot": None,
        }
    ]


OPENED = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def _lane_incident_with_a_deadline(
    session_factory: sessionmaker[Session], make_message: Message
) -> tuple[DispatchConfig, datetime]:
    """One fire-lane incident opened at OPENED, due for acknowledgement within 60 s, assigned to
    property management with the grid officer next in the chain."""
    dispatch = parse_dispatch_config(
        {
            "deadlines_s": {"fire_lane": 60},
            "rules": [
                {"id": "lanes", "assign": "property_management", "escalation": ["grid_officer"]}
            ],
        }
    )
    service = IngestService(
        session_factory, clock=lambda: OPENED, policy=IncidentPolicy(dispatch=dispatch)
    )
    service.ingest(Event.model_validate(make_message()), source="http")
    return dispatch, OPENED


def test_an_unacknowledged_incident_escalates_along_its_rule_chain(
    session_factory: sessionmaker[Session], make_message: Message
) -> None:
    dispatch, opened = _lane_incident_with_a_deadline(session_factory, make_message)

    with session_factory() as session, session.begin():
        early = escalate_overdue(session, dispatch, opened + timedelta(seconds=59))
        late = escalate_overdue(session, dispatch, opened + timedelta(seconds=60))
        again = escalate_overdue(session, dispatch, opened + timedelta(hours=5))
    with session_factory() as session:
        row = session.scalars(select(IncidentRow)).one()

    assert early == [] and len(late) == 1 and again == []
    assert (row.assignee, row.escalation_level, row.deadline_at) == ("grid_officer", 1, None)


def test_a_silence_set_after_an_incident_opened_holds_its_escalation_while_it_lasts(
    session_factory: sessionmaker[Session], make_message: Message
) -> None:
    dispatch, opened = _lane_incident_with_a_deadline(session_factory, make_message)
    with session_factory() as session, session.begin():
        session.add(
            SilenceRow(
                site_id="garden-court",
                camera_id="gate-east",
                rule_id=None,
                type=None,
                starts_at=opened + timedelta(seconds=30),
                ends_at=opened + timedelta(minutes=30),
                created_by="ops",
                created_at=opened + timedelta(seconds=30),
                comment="camera being cleaned",
            )
        )

    with session_factory() as session, session.begin():
        during = escalate_overdue(session, dispatch, opened + timedelta(minutes=5))
        after = escalate_overdue(session, dispatch, opened + timedelta(minutes=31))

    assert during == [] and len(after) == 1


# Evidence, audit, retention --------------------------------------------------------------------


def test_every_evidence_view_is_audited_and_the_token_may_come_in_the_query(
    client: TestClient, auth: Headers, tokens: dict[str, str]
) -> None:
    data = b"\xff\xd8\xff jpeg"
    sha = hashlib.sha256(data).hexdigest()
    client.put(
        f"/api/v1/evidence/{sha}",
        content=data,
        headers={**auth("edge"), "Content-Type": "image/jpeg"},
    )

    viewed = client.get(f"/api/v1/evidence/{sha}", params={"token": tokens["viewer"]})
    downloaded = client.get(f"/api/v1/evidence/{sha}?download=true", headers=auth("operator"))

    assert viewed.status_code == 200 and viewed.content == data
    assert downloaded.headers["content-disposition"].startswith("attachment")
    log = client.get("/api/v1/audit", headers=auth("admin")).json()
    entries = [(e["actor"], e["action"], e["target"]) for e in log["items"]]
    assert ("test-viewer", "view_evidence", f"evidence {sha}") in entries
    assert ("test-operator", "download_evidence", f"evidence {sha}") in entries
    assert all(e["client_ip"] for e in log["items"])
    assert client.get("/api/v1/audit", headers=auth("operator")).status_code == 403


@pytest.mark.usefixtures("users")
def test_scoped_users_cannot_open_evidence_of_other_sites(
    client: TestClient, auth: Headers, make_message: Message
) -> None:
    data = b"\xff\xd8\xff south"
    sha = hashlib.sha256(data).hexdigest()
    client.put(f"/api/v1/evidence/{sha}", content=data, headers=auth("edge"))
    evidence = [{"kind": "snapshot", "sha256": sha, "content_type": "image/jpeg", "url": "s.jpg"}]
    post(client, auth, make_message(site_id="south-park", evidence=evidence))

    north = login(client, "north")
    boss = login(client, "boss")

    assert client.get(f"/api/v1/evidence/{sha}", headers=north).status_code == 403
    assert client.get(f"/api/v1/evidence/{sha}", headers=boss).status_code == 200


def test_retention_deletes_expired_evidence_but_keeps_what_is_on_hold(
    client: TestClient,
    auth: Headers,
    make_message: Message,
    session_factory: sessionmaker[Session],
    settings: Any,
) -> None:
    files = [b"\xff\xd8\xff one", b"\xff\xd8\xff two"]
    shas = [hashlib.sha256(data).hexdigest() for data in files]
    for sha, data in zip(shas, files, strict=True):
        client.put(f"/api/v1/evidence/{sha}", content=data, headers=auth("edge"))
    for index, sha in enumerate(shas):
        evidence = [{"kind": "snapshot", "sha256": sha, "content_type": "image/jpeg", "url": "x"}]
        post(
            client, auth, make_message(event_id=f"e{index}", zone_id=f"z{index}", evidence=evidence)
        )
    held = next(i for i in incidents(client, auth("viewer"))["items"] if i["event_id"] == "e1")
    assert (
        client.post(f"{INCIDENTS}/{held['id']}/hold", headers=auth("operator")).status_code == 403
    )
    assert client.post(f"{INCIDENTS}/{held['id']}/hold", headers=auth("admin")).json()["legal_hold"]

    media: Path = settings.media_dir
    later = datetime.now(UTC) + timedelta(days=31)
    policy = RetentionPolicy({"fire_lane": 30.0}, default_days=30.0)
    with session_factory() as session:
        assert sweep_evidence(session, media, policy, datetime.now(UTC)) == 0
        assert sweep_evidence(session, media, policy, later) == 1
    with session_factory() as session:
        left = {row.sha256 for row in session.scalars(select(EvidenceRow))}

    assert left == {shas[1]}
    assert not (media / shas[0][:2] / shas[0][2:4] / shas[0]).exists()
    assert (media / shas[1][:2] / shas[1][2:4] / shas[1]).exists()


# Statistics, cameras, plans --------------------------------------------------------------------


def test_stats_count_per_type_and_day_and_rate_false_alarms(
    client: TestClient, auth: Headers, make_message: Message, observed: Callable[[float], str]
) -> None:
    # counted on the day each alert was observed (one sent late counts on its own day)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=1, microsecond=0)
    now = today.isoformat().replace("+00:00", "Z")
    late = (today - timedelta(days=2)).isoformat().replace("+00:00", "Z")
    for index in range(3):
        post(client, auth, make_message(event_id=f"f{index}", zone_id=f"z{index}", observed_at=now))
    post(
        client,
        auth,
        make_message(event_id="p", type="garbage_pile", rule_id="pile", observed_at=now),
    )
    post(client, auth, make_message(event_id="l", rule_id="late", zone_id="y", observed_at=late))
    ids = {i["event_id"]: i["id"] for i in incidents(client, auth("viewer"))["items"]}
    client.post(f"{INCIDENTS}/{ids['f0']}/false-alarm", headers=auth("operator"))
    client.post(f"{INCIDENTS}/{ids['f1']}/ack", headers=auth("operator"))
    client.post(f"{INCIDENTS}/{ids['f1']}/resolve", headers=auth("operator"))

    stats = client.get("/api/v1/stats", params={"days": 7}, headers=auth("viewer")).json()

    assert stats["per_type_day"] == [
        {"day": late[:10], "type": "fire_lane", "count": 1},
        {"day": now[:10], "type": "fire_lane", "count": 3},
        {"day": now[:10], "type": "garbage_pile", "count": 1},
    ]
    assert stats["time_to_ack_s"]["p50"] is not None and stats["time_to_ack_s"]["p50"] >= 0
    assert stats["time_to_close_s"]["p90"] is not None
    assert stats["false_alarm_rate"][0] == {
        "site_id": "garden-court",
        "camera_id": "gate-east",
        "rule_id": "lane-north-blocked",
        "incidents": 3,
        "false_alarms": 1,
        "rate": pytest.approx(0.3333),
    }


def test_an_admin_uploads_a_plan_and_places_cameras_on_it(
    client: TestClient, auth: Headers, ingest: IngestService, tokens: dict[str, str]
) -> None:
    status = StatusMessage(state="online", cameras={"gate-east": CameraStatus(online=True)})
    ingest.record_status("garden-court", "box-1", status, datetime.now(UTC))
    plan_url = "/api/v1/sites/garden-court/plan"

    refused = client.put(
        plan_url, content=PNG, headers={**auth("operator"), "Content-Type": "image/png"}
    )
    wrong = client.put(
        plan_url, content=b"GIF89a", headers={**auth("admin"), "Content-Type": "image/png"}
    )
    stored = client.put(
        plan_url, content=PNG, headers={**auth("admin"), "Content-Type": "image/png"}
    )
    placed = client.put(
        "/api/v1/sites/garden-court/cameras/gate-east/plan-position",
        json={"x": 0.25, "y": 0.75},
        headers=auth("admin"),
    )

    assert (refused.status_code, wrong.status_code, stored.status_code) == (403, 415, 204)
    assert placed.status_code == 200
    image = client.get(plan_url, params={"token": tokens["viewer"]})
    assert image.content == PNG and image.headers["content-type"] == "image/png"
    cameras = client.get("/api/v1/cameras", headers=auth("viewer")).json()["items"]
    assert cameras[0]["plan_xy"] == [0.25, 0.75]
    assert client.get("/api/v1/sites/other/plan", headers=auth("viewer")).status_code == 404
    outside = client.put(
        "/api/v1/sites/garden-court/cameras/gate-east/plan-position",
        json={"x": 1.5, "y": 0},
        headers=auth("admin"),
    )
    assert outside.status_code == 422
