"""Server processes that the system can see (issue 18): membership with heartbeats.

Every `zhizhi server` process records itself in `server_members` by its MQTT client id (host,
pid, started, last heartbeat, the events it took from the shared subscription and stored) and
refreshes its row every `heartbeat_s`. On the same beat it looks for members gone longer than
`grace_s` whose broker session may still be there (`live` ones that stopped heartbeating,
`stopped` ones that kept their session for a restart that never came): it ends that session at
the broker, so the broker stops handing the gone process its turn of the events, marks the
member `removed` and records it in the audit log. Rows are claimed with `FOR UPDATE SKIP
LOCKED`, so with several live processes each gone member is removed once.

A process that stops cleanly leaves: when other live members remain it ends its own session
(their turn covers it at once) and is `left`; the last one keeps its session, so the broker
queues the events for its restart, and is `stopped` (removed after the grace if it never
comes back under that id).

The broker drops whatever it had queued for a session it ends; the edges' outboxes send those
events again after their `resend_after_s` (docs/mqtt.md).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from server import audit
from server.consumers.sessions import SessionNotEnded
from server.db.models import ServerMemberRow
from server.metrics import MEMBERS, MEMBERS_REMOVED
from server.repositories import MemberRepository
from server.schemas import ServerMember

log = logging.getLogger(__name__)

SessionFactory = Callable[[], Session]
AUDIT_ACTION = "remove_server_member"
AUDIT_ROLE = "system"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class MemberIdentity:
    """Who this process is: its MQTT client id (stable per replica), group, host and pid."""

    client_id: str
    group: str | None
    host: str
    pid: int

    @classmethod
    def of_this_process(cls, client_id: str, group: str | None) -> MemberIdentity:
        return cls(client_id, group, socket.gethostname(), os.getpid())


@dataclass(frozen=True, slots=True)
class Counts:
    """Events this process took from the shared subscription, and stored, since it started."""

    taken: int
    stored: int


def member_view(row: ServerMemberRow, now: datetime, heartbeat_s: float) -> ServerMember:
    age = max(0.0, (now - row.heartbeat_at).total_seconds())
    return ServerMember(
        client_id=row.client_id,
        group=row.mqtt_group,
        host=row.host,
        pid=row.pid,
        state=row.state,
        late=row.state == "live" and age > 2 * heartbeat_s,
        started_at=row.started_at,
        heartbeat_at=row.heartbeat_at,
        heartbeat_age_s=round(age, 3),
        events_taken=row.events_taken,
        events_stored=row.events_stored,
        ended_at=row.ended_at,
        ended_by=row.ended_by,
    )


class Membership:
    """This process's membership: join, heartbeat and remove the gone, on its own thread (so
    a long retention sweep on the scheduler's thread never makes this process look gone)."""

    def __init__(
        self,
        session_factory: SessionFactory,
        me: MemberIdentity,
        *,
        grace_s: float,
        heartbeat_s: float,
        counts: Callable[[], Counts],
        end_session: Callable[[str], None],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if grace_s < 2 * heartbeat_s:
            raise ValueError("the grace must be at least two heartbeat periods")
        self.me = me
        self.grace_s = grace_s
        self.heartbeat_s = heartbeat_s
        self._session_factory = session_factory
        self._counts = counts
        self._end_session = end_session
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life cycle ----------------------------------------------------------------------------

    def join(self) -> None:
        with self._session_factory() as session, session.begin():
            MemberRepository(session).join(
                client_id=self.me.client_id,
                group=self.me.group,
                host=self.me.host,
                pid=self.me.pid,
                now=self._clock(),
            )
        log.info(
            "server member %s (group %s) on %s pid %d joined",
            self.me.client_id,
            self.me.group,
            self.me.host,
            self.me.pid,
        )

    def start(self) -> None:
        """Join, then heartbeat and look for gone members every `heartbeat_s`."""
        if self._thread is not None:
            return
        self.join()
        self.tick()
        self._thread = threading.Thread(target=self._loop, name="membership", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self.tick()
            except Exception:  # the database may be away: try again on the next beat
                log.exception(
                    "membership heartbeat failed; trying again in %.0f s", self.heartbeat_s
                )

    def should_end_session(self) -> bool:
        """On a clean stop: end our own session when other live members take our turn."""
        try:
            with self._session_factory() as session:
                since = self._clock() - timedelta(seconds=2 * self.heartbeat_s)
                return (
                    MemberRepository(session).live_others(since=since, exclude=self.me.client_id)
                    > 0
                )
        except Exception:
            log.exception("could not count the other live members; keeping the session")
            return False

    def stop(self, *, session_ended: bool) -> None:
        """Stop heartbeating and record how this process left (`left` or `stopped`)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        state = "left" if session_ended else "stopped"
        try:
            counts = self._counts()
            with self._session_factory() as session, session.begin():
                repo = MemberRepository(session)
                now = self._clock()
                repo.heartbeat(self.me.client_id, now=now, taken=counts.taken, stored=counts.stored)
                repo.end(self.me.client_id, state=state, now=now, by=self.me.client_id)
        except Exception:
            log.exception("could not record that server member %s stopped", self.me.client_id)
            return
        log.info("server member %s %s", self.me.client_id, state)

    # -- one beat ------------------------------------------------------------------------------

    def tick(self) -> list[str]:
        """Heartbeat, then remove the members gone longer than the grace; their client ids."""
        self.heartbeat()
        removed = self.remove_gone()
        self.refresh_metrics()
        return removed

    def heartbeat(self) -> None:
        counts = self._counts()
        with self._session_factory() as session, session.begin():
            before = MemberRepository(session).heartbeat(
                self.me.client_id, now=self._clock(), taken=counts.taken, stored=counts.stored
            )
        if before is None:  # the row is gone (a restored database): record this process again
            self.join()
        elif before == "removed":
            log.warning(
                "server member %s had been removed as gone (no heartbeat for %.0f s); live again",
                self.me.client_id,
                self.grace_s,
            )

    def remove_gone(self) -> list[str]:
        """End the broker session of each member gone longer than the grace (one process does
        each), mark it removed and audit it. A broker that cannot be reached leaves them for the
        next beat."""
        now = self._clock()
        removed: list[str] = []
        with self._session_factory() as session, session.begin():
            repo = MemberRepository(session)
            for row in repo.stale(
                before=now - timedelta(seconds=self.grace_s), exclude=self.me.client_id
            ):
                gone_s = (now - row.heartbeat_at).total_seconds()
                try:
                    self._end_session(row.client_id)
                except SessionNotEnded as error:
                    log.warning(
                        "server member %s is gone (%.0f s) but its session could not be ended: "
                        "%s; trying again in %.0f s",
                        row.client_id,
                        gone_s,
                        error,
                        self.heartbeat_s,
                    )
                    break  # the broker is away: the others would wait as long
                details = {
                    "host": row.host,
                    "pid": row.pid,
                    "group": row.mqtt_group,
                    "state": row.state,
                    "last_heartbeat": row.heartbeat_at.isoformat(),
                    "gone_s": round(gone_s, 1),
                    "grace_s": self.grace_s,
                    "events_taken": row.events_taken,
                }
                repo.end(row.client_id, state="removed", now=now, by=self.me.client_id)
                audit.record(
                    session,
                    actor=self.me.client_id,
                    role=AUDIT_ROLE,
                    action=AUDIT_ACTION,
                    target=f"server {row.client_id}",
                    client_ip="",
                    at=now,
                    details=details,
                )
                MEMBERS_REMOVED.inc()
                removed.append(row.client_id)
                log.warning(
                    "server member %s (%s, pid %d) gone for %.0f s (grace %.0f s): its broker "
                    "session is ended and it is removed from the group; the events queued for it "
                    "come again from the edges' outboxes",
                    row.client_id,
                    row.host,
                    row.pid,
                    gone_s,
                    self.grace_s,
                )
        return removed

    # -- what is seen --------------------------------------------------------------------------

    def members(self) -> list[ServerMember]:
        now = self._clock()
        with self._session_factory() as session:
            rows = MemberRepository(session).all()
            return [member_view(row, now, self.heartbeat_s) for row in rows]

    def refresh_metrics(self) -> None:
        MEMBERS.update(self.members())
