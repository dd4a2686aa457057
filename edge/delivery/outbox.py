"""The edge's durable outbox: every event message is on disk before it is sent (issue 5).

A SQLite database (WAL, ``synchronous=FULL``) holds

- ``events``: each event message with its topic, in insertion order (rowid), until the server's
  ack for its ``(event_id, seq)`` arrives;
- ``evidence``: the evidence files still to be uploaded (and, for a while, those already done,
  so a file registered twice is not uploaded twice);
- ``counters``: what the quota has shed so far, so the count survives restarts.

When ``add`` or ``add_evidence`` returns, the row has been committed and fsynced: it survives a
``kill -9`` and a power cut. The outbox is bounded by a disk quota that counts the database's
used pages plus the evidence files not yet uploaded; over the quota it sheds evidence files
first, then event records, oldest first, counts them and logs a warning.

One connection is shared by all threads behind a lock; each public method is one short
transaction.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from common.events import Event

logger = logging.getLogger(__name__)

GIB = 1024**3
SCHEMA_VERSION = 1
UPLOADED_KEPT_S = 7 * 24 * 3600.0  # uploaded evidence rows are forgotten after a week

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_sent_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (event_id, seq)
);
CREATE TABLE IF NOT EXISTS evidence (
    sha256 TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    created_at REAL NOT NULL,
    uploaded_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    failed_at REAL,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

EventKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One event message waiting for the server's ack."""

    event_id: str
    seq: int
    topic: str
    payload: str
    created_at: float
    attempts: int
    last_sent_at: float | None = None  # when it was last handed to the broker (None: never)

    @property
    def key(self) -> EventKey:
        return self.event_id, self.seq


@dataclass(frozen=True, slots=True)
class EvidenceItem:
    """One evidence file waiting for upload."""

    sha256: str
    path: Path
    size: int
    content_type: str
    attempts: int


@dataclass(frozen=True, slots=True)
class OutboxStats:
    pending_events: int
    pending_evidence: int
    failed_evidence: int
    shed_events: int
    shed_evidence: int
    bytes: int
    late_acks: int = 0  # re-sent because the ack did not come within resend_after_s (issue 18)

    def as_status(self) -> dict[str, int]:
        """The ``outbox`` field of the status message (contract section 4)."""
        fields = asdict(self)
        fields["pending"] = fields.pop("pending_events")
        return fields


class Outbox:
    """Durable, bounded, thread-safe queue of event messages and evidence files."""

    def __init__(
        self,
        path: Path,
        quota_bytes: int = 2 * GIB,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.quota_bytes = quota_bytes
        self._clock = clock
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._setup()

    # -- lifecycle -------------------------------------------------------------------------

    def _setup(self) -> None:
        with self._lock:
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"outbox {self.path}: cannot use WAL mode (got {mode})")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            cutoff = self._clock() - UPLOADED_KEPT_S
            self._db.execute(
                "DELETE FROM evidence WHERE uploaded_at IS NOT NULL AND uploaded_at < ?", (cutoff,)
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT under the lock; ROLLBACK on any error."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- events ----------------------------------------------------------------------------

    def add(self, event: Event, topic: str) -> bool:
        """Store one event message durably; False if that (event_id, seq) is already queued."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO events (event_id, seq, topic, payload, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (event.event_id, event.seq, topic, event.to_json(), self._clock()),
            )
            added = cursor.rowcount == 1
        if added:
            self.enforce_quota()
        return added

    def due(
        self,
        now: float,
        resend_after_s: float,
        limit: int,
        *,
        sent_before: float | None = None,
        window: int | None = None,
    ) -> list[OutboxItem]:
        """Unacknowledged events to publish now, oldest first.

        Due means never sent, sent at least `resend_after_s` ago, sent before `sent_before`
        (the sender passes the time of its latest connect, so a reconnect sends everything
        again), or "sent" in the future (the clock was set back). With `window`, only the
        oldest `window` unacknowledged events are considered, which bounds how much is in
        flight while the server is not acking.
        """
        cutoff = now - resend_after_s
        before = -math.inf if sent_before is None else sent_before
        with self._lock:
            rows = self._db.execute(
                "SELECT event_id, seq, topic, payload, created_at, attempts, last_sent_at FROM"
                " (SELECT rowid, * FROM events ORDER BY rowid LIMIT ?)"
                " WHERE last_sent_at IS NULL OR last_sent_at <= ? OR last_sent_at < ?"
                " OR last_sent_at > ?"
                " ORDER BY rowid LIMIT ?",
                (-1 if window is None else window, cutoff, before, now, limit),
            ).fetchall()
        return [OutboxItem(*row) for row in rows]

    def mark_sent(self, keys: Iterable[EventKey], now: float, *, late: int = 0) -> None:
        """Record that these events were handed to the broker at `now`; `late` of them are
        re-sends because the server's ack did not come in time (counted, kept across restarts)."""
        params = [(now, event_id, seq) for event_id, seq in keys]
        if not params:
            return
        with self._transaction() as db:
            db.executemany(
                "UPDATE events SET last_sent_at = ?, attempts = attempts + 1"
                " WHERE event_id = ? AND seq = ?",
                params,
            )
            self._count(db, "late_acks", late)

    def ack(self, event_id: str, seq: int) -> bool:
        """The server stored this message: forget it. Returns whether it was still queued."""
        return self.ack_many([(event_id, seq)]) == 1

    def ack_many(self, keys: Iterable[EventKey]) -> int:
        """Forget all these messages in one transaction; returns how many were still queued."""
        params = list(keys)
        if not params:
            return 0
        with self._transaction() as db:
            before = db.total_changes
            db.executemany("DELETE FROM events WHERE event_id = ? AND seq = ?", params)
            return db.total_changes - before

    # -- evidence --------------------------------------------------------------------------

    def add_evidence(self, sha256: str, path: Path, size: int, content_type: str) -> bool:
        """Register a file to upload; False if this sha256 is already known (queued or done)."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO evidence (sha256, path, size, content_type, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (sha256, str(path), size, content_type, self._clock()),
            )
            added = cursor.rowcount == 1
        if added:
            self.enforce_quota()
        return added

    def pending_evidence(self, limit: int) -> list[EvidenceItem]:
        """Files still to upload: fewest attempts first, then oldest, so one bad file that
        keeps failing does not hold up the others."""
        with self._lock:
            rows = self._db.execute(
                "SELECT sha256, path, size, content_type, attempts FROM evidence"
                " WHERE uploaded_at IS NULL AND failed_at IS NULL"
                " ORDER BY attempts, rowid LIMIT ?",
                (limit,),
            ).fetchall()
        return [EvidenceItem(sha, Path(path), size, ctype, n) for sha, path, size, ctype, n in rows]

    def evidence_uploaded(self, sha256: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE evidence SET uploaded_at = ? WHERE sha256 = ?", (self._clock(), sha256)
            )

    def evidence_failed(self, sha256: str, error: str, *, permanent: bool = False) -> None:
        """Count a failed upload; a permanent failure keeps the file but stops retrying it."""
        with self._lock:
            self._db.execute(
                "UPDATE evidence SET attempts = attempts + 1, last_error = ?,"
                " failed_at = CASE WHEN ? THEN ? ELSE failed_at END WHERE sha256 = ?",
                (error, permanent, self._clock(), sha256),
            )

    def evidence_attempts(self, sha256: str) -> tuple[int, str | None, bool] | None:
        """(attempts, last error, failed for good) of one file, or None if it is unknown."""
        with self._lock:
            row = self._db.execute(
                "SELECT attempts, last_error, failed_at IS NOT NULL FROM evidence WHERE sha256 = ?",
                (sha256,),
            ).fetchone()
        return None if row is None else (row[0], row[1], bool(row[2]))

    # -- quota and stats -------------------------------------------------------------------

    def stats(self) -> OutboxStats:
        with self._lock:
            db = self._db
            pending_events = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            pending, failed = db.execute(
                "SELECT COUNT(*) FILTER (WHERE failed_at IS NULL),"
                " COUNT(*) FILTER (WHERE failed_at IS NOT NULL)"
                " FROM evidence WHERE uploaded_at IS NULL"
            ).fetchone()
            counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
            used = self._used_bytes()
        return OutboxStats(
            pending_events=pending_events,
            pending_evidence=pending,
            failed_evidence=failed,
            shed_events=counters.get("shed_events", 0),
            shed_evidence=counters.get("shed_evidence", 0),
            bytes=used,
            late_acks=counters.get("late_acks", 0),
        )

    def _used_bytes(self) -> int:
        """Database pages in use (free pages excluded) plus the files not yet uploaded."""
        db = self._db
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        files = db.execute(
            "SELECT COALESCE(SUM(size), 0) FROM evidence WHERE uploaded_at IS NULL"
        ).fetchone()[0]
        return int((pages - free) * page_size + files)

    def enforce_quota(self) -> None:
        """Over the quota: shed evidence files, then event records, oldest first."""
        with self._lock:
            if self._used_bytes() <= self.quota_bytes:
                return
        with self._transaction() as db:
            files = self._shed_evidence(db)
            events = self._shed_events(db)
            used = self._used_bytes()
        logger.warning(
            "outbox %s over its quota of %d bytes: shed %d evidence file(s) and %d event(s),"
            " now %d bytes",
            self.path,
            self.quota_bytes,
            len(files),
            events,
            used,
        )

    def _shed_evidence(self, db: sqlite3.Connection) -> list[Path]:
        shed: list[Path] = []
        while self._used_bytes() > self.quota_bytes:
            row = db.execute(
                "SELECT rowid, path FROM evidence WHERE uploaded_at IS NULL ORDER BY rowid LIMIT 1"
            ).fetchone()
            if row is None:
                break
            # file first: a crash before COMMIT leaves a row for a missing file (the uploader
            # reports it as failed), never a file that nothing counts
            Path(row[1]).unlink(missing_ok=True)
            db.execute("DELETE FROM evidence WHERE rowid = ?", (row[0],))
            shed.append(Path(row[1]))
        self._count(db, "shed_evidence", len(shed))
        return shed

    def _shed_events(self, db: sqlite3.Connection) -> int:
        shed = 0
        while (used := self._used_bytes()) > self.quota_bytes:
            count = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            if count == 0:
                break
            # delete about as many rows as the excess needs, at least one, then measure again
            per_row = max(1, used // count)
            batch = max(1, min(count, (used - self.quota_bytes) // per_row))
            cursor = db.execute(
                "DELETE FROM events WHERE rowid IN"
                " (SELECT rowid FROM events ORDER BY rowid LIMIT ?)",
                (batch,),
            )
            shed += cursor.rowcount
        self._count(db, "shed_events", shed)
        return shed

    @staticmethod
    def _count(db: sqlite3.Connection, name: str, delta: int) -> None:
        if delta:
            db.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                (name, delta),
            )
