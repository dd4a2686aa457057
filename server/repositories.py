"""SQL of the server, and nothing else: each repository wraps one session.

Inserts that must be idempotent use the dialect's `INSERT ... ON CONFLICT` (SQLite and
PostgreSQL both have it, and both support RETURNING), so a duplicate is never an error and
two processes inserting the same row at once store it once.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Select, Table, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import InstrumentedAttribute, Session

from common.events import SCHEMA, BoxLoad, Event, StatusMessage
from server.db.models import (
    CameraStatusRow,
    DeadLetterRow,
    EdgeRow,
    EventRow,
    EvidenceRow,
    IncidentEvidenceRow,
    IncidentRow,
    ServerMemberRow,
    TokenRow,
)
from server.schemas import CameraView, EdgeView, EventFilter, EvidenceInfo

EventKey = tuple[str, int]
EDGE_OFFLINE_REASON = "edge offline"


def _table(model: type[Any]) -> Table:
    table = model.__table__
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not mapped to a table")
    return table


def upsert_insert(session: Session, model: type[Any]) -> postgresql.Insert | sqlite.Insert:
    """An INSERT for the session's dialect that offers `on_conflict_do_*`."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(_table(model))
    if name == "sqlite":
        return sqlite.insert(_table(model))
    raise ValueError(f"unsupported database dialect {name!r}")


# Events ---------------------------------------------------------------------------------------


def event_to_row(
    event: Event, *, source: str, edge_id: str | None, received_at: datetime
) -> dict[str, Any]:
    """The column values of one event message."""
    return {
        "event_id": event.event_id,
        "seq": event.seq,
        "state": event.state,
        "type": event.type,
        "site_id": event.site_id,
        "camera_id": event.camera_id,
        "zone_id": event.zone_id,
        "rule_id": event.rule_id,
        "observed_at": event.observed_at,
        "pts_s": event.pts_s,
        "onset_pts_s": event.onset_pts_s,
        "score": event.score,
        "bbox": list(event.bbox),
        "details": event.details,
        "model": None if event.model is None else event.model.model_dump(mode="json"),
        "evidence": [item.model_dump(mode="json") for item in event.evidence],
        "edge_id": edge_id,
        "source": source,
        "received_at": received_at,
    }


def row_to_event(row: EventRow) -> Event:
    """The contract event message stored in `row`."""
    return Event.model_validate(
        {
            "schema": SCHEMA,
            "event_id": row.event_id,
            "seq": row.seq,
            "state": row.state,
            "type": row.type,
            "site_id": row.site_id,
            "camera_id": row.camera_id,
            "zone_id": row.zone_id,
            "rule_id": row.rule_id,
            "observed_at": row.observed_at,
            "pts_s": row.pts_s,
            "onset_pts_s": row.onset_pts_s,
            "score": row.score,
            "bbox": row.bbox,
            "details": row.details,
            "model": row.model,
            "evidence": row.evidence,
        }
    )


def matching(
    query: Select[Any],
    equal: Iterable[tuple[InstrumentedAttribute[Any], object]],
    site_column: InstrumentedAttribute[str],
    sites: Collection[str] | None,
) -> Select[Any]:
    """`query` narrowed to the filters given (a None value: no filter on that column) and to
    the caller's sites (None: every site): one reading of list filters for every list."""
    for column, value in equal:
        if value is not None:
            query = query.where(column == value)
    if sites is not None:
        query = query.where(site_column.in_(sorted(sites)))
    return query


class EventRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def insert_new(self, rows: Sequence[dict[str, Any]]) -> set[EventKey]:
        """Insert rows whose (event_id, seq) is not stored yet; the keys actually inserted."""
        if not rows:
            return set()
        stmt = (
            upsert_insert(self._session, EventRow)
            .on_conflict_do_nothing(index_elements=["event_id", "seq"])
            .returning(_table(EventRow).c.event_id, _table(EventRow).c.seq)
        )
        result = self._session.execute(stmt, list(rows))
        return {(str(row[0]), int(row[1])) for row in result}

    def _filtered(self, query: Select[Any], filters: EventFilter) -> Select[Any]:
        equal = (
            (EventRow.site_id, filters.site_id),
            (EventRow.camera_id, filters.camera_id),
            (EventRow.type, filters.type),
            (EventRow.state, filters.state),
        )
        return matching(query, equal, EventRow.site_id, filters.sites)

    def list_newest(
        self, filters: EventFilter, *, limit: int, offset: int
    ) -> tuple[list[Event], int]:
        """One page of events, newest `observed_at` first, and the total that match."""
        total = self._session.scalar(self._filtered(select(func.count(EventRow.id)), filters))
        query = (
            self._filtered(select(EventRow), filters)
            .order_by(EventRow.observed_at.desc(), EventRow.id.desc())
            .limit(limit)
            .offset(offset)
        )
        rows = self._session.scalars(query).all()
        return [row_to_event(row) for row in rows], int(total or 0)

    def count(self) -> int:
        return int(self._session.scalar(select(func.count(EventRow.id))) or 0)

    def get(self, event_id: str, seq: int) -> EventRow | None:
        query = select(EventRow).where(EventRow.event_id == event_id, EventRow.seq == seq)
        return self._session.scalars(query).one_or_none()

    def owners(self, event_ids: Collection[str]) -> dict[str, set[tuple[str, str]]]:
        """The (site_id, camera_id) each stored event_id was sent for (one, unless taken)."""
        if not event_ids:
            return {}
        query = (
            select(EventRow.event_id, EventRow.site_id, EventRow.camera_id)
            .where(EventRow.event_id.in_(sorted(event_ids)))
            .distinct()
        )
        found: dict[str, set[tuple[str, str]]] = {}
        for event_id, site_id, camera_id in self._session.execute(query):
            found.setdefault(str(event_id), set()).add((str(site_id), str(camera_id)))
        return found


# Edges ----------------------------------------------------------------------------------------


class EdgeRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def upsert_edge(
        self, *, site_id: str, edge_id: str, status: StatusMessage, received_at: datetime
    ) -> None:
        """Store the edge's latest status; an older message never overwrites a newer one."""
        stmt = upsert_insert(self._session, EdgeRow).values(
            site_id=site_id,
            edge_id=edge_id,
            state=status.state,
            last_seen=received_at,
            status=status.model_dump(mode="json"),
        )
        table = _table(EdgeRow)
        stmt = stmt.on_conflict_do_update(
            index_elements=["site_id", "edge_id"],
            set_={
                "state": stmt.excluded.state,
                "last_seen": stmt.excluded.last_seen,
                "status": stmt.excluded.status,
            },
            where=table.c.last_seen <= stmt.excluded.last_seen,
        )
        self._session.execute(stmt)

    def upsert_camera(
        self,
        *,
        site_id: str,
        edge_id: str,
        camera_id: str,
        online: bool,
        reason: str,
        received_at: datetime,
    ) -> None:
        """Store one camera's state; `last_seen` moves only while the camera is online."""
        stmt = upsert_insert(self._session, CameraStatusRow).values(
            site_id=site_id,
            edge_id=edge_id,
            camera_id=camera_id,
            online=online,
            reason=reason[:256],
            last_seen=received_at if online else None,
            updated_at=received_at,
        )
        table = _table(CameraStatusRow)
        stmt = stmt.on_conflict_do_update(
            index_elements=["site_id", "edge_id", "camera_id"],
            set_={
                "online": stmt.excluded.online,
                "reason": stmt.excluded.reason,
                "last_seen": func.coalesce(stmt.excluded.last_seen, table.c.last_seen),
                "updated_at": stmt.excluded.updated_at,
            },
            where=table.c.updated_at <= stmt.excluded.updated_at,
        )
        self._session.execute(stmt)

    def mark_cameras_offline(self, *, site_id: str, edge_id: str, received_at: datetime) -> None:
        """Every camera of an edge that went offline is offline too."""
        self._session.execute(
            update(CameraStatusRow)
            .where(
                CameraStatusRow.site_id == site_id,
                CameraStatusRow.edge_id == edge_id,
                CameraStatusRow.online.is_(True),
                CameraStatusRow.updated_at <= received_at,
            )
            .values(online=False, reason=EDGE_OFFLINE_REASON, updated_at=received_at)
        )

    def count_online(self) -> int:
        query = select(func.count()).select_from(EdgeRow).where(EdgeRow.state == "online")
        return int(self._session.scalar(query) or 0)

    def list_edges(self) -> list[EdgeView]:
        """Every edge with its cameras, by site then edge id."""
        edges = self._session.scalars(select(EdgeRow).order_by(EdgeRow.site_id, EdgeRow.edge_id))
        cameras = self._session.scalars(
            select(CameraStatusRow).order_by(CameraStatusRow.camera_id)
        ).all()
        by_edge: dict[tuple[str, str], list[CameraView]] = {}
        for camera in cameras:
            by_edge.setdefault((camera.site_id, camera.edge_id), []).append(
                CameraView(
                    camera_id=camera.camera_id,
                    online=camera.online,
                    reason=camera.reason,
                    last_seen=camera.last_seen,
                )
            )
        return [_edge_view(edge, by_edge.get((edge.site_id, edge.edge_id), [])) for edge in edges]


def _edge_view(edge: EdgeRow, cameras: list[CameraView]) -> EdgeView:
    outbox = edge.status.get("outbox") if isinstance(edge.status, dict) else None
    box = edge.status.get("box") if isinstance(edge.status, dict) else None
    return EdgeView(
        site_id=edge.site_id,
        edge_id=edge.edge_id,
        state=edge.state,
        online=edge.state == "online",
        last_seen=edge.last_seen,
        cameras=cameras,
        outbox=outbox if isinstance(outbox, dict) else {},
        box=_box_load(box),
    )


def _box_load(raw: object) -> BoxLoad | None:
    """The box's load as stored (None when absent, or unreadable by this server)."""
    if not isinstance(raw, dict):
        return None
    try:
        return BoxLoad.model_validate(raw)
    except ValidationError:
        return None


# Tokens ---------------------------------------------------------------------------------------


class TokenRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(
        self,
        *,
        name: str,
        role: str,
        token_sha256: str,
        created_at: datetime,
        user_id: int | None = None,
        expires_at: datetime | None = None,
        sites: list[str] | None = None,
    ) -> TokenRow:
        row = TokenRow(
            name=name,
            role=role,
            token_sha256=token_sha256,
            created_at=created_at,
            user_id=user_id,
            expires_at=expires_at,
            sites=sites,
        )
        self._session.add(row)
        self._session.flush()
        return row

    def find_active(self, token_sha256: str) -> TokenRow | None:
        query = select(TokenRow).where(
            TokenRow.token_sha256 == token_sha256, TokenRow.revoked_at.is_(None)
        )
        return self._session.scalars(query).one_or_none()

    def revoke(self, token_id: int, *, revoked_at: datetime) -> bool:
        result = self._session.execute(
            update(TokenRow)
            .where(TokenRow.id == token_id, TokenRow.revoked_at.is_(None))
            .values(revoked_at=revoked_at)
        )
        return bool(getattr(result, "rowcount", 0))

    def revoke_of_user(self, user_id: int, *, revoked_at: datetime) -> int:
        """Revoke every live token of a user (its login sessions); how many."""
        result = self._session.execute(
            update(TokenRow)
            .where(TokenRow.user_id == user_id, TokenRow.revoked_at.is_(None))
            .values(revoked_at=revoked_at)
        )
        return int(getattr(result, "rowcount", 0))

    def list_all(self, *, with_sessions: bool) -> list[TokenRow]:
        """Every token, oldest first; login sessions (tokens of a user) only when asked."""
        query = select(TokenRow).order_by(TokenRow.id)
        if not with_sessions:
            query = query.where(TokenRow.user_id.is_(None))
        return list(self._session.scalars(query))


# Evidence -------------------------------------------------------------------------------------


class EvidenceRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def linked_sites(self, sha256s: Collection[str]) -> dict[str, set[str]]:
        """The sites of the incidents each file already belongs to."""
        if not sha256s:
            return {}
        query = (
            select(IncidentEvidenceRow.sha256, IncidentRow.site_id)
            .join(IncidentRow, IncidentRow.id == IncidentEvidenceRow.incident_id)
            .where(IncidentEvidenceRow.sha256.in_(sorted(sha256s)))
            .distinct()
        )
        found: dict[str, set[str]] = {}
        for sha256, site_id in self._session.execute(query):
            found.setdefault(str(sha256), set()).add(str(site_id))
        return found

    def get(self, sha256: str) -> EvidenceRow | None:
        return self._session.get(EvidenceRow, sha256)

    def add_if_new(
        self,
        *,
        sha256: str,
        content_type: str,
        size: int,
        path: str,
        created_at: datetime,
        event_id: str | None,
    ) -> bool:
        """Insert the file's row unless it is there already; True when inserted."""
        stmt = (
            upsert_insert(self._session, EvidenceRow)
            .values(
                sha256=sha256,
                content_type=content_type,
                size=size,
                path=path,
                created_at=created_at,
                event_id=event_id,
            )
            .on_conflict_do_nothing(index_elements=["sha256"])
            .returning(_table(EvidenceRow).c.sha256)
        )
        return self._session.execute(stmt).first() is not None


def evidence_info(row: EvidenceRow) -> EvidenceInfo:
    return EvidenceInfo(
        sha256=row.sha256, content_type=row.content_type, size=row.size, event_id=row.event_id
    )


# Dead letters -----------------------------------------------------------------------------------


class DeadLetterRepository:
    """MQTT messages refused for good (server/services/dead_letters.py)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def keep(self, rows: Sequence[dict[str, Any]], *, max_rows: int) -> None:
        """Insert each letter, or count one more arrival of the same topic and payload (held
        again); then drop the oldest beyond `max_rows`."""
        if not rows:
            return
        stmt = upsert_insert(self._session, DeadLetterRow)
        table = _table(DeadLetterRow)
        stmt = stmt.on_conflict_do_update(
            index_elements=["topic", "payload_sha256"],
            set_={
                "times": table.c.times + 1,
                "last_at": stmt.excluded.last_at,
                "reason": stmt.excluded.reason,
                "detail": stmt.excluded.detail,
                "status": "held",
            },
        )
        for row in sorted(rows, key=lambda r: (r["topic"], r["payload_sha256"])):
            self._session.execute(stmt, row)
        newest = self._session.scalar(select(func.max(DeadLetterRow.id))) or 0
        if newest > max_rows:
            self._session.execute(
                delete(DeadLetterRow).where(DeadLetterRow.id <= newest - max_rows)
            )

    def page(
        self,
        *,
        status: str | None,
        reason: str | None,
        sites: Collection[str] | None,
        limit: int,
        offset: int,
    ) -> tuple[list[DeadLetterRow], int]:
        """Newest first; a scoped caller sees the letters whose topic named one of its sites."""
        query = matching(
            select(DeadLetterRow),
            ((DeadLetterRow.status, status), (DeadLetterRow.reason, reason)),
            DeadLetterRow.site_id,  # type: ignore[arg-type]
            sites,
        )
        total = self._session.scalar(select(func.count()).select_from(query.subquery()))
        rows = self._session.scalars(
            query.order_by(DeadLetterRow.id.desc()).limit(limit).offset(offset)
        ).all()
        return list(rows), int(total or 0)

    def get(self, letter_id: int) -> DeadLetterRow | None:
        return self._session.get(DeadLetterRow, letter_id)

    def counts(self) -> dict[str, int]:
        query = select(DeadLetterRow.status, func.count()).group_by(DeadLetterRow.status)
        return {str(status): int(n) for status, n in self._session.execute(query)}


# Server processes (issue 18) ------------------------------------------------------------------

# Members whose broker session may still be there: heartbeating, or stopped with it kept.
SESSION_KEPT_STATES = ("live", "stopped")


class MemberRepository:
    """The server processes that recorded themselves, by MQTT client id."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def join(
        self,
        *,
        client_id: str,
        group: str | None,
        host: str,
        pid: int,
        now: datetime,
    ) -> None:
        """Record this process as live (a restart under the same id starts its row again)."""
        values = {
            "mqtt_group": group,
            "host": host[:255],
            "pid": pid,
            "started_at": now,
            "heartbeat_at": now,
            "events_taken": 0,
            "events_stored": 0,
            "state": "live",
            "ended_at": None,
            "ended_by": None,
        }
        insert = upsert_insert(self._session, ServerMemberRow).values(client_id=client_id, **values)
        self._session.execute(
            insert.on_conflict_do_update(index_elements=["client_id"], set_=values)
        )

    def heartbeat(self, client_id: str, *, now: datetime, taken: int, stored: int) -> str | None:
        """Refresh this process's row; its state before (None: the row is gone, so join again).
        A member removed by another process while it was alive is live again from here."""
        row = self._session.get(ServerMemberRow, client_id, with_for_update=True)
        if row is None:
            return None
        before = row.state
        row.heartbeat_at, row.events_taken, row.events_stored = now, taken, stored
        row.state, row.ended_at, row.ended_by = "live", None, None
        return before

    def stale(self, *, before: datetime, exclude: str) -> list[ServerMemberRow]:
        """Other members whose session may still be at the broker and whose last heartbeat
        (or stop) is older than `before`, locked (skipped when another process holds them)."""
        query = (
            select(ServerMemberRow)
            .where(
                ServerMemberRow.state.in_(SESSION_KEPT_STATES),
                ServerMemberRow.heartbeat_at < before,
                ServerMemberRow.client_id != exclude,
            )
            .order_by(ServerMemberRow.heartbeat_at)
            .with_for_update(skip_locked=True)
        )
        return list(self._session.scalars(query))

    def live_others(self, *, since: datetime, exclude: str) -> int:
        """Other members that heartbeat since `since`."""
        query = select(func.count()).where(
            ServerMemberRow.state == "live",
            ServerMemberRow.heartbeat_at >= since,
            ServerMemberRow.client_id != exclude,
        )
        return int(self._session.scalar(query) or 0)

    def end(self, client_id: str, *, state: str, now: datetime, by: str) -> None:
        self._session.execute(
            update(ServerMemberRow)
            .where(ServerMemberRow.client_id == client_id)
            .values(state=state, heartbeat_at=now, ended_at=now, ended_by=by)
        )

    def all(self) -> list[ServerMemberRow]:
        query = select(ServerMemberRow).order_by(
            ServerMemberRow.state != "live", ServerMemberRow.client_id
        )
        return list(self._session.scalars(query))
