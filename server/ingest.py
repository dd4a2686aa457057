"""The ingest service: store each event message once, and keep each edge's online state.

The MQTT consumer and `POST /api/v1/events` both call it; it knows nothing about either. A
batch is one transaction (`INSERT ... ON CONFLICT DO NOTHING ... RETURNING`), rows sorted by
key so two processes inserting overlapping batches lock in the same order and cannot
deadlock; a transient conflict (deadlock, serialisation failure, SQLite busy) is retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.orm import Session

from common.events import Event, StatusMessage
from server.db.models import SOURCES
from server.errors import ForeignIds, UnstorableInput
from server.incidents import IncidentChange, IncidentPolicy, SituationRace, attach_events
from server.metrics import (
    EDGE_LATE_ACKS,
    EDGES_ONLINE,
    EVENT_AGE,
    EVENTS_INGESTED,
    INGEST_LATENCY,
)
from server.repositories import (
    EDGE_OFFLINE_REASON,
    EdgeRepository,
    EventKey,
    EventRepository,
    EvidenceRepository,
    event_to_row,
)
from server.services import dead_letters
from server.services.dead_letters import DeadLetter

log = logging.getLogger(__name__)

SessionFactory = Callable[[], Session]


class IngestListener(Protocol):
    """Told after each commit what changed (the notifier: live push and webhooks)."""

    def incidents_changed(self, changes: Sequence[IncidentChange]) -> None: ...

    def cameras_changed(self, site_id: str, edge_id: str) -> None: ...


# Writes what must commit with an ingest (webhook deliveries); returns the changes as written.
OutboxWriter = Callable[[Session, list[IncidentChange]], list[IncidentChange]]

TRANSIENT_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected
MAX_ATTEMPTS = 4


def utc_now() -> datetime:
    return datetime.now(UTC)


def utc_representable(moment: datetime) -> bool:
    """Whether an aware time can be stored (as UTC): 9999-12-31T23:00-10:00 cannot."""
    try:
        moment.astimezone(UTC)
    except OverflowError:
        return False
    return True


def is_transient(error: DBAPIError) -> bool:
    """A failure that succeeds when the transaction is simply run again."""
    if error.connection_invalidated:
        return True
    if getattr(error.orig, "sqlstate", None) in TRANSIENT_SQLSTATES:
        return True
    return "database is locked" in str(error.orig)


def refused_as_data(error: Exception) -> bool:
    """A failure caused by the values written, not by the database being away: a data or
    integrity error (SQLSTATE classes 22, 23), or a value the driver cannot send at all."""
    if isinstance(error, DataError | IntegrityError):
        return True
    sqlstate = getattr(getattr(error, "orig", None), "sqlstate", None) or ""
    if sqlstate[:2] in ("22", "23"):
        return True
    # Raised while binding a parameter (before any connection is used): a value no column takes.
    return isinstance(error, StatementError) and not isinstance(error, DBAPIError)


@contextmanager
def unstorable_as_input() -> Iterator[None]:
    """Turn a database refusal of the values themselves into UnstorableInput."""
    try:
        yield
    except StatementError as error:
        if not refused_as_data(error):
            raise
        cause = str(getattr(error, "orig", None) or error).partition("\n")[0]
        raise UnstorableInput(f"the database refused a value: {cause[:200]}") from error


def own_evidence_only(session: Session, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows` for joining incidents, without evidence that already belongs to an incident of
    another site (the event row keeps what was sent): citing a file's sha256 must not hand
    its site's file to another site's users (issue 14)."""
    wanted = {item.get("sha256") for row in rows for item in row["evidence"]}
    owners = EvidenceRepository(session).linked_sites({str(s) for s in wanted if s})
    kept = []
    for row in rows:
        own = [
            item
            for item in row["evidence"]
            if row["site_id"] in owners.get(str(item.get("sha256")), {row["site_id"]})
        ]
        if len(own) != len(row["evidence"]):
            log.warning(
                "event %s/%s of site %s cites evidence of another site: not attached",
                row["event_id"],
                row["seq"],
                row["site_id"],
            )
            row = {**row, "evidence": own}
        kept.append(row)
    return kept


def first_occurrences(keys: Sequence[EventKey]) -> list[bool]:
    """True for the first appearance of each key in `keys`, False for its repeats."""
    seen: set[EventKey] = set()
    flags = []
    for key in keys:
        flags.append(key not in seen)
        seen.add(key)
    return flags


class IngestService:
    """Exactly-once storage of event messages, and edge status, from any number of callers."""

    def __init__(
        self,
        session_factory: SessionFactory,
        *,
        clock: Callable[[], datetime] = utc_now,
        policy: IncidentPolicy | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._clock = clock
        self.policy = policy or IncidentPolicy()
        self._listeners: list[IngestListener] = []
        self._outboxes: list[OutboxWriter] = []

    def add_listener(self, listener: IngestListener) -> None:
        """Call `listener` after each commit that changed incidents or cameras."""
        self._listeners.append(listener)

    def add_outbox(self, writer: OutboxWriter) -> None:
        """Call `writer` inside each ingest transaction that changed incidents (it writes the
        webhook deliveries and the live push with the change: Notifier.write_outbox)."""
        self._outboxes.append(writer)

    def ingest(self, event: Event, *, source: str, edge_id: str | None = None) -> bool:
        """Store one event; True when newly stored, False when (event_id, seq) was stored."""
        return self.ingest_many([(event, edge_id)], source=source)[0]

    def ingest_many(self, items: Sequence[tuple[Event, str | None]], *, source: str) -> list[bool]:
        """Store (event, edge_id) pairs in one transaction; per item, True when newly stored.

        A key repeated inside the batch is stored once: its first item is True, the rest False.
        """
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        if not items:
            return []
        refused = self.foreign_ids(items)
        if refused:
            raise ForeignIds(refused)
        keys = [(event.event_id, event.seq) for event, _ in items]
        first = first_occurrences(keys)
        received_at = self._clock()
        rows = sorted(
            (
                event_to_row(event, source=source, edge_id=edge_id, received_at=received_at)
                for (event, edge_id), is_first in zip(items, first, strict=True)
                if is_first
            ),
            key=lambda row: (row["event_id"], row["seq"]),
        )
        started = time.perf_counter()
        with unstorable_as_input():
            inserted, changes = self._insert_with_retry(rows, received_at)
        INGEST_LATENCY.labels(source).observe(time.perf_counter() - started)
        results = [is_first and key in inserted for key, is_first in zip(keys, first, strict=True)]
        self._count(items, results, source, self._clock())
        if changes:
            for listener in self._listeners:
                listener.incidents_changed(changes)
        return results

    def _insert_with_retry(
        self, rows: list[dict[str, Any]], received_at: datetime
    ) -> tuple[set[EventKey], list[IncidentChange]]:
        """Insert the new rows and join them to incidents, in one transaction."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                with self._session_factory() as session, session.begin():
                    inserted = EventRepository(session).insert_new(rows)
                    fresh = [row for row in rows if (row["event_id"], row["seq"]) in inserted]
                    fresh = own_evidence_only(session, fresh)
                    changes = attach_events(session, fresh, self.policy, received_at)
                    for writer in self._outboxes:
                        changes = writer(session, changes)
                    return inserted, changes
            except DBAPIError as error:
                if attempt == MAX_ATTEMPTS or not is_transient(error):
                    raise
                log.warning(
                    "transient database error on attempt %s of %s, retrying: %s",
                    attempt,
                    MAX_ATTEMPTS,
                    error.orig,
                )
                time.sleep(0.01 * 2**attempt)
            except SituationRace as race:
                if attempt == MAX_ATTEMPTS:
                    raise
                log.info("retrying a batch: %s", race)
                time.sleep(0.01 * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _count(
        items: Sequence[tuple[Event, str | None]],
        results: list[bool],
        source: str,
        now: datetime,
    ) -> None:
        stored = sum(results)
        if stored:
            EVENTS_INGESTED.labels(source, "stored").inc(stored)
        if len(results) - stored:
            EVENTS_INGESTED.labels(source, "duplicate").inc(len(results) - stored)
        age = EVENT_AGE.labels(source)
        for (event, _), is_new in zip(items, results, strict=True):
            if is_new:
                age.observe(max(0.0, (now - event.observed_at).total_seconds()))

    def foreign_ids(self, items: Sequence[tuple[Event, str | None]]) -> dict[int, str]:
        """Items whose event_id was stored for another site or camera (or an earlier item of
        this batch claims it so), by index: the id is checked against the sender's site
        before it is used (issue 14: an edge of site B ended site A's incident)."""
        with self._session_factory() as session:
            owners = EventRepository(session).owners({event.event_id for event, _ in items})
        refused: dict[int, str] = {}
        for index, (event, _) in enumerate(items):
            claim = (event.site_id, event.camera_id)
            known = owners.setdefault(event.event_id, {claim})
            if known != {claim}:
                refused[index] = "event_id belongs to another site or camera"
        return refused

    def keep_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Keep MQTT messages refused for good (server/services/dead_letters.py)."""
        dead_letters.keep(self._session_factory, letters)

    def available(self) -> bool:
        """Whether the database answers `SELECT 1` now."""
        try:
            with self._session_factory() as session:
                session.execute(text("SELECT 1"))
        except Exception as error:  # any driver or network failure: not available
            log.warning("database does not answer: %s", str(error).partition("\n")[0][:200])
            return False
        return True

    def record_status(
        self, site_id: str, edge_id: str, status: StatusMessage, received_at: datetime
    ) -> None:
        """Store an edge's status message and its cameras' states (upserts, one transaction).

        An `offline` status (the last will, or a clean shutdown) takes every camera of the
        edge offline as well. A message older than the stored one changes nothing.
        """
        with unstorable_as_input(), self._session_factory() as session, session.begin():
            edges = EdgeRepository(session)
            edges.upsert_edge(
                site_id=site_id, edge_id=edge_id, status=status, received_at=received_at
            )
            for camera_id, camera in sorted(status.cameras.items()):
                edges.upsert_camera(
                    site_id=site_id,
                    edge_id=edge_id,
                    camera_id=camera_id,
                    online=camera.online and status.state == "online",
                    reason=camera.reason
                    if status.state == "online"
                    else camera.reason or EDGE_OFFLINE_REASON,
                    received_at=received_at,
                )
            if status.state == "offline":
                edges.mark_cameras_offline(
                    site_id=site_id, edge_id=edge_id, received_at=received_at
                )
            online = edges.count_online()
        EDGES_ONLINE.set(online)
        if "late_acks" in status.outbox:  # the edge's end-to-end latency guard (issue 18)
            EDGE_LATE_ACKS.labels(site_id, edge_id).set(status.outbox["late_acks"])
        log.info("edge %s/%s is %s (%d edges online)", site_id, edge_id, status.state, online)
        for listener in self._listeners:
            listener.cameras_changed(site_id, edge_id)

    def refresh_edges_online(self) -> int:
        """Set the edges_online gauge from the database (call once at start-up)."""
        with self._session_factory() as session:
            online = EdgeRepository(session).count_online()
        EDGES_ONLINE.set(online)
        return online
