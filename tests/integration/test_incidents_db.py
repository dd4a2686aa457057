"""Incidents on SQLite and on PostgreSQL: joining at ingestion inside the event transaction,
one incident per situation even when writers race, grouping, actions and escalation."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from common.events import Event
from server.db.models import (
    EventRow,
    EvidenceRow,
    IncidentRow,
    IncidentSituationRow,
    TransitionRow,
)
from server.db.session import make_engine, make_session_factory, migrate, newest_revision
from server.dispatch import parse_dispatch_config
from server.incidents import (
    EVENT_IDS_SHOWN,
    IncidentFilter,
    IncidentPolicy,
    apply_action,
    attach_events,
    escalate_overdue,
    incident_detail,
    list_incidents,
)
from server.ingest import IngestService
from server.repositories import EventRepository, event_to_row
from server.retention import RetentionPolicy, sweep_evidence
from server.schemas import EventFilter
from server.workflow import TransitionNotAllowed
from tests.support.databases import fresh_postgres_url

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def make_event(event_id: str, seq: int = 0, *, t: float = 0.0, **fields: Any) -> Event:
    message: dict[str, Any] = {
        "event_id": event_id,
        "seq": seq,
        "state": "new" if seq == 0 else "update",
        "type": "fire_lane",
        "site_id": "garden-court",
        "camera_id": "gate-east",
        "zone_id": "lane-north",
        "rule_id": "lane-north-blocked",
        "observed_at": T0 + timedelta(seconds=t),
        "pts_s": 100.0 + t,
        "onset_pts_s": 10.0,
        "bbox": (0.1, 0.5, 0.4, 0.9),
        "score": 0.9,
        "details": {"blocked_s": 90.0 + t},
    }
    message.update(fields)
    return Event.model_validate(message)


@pytest.fixture(scope="module")
def postgresql_url() -> Iterator[str]:
    yield from fresh_postgres_url()


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('incidents') / 'zhizhi.db'}"
    migrate(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    with engine.begin() as connection:
        for table in ("incident_transitions", "incident_evidence", "incident_situations"):
            connection.execute(IncidentRow.metadata.tables[table].delete())
        connection.execute(IncidentRow.__table__.delete())
        connection.execute(EventRow.__table__.delete())
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def count(sessions: sessionmaker[Session], column: Any) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count(column))) or 0)


def test_messages_and_incidents_are_stored_together_once(sessions: sessionmaker[Session]) -> None:
    service = IngestService(sessions, clock=lambda: T0)
    batch = [(make_event("a", seq, t=seq), None) for seq in range(3)]

    assert service.ingest_many(batch, source="mqtt") == [True, True, True]
    assert service.ingest_many(batch, source="mqtt") == [False, False, False]

    with sessions() as session:
        (item,), total = list_incidents(session, IncidentFilter(), limit=10, offset=0)
        row = session.get(IncidentRow, item.id)
        assert row is not None
        detail = incident_detail(session, row)
    assert total == 1
    assert (item.alert_count, item.state, item.dwell_s) == (1, "update", 92.0)
    assert [event.seq for event in detail.events] == [0, 1, 2]
    assert [h.action for h in detail.history] == ["report"]


def test_racing_writers_open_one_incident_per_situation(
    db_url: str, sessions: sessionmaker[Session]
) -> None:
    writers = 3
    engines = [make_engine(db_url) for _ in range(writers)]
    barrier = threading.Barrier(writers)
    policy = IncidentPolicy(group_window_s=0)  # no grouping: one incident per situation

    def work(index: int) -> None:
        service = IngestService(make_session_factory(engines[index]), policy=policy)
        barrier.wait()
        for situation in range(20):
            # Each writer sends a different message of the same situations at the same time.
            service.ingest(make_event(f"s{situation}", index, t=index), source="mqtt")

    try:
        with ThreadPoolExecutor(max_workers=writers) as pool:
            list(pool.map(work, range(writers)))
    finally:
        for engine in engines:
            engine.dispose()

    assert count(sessions, EventRow.id) == 60
    assert count(sessions, IncidentRow.id) == 20
    assert count(sessions, IncidentSituationRow.event_id) == 20
    assert count(sessions, TransitionRow.id) == 20  # one "report" each, none orphaned


def _wait_until_blocked(db_url: str, writer: threading.Thread) -> None:
    """PostgreSQL: until another session of this database waits on a lock; SQLite: a moment
    (the writer waits on the database's write lock, nothing to observe)."""
    if not db_url.startswith("postgresql"):
        writer.join(timeout=0.3)
        return
    probe = make_engine(db_url)
    deadline = time.monotonic() + 15
    try:
        while time.monotonic() < deadline and writer.is_alive():
            with probe.connect() as connection:
                waiting = connection.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                )
            if waiting:
                return
            time.sleep(0.02)
        pytest.fail("the second writer never waited on the first")
    finally:
        probe.dispose()


def test_a_writer_that_loses_the_race_for_a_situation_joins_the_winner(
    db_url: str, sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    """A holds its transaction open after opening the incident of situation "r"; B stores the
    next message of "r" meanwhile, cannot see A's link, opens an incident of its own, and
    must end up in A's incident once A commits (PostgreSQL: B's link insert waits, conflicts,
    and B runs again; SQLite: B waits for A's write lock)."""
    caplog.set_level(logging.INFO, logger="server.ingest")
    policy = IncidentPolicy(group_window_s=0)
    first = make_event("r", 0)
    row = event_to_row(first, source="mqtt", edge_id=None, received_at=T0)
    other = make_engine(db_url)
    late = IngestService(make_session_factory(other), policy=policy)
    result: list[bool] = []
    with sessions() as session, session.begin():
        EventRepository(session).insert_new([row])
        attach_events(session, [row], policy, T0)
        writer = threading.Thread(
            target=lambda: result.append(late.ingest(make_event("r", 1, t=1), source="mqtt"))
        )
        writer.start()
        _wait_until_blocked(db_url, writer)  # then A commits
    writer.join(timeout=20)
    other.dispose()

    assert result == [True]
    assert count(sessions, IncidentRow.id) == 1
    assert count(sessions, TransitionRow.id) == 1
    with sessions() as session:
        incident = session.scalars(select(IncidentRow)).one()
    assert (incident.event_ids, incident.alert_count, incident.state) == (["r"], 1, "update")
    if db_url.startswith("postgresql"):
        assert "retrying a batch" in caplog.text


def test_new_alerts_group_into_the_open_incident(sessions: sessionmaker[Session]) -> None:
    service = IngestService(sessions, policy=IncidentPolicy(group_window_s=60))
    for index, t in enumerate([0.0, 30.0, 85.0, 200.0]):
        service.ingest(make_event(f"g{index}", t=t), source="mqtt")

    with sessions() as session:
        items, _ = list_incidents(session, IncidentFilter(), limit=10, offset=0)

    assert sorted((i.event_ids, i.alert_count) for i in items) == [
        (["g0", "g1", "g2"], 3),
        (["g3"], 1),
    ]


def test_a_flood_of_alerts_stays_one_incident_with_a_bounded_list(
    sessions: sessionmaker[Session],
) -> None:
    service = IngestService(sessions, policy=IncidentPolicy(group_window_s=600))
    flood = [(make_event(f"w{i:03d}", t=i * 0.5), None) for i in range(EVENT_IDS_SHOWN + 5)]
    for start in range(0, len(flood), 40):
        service.ingest_many(flood[start : start + 40], source="mqtt")

    with sessions() as session:
        (item,), total = list_incidents(session, IncidentFilter(), limit=10, offset=0)
        row = session.get(IncidentRow, item.id)
        assert row is not None
        detail = incident_detail(session, row)

    assert total == 1
    assert item.alert_count == EVENT_IDS_SHOWN + 5
    assert len(item.event_ids) == EVENT_IDS_SHOWN and item.event_ids[0] == "w000"
    assert len(detail.event_ids) == EVENT_IDS_SHOWN + 5


def test_actions_and_escalation_record_transitions(sessions: sessionmaker[Session]) -> None:
    dispatch = parse_dispatch_config(
        {"rules": [{"id": "r", "assign": "property_management", "escalation": ["community"]}]}
    )
    service = IngestService(sessions, clock=lambda: T0, policy=IncidentPolicy(dispatch=dispatch))
    service.ingest(make_event("x"), source="mqtt")
    service.ingest(make_event("y", zone_id="other"), source="mqtt")
    with sessions() as session:
        first, second = session.scalars(select(IncidentRow.id).order_by(IncidentRow.id)).all()

    with sessions() as session, session.begin():
        apply_action(session, first, "ack", by="ops", at=T0 + timedelta(seconds=5))
        escalated = escalate_overdue(session, dispatch, T0 + timedelta(hours=1))
    with sessions() as session, session.begin(), pytest.raises(TransitionNotAllowed):
        apply_action(session, first, "ack", by="ops", at=T0)

    assert [change.incident_id for change in escalated] == [second]
    with sessions() as session:
        rows = {row.id: row for row in session.scalars(select(IncidentRow))}
        history = session.scalars(
            select(TransitionRow.action).where(TransitionRow.incident_id == second)
        ).all()
    assert rows[first].status == "filed" and rows[first].acked_at == T0 + timedelta(seconds=5)
    assert rows[second].assignee == "community" and rows[second].escalation_level == 1
    assert list(history) == ["report", "escalate"]


def test_the_events_list_keeps_to_the_callers_sites(sessions: sessionmaker[Session]) -> None:
    service = IngestService(sessions, clock=lambda: T0)
    service.ingest(make_event("n", site_id="north-park"), source="http")
    service.ingest(make_event("s", site_id="south-park"), source="http")

    with sessions() as session:
        events = EventRepository(session)
        mine, total = events.list_newest(
            EventFilter(sites=frozenset({"north-park"})), limit=10, offset=0
        )
        _, every = events.list_newest(EventFilter(), limit=10, offset=0)

    assert [event.event_id for event in mine] == ["n"]
    assert (total, every) == (1, 2)


def test_retention_sweeps_past_files_it_keeps(sessions: sessionmaker[Session]) -> None:
    """The oldest files are kept (a type kept longer, a hold): the sweep still reaches the
    expired ones behind them, however many are kept."""
    kept = [f"{index:064x}" for index in range(1, 4)]
    due = [f"{index:064x}" for index in range(11, 13)]
    service = IngestService(sessions, clock=lambda: T0)
    for event_id, event_type, shas in (("old", "falling_object", kept), ("new", "fire_lane", due)):
        evidence = [
            {"kind": "snapshot", "sha256": sha, "content_type": "image/jpeg", "url": f"{sha}.jpg"}
            for sha in shas
        ]
        service.ingest(
            make_event(event_id, type=event_type, zone_id=event_id, evidence=evidence),
            source="http",
        )
    with sessions() as session:
        session.execute(delete(EvidenceRow))
        for age_days, shas in ((100, kept), (50, due)):
            for sha in shas:
                session.add(
                    EvidenceRow(
                        sha256=sha,
                        content_type="image/jpeg",
                        size=1,
                        path=f"{sha[:2]}/{sha[2:4]}/{sha}",
                        created_at=T0 - timedelta(days=age_days),
                    )
                )
        session.commit()
    policy = RetentionPolicy({"falling_object": 180.0, "fire_lane": 30.0}, default_days=30.0)

    with sessions() as session:
        deleted = sweep_evidence(session, Path("/nonexistent-media"), policy, T0, batch=2)
    with sessions() as session:
        left = set(session.scalars(select(EvidenceRow.sha256)))
        session.execute(delete(EvidenceRow))
        session.commit()

    assert deleted == 2
    assert left == set(kept)


def test_a_fresh_database_migrates_to_the_newest_revision(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    migrate(url)
    engine = make_engine(url)
    with engine.connect() as connection:
        version = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    engine.dispose()
    assert version == newest_revision()
