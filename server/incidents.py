"""Incidents (work orders): events join them at ingestion, operators move them through the
lifecycle, the periodic check escalates the ones nobody acknowledged.

`attach_events` runs inside the ingest transaction, on the rows that transaction inserted, so an
event message is stored and joins its incident exactly once, or neither happens. All messages of
one `event_id` belong to one incident (a unique link per event_id); a new situation of the same
site, camera, rule and zone within the group window joins the open incident (Alertmanager-style)
instead of opening another. An `end` message updates `state` and never closes the work order.
A camera reported offline makes its new incidents `inhibited`: recorded, never notified.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import ColumnElement, Select, and_, case, false, func, or_, select, tuple_
from sqlalchemy.orm import Session

from common.events import Event
from server.db.models import (
    CameraStatusRow,
    EventRow,
    EvidenceRow,
    IncidentEvidenceRow,
    IncidentRow,
    IncidentSituationRow,
    SilenceRow,
    TransitionRow,
    UserRow,
)
from server.dispatch import DispatchConfig, assign, escalate
from server.repositories import matching, row_to_event, upsert_insert
from server.schemas import (
    EvidenceRef,
    IncidentDetail,
    IncidentView,
    TransitionView,
)
from server.workflow import (
    CLOSED_STATUSES,
    DWELL_TYPES,
    OPEN_STATUSES,
    SEVERITY_RANK,
    GroupCandidate,
    Matchers,
    SilenceWindow,
    allowed_actions,
    choose_group,
    fold_span,
    is_overdue,
    next_status,
    severity_of,
    silence_applies,
    situation_span,
    total_span,
)

SYSTEM = "system"
EVIDENCE_URL = "/api/v1/evidence/{sha256}"
# Situations listed in an incident's `event_ids` in lists and on the stream (a camera crying
# wolf may group thousands; `alert_count` has the number, the detail view lists them all).
EVENT_IDS_SHOWN = 100
# An evidence file the edge named but has not uploaded yet is "pending" this long after the
# latest message, "missing" after (the edge retries uploads for a while, then gives up).
EVIDENCE_PENDING_S = 600.0
ChangeKind = Literal["created", "updated", "transition", "escalated", "hold"]


@dataclass(frozen=True, slots=True)
class IncidentPolicy:
    """How events become incidents: the group window and the dispatch rules."""

    group_window_s: float = 300.0
    dispatch: DispatchConfig = field(default_factory=DispatchConfig)


@dataclass(frozen=True, slots=True)
class IncidentChange:
    """Something the notifiers should hear about once the transaction has committed."""

    incident_id: int
    kind: ChangeKind
    notify: bool  # False for silenced or inhibited incidents (pushed, never sent out)
    # Its webhook deliveries were written in the transaction that made the change (the
    # transactional outbox, issue 16): the notifier only pushes it live.
    webhooks_queued: bool = False
    # Its live push went out with that transaction too (PostgreSQL NOTIFY, sent at commit).
    pushed: bool = False


SortKey = Literal["urgency", "observed", "opened", "severity", "status", "alerts", "camera"]


@dataclass(frozen=True, slots=True)
class IncidentFilter:
    status: str | None = None
    site_id: str | None = None
    type: str | None = None
    camera_id: str | None = None
    sites: frozenset[str] | None = None  # the caller's sites; None: every site
    open: bool | None = None  # True: not closed nor a false alarm; False: closed ones
    assignee: str | None = None  # the team an order is dispatched to (我的工单)
    since: datetime | None = None  # first alert observed at or after
    until: datetime | None = None  # first alert observed before
    text: str | None = None  # a search: incident id, or part of a camera, zone or rule id
    camera_ids: frozenset[str] | None = None  # cameras whose names matched the search
    zone_ids: frozenset[str] | None = None  # zones whose names matched the search
    severity: str | None = None
    overdue: bool | None = None  # True: not acknowledged in time (as of `now`)
    now: datetime | None = None  # for `overdue`


@dataclass(frozen=True, slots=True)
class Counters:
    """The header's counters over the caller's open incidents."""

    unacknowledged: int  # 未处理: still reported
    urgent: int  # 紧急: open and critical
    overdue: int  # 已超时: not acknowledged in time
    alarming: list[int]  # critical, reported, neither silenced nor inhibited: the alarm rings


class SituationRace(Exception):
    """Another writer joined one of the batch's situations first; run the transaction again."""


class IncidentNotFound(LookupError):
    """No incident with that id (or none the caller may see)."""


# Ingestion -------------------------------------------------------------------------------------


def attach_events(
    session: Session, rows: Sequence[dict[str, Any]], policy: IncidentPolicy, now: datetime
) -> list[IncidentChange]:
    """Join each newly stored event row to its incident, in the caller's transaction."""
    if not rows:
        return []
    ordered = sorted(rows, key=lambda r: (r["observed_at"], r["event_id"], r["seq"]))
    batch = _Batch(session, policy, now, ordered)
    changes: dict[int, IncidentChange] = {}
    # Each incident is written once at the end, not before every statement of every row.
    with session.no_autoflush:
        for row in ordered:
            change = batch.attach(row)
            previous = changes.get(change.incident_id)
            if previous is None or previous.kind != "created":
                changes[change.incident_id] = change
    session.flush()
    batch.store_links()
    return list(changes.values())


GroupKey = tuple[str, str, str, str]


class _Batch:
    """One transaction's joining work, read up front for all its rows: the links of the
    batch's situations (one query), the open incidents of each group its new situations may
    join (one query) and every incident it may write, locked in id order (one query)."""

    def __init__(
        self,
        session: Session,
        policy: IncidentPolicy,
        now: datetime,
        rows: Sequence[dict[str, Any]],
    ) -> None:
        self._session = session
        self._policy = policy
        self._now = now
        event_ids = sorted({row["event_id"] for row in rows})
        query = select(IncidentSituationRow.event_id, IncidentSituationRow.incident_id).where(
            IncidentSituationRow.event_id.in_(event_ids)
        )
        self._links: dict[str, int] = {str(e): int(i) for e, i in session.execute(query)}
        self._incidents: dict[int, IncidentRow] = {}
        self._groups: dict[GroupKey, list[GroupCandidate]] = {}
        self._new_links: list[dict[str, Any]] = []
        self._evidence_links: list[dict[str, Any]] = []
        self._prefetch(rows)

    def attach(self, row: dict[str, Any]) -> IncidentChange:
        linked = self._links.get(row["event_id"])
        if linked is not None:
            incident = self._locked(linked)
            self._absorb(incident, row)
            return IncidentChange(incident.id, "updated", _notifies(incident))
        key = _group_key(row)
        candidates = self._candidates(key)
        group = choose_group(candidates, row["observed_at"], self._policy.group_window_s)
        if group is not None:
            incident = self._locked(group)
            self._link(row["event_id"], incident.id)
            incident.alert_count += 1
            if len(incident.event_ids) < EVENT_IDS_SHOWN:
                incident.event_ids = [*incident.event_ids, row["event_id"]]
            incident.last_alert_at = max(incident.last_alert_at, row["observed_at"])
            incident.first_observed_at = min(incident.first_observed_at, row["observed_at"])
            self._groups[key] = [
                GroupCandidate(c.incident_id, c.status, incident.last_alert_at)
                if c.incident_id == incident.id
                else c
                for c in candidates
            ]
            self._absorb(incident, row)
            return IncidentChange(incident.id, "updated", _notifies(incident))
        incident = _open(self._session, row, self._policy, self._now)
        self._link(row["event_id"], incident.id)
        self._incidents[incident.id] = incident
        candidates.append(GroupCandidate(incident.id, incident.status, incident.last_alert_at))
        self._absorb(incident, row)
        return IncidentChange(incident.id, "created", _notifies(incident))

    def _prefetch(self, rows: Sequence[dict[str, Any]]) -> None:
        """Read the open incidents of every group the batch's new situations may join, then
        lock every incident the batch may write, in id order: a batch holds its locks for
        fewer round trips, and two processes take them in the same order. The candidates'
        status and latest alert are those of the locked rows."""
        keys = {_group_key(row) for row in rows if row["event_id"] not in self._links}
        found = _open_incident_ids(self._session, keys)
        wanted = {*self._links.values(), *(i for ids in found.values() for i in ids)}
        if wanted:
            query = (
                select(IncidentRow)
                .where(IncidentRow.id.in_(sorted(wanted)))
                .order_by(IncidentRow.id)
                .with_for_update()
            )
            for incident in self._session.scalars(query):
                self._incidents[incident.id] = incident
        for group, ids in found.items():
            locked = [self._incidents[i] for i in ids if i in self._incidents]
            self._groups[group] = [
                GroupCandidate(i.id, i.status, i.last_alert_at)
                for i in locked
                if i.status in OPEN_STATUSES
            ]

    def _absorb(self, incident: IncidentRow, row: dict[str, Any]) -> None:
        self._evidence_links.extend(_absorb(incident, row, self._now))

    def _locked(self, incident_id: int) -> IncidentRow:
        """An incident of the batch: locked up front, or opened by it."""
        return self._incidents[incident_id]

    def _candidates(self, key: GroupKey) -> list[GroupCandidate]:
        """The open incidents of a group a new situation of the batch may join (read up
        front; the batch adds those it opens)."""
        return self._groups[key]

    def _link(self, event_id: str, incident_id: int) -> None:
        self._links[event_id] = incident_id
        self._new_links.append({"event_id": event_id, "incident_id": incident_id})

    def store_links(self) -> None:
        """Insert the batch's evidence links, then its new situation links, one statement
        each; SituationRace when another process linked one of these situations since this
        batch read the links (the caller retries the whole transaction, which then sees that
        link)."""
        if self._evidence_links:
            evidence = (
                upsert_insert(self._session, IncidentEvidenceRow)
                .values(self._evidence_links)
                .on_conflict_do_nothing(index_elements=["incident_id", "sha256"])
            )
            self._session.execute(evidence)
        if not self._new_links:
            return
        stmt = (
            upsert_insert(self._session, IncidentSituationRow)
            .values(self._new_links)
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(IncidentSituationRow.event_id)
        )
        stored = {str(event_id) for event_id in self._session.scalars(stmt)}
        lost = sorted({link["event_id"] for link in self._new_links} - stored)
        if lost:
            raise SituationRace(f"situations linked meanwhile by another writer: {lost[:5]}")


def _group_key(row: dict[str, Any]) -> GroupKey:
    return (row["site_id"], row["camera_id"], row["rule_id"], row["zone_id"])


def _open_incident_ids(session: Session, keys: set[GroupKey]) -> dict[GroupKey, list[int]]:
    """The open incidents of each group key (every key present), in one query."""
    found: dict[GroupKey, list[int]] = {key: [] for key in keys}
    if not keys:
        return found
    query = select(
        IncidentRow.id,
        IncidentRow.site_id,
        IncidentRow.camera_id,
        IncidentRow.rule_id,
        IncidentRow.zone_id,
    ).where(
        tuple_(
            IncidentRow.site_id, IncidentRow.camera_id, IncidentRow.rule_id, IncidentRow.zone_id
        ).in_(sorted(keys)),
        IncidentRow.status.in_(sorted(OPEN_STATUSES)),
    )
    for incident_id, site_id, camera_id, rule_id, zone_id in session.execute(query):
        found[(site_id, camera_id, rule_id, zone_id)].append(int(incident_id))
    return found


def _notifies(incident: IncidentRow) -> bool:
    return not (incident.silenced or incident.inhibited)


def _camera_offline(session: Session, site_id: str, camera_id: str) -> bool:
    query = select(func.count()).where(
        CameraStatusRow.site_id == site_id,
        CameraStatusRow.camera_id == camera_id,
        CameraStatusRow.online.is_(False),
    )
    return bool(session.scalar(query))


def active_silences(session: Session, at: datetime) -> list[SilenceWindow]:
    query = select(SilenceRow).where(SilenceRow.starts_at <= at, SilenceRow.ends_at > at)
    return [
        SilenceWindow(
            Matchers(row.site_id, row.camera_id, row.rule_id, row.type), row.starts_at, row.ends_at
        )
        for row in session.scalars(query)
    ]


def _open(
    session: Session, row: dict[str, Any], policy: IncidentPolicy, now: datetime
) -> IncidentRow:
    labels = {key: row[key] for key in ("site_id", "camera_id", "rule_id", "type")}
    silenced = any(
        silence_applies(silence, at=now, **labels) for silence in active_silences(session, now)
    )
    assignment = assign(
        policy.dispatch,
        site_id=row["site_id"],
        type=row["type"],
        zone_id=row["zone_id"],
        at=now,
    )
    incident = IncidentRow(
        status="reported",
        type=row["type"],
        site_id=row["site_id"],
        camera_id=row["camera_id"],
        zone_id=row["zone_id"],
        rule_id=row["rule_id"],
        event_id=row["event_id"],
        event_ids=[row["event_id"]],
        alert_count=1,
        state=row["state"],
        severity=severity_of(row["type"]),
        opened_at=now,
        updated_at=now,
        last_alert_at=row["observed_at"],
        last_observed_at=row["observed_at"],
        first_observed_at=row["observed_at"],
        onset_pts_s=row["onset_pts_s"],
        last_pts_s=row["pts_s"],
        last_onset_pts_s=row["onset_pts_s"],
        spans={},
        score=row["score"],
        bbox=list(row["bbox"]),
        details=dict(row["details"]),
        evidence=[],
        assignee=assignment.assignee,
        dispatch_rule=assignment.rule_id,
        deadline_at=assignment.deadline_at,
        escalation_level=0,
        silenced=silenced,
        inhibited=_camera_offline(session, row["site_id"], row["camera_id"]),
        legal_hold=False,
    )
    session.add(incident)
    session.flush()
    quiet = {"quiet": "silenced"} if silenced else None
    if incident.inhibited:
        quiet = {"quiet": "inhibited"}  # the camera is offline: the stronger reason
    _record(session, incident.id, "report", None, "reported", SYSTEM, now, None, quiet)
    return incident


def _absorb(incident: IncidentRow, row: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
    """Take in one message: the latest message's state, box, score and details win; returns
    the incident's evidence links to insert for the files it adds."""
    if row["observed_at"] >= incident.last_observed_at:
        incident.last_observed_at = row["observed_at"]
        incident.state = row["state"]
        incident.score = row["score"]
        incident.bbox = list(row["bbox"])
        incident.details = dict(row["details"])
        incident.last_pts_s = row["pts_s"]
        incident.last_onset_pts_s = row["onset_pts_s"]
    span = situation_span(
        row["type"], row["state"], row["pts_s"], row["onset_pts_s"], row["details"]
    )
    if span is not None:
        incident.spans = fold_span(incident.spans or {}, row["event_id"], span)
    known = {item.get("sha256") for item in incident.evidence}
    observed = row["observed_at"].astimezone(UTC).isoformat()
    added = [
        {**item, "event_id": row["event_id"], "observed_at": observed}
        for item in row["evidence"]
        if item.get("sha256") not in known
    ]
    if added:
        incident.evidence = [*incident.evidence, *added]
    incident.updated_at = now
    return [{"incident_id": incident.id, "sha256": item["sha256"]} for item in added]


def _record(
    session: Session,
    incident_id: int,
    action: str,
    from_status: str | None,
    to_status: str,
    by: str,
    at: datetime,
    note: str | None,
    details: dict[str, Any] | None = None,
) -> None:
    session.add(
        TransitionRow(
            incident_id=incident_id,
            action=action,
            from_status=from_status,
            to_status=to_status,
            by=by,
            at=at,
            note=note,
            details=details or None,
        )
    )


# Actions ---------------------------------------------------------------------------------------


def apply_action(
    session: Session,
    incident_id: int,
    action: str,
    *,
    by: str,
    at: datetime,
    note: str | None = None,
    team: str | None = None,
    details: dict[str, Any] | None = None,
    only_team: str | None = None,
) -> IncidentChange:
    """Move the incident by `action` (TransitionNotAllowed: 409), recording who and when,
    the team dispatched and `details` (a false alarm's category, the photos attached).

    A false alarm is not an acknowledgement: it leaves `acked_at` (立案时间) empty. With
    `only_team` (a field worker), the incident must be dispatched to that team
    (IncidentNotFound otherwise: it is not theirs to see)."""
    incident = session.scalars(
        select(IncidentRow).where(IncidentRow.id == incident_id).with_for_update()
    ).one_or_none()
    if incident is None or (only_team is not None and incident.assignee != only_team):
        raise IncidentNotFound(incident_id)
    before = incident.status
    after = next_status(action, before)
    incident.status = after
    if incident.acked_at is None and after not in ("reported", "false_alarm"):
        incident.acked_at = at
    if before == "reported":
        incident.deadline_at = None  # the deadline is for acknowledging
    recorded = dict(details or {})
    if team is not None:
        incident.assignee = team
        recorded["team"] = team
    if after in CLOSED_STATUSES:
        incident.closed_at = at
    elif before in CLOSED_STATUSES:
        incident.closed_at = None
    incident.updated_at = at
    _record(session, incident.id, action, before, after, by, at, note, recorded)
    session.flush()
    return IncidentChange(incident.id, "transition", _notifies(incident))


def set_hold(
    session: Session, incident_id: int, *, hold: bool, by: str, at: datetime, note: str | None
) -> IncidentChange:
    """Put an incident's evidence on legal hold (or release it); recorded in its history."""
    incident = session.get(IncidentRow, incident_id)
    if incident is None:
        raise IncidentNotFound(incident_id)
    incident.legal_hold = hold
    incident.updated_at = at
    action = "hold" if hold else "release_hold"
    _record(session, incident.id, action, incident.status, incident.status, by, at, note)
    session.flush()
    return IncidentChange(incident.id, "hold", _notifies(incident))


def escalate_overdue(
    session: Session, dispatch: DispatchConfig, now: datetime
) -> list[IncidentChange]:
    """Escalate every reported incident past its ack deadline: not silenced or inhibited when
    it opened, and not under a silence now (one set later for a maintenance window)."""
    query = (
        select(IncidentRow)
        .where(
            IncidentRow.status == "reported",
            IncidentRow.deadline_at.is_not(None),
            IncidentRow.deadline_at <= now,
            IncidentRow.silenced.is_(False),
            IncidentRow.inhibited.is_(False),
        )
        .order_by(IncidentRow.id)
        .with_for_update(skip_locked=True)
    )
    silences = active_silences(session, now)
    changes = []
    for incident in session.scalars(query).all():
        labels = {
            "site_id": incident.site_id,
            "camera_id": incident.camera_id,
            "rule_id": incident.rule_id,
            "type": incident.type,
        }
        if any(silence_applies(silence, at=now, **labels) for silence in silences):
            continue  # a maintenance window set after it opened: no escalation while it lasts
        step = escalate(
            dispatch,
            rule_id=incident.dispatch_rule,
            type=incident.type,
            level=incident.escalation_level,
            current=incident.assignee,
            at=now,
        )
        incident.escalation_level = step.level
        incident.assignee = step.assignee
        incident.deadline_at = step.deadline_at
        incident.updated_at = now
        details = {"level": step.level, "team": step.assignee, "reason": "not_acknowledged"}
        _record(
            session, incident.id, "escalate", "reported", "reported", SYSTEM, now, None, details
        )
        changes.append(IncidentChange(incident.id, "escalated", True))
    session.flush()
    return changes


# Reading ---------------------------------------------------------------------------------------


def _filtered(query: Select[Any], filters: IncidentFilter) -> Select[Any]:
    equal = (
        (IncidentRow.status, filters.status),
        (IncidentRow.site_id, filters.site_id),
        (IncidentRow.type, filters.type),
        (IncidentRow.camera_id, filters.camera_id),
        (IncidentRow.assignee, filters.assignee),
        (IncidentRow.severity, filters.severity),
    )
    query = matching(query, equal, IncidentRow.site_id, filters.sites)
    if filters.open is not None:
        in_open = IncidentRow.status.in_(sorted(OPEN_STATUSES))
        query = query.where(in_open if filters.open else ~in_open)
    if filters.since is not None:
        query = query.where(IncidentRow.first_observed_at >= filters.since)
    if filters.until is not None:
        query = query.where(IncidentRow.first_observed_at < filters.until)
    if filters.text:
        query = query.where(_search(filters))
    if filters.overdue is not None:
        late = _overdue_clause(filters.now or datetime.now(UTC))
        query = query.where(late if filters.overdue else ~late)
    return query


def _search(filters: IncidentFilter) -> ColumnElement[bool]:
    """An incident id, part of a camera, zone or rule id, or a camera or zone whose name
    matched (the caller looked the names up in the site directory)."""
    text = (filters.text or "").strip()
    pattern = f"%{text.lower().replace('%', '').replace('_', '')}%"
    found: list[ColumnElement[bool]] = [
        func.lower(IncidentRow.camera_id).like(pattern),
        func.lower(IncidentRow.zone_id).like(pattern),
        func.lower(IncidentRow.rule_id).like(pattern),
    ]
    number = text.removeprefix("#")
    if number.isdigit() and len(number) < 18:
        found.append(IncidentRow.id == int(number))
    if filters.camera_ids:
        found.append(IncidentRow.camera_id.in_(sorted(filters.camera_ids)))
    if filters.zone_ids:
        found.append(IncidentRow.zone_id.in_(sorted(filters.zone_ids)))
    return or_(*found)


def _overdue_clause(now: datetime) -> ColumnElement[bool]:
    return and_(
        IncidentRow.status == "reported",
        or_(IncidentRow.escalation_level > 0, IncidentRow.deadline_at <= now),
    )


def _order(sort: SortKey, descending: bool, now: datetime) -> list[Any]:
    """ORDER BY for a sort key; `urgency` ignores the direction (most urgent first)."""
    if sort == "urgency":
        closed = case((IncidentRow.status.in_(sorted(CLOSED_STATUSES)), 1), else_=0)
        unacked = case((IncidentRow.status == "reported", 0), else_=1)
        severity = case(
            *((IncidentRow.severity == name, rank) for name, rank in SEVERITY_RANK.items()),
            else_=len(SEVERITY_RANK),
        )
        overdue = case((_overdue_clause(now), 0), else_=1)
        return [
            closed,
            unacked,
            severity,
            overdue,
            IncidentRow.escalation_level.desc(),
            IncidentRow.last_alert_at.desc(),
            IncidentRow.id.desc(),
        ]
    column: Any = {
        "observed": IncidentRow.first_observed_at,
        "opened": IncidentRow.opened_at,
        "severity": case(
            *((IncidentRow.severity == name, -rank) for name, rank in SEVERITY_RANK.items()),
            else_=-len(SEVERITY_RANK),
        ),
        "status": case(
            *((IncidentRow.status == name, rank) for rank, name in enumerate(STATUS_ORDER)),
            else_=len(STATUS_ORDER),
        ),
        "alerts": IncidentRow.alert_count,
        "camera": IncidentRow.camera_id,
    }[sort]
    tie = IncidentRow.id.desc() if descending else IncidentRow.id.asc()
    return [column.desc() if descending else column.asc(), tie]


STATUS_ORDER = (
    "reported",
    "filed",
    "dispatched",
    "handling",
    "feedback",
    "verified",
    "closed",
    "false_alarm",
)


def list_incidents(
    session: Session,
    filters: IncidentFilter,
    *,
    limit: int,
    offset: int,
    sort: SortKey = "opened",
    descending: bool = True,
    now: datetime | None = None,
) -> tuple[list[IncidentView], int]:
    """One page of incidents in the order asked (newest opened first by default), and the
    total that match."""
    moment = now or datetime.now(UTC)
    total = session.scalar(_filtered(select(func.count(IncidentRow.id)), filters))
    query = (
        _filtered(select(IncidentRow), filters)
        .order_by(*_order(sort, descending, moment))
        .limit(limit)
        .offset(offset)
    )
    rows = session.scalars(query).all()
    return views_of(rows, session=session, now=moment), int(total or 0)


def counters(
    session: Session,
    *,
    sites: frozenset[str] | None,
    now: datetime,
    assignee: str | None = None,
) -> Counters:
    """未处理, 紧急 and 已超时 over the caller's open incidents, and the ids the alarm rings for."""
    base = IncidentFilter(sites=sites, open=True, assignee=assignee)
    reported = IncidentRow.status == "reported"
    critical = IncidentRow.severity == "critical"
    totals: Select[Any] = cast(
        "Select[Any]",
        select(
            func.count(case((reported, 1))),
            func.count(case((critical, 1))),
            func.count(case((_overdue_clause(now), 1))),
        ),
    )
    unacked, urgent, overdue = session.execute(_filtered(totals, base)).one()
    ringing = _filtered(select(IncidentRow.id), base).where(
        reported,
        critical,
        IncidentRow.silenced.is_(false()),
        IncidentRow.inhibited.is_(false()),
    )
    alarming = [int(i) for i in session.scalars(ringing.order_by(IncidentRow.id).limit(200))]
    return Counters(int(unacked), int(urgent), int(overdue), alarming)


def team_orders(session: Session, team: str, sites: frozenset[str] | None) -> int:
    """A team's orders to work: dispatched to it, or in its hands (我的工单)."""
    query = _filtered(
        select(func.count(IncidentRow.id)), IncidentFilter(sites=sites, assignee=team)
    ).where(IncidentRow.status.in_(["dispatched", "handling"]))
    return int(session.scalar(query) or 0)


def views_of(
    rows: Iterable[IncidentRow], *, session: Session | None = None, now: datetime | None = None
) -> list[IncidentView]:
    """Incident views as lists and the stream show them (the first situations only); with a
    session, each evidence file says whether it is stored, still pending or missing."""
    listed = list(rows)
    stored = _stored_evidence(session, listed) if session is not None else None
    moment = now or datetime.now(UTC)
    return [incident_view(row, row.event_ids, stored=stored, now=moment) for row in listed]


def _stored_evidence(session: Session, rows: Sequence[IncidentRow]) -> set[str]:
    wanted = sorted({str(item["sha256"]) for row in rows for item in row.evidence})
    stored: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        query = select(EvidenceRow.sha256).where(EvidenceRow.sha256.in_(chunk))
        stored |= {str(sha) for sha in session.scalars(query)}
    return stored


def get_incident(session: Session, incident_id: int) -> IncidentRow | None:
    return session.get(IncidentRow, incident_id)


def _evidence_state(
    row: IncidentRow, item: dict[str, Any], stored: set[str] | None, now: datetime
) -> str:
    if stored is None or item["sha256"] in stored:
        return "stored"
    waiting = now - row.last_observed_at <= timedelta(seconds=EVIDENCE_PENDING_S)
    return "pending" if waiting else "missing"


def _evidence_refs(row: IncidentRow, stored: set[str] | None, now: datetime) -> list[EvidenceRef]:
    return [
        EvidenceRef(
            kind=str(item.get("kind", "snapshot")),
            sha256=str(item["sha256"]),
            content_type=str(item.get("content_type", "application/octet-stream")),
            role=item.get("role"),
            url=EVIDENCE_URL.format(sha256=item["sha256"]),
            event_id=item.get("event_id"),
            observed_at=_parse_time(item.get("observed_at")),
            by=item.get("by"),
            state=_evidence_state(row, item, stored, now),
        )
        for item in row.evidence
    ]


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def incident_view(
    row: IncidentRow,
    event_ids: Sequence[str],
    *,
    stored: set[str] | None = None,
    now: datetime | None = None,
) -> IncidentView:
    moment = now or datetime.now(UTC)
    ordered = [row.event_id, *sorted(e for e in event_ids if e != row.event_id)]
    spans = row.spans or {}
    return IncidentView(
        id=row.id,
        status=row.status,
        type=row.type,
        site_id=row.site_id,
        camera_id=row.camera_id,
        zone_id=row.zone_id,
        rule_id=row.rule_id,
        event_id=row.event_id,
        event_ids=ordered,
        alert_count=row.alert_count,
        state=row.state,
        opened_at=row.opened_at,
        first_observed_at=row.first_observed_at,
        last_alert_at=row.last_alert_at,
        updated_at=row.updated_at,
        acked_at=row.acked_at,
        closed_at=row.closed_at,
        onset_pts_s=row.onset_pts_s,
        severity=row.severity,
        score=row.score,
        bbox=list(row.bbox),
        details=dict(row.details),
        dwell_s=total_span(spans) if row.type in DWELL_TYPES else None,
        latest_dwell_s=situation_span(
            row.type, row.state, row.last_pts_s, row.last_onset_pts_s, row.details
        ),
        evidence=_evidence_refs(row, stored, moment),
        assignee=row.assignee,
        deadline_at=row.deadline_at,
        escalation_level=row.escalation_level,
        overdue=is_overdue(row.status, row.deadline_at, row.escalation_level, moment),
        silenced=row.silenced,
        inhibited=row.inhibited,
        legal_hold=row.legal_hold,
        allowed_actions=allowed_actions(row.status),
    )


def incident_detail(session: Session, row: IncidentRow) -> IncidentDetail:
    """The incident with every situation, its event messages (oldest first), its history
    (with each person's display name)."""
    links = select(IncidentSituationRow.event_id).where(IncidentSituationRow.incident_id == row.id)
    stored = _stored_evidence(session, [row])
    view = incident_view(row, [str(event_id) for event_id in session.scalars(links)], stored=stored)
    events_query = (
        select(EventRow)
        .join(IncidentSituationRow, IncidentSituationRow.event_id == EventRow.event_id)
        .where(IncidentSituationRow.incident_id == row.id)
        .order_by(EventRow.observed_at, EventRow.event_id, EventRow.seq)
    )
    events: list[Event] = [row_to_event(event) for event in session.scalars(events_query)]
    history_query = (
        select(TransitionRow, UserRow.display_name)
        .outerjoin(UserRow, UserRow.username == TransitionRow.by)
        .where(TransitionRow.incident_id == row.id)
        .order_by(TransitionRow.at, TransitionRow.id)
    )
    history = [
        TransitionView(
            action=t.action,
            from_status=t.from_status,
            to_status=t.to_status,
            by=t.by,
            by_name=None if t.by == SYSTEM else display_name,
            system=t.by == SYSTEM,
            at=t.at,
            note=t.note,
            details=dict(t.details or {}),
        )
        for t, display_name in session.execute(history_query)
    ]
    return IncidentDetail(**view.model_dump(), events=events, history=history)


def evidence_sites(session: Session, sha256: str) -> set[str]:
    """The sites of the incidents an evidence file belongs to (for site-scoped users)."""
    query = (
        select(IncidentRow.site_id)
        .join(IncidentEvidenceRow, IncidentEvidenceRow.incident_id == IncidentRow.id)
        .where(IncidentEvidenceRow.sha256 == sha256)
    )
    return {str(site) for site in session.scalars(query)}
