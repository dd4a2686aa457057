"""The command center as its people work it (issue 15), through the REST API on SQLite: the
urgency queue and its counters, overdue that survives escalation, names from the site
directory, what an incident's history records, dwell over grouped situations, the time an
alert was observed, bulk acknowledgement, field workers' orders and their photos."""

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

from common.config import load_site_config
from common.events import (
    BoxLoad,
    CameraLoad,
    CameraStatus,
    DetectorLoad,
    Event,
    LoadProblem,
    RuleCoverage,
    StatusMessage,
)
from server.db.models import AuditRow, EvidenceRow, IncidentEvidenceRow
from server.dispatch import parse_dispatch_config
from server.incidents import IncidentPolicy, escalate_overdue
from server.ingest import IngestService
from server.services.directory import directory_from_config
from server.users import create_user

REPO = Path(__file__).resolve().parents[3]

INCIDENTS = "/api/v1/incidents"
Headers = Callable[[str], dict[str, str]]
Message = Callable[..., dict[str, Any]]
PASSWORD = "correct horse battery"  # noqa: S105 (a test user)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + bytes(range(256)) + b"\xff\xd9"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
NOW = datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def post(client: TestClient, auth: Headers, message: dict[str, Any]) -> None:
    response = client.post("/api/v1/events", json=message, headers=auth("edge"))
    assert response.status_code in (200, 201), response.text


def page(client: TestClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = client.get(INCIDENTS, params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def login(client: TestClient, username: str) -> dict[str, str]:
    response = client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def by_event(client: TestClient, auth: Headers) -> dict[str, dict[str, Any]]:
    return {item["event_id"]: item for item in page(client, auth("viewer"), limit=100)["items"]}


@pytest.fixture
def people(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        create_user(
            session,
            username="wang",
            password=PASSWORD,
            role="operator",
            sites=["*"],
            display_name="王值班",
        )
        create_user(
            session,
            username="zhao",
            password=PASSWORD,
            role="field",
            sites=["garden-court"],
            display_name="赵师傅",
            team="property_management",
        )
        create_user(
            session,
            username="sun",
            password=PASSWORD,
            role="field",
            sites=["garden-court"],
            display_name="孙网格员",
            team="grid_officer",
        )


# The urgency queue and its counters ------------------------------------------------------------


def test_an_unacknowledged_escalated_thrown_object_leads_the_urgency_queue(
    client: TestClient,
    auth: Headers,
    make_message: Message,
    session_factory: sessionmaker[Session],
) -> None:
    """The issue's case: six alerts of a thrown object, escalated, under newer piles."""
    for i in range(6):
        post(
            client,
            auth,
            make_message(
                event_id=f"throw-{i}",
                type="falling_object",
                camera_id="facade-1",
                zone_id="facade",
                rule_id="facade-throw",
                observed_at=iso(NOW - timedelta(minutes=30) + timedelta(seconds=20 * i)),
            ),
        )
    for i in range(5):
        post(
            client,
            auth,
            make_message(
                event_id=f"pile-{i}",
                type="garbage_pile",
                zone_id=f"bins-{i}",
                rule_id=f"bins-{i}",
                observed_at=iso(NOW - timedelta(minutes=5 - i)),
            ),
        )
    lane = by_event(client, auth)["pile-4"]
    client.post(f"{INCIDENTS}/{lane['id']}/ack", headers=auth("operator"))
    with session_factory() as session, session.begin():
        escalated = escalate_overdue(session, parse_dispatch_config({}), NOW + timedelta(hours=2))
    assert len(escalated) == 5  # the throw and the four unacknowledged piles

    newest = page(client, auth("viewer"))["items"]
    urgent = page(client, auth("viewer"), sort="urgency")["items"]

    overdue = page(client, auth("viewer"), overdue="true", severity="critical")["items"]
    assert [item["type"] for item in overdue] == ["falling_object"]
    assert page(client, auth("viewer"), overdue="false")["total"] == 1  # the acknowledged pile
    assert newest[-1]["type"] == "falling_object"  # by time opened, the throw comes last
    assert urgent[0]["type"] == "falling_object"
    assert urgent[0]["alert_count"] == 6
    assert urgent[0]["overdue"] is True
    assert urgent[-1]["event_id"] == "pile-4"  # acknowledged: after every unacknowledged one


def test_counters_and_the_alarm_follow_acknowledgement_and_silences(
    client: TestClient, auth: Headers, make_message: Message
) -> None:
    post(client, auth, make_message(event_id="fall", type="person_fall", zone_id="court"))
    post(client, auth, make_message(event_id="throw", type="falling_object", zone_id="facade"))
    post(client, auth, make_message(event_id="lane"))
    silence = {
        "site_id": "garden-court",
        "camera_id": "gate-east",
        "rule_id": "quiet-rule",
        "ends_at": iso(NOW + timedelta(hours=1)),
    }
    assert client.post("/api/v1/silences", json=silence, headers=auth("operator")).is_success
    post(client, auth, make_message(event_id="quiet", type="person_fall", rule_id="quiet-rule"))
    ids = {key: item["id"] for key, item in by_event(client, auth).items()}

    before = client.get("/api/v1/counters", headers=auth("viewer")).json()
    client.post(f"{INCIDENTS}/{ids['throw']}/ack", headers=auth("operator"))
    after = client.get("/api/v1/counters", headers=auth("viewer")).json()

    assert before["unacknowledged"] == 4
    assert before["urgent"] == 3
    assert before["alarming"] == sorted([ids["fall"], ids["throw"]])  # not the silenced one
    assert after["unacknowledged"] == 3
    assert after["urgent"] == 3  # still open
    assert after["alarming"] == [ids["fall"]]


def test_overdue_stays_after_an_escalation_with_no_chain_to_follow(
    client: TestClient,
    auth: Headers,
    make_message: Message,
    session_factory: sessionmaker[Session],
) -> None:
    """Without a dispatch file the escalation clears the deadline: it is still overdue."""
    post(client, auth, make_message(observed_at=iso(NOW)))
    with session_factory() as session, session.begin():
        (change,) = escalate_overdue(session, parse_dispatch_config({}), NOW + timedelta(hours=1))

    incident = page(client, auth("viewer"))["items"][0]
    counts = client.get("/api/v1/counters", headers=auth("viewer")).json()
    detail = client.get(f"{INCIDENTS}/{change.incident_id}", headers=auth("viewer")).json()

    assert incident["deadline_at"] is None
    assert incident["escalation_level"] == 1
    assert incident["overdue"] is True
    assert counts["overdue"] == 1
    escalation = detail["history"][-1]
    assert escalation["action"] == "escalate"
    assert escalation["system"] is True
    assert escalation["note"] is None  # no English sentence: codes the page translates
    assert escalation["details"] == {"level": 1, "team": None, "reason": "not_acknowledged"}
    client.post(f"{INCIDENTS}/{change.incident_id}/ack", headers=auth("operator"))
    assert page(client, auth("viewer"))["items"][0]["overdue"] is False


# Lists at volume -------------------------------------------------------------------------------


def test_the_list_filters_by_observed_dates_camera_and_open_and_sorts_by_column(
    client: TestClient, auth: Headers, make_message: Message
) -> None:
    day = datetime(2026, 11, 20, tzinfo=UTC)
    for i, camera in enumerate(["gate-east", "gate-west", "gate-east"]):
        post(
            client,
            auth,
            make_message(
                event_id=f"e{i}",
                camera_id=camera,
                zone_id=f"z{i}",
                observed_at=iso(day + timedelta(days=i, hours=3)),
            ),
        )
    post(
        client, auth, make_message(event_id="e0", seq=1, observed_at=iso(day + timedelta(hours=4)))
    )
    post(
        client,
        auth,
        make_message(
            event_id="e0b", zone_id="z0", observed_at=iso(day + timedelta(hours=3, minutes=2))
        ),
    )
    ids = {key: item["id"] for key, item in by_event(client, auth).items()}
    client.post(f"{INCIDENTS}/{ids['e2']}/resolve", headers=auth("operator"))
    viewer = auth("viewer")

    on_day_two = page(
        client, viewer, since=iso(day + timedelta(days=1)), until=iso(day + timedelta(days=2))
    )
    east = page(client, viewer, camera_id="gate-east")
    still_open = page(client, viewer, open="true")
    by_alerts = page(client, viewer, sort="alerts", order="desc")
    by_alerts_up = page(client, viewer, sort="alerts", order="asc")

    assert [item["event_id"] for item in on_day_two["items"]] == ["e1"]
    assert sorted(item["event_id"] for item in east["items"]) == ["e0", "e2"]
    assert sorted(item["event_id"] for item in still_open["items"]) == ["e0", "e1"]
    assert by_alerts["items"][0]["event_id"] == "e0"  # e0b grouped in: two alerts
    assert by_alerts["items"][0]["alert_count"] == 2
    assert by_alerts_up["items"][-1]["event_id"] == "e0"


def test_search_finds_an_incident_by_number_id_part_or_a_registered_name(
    client: TestClient, auth: Headers, make_message: Message
) -> None:
    directory = {
        "name": "演示小区",
        "cameras": {
            "facade-a": {
                "name": "高空抛物 A栋东立面",
                "zones": {"facade": "A栋立面"},
                "rules": {
                    "facade-throw": {"name": "A栋抛物", "type": "falling_object", "zone": "facade"}
                },
            },
            "gate-east": {"name": "东门", "zones": {"lane-north": "北侧消防通道"}, "rules": {}},
        },
    }
    assert (
        client.put(
            "/api/v1/sites/garden-court/directory", json=directory, headers=auth("admin")
        ).status_code
        == 204
    )
    post(
        client,
        auth,
        make_message(
            event_id="throw",
            type="falling_object",
            camera_id="facade-a",
            zone_id="facade",
            rule_id="facade-throw",
        ),
    )
    post(client, auth, make_message(event_id="lane"))
    ids = {key: item["id"] for key, item in by_event(client, auth).items()}
    viewer = auth("viewer")

    def found(text: str) -> list[str]:
        return [item["event_id"] for item in page(client, viewer, q=text)["items"]]

    assert found("A栋") == ["throw"]
    assert found("消防通道") == ["lane"]
    assert found("east") == ["lane"]
    assert found(f"#{ids['throw']}") == ["throw"]
    assert found("nothing like it") == []


# Names -----------------------------------------------------------------------------------------


def test_a_site_config_gives_the_directory_its_names_without_its_sources(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CAM_PASSWORD", "not-for-the-server")
    config = load_site_config(REPO / "configs" / "sites" / "example-garden-court.yaml")

    body = directory_from_config(config)

    assert body.name == "Garden Court"
    camera = body.cameras["gate-east"]
    assert camera.name == "East gate, fire lane and bin store"
    assert camera.zones["lane-east"] == "Fire lane, east gate to block 3"
    assert {rule.zone for rule in camera.rules.values()} <= set(camera.zones)
    sent = body.model_dump_json()
    assert "rtsp" not in sent and "not-for-the-server" not in sent  # sources stay home


def test_sites_list_their_names_and_plan_and_an_edge_registers_only_its_own_site(
    client: TestClient, auth: Headers, session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as session:
        from server.auth import create_token

        edge = create_token(session, "edge", "box of north", sites=["north-park"])
        create_user(session, username="n", password=PASSWORD, role="viewer", sites=["north-park"])
    body = {"name": "北园", "cameras": {"gate": {"name": "北门", "zones": {}, "rules": {}}}}
    edge_headers = {"Authorization": f"Bearer {edge}"}

    own = client.put("/api/v1/sites/north-park/directory", json=body, headers=edge_headers)
    other = client.put("/api/v1/sites/garden-court/directory", json=body, headers=edge_headers)
    operator = client.put("/api/v1/sites/north-park/directory", json=body, headers=auth("operator"))
    bad = client.put(
        "/api/v1/sites/north-park/directory",
        json={"cameras": {"x": {"color": 1}}},
        headers=auth("admin"),
    )
    client.put(
        "/api/v1/sites/garden-court/plan",
        content=PNG,
        headers={**auth("admin"), "Content-Type": "image/png"},
    )

    assert (own.status_code, other.status_code, operator.status_code, bad.status_code) == (
        204,
        403,
        403,
        422,
    )
    everything = client.get("/api/v1/sites", headers=auth("viewer")).json()["items"]
    assert [(s["site_id"], s["name"], s["has_plan"]) for s in everything] == [
        ("garden-court", None, True),
        ("north-park", "北园", False),
    ]
    assert everything[1]["cameras"]["gate"]["name"] == "北门"
    scoped = client.get("/api/v1/sites", headers=login(client, "n")).json()["items"]
    assert [s["site_id"] for s in scoped] == ["north-park"]


# What the history records ----------------------------------------------------------------------


@pytest.mark.usefixtures("people")
def test_the_history_names_people_and_records_the_team_and_false_alarm_category(
    client: TestClient, auth: Headers, make_message: Message
) -> None:
    post(client, auth, make_message(event_id="a"))
    post(client, auth, make_message(event_id="b", zone_id="other"))
    ids = {key: item["id"] for key, item in by_event(client, auth).items()}
    wang = login(client, "wang")

    client.post(f"{INCIDENTS}/{ids['a']}/dispatch", json={"team": "grid_officer"}, headers=wang)
    refused = client.post(
        f"{INCIDENTS}/{ids['b']}/false-alarm", json={"category": "ghost"}, headers=wang
    )
    marked = client.post(
        f"{INCIDENTS}/{ids['b']}/false-alarm",
        json={"category": "authorised_activity", "note": "保洁车"},
        headers=wang,
    )

    dispatched = client.get(f"{INCIDENTS}/{ids['a']}", headers=wang).json()["history"]
    assert dispatched[0]["system"] is True and dispatched[0]["by_name"] is None
    assert dispatched[1]["details"] == {"team": "grid_officer"}
    assert dispatched[1]["by"] == "wang" and dispatched[1]["by_name"] == "王值班"
    assert refused.status_code == 422
    assert marked.status_code == 200
    assert marked.json()["acked_at"] is None  # a false alarm is not 立案
    history = client.get(f"{INCIDENTS}/{ids['b']}", headers=wang).json()["history"]
    assert history[-1]["details"] == {"category": "authorised_activity"}


def test_a_report_from_an_offline_camera_says_why_with_a_code(
    client: TestClient, auth: Headers, make_message: Message, ingest: IngestService
) -> None:
    status = StatusMessage(
        state="online",
        cameras={
            "gate-east": CameraStatus(
                online=False, reason="rtsp connect timeout", reason_code="cannot_open"
            )
        },
    )
    ingest.record_status("garden-court", "box-1", status, datetime.now(UTC))
    post(client, auth, make_message())
    incident = page(client, auth("viewer"))["items"][0]

    report = client.get(f"{INCIDENTS}/{incident['id']}", headers=auth("viewer")).json()["history"][
        0
    ]

    assert incident["inhibited"] is True
    assert report["note"] is None
    assert report["details"] == {"quiet": "inhibited"}


# Measures and times ----------------------------------------------------------------------------


def test_a_lane_dwell_adds_up_its_situations_and_an_end_sets_the_blockage_it_saw(
    client: TestClient, auth: Headers, make_message: Message
) -> None:
    t0 = NOW - timedelta(minutes=10)
    first = {"event_id": "a", "onset_pts_s": 20.0}
    post(client, auth, make_message(**first, seq=0, pts_s=40.0, observed_at=iso(t0)))
    post(
        client,
        auth,
        make_message(
            **first, seq=1, state="update", pts_s=43.0, observed_at=iso(t0 + timedelta(seconds=3))
        ),
    )
    ended = {"cleared_pts_s": 74.0, "last_blocked_pts_s": 54.0}
    post(
        client,
        auth,
        make_message(
            **first,
            seq=2,
            state="end",
            pts_s=74.0,
            details=ended,
            observed_at=iso(t0 + timedelta(seconds=34)),
        ),
    )
    incident = page(client, auth("viewer"))["items"][0]
    assert incident["dwell_s"] == pytest.approx(34.0)  # 20 s → 54 s, not 23 s, nor 54 s
    assert incident["latest_dwell_s"] == pytest.approx(34.0)

    second = {"event_id": "b", "onset_pts_s": 100.0}
    post(
        client,
        auth,
        make_message(**second, seq=0, pts_s=130.0, observed_at=iso(t0 + timedelta(seconds=90))),
    )

    grouped = page(client, auth("viewer"))["items"][0]
    assert grouped["alert_count"] == 2
    assert grouped["dwell_s"] == pytest.approx(34.0 + 30.0)
    assert grouped["latest_dwell_s"] == pytest.approx(30.0)


def test_an_alert_sent_late_from_the_outbox_keeps_the_time_it_was_observed(
    client: TestClient, auth: Headers, make_message: Message
) -> None:
    seen = NOW - timedelta(minutes=42)
    post(client, auth, make_message(observed_at=iso(seen)))

    incident = page(client, auth("viewer"))["items"][0]

    observed = datetime.fromisoformat(incident["first_observed_at"].replace("Z", "+00:00"))
    opened = datetime.fromisoformat(incident["opened_at"].replace("Z", "+00:00"))
    assert abs((observed - seen).total_seconds()) < 0.001
    assert (opened - observed).total_seconds() > 40 * 60


def test_evidence_named_but_not_uploaded_is_pending_then_missing_and_uploaded_is_stored(
    client: TestClient, auth: Headers, make_message: Message
) -> None:
    sha_late = "1a" * 32
    stored = JPEG
    sha_stored = hashlib.sha256(stored).hexdigest()
    upload = client.put(
        f"/api/v1/evidence/{sha_stored}",
        content=stored,
        headers={**auth("edge"), "Content-Type": "image/jpeg"},
    )
    assert upload.status_code == 201
    files = [
        {"kind": "snapshot", "sha256": sha, "content_type": "image/jpeg", "url": "x"}
        for sha in (sha_late, sha_stored)
    ]
    post(client, auth, make_message(event_id="recent", observed_at=iso(NOW), evidence=files))
    post(client, auth, make_message(event_id="old", zone_id="z", evidence=files[:1]))

    found = by_event(client, auth)

    assert [e["state"] for e in found["recent"]["evidence"]] == ["pending", "stored"]
    assert [e["state"] for e in found["old"]["evidence"]] == ["missing"]


# Bulk acknowledgement --------------------------------------------------------------------------


def test_bulk_acknowledge_reports_each_incident(
    client: TestClient, auth: Headers, make_message: Message, session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as session:
        create_user(
            session, username="north", password=PASSWORD, role="operator", sites=["north-park"]
        )
    post(client, auth, make_message(event_id="a", site_id="north-park"))
    post(client, auth, make_message(event_id="b", site_id="north-park", zone_id="z"))
    post(client, auth, make_message(event_id="c", zone_id="y"))
    ids = {key: item["id"] for key, item in by_event(client, auth).items()}
    north = login(client, "north")
    client.post(f"{INCIDENTS}/{ids['b']}/resolve", headers=north)

    answer = client.post(
        f"{INCIDENTS}/bulk-ack", json={"ids": [ids["a"], ids["b"], ids["c"], 999999]}, headers=north
    )
    viewer_refused = client.post(
        f"{INCIDENTS}/bulk-ack", json={"ids": [ids["a"]]}, headers=auth("viewer")
    )

    assert answer.status_code == 200
    assert answer.json()["items"] == [
        {"id": ids["a"], "ok": True, "status": "filed", "error": None},
        {"id": ids["b"], "ok": False, "status": "closed", "error": "not_allowed"},
        {"id": ids["c"], "ok": False, "status": None, "error": "forbidden"},
        {"id": 999999, "ok": False, "status": None, "error": "not_found"},
    ]
    assert viewer_refused.status_code == 403
    found = by_event(client, auth)
    assert found["a"]["status"] == "filed" and found["c"]["status"] == "reported"


# Field workers and their photos ----------------------------------------------------------------


@pytest.mark.usefixtures("people")
def test_a_field_worker_sees_their_teams_orders_and_reports_back_with_photos(
    client: TestClient, auth: Headers, make_message: Message, session_factory: sessionmaker[Session]
) -> None:
    post(client, auth, make_message(event_id="ours"))
    post(client, auth, make_message(event_id="theirs", zone_id="z"))
    post(client, auth, make_message(event_id="nobodys", zone_id="y"))
    ids = {key: item["id"] for key, item in by_event(client, auth).items()}
    wang = login(client, "wang")
    client.post(
        f"{INCIDENTS}/{ids['ours']}/dispatch", json={"team": "property_management"}, headers=wang
    )
    client.post(
        f"{INCIDENTS}/{ids['theirs']}/dispatch", json={"team": "grid_officer"}, headers=wang
    )
    zhao = login(client, "zhao")
    ours = f"{INCIDENTS}/{ids['ours']}"

    mine = page(client, zhao)
    counters = client.get("/api/v1/counters", headers=zhao).json()
    assert [item["event_id"] for item in mine["items"]] == ["ours"]
    assert counters["my_orders"] == 1 and counters["alarming"] == []
    assert client.get(f"{INCIDENTS}/{ids['theirs']}", headers=zhao).status_code == 404
    assert client.post(f"{INCIDENTS}/{ids['theirs']}/handle", headers=zhao).status_code == 404
    assert client.post(f"{INCIDENTS}/{ids['nobodys']}/ack", headers=zhao).status_code == 403

    assert client.post(f"{ours}/handle", headers=zhao).status_code == 200
    jpeg = client.post(
        f"{ours}/photos", content=JPEG, headers={**zhao, "Content-Type": "image/png"}
    )
    png = client.post(f"{ours}/photos", content=PNG, headers={**zhao, "Content-Type": "image/jpeg"})
    again = client.post(f"{ours}/photos", content=JPEG, headers=zhao)
    gif = client.post(
        f"{ours}/photos",
        content=b"GIF89a" + bytes(64),
        headers={**zhao, "Content-Type": "image/jpeg"},
    )
    huge = client.post(f"{ours}/photos", content=b"\xff\xd8\xff" + bytes(9 * 2**20), headers=zhao)
    verify_photo = client.post(
        f"{ours}/photos", params={"stage": "verify"}, content=JPEG, headers=zhao
    )
    not_ours = client.post(f"{INCIDENTS}/{ids['theirs']}/photos", content=JPEG, headers=zhao)

    assert jpeg.status_code == 201 and jpeg.json()["content_type"] == "image/jpeg"  # from the bytes
    assert png.status_code == 201 and png.json()["content_type"] == "image/png"
    assert again.status_code == 201 and again.json()["stored"] is False
    assert (gif.status_code, huge.status_code, verify_photo.status_code, not_ours.status_code) == (
        415,
        413,
        403,
        404,
    )
    sha = hashlib.sha256(JPEG).hexdigest()
    assert jpeg.json()["sha256"] == sha
    with session_factory() as session:
        row = session.get(EvidenceRow, sha)
        assert row is not None and row.size == len(JPEG)
        links = session.scalars(
            select(IncidentEvidenceRow.sha256).where(IncidentEvidenceRow.incident_id == ids["ours"])
        ).all()
        assert sorted(links) == sorted([sha, hashlib.sha256(PNG).hexdigest()])
        uploads = session.scalars(select(AuditRow).where(AuditRow.action == "upload_photo")).all()
        assert [(a.actor, a.details["sha256"]) for a in uploads[:1]] == [("zhao", sha)]

    stranger = client.post(
        f"{ours}/feedback", json={"note": "已清理", "photos": ["ab" * 32]}, headers=zhao
    )
    reported = client.post(
        f"{ours}/feedback", json={"note": "已清理", "photos": [sha]}, headers=zhao
    )
    assert stranger.status_code == 422
    assert reported.status_code == 200 and reported.json()["status"] == "feedback"
    detail = client.get(ours, headers=wang).json()
    photos = [e for e in detail["evidence"] if e["kind"] == "photo"]
    assert [(p["role"], p["by"], p["state"]) for p in photos] == [
        ("feedback", "zhao", "stored")
    ] * 2
    assert detail["history"][-1]["details"] == {"photos": [sha]}
    assert detail["history"][-1]["by_name"] == "赵师傅"
    assert client.post(f"{ours}/verify", headers=zhao).status_code == 403  # 核查 is the center's
    assert client.post(f"{ours}/verify", json={"note": "照片核实"}, headers=wang).status_code == 200


def test_a_field_worker_without_a_team_sees_no_orders(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as session, pytest.raises(ValueError, match="needs a team"):
        create_user(session, username="li", password=PASSWORD, role="field", sites=["*"])


# Devices: the edge's load ----------------------------------------------------------------------


def test_cameras_carry_the_reason_code_and_load_and_edges_the_box_load(
    client: TestClient, auth: Headers, ingest: IngestService
) -> None:
    load = CameraLoad(
        window_s=10,
        state="overloaded",
        camera_fps=25,
        analysis_fps=1.2,
        target_analysis_fps=5,
        detection_fps=1.2,
        dropped_fps=3.8,
        lag_s=4.5,
        detector_wait_ms=820,
        coverage={"lane": RuleCoverage(need_fps=5, got_fps=1.2, coverage=0.24, max_gap_s=2.5)},
        problems=[LoadProblem(code="analysis_starved", params={"rule": "lane", "coverage": 0.24})],
    )
    box = BoxLoad(
        cores=4,
        cpu=0.97,
        process_cpu=3.8,
        memory_mb=1900,
        detector=DetectorLoad(busy=0.99, queue=7),
    )
    status = StatusMessage(
        state="online",
        cameras={
            "gate-east": CameraStatus(
                online=True, reason="frames arriving", reason_code="frames_arriving", load=load
            ),
            "gate-west": CameraStatus(
                online=False, reason="rtsp connect timeout", reason_code="cannot_open"
            ),
        },
        outbox={"pending": 3},
        box=box,
    )
    ingest.record_status("garden-court", "box-1", status, datetime.now(UTC))

    cameras = {
        c["camera_id"]: c
        for c in client.get("/api/v1/cameras", headers=auth("viewer")).json()["items"]
    }
    edges = client.get("/api/v1/edges", headers=auth("viewer")).json()["items"]

    assert cameras["gate-east"]["reason_code"] == "frames_arriving"
    assert cameras["gate-east"]["load"]["state"] == "overloaded"
    assert cameras["gate-east"]["load"]["coverage"]["lane"]["coverage"] == 0.24
    assert cameras["gate-east"]["load"]["problems"][0]["code"] == "analysis_starved"
    assert cameras["gate-west"]["reason_code"] == "cannot_open"
    assert cameras["gate-west"]["load"] is None
    assert edges[0]["box"]["cpu"] == 0.97
    assert edges[0]["box"]["detector"]["queue"] == 7
    ingest.record_status("garden-court", "box-1", StatusMessage(state="offline"), datetime.now(UTC))
    gone = {
        c["camera_id"]: c
        for c in client.get("/api/v1/cameras", headers=auth("viewer")).json()["items"]
    }
    assert gone["gate-east"]["reason_code"] == "edge_offline" and gone["gate-east"]["load"] is None


def test_an_older_edge_without_load_still_shows_its_cameras(
    client: TestClient, auth: Headers, ingest: IngestService
) -> None:
    status = StatusMessage(state="online", cameras={"gate-east": CameraStatus(online=True)})
    ingest.record_status("garden-court", "box-1", status, datetime.now(UTC))

    camera = client.get("/api/v1/cameras", headers=auth("viewer")).json()["items"][0]
    edge = client.get("/api/v1/edges", headers=auth("viewer")).json()["items"][0]

    assert (camera["reason_code"], camera["load"], edge["box"]) == (None, None, None)


def test_the_latest_snapshot_of_a_camera_is_the_newest_stored_one(
    client: TestClient, auth: Headers, make_message: Message, ingest: IngestService
) -> None:
    ingest.record_status(
        "garden-court",
        "box-1",
        StatusMessage(state="online", cameras={"gate-east": CameraStatus(online=True)}),
        NOW,
    )
    older, newer = JPEG, JPEG + b"\x00"
    shas = []
    for data in (older, newer):
        sha = hashlib.sha256(data).hexdigest()
        shas.append(sha)
        client.put(
            f"/api/v1/evidence/{sha}",
            content=data,
            headers={**auth("edge"), "Content-Type": "image/jpeg"},
        )
    snap = [{"kind": "snapshot", "sha256": shas[0], "content_type": "image/jpeg", "url": "x"}]
    post(
        client,
        auth,
        make_message(event_id="a", evidence=snap, observed_at=iso(NOW - timedelta(hours=1))),
    )
    newest = [{"kind": "snapshot", "sha256": shas[1], "content_type": "image/jpeg", "url": "x"}]
    missing = [{"kind": "snapshot", "sha256": "cd" * 32, "content_type": "image/jpeg", "url": "x"}]
    post(
        client,
        auth,
        make_message(
            event_id="b", zone_id="z", evidence=newest, observed_at=iso(NOW - timedelta(minutes=5))
        ),
    )
    post(
        client,
        auth,
        make_message(event_id="c", zone_id="y", evidence=missing, observed_at=iso(NOW)),
    )

    camera = client.get("/api/v1/cameras", headers=auth("viewer")).json()["items"][0]

    assert camera["latest_snapshot"]["sha256"] == shas[1]  # the newest that is stored


def _event(message: dict[str, Any]) -> Event:
    return Event.model_validate(message)


def test_dispatch_config_free_escalation_keeps_unassigned(
    session_factory: sessionmaker[Session], make_message: Message
) -> None:
    service = IngestService(session_factory, clock=lambda: NOW, policy=IncidentPolicy())
    service.ingest(_event(make_message()), source="http")
    with session_factory() as session, session.begin():
        (change,) = escalate_overdue(session, parse_dispatch_config({}), NOW + timedelta(hours=1))
        assert escalate_overdue(session, parse_dispatch_config({}), NOW + timedelta(hours=2)) == []
    assert change.kind == "escalated"
