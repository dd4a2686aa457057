"""The same storage tests on SQLite and on PostgreSQL: schema, exactly-once ingest (also under
concurrent writers), status upserts, the event list query, tokens and evidence records.

PostgreSQL: a fresh database on ZHIZHI_TEST_PG_URL (default postgresql://postgres@127.0.0.1:5432),
dropped afterwards. When it cannot be reached the PostgreSQL cases skip, and fail with CI=true.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from common.events import CameraStatus, Event, StatusMessage
from server.auth import create_token, verify_token
from server.db.models import Base, CameraStatusRow, EdgeRow, EventRow
from server.db.session import make_engine, make_session_factory, migrate, newest_revision
from server.ingest import IngestService
from server.metrics import EDGES_ONLINE
from server.repositories import EventRepository, EvidenceRepository, event_to_row
from server.schemas import EventFilter

pytestmark = pytest.mark.integration

PG_SERVER = os.environ.get("ZHIZHI_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432")
BASE_TIME = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
TABLES = (
    "camera_status",
    "edges",
    "events",
    "api_tokens",
    "evidence",
    "incident_transitions",
    "incident_evidence",
    "incident_situations",
    "incidents",
    "users",
    "login_attempts",
    "audit_log",
    "silences",
    "webhook_deliveries",
    "site_plans",
    "camera_positions",
)


def make_event(event_id: str = "ev-1", seq: int = 0, *, t: float = 0.0, **fields: Any) -> Event:
    message: dict[str, Any] = {
        "event_id": event_id,
        "seq": seq,
        "state": "new" if seq == 0 else "update",
        "type": "fire_lane",
        "site_id": "garden-court",
        "camera_id": "gate-east",
        "zone_id": "lane-north",
        "rule_id": "lane-north-blocked",
        "observed_at": BASE_TIME + timedelta(seconds=t),
        "pts_s": 100.0 + t,
        "onset_pts_s": 10.0,
        "bbox": (0.1, 0.5, 0.4, 0.9),
        "score": 0.9,
        "details": {"blocked_s": 120.5, "blockers": [{"kind": "vehicle", "label": "car"}]},
        "model": {"name": "yolov8n-640", "version": "8.3", "sha256": "ab" * 32},
        "evidence": [
            {"kind": "snapshot", "sha256": "0f" * 32, "content_type": "image/jpeg", "url": "a.jpg"}
        ],
    }
    message.update(fields)
    return Event.model_validate(message)


# Backends --------------------------------------------------------------------------------------


def _unreachable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL is required in CI: {reason}")
    pytest.skip(f"PostgreSQL not reachable: {reason}")


@pytest.fixture(scope="module")
def postgresql_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this module, dropped afterwards."""
    name = f"zhizhi_test_{uuid.uuid4().hex[:12]}"
    admin_url = make_url(f"{PG_SERVER}/postgres").set(drivername="postgresql+psycopg")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as error:
        admin.dispose()
        _unreachable(str(error.orig).strip())
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    migrate(url)
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'zhizhi.db'}"
    migrate(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


def _empty(engine: Engine) -> None:
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        else:
            for table in TABLES:
                connection.execute(text(f"DELETE FROM {table}"))  # noqa: S608 (constant names)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    _empty(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def service(sessions: sessionmaker[Session]) -> IngestService:
    return IngestService(sessions)


def count_events(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(EventRow)) or 0)


# Schema ----------------------------------------------------------------------------------------


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)

    assert differences == []


def test_migrate_again_changes_nothing(engine: Engine, db_url: str) -> None:
    migrate(engine)
    migrate(db_url)

    with engine.connect() as connection:
        assert (
            connection.scalar(text("SELECT version_num FROM alembic_version")) == newest_revision()
        )


def test_sqlite_runs_in_wal_mode_with_foreign_keys(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.connect() as connection:
        pragmas = [
            connection.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        ]

    engine.dispose()
    assert pragmas[:3] == ["wal", 1, 1]  # synchronous 1 = NORMAL
    assert int(pragmas[3] or 0) >= 1000


# Exactly-once ingest ---------------------------------------------------------------------------


def test_an_event_reads_back_as_the_same_message(
    service: IngestService, sessions: sessionmaker[Session]
) -> None:
    event = make_event(observed_at=datetime(2026, 11, 23, 10, 12, 35, 120000, tzinfo=UTC))

    assert service.ingest(event, source="mqtt", edge_id="box-1") is True

    with sessions() as session:
        items, total = EventRepository(session).list_newest(EventFilter(), limit=10, offset=0)
        row = EventRepository(session).get("ev-1", 0)
    assert total == 1
    assert items[0] == event
    assert items[0].to_dict() == event.to_dict()
    assert row is not None
    assert (row.edge_id, row.source) == ("box-1", "mqtt")
    assert row.observed_at == event.observed_at
    assert row.received_at.tzinfo is not None


def test_times_in_other_zones_are_stored_as_the_same_instant(
    service: IngestService, sessions: sessionmaker[Session]
) -> None:
    beijing = timezone(timedelta(hours=8))
    event = make_event(observed_at=datetime(2026, 11, 23, 10, 0, tzinfo=beijing))

    service.ingest(event, source="http")

    with sessions() as session:
        items, _ = EventRepository(session).list_newest(EventFilter(), limit=1, offset=0)
    assert items[0].observed_at == datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    assert items[0].to_dict()["observed_at"] == "2026-11-23T02:00:00.000Z"


def test_a_repeated_event_is_stored_once(service: IngestService, engine: Engine) -> None:
    event = make_event()

    results = [service.ingest(event, source="mqtt") for _ in range(3)]
    next_seq = service.ingest(make_event(seq=1), source="mqtt")

    assert results == [True, False, False]
    assert next_seq is True
    assert count_events(engine) == 2


def test_ingest_many_flags_new_stored_and_repeated_items(
    service: IngestService, engine: Engine
) -> None:
    service.ingest(make_event("old"), source="mqtt")
    batch = [
        (make_event("a"), "box-1"),
        (make_event("old"), "box-1"),
        (make_event("b"), "box-1"),
        (make_event("a"), "box-1"),  # repeated inside the batch
        (make_event("a", 1), "box-1"),
    ]

    assert service.ingest_many(batch, source="mqtt") == [True, False, True, False, True]
    assert service.ingest_many([], source="mqtt") == []
    assert count_events(engine) == 4


def test_an_unknown_source_is_refused(service: IngestService) -> None:
    with pytest.raises(ValueError, match="source"):
        service.ingest(make_event(), source="carrier-pigeon")


def test_a_batch_of_1000_is_stored_exactly_once(service: IngestService, engine: Engine) -> None:
    batch = [(make_event(f"bulk-{i // 4}", i % 4, t=i * 0.1), "box-1") for i in range(1000)]

    first = service.ingest_many(batch, source="mqtt")
    again = service.ingest_many(list(reversed(batch)), source="mqtt")

    assert first == [True] * 1000
    assert again == [False] * 1000
    assert count_events(engine) == 1000


def _race(
    db_url: str, writers: int, work: Callable[[IngestService, int], list[bool]]
) -> list[list[bool]]:
    """Run `work(service, writer_index)` in threads, each on its own engine (like processes)."""
    engines = [make_engine(db_url) for _ in range(writers)]
    barrier = threading.Barrier(writers)

    def run(index: int) -> list[bool]:
        service = IngestService(make_session_factory(engines[index]))
        barrier.wait()
        return work(service, index)

    try:
        with ThreadPoolExecutor(max_workers=writers) as pool:
            return list(pool.map(run, range(writers)))
    finally:
        for engine in engines:
            engine.dispose()


def test_concurrent_writers_store_each_event_once(db_url: str, engine: Engine) -> None:
    events = [make_event(f"race-{i // 3}", i % 3, t=i * 0.01) for i in range(600)]

    def work(service: IngestService, index: int) -> list[bool]:
        shuffle = random.Random(index).shuffle
        flags: list[bool] = []
        for start in range(0, len(events), 50):
            batch = [(event, None) for event in events[start : start + 50]]
            shuffle(batch)  # the same keys at the same time, each writer in its own order
            flags += service.ingest_many(batch, source="mqtt")
        return flags

    results = _race(db_url, 3, work)

    assert sum(sum(flags) for flags in results) == 600
    assert count_events(engine) == 600


def test_writers_racing_on_one_key_store_it_once(db_url: str, engine: Engine) -> None:
    rounds = 25

    def work(service: IngestService, index: int) -> list[bool]:
        return [service.ingest(make_event(f"hot-{r}"), source="mqtt") for r in range(rounds)]

    first, second = _race(db_url, 2, work)

    assert [a + b for a, b in zip(first, second, strict=True)] == [1] * rounds
    assert count_events(engine) == rounds


# The list query --------------------------------------------------------------------------------


def test_list_newest_filters_orders_and_pages(
    service: IngestService, sessions: sessionmaker[Session]
) -> None:
    specs = [
        ("c", 30, "gate-east", "fire_lane", 0),
        ("a", 10, "gate-east", "fire_lane", 0),
        ("e", 50, "facade-1", "falling_object", 0),
        ("b", 20, "facade-1", "falling_object", 0),
        ("a", 60, "gate-east", "fire_lane", 1),
        ("d", 40, "gate-east", "garbage_pile", 0),
    ]
    service.ingest_many(
        [
            (make_event(eid, seq, t=t, camera_id=cam, type=kind), None)
            for eid, t, cam, kind, seq in specs
        ],
        source="mqtt",
    )

    def ids(filters: EventFilter, limit: int = 10, offset: int = 0) -> tuple[list[str], int]:
        with sessions() as session:
            items, total = EventRepository(session).list_newest(filters, limit=limit, offset=offset)
        return [f"{e.event_id}{e.seq}" for e in items], total

    assert ids(EventFilter()) == (["a1", "e0", "d0", "c0", "b0", "a0"], 6)
    assert ids(EventFilter(), limit=2, offset=2) == (["d0", "c0"], 6)
    assert ids(EventFilter(camera_id="facade-1")) == (["e0", "b0"], 2)
    assert ids(EventFilter(type="fire_lane", state="update")) == (["a1"], 1)
    assert ids(EventFilter(site_id="garden-court", type="garbage_pile")) == (["d0"], 1)
    assert ids(EventFilter(site_id="nowhere")) == ([], 0)


def test_events_at_the_same_instant_list_the_later_stored_first(
    service: IngestService, sessions: sessionmaker[Session]
) -> None:
    service.ingest(make_event("first"), source="mqtt")
    service.ingest(make_event("second"), source="mqtt")

    with sessions() as session:
        items, _ = EventRepository(session).list_newest(EventFilter(), limit=10, offset=0)

    assert [e.event_id for e in items] == ["second", "first"]


# Edge status -----------------------------------------------------------------------------------

T0 = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)


def _cameras(sessions: sessionmaker[Session]) -> dict[str, tuple[bool, str, datetime | None]]:
    with sessions() as session:
        rows = session.scalars(select(CameraStatusRow)).all()
        return {r.camera_id: (r.online, r.reason, r.last_seen) for r in rows}


def _edge(sessions: sessionmaker[Session]) -> tuple[str, datetime]:
    with sessions() as session:
        row = session.scalars(select(EdgeRow)).one()
        return row.state, row.last_seen


def test_status_keeps_edge_and_camera_state_and_last_seen(
    service: IngestService, sessions: sessionmaker[Session]
) -> None:
    online = StatusMessage(
        state="online",
        cameras={
            "cam-a": CameraStatus(online=True),
            "cam-b": CameraStatus(online=False, reason="no signal"),
        },
    )
    service.record_status("garden-court", "box-1", online, T0)

    assert _edge(sessions) == ("online", T0)
    assert _cameras(sessions) == {"cam-a": (True, "", T0), "cam-b": (False, "no signal", None)}
    assert EDGES_ONLINE._value.get() == 1

    later = T0 + timedelta(minutes=1)
    service.record_status("garden-court", "box-1", StatusMessage(state="offline"), later)

    assert _edge(sessions) == ("offline", later)
    assert _cameras(sessions) == {
        "cam-a": (False, "edge offline", T0),  # last seen online at T0
        "cam-b": (False, "no signal", None),
    }
    assert EDGES_ONLINE._value.get() == 0


def test_an_older_status_does_not_overwrite_a_newer_one(
    service: IngestService, sessions: sessionmaker[Session]
) -> None:
    later = T0 + timedelta(minutes=5)
    service.record_status(
        "garden-court",
        "box-1",
        StatusMessage(state="online", cameras={"cam-a": CameraStatus(online=True)}),
        later,
    )
    service.record_status(
        "garden-court",
        "box-1",
        StatusMessage(state="offline", cameras={"cam-a": CameraStatus(online=False)}),
        T0,
    )

    assert _edge(sessions) == ("online", later)
    assert _cameras(sessions) == {"cam-a": (True, "", later)}


def test_edges_online_counts_every_edge(service: IngestService) -> None:
    for edge_id in ("box-1", "box-2", "box-3"):
        service.record_status("garden-court", edge_id, StatusMessage(state="online"), T0)
    service.record_status(
        "garden-court", "box-2", StatusMessage(state="offline"), T0 + timedelta(seconds=1)
    )

    assert EDGES_ONLINE._value.get() == 2


# Tokens and evidence ---------------------------------------------------------------------------


def test_tokens_verify_on_this_backend(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        token = create_token(session, "operator", "desk")
        principal = verify_token(session, token)
        assert verify_token(session, token + "x") is None

    assert principal is not None
    assert principal.role == "operator"


def test_an_evidence_record_is_added_once(sessions: sessionmaker[Session]) -> None:
    record: dict[str, Any] = {
        "sha256": "cd" * 32,
        "content_type": "video/mp4",
        "size": 5_000_000_000,  # above 32 bits
        "path": "cd/cd/" + "cd" * 32,
        "created_at": T0,
        "event_id": "ev-1",
    }
    with sessions() as session, session.begin():
        added = [EvidenceRepository(session).add_if_new(**record) for _ in range(2)]
    with sessions() as session:
        row = EvidenceRepository(session).get("cd" * 32)

    assert added == [True, False]
    assert row is not None
    assert (row.size, row.content_type, row.created_at) == (5_000_000_000, "video/mp4", T0)


def test_file_databases_live_where_the_url_says(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/nested/dir/zhizhi.db"

    migrate(url)

    assert (tmp_path / "nested" / "dir" / "zhizhi.db").is_file()


def test_a_deadlocked_batch_is_retried_not_lost(postgresql_url: str) -> None:
    """Another transaction takes the batch's keys in the opposite order: PostgreSQL aborts the
    batch (the first to wait) as the deadlock victim, and the service runs it again."""
    engine = make_engine(postgresql_url)
    _empty(engine)
    service = IngestService(make_session_factory(engine))
    first, second = make_event("dl-a"), make_event("dl-b")
    rows = {
        e.event_id: event_to_row(e, source="mqtt", edge_id=None, received_at=T0)
        for e in (first, second)
    }
    try:
        with engine.connect() as other:
            other_repo = EventRepository(Session(bind=other))
            other.begin()
            other_repo.insert_new([rows["dl-b"]])
            with ThreadPoolExecutor(max_workers=1) as pool:
                batch = pool.submit(
                    service.ingest_many, [(first, None), (second, None)], source="mqtt"
                )
                _wait_for_a_lock_wait(engine)
                other_repo.insert_new([rows["dl-a"]])  # closes the cycle
                other.commit()
                flags = batch.result(timeout=30)
        assert flags == [False, False]  # the other transaction stored both first
        assert count_events(engine) == 2
    finally:
        engine.dispose()


def _wait_for_a_lock_wait(engine: Engine) -> None:
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    for _ in range(200):
        with engine.connect() as connection:
            if connection.scalar(query):
                return
        time.sleep(0.01)
    raise AssertionError("the batch never waited on the other transaction")
