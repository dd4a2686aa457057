"""The command center's REST API: login, incidents and their actions, the live stream, cameras,
statistics, site plans, silences, the audit log and webhook dead letters.

Every route needs a bearer token (login excepted); viewers read, operators act, admins reopen,
hold, upload plans and read the audit log. A user scoped to some sites sees and acts on those
sites only (403 otherwise). Every action, like every view of evidence, goes to the audit log.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response, status
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from common.events import EventType
from server import audit
from server.auth import Principal, require_role, revoke_token, still_valid
from server.db.models import (
    CameraPositionRow,
    IncidentRow,
    SilenceRow,
    SitePlanRow,
    UserRow,
    WebhookDeliveryRow,
)
from server.incidents import (
    IncidentChange,
    IncidentFilter,
    IncidentNotFound,
    SortKey,
    apply_action,
    get_incident,
    incident_detail,
    list_incidents,
    set_hold,
    views_of,
)
from server.notify import HEARTBEAT_S
from server.routes import orders, sites
from server.routes.deps import (
    API,
    Admin,
    Field,
    IncidentId,
    Operator,
    SessionDep,
    SiteId,
    Viewer,
    team_of,
)
from server.routes.deps import check_site as _check_site
from server.routes.deps import client_ip as client_ip
from server.routes.deps import forbidden as _forbidden
from server.routes.deps import notifier as _notifier
from server.routes.deps import now as _now
from server.routes.deps import record as _audit
from server.schemas import (
    AuditPage,
    CameraItems,
    DeadLetter,
    DeadLetterList,
    DispatchBody,
    FalseAlarmBody,
    FeedbackBody,
    HoldBody,
    IncidentDetail,
    IncidentPage,
    IncidentView,
    LoginBody,
    LoginResponse,
    NoteBody,
    PhotoNoteBody,
    PlanPosition,
    SilenceBody,
    SilenceList,
    SilenceView,
    Stats,
    UserView,
)
from server.services.cameras import camera_items
from server.services.directory import search_names
from server.settings import ServerSettings
from server.stats import incident_stats
from server.users import LoginLimits, LoginRefused, LoginThrottled, login, user_view
from server.workflow import Status, TransitionNotAllowed

log = logging.getLogger(__name__)

MAX_PAGE = 500
PLAN_TYPES = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}
CameraId = Annotated[str, PathParam(min_length=1, max_length=63)]
StreamViewer = Annotated[Principal, Depends(require_role("viewer", query_token=True))]


# Authentication --------------------------------------------------------------------------------

auth = APIRouter(prefix=f"{API}", tags=["auth"])


@auth.post(
    "/auth/login",
    responses={
        401: {"description": "Wrong username or password"},
        429: {"description": "Too many failed logins (see Retry-After)"},
    },
)
def post_login(body: LoginBody, request: Request, session: SessionDep) -> LoginResponse:
    """A session token and the user, for a username and password."""
    settings: ServerSettings = request.app.state.settings
    limits = LoginLimits(
        per_user=settings.login_max_failures_per_user,
        per_ip=settings.login_max_failures_per_ip,
        window_s=settings.login_window_s,
        session_ttl_s=settings.session_ttl_s,
        max_checks=settings.max_password_checks,
    )
    ip = client_ip(request)
    try:
        token, user = login(session, body.username, body.password, client_ip=ip, limits=limits)
    except LoginThrottled as error:
        raise HTTPException(
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            detail=str(error),
            headers={"Retry-After": str(error.retry_after_s)},
        ) from None
    except LoginRefused as error:
        audit.record(
            session,
            actor=body.username[:128],
            role="-",
            action="login_failed",
            target="auth",
            client_ip=ip,
            at=_now(),
        )
        session.commit()
        raise HTTPException(status_code=status.HTTP_401_UNAUTHORIZED, detail=str(error)) from None
    audit.record(
        session,
        actor=user.username,
        role=user.role,
        action="login",
        target="auth",
        client_ip=ip,
        at=_now(),
    )
    session.commit()
    return LoginResponse(token=token, user=user_view(user))


@auth.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
def post_logout(principal: Viewer, request: Request, session: SessionDep) -> Response:
    """Revoke the token the request was made with."""
    revoke_token(session, principal.token_id)
    _audit(session, request, principal, "logout", "auth")
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@auth.get("/me")
def get_me(principal: Viewer, session: SessionDep) -> UserView:
    """The user behind the token (an API token without a user: its name, every site)."""
    if principal.user_id is not None:
        user = session.get(UserRow, principal.user_id)
        if user is not None:
            return user_view(user)
    return UserView(
        username=principal.name,
        display_name=principal.name,
        role=principal.role,
        sites=["*"] if principal.sites is None else sorted(principal.sites),
        locale="zh-CN",
    )


# Incidents -------------------------------------------------------------------------------------

incidents = APIRouter(prefix=f"{API}/incidents", tags=["incidents"])


@incidents.get("")
def get_incidents(
    principal: Viewer,
    session: SessionDep,
    status: Status | None = None,
    site_id: Annotated[str | None, Query(max_length=63)] = None,
    type: EventType | None = None,
    camera_id: Annotated[str | None, Query(max_length=63)] = None,
    open: Annotated[bool | None, Query(description="true: open ones; false: ended")] = None,
    severity: Literal["critical", "high", "normal"] | None = None,
    overdue: Annotated[
        bool | None, Query(description="true: not acknowledged in time (已超时)")
    ] = None,
    team: Annotated[
        str | None, Query(max_length=128, description="Dispatched to this team")
    ] = None,
    since: Annotated[datetime | None, Query(description="First alert observed at or after")] = None,
    until: Annotated[datetime | None, Query(description="First alert observed before")] = None,
    q: Annotated[
        str | None,
        Query(max_length=64, description="An id, or part of a camera, zone or rule id or name"),
    ] = None,
    sort: SortKey = "opened",
    order: Literal["desc", "asc"] = "desc",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> IncidentPage:
    """Incidents of the caller's sites, newest opened first (or by `sort`: `urgency` puts
    open before ended, then unacknowledged, critical, overdue, escalated, latest alert), with
    the total matching the filters. A field worker gets the orders of their own team only."""
    own_team = team_of(session, principal)
    cameras, zones = (None, None)
    if q and q.strip():
        cameras, zones = search_names(session, q, principal.sites)
    filters = IncidentFilter(
        status=status,
        site_id=site_id,
        type=type,
        camera_id=camera_id,
        sites=principal.sites,
        open=open,
        assignee=own_team or team,
        since=_aware(since),
        until=_aware(until),
        text=q.strip() if q else None,
        camera_ids=cameras,
        zone_ids=zones,
        severity=severity,
        overdue=overdue,
        now=_now(),
    )
    items, total = list_incidents(
        session, filters, limit=limit, offset=offset, sort=sort, descending=order == "desc"
    )
    return IncidentPage(items=items, total=total)


def _aware(moment: datetime | None) -> datetime | None:
    """A time from a query string, in UTC (one without a zone is taken as UTC)."""
    if moment is None:
        return None
    try:
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except OverflowError:
        raise HTTPException(status_code=422, detail="time out of range once in UTC") from None


@incidents.get("/{incident_id}")
def get_one_incident(
    incident_id: IncidentId, principal: Viewer, session: SessionDep
) -> IncidentDetail:
    """The incident with its event messages and its history of transitions."""
    row = get_incident(session, incident_id)
    own_team = team_of(session, principal)
    if row is None or (own_team is not None and row.assignee != own_team):
        raise HTTPException(status_code=404, detail=f"no incident {incident_id}")
    _check_site(principal, row.site_id)
    return incident_detail(session, row)


def _act(
    request: Request,
    session: Session,
    principal: Principal,
    incident_id: int,
    action: str,
    *,
    note: str | None = None,
    team: str | None = None,
    details: dict[str, Any] | None = None,
) -> IncidentView:
    row = get_incident(session, incident_id)
    if row is None:
        raise HTTPException(status_code=404, detail=f"no incident {incident_id}")
    _check_site(principal, row.site_id)
    own_team = team_of(session, principal)
    photos = (details or {}).get("photos") or []
    if photos:
        attached = {item["sha256"] for item in row.evidence if item.get("kind") == "photo"}
        unknown = sorted(set(photos) - attached)
        if unknown:
            raise HTTPException(
                status_code=422, detail=f"photos not attached to this incident: {unknown}"
            )
    try:
        change = apply_action(
            session,
            incident_id,
            action,
            by=principal.name,
            at=_now(),
            note=note,
            team=team,
            details=details,
            only_team=own_team,
        )
    except TransitionNotAllowed as error:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(error)) from None
    except IncidentNotFound:
        raise HTTPException(status_code=404, detail=f"no incident {incident_id}") from None
    _audit(
        session,
        request,
        principal,
        action,
        f"incident {incident_id}",
        note=note,
        team=team,
        **(details or {}),
    )
    (change,) = _notifier(request).write_outbox(session, [change])  # with the change
    session.commit()
    return _after_change(request, session, change)


def _after_change(request: Request, session: Session, change: IncidentChange) -> IncidentView:
    _notifier(request).incidents_changed([change])
    row = get_incident(session, change.incident_id)
    if row is None:  # pragma: no cover - deleted between commit and read
        raise HTTPException(status_code=404, detail=f"no incident {change.incident_id}")
    session.refresh(row)
    return views_of([row], session=session)[0]


OptionalNote = Annotated[NoteBody | None, Body()]
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "Not allowed from the incident's current status"}
}


@incidents.post("/{incident_id}/ack", responses=_CONFLICT)
def post_ack(
    incident_id: IncidentId,
    principal: Operator,
    request: Request,
    session: SessionDep,
    body: OptionalNote = None,
) -> IncidentView:
    """上报 → 立案: acknowledge (file) a reported incident."""
    note = body.note if body else None
    return _act(request, session, principal, incident_id, "ack", note=note)


@incidents.post("/{incident_id}/dispatch", responses=_CONFLICT)
def post_dispatch(
    incident_id: IncidentId,
    body: DispatchBody,
    principal: Operator,
    request: Request,
    session: SessionDep,
) -> IncidentView:
    """→ 派遣: send a team (a reported incident is acknowledged on the way)."""
    return _act(
        request, session, principal, incident_id, "dispatch", note=body.note, team=body.team
    )


@incidents.post("/{incident_id}/handle", responses=_CONFLICT)
def post_handle(
    incident_id: IncidentId,
    principal: Field,
    request: Request,
    session: SessionDep,
    body: OptionalNote = None,
) -> IncidentView:
    """派遣 → 处置: the team is handling it (a field worker: an order of their team)."""
    note = body.note if body else None
    return _act(request, session, principal, incident_id, "handle", note=note)


@incidents.post("/{incident_id}/feedback", responses=_CONFLICT)
def post_feedback(
    incident_id: IncidentId,
    body: FeedbackBody,
    principal: Field,
    request: Request,
    session: SessionDep,
) -> IncidentView:
    """处置 → 反馈: the handler's report, with the photos uploaded for it (`photos`: sha256
    of photos attached to this incident through POST .../photos)."""
    details = {"photos": body.photos} if body.photos else None
    return _act(
        request, session, principal, incident_id, "feedback", note=body.note, details=details
    )


@incidents.post("/{incident_id}/verify", responses=_CONFLICT)
def post_verify(
    incident_id: IncidentId,
    principal: Operator,
    request: Request,
    session: SessionDep,
    body: Annotated[PhotoNoteBody | None, Body()] = None,
) -> IncidentView:
    """反馈 → 核查: the center checked the result against the feedback photos (and may attach
    its own)."""
    note = body.note if body else None
    details = {"photos": body.photos} if body and body.photos else None
    return _act(request, session, principal, incident_id, "verify", note=note, details=details)


@incidents.post("/{incident_id}/resolve", responses=_CONFLICT)
def post_resolve(
    incident_id: IncidentId,
    principal: Operator,
    request: Request,
    session: SessionDep,
    body: OptionalNote = None,
) -> IncidentView:
    """→ 结案: close, from any open status."""
    note = body.note if body else None
    return _act(request, session, principal, incident_id, "resolve", note=note)


@incidents.post("/{incident_id}/false-alarm", responses=_CONFLICT)
def post_false_alarm(
    incident_id: IncidentId,
    principal: Operator,
    request: Request,
    session: SessionDep,
    body: Annotated[FalseAlarmBody | None, Body()] = None,
) -> IncidentView:
    """→ 误报: mark as a false alarm, from any open status, with its category (误报原因:
    lighting, wrong_object, authorised_activity, test, duplicate, other). It is not an
    acknowledgement: `acked_at` stays empty."""
    note = body.note if body else None
    details = {"category": body.category} if body and body.category else None
    return _act(request, session, principal, incident_id, "false_alarm", note=note, details=details)


@incidents.post("/{incident_id}/reopen", responses=_CONFLICT)
def post_reopen(
    incident_id: IncidentId,
    principal: Admin,
    request: Request,
    session: SessionDep,
    body: OptionalNote = None,
) -> IncidentView:
    """结案/误报 → 立案 (admin): reopen a closed incident."""
    note = body.note if body else None
    return _act(request, session, principal, incident_id, "reopen", note=note)


@incidents.post("/{incident_id}/hold")
def post_hold(
    incident_id: IncidentId,
    principal: Admin,
    request: Request,
    session: SessionDep,
    body: Annotated[HoldBody | None, Body()] = None,
) -> IncidentView:
    """Legal hold (admin): the incident's evidence outlives retention until released."""
    body = body or HoldBody()
    row = get_incident(session, incident_id)
    if row is None:
        raise HTTPException(status_code=404, detail=f"no incident {incident_id}")
    _check_site(principal, row.site_id)
    change = set_hold(
        session, incident_id, hold=body.hold, by=principal.name, at=_now(), note=body.note
    )
    action = "hold" if body.hold else "release_hold"
    _audit(session, request, principal, action, f"incident {incident_id}", note=body.note)
    (change,) = _notifier(request).write_outbox(session, [change])  # with the change
    session.commit()
    return _after_change(request, session, change)


# Live stream -----------------------------------------------------------------------------------

stream = APIRouter(prefix=API, tags=["stream"])


@stream.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"}},
)
async def get_stream(
    principal: StreamViewer,
    request: Request,
    token: Annotated[
        str | None, Query(max_length=256, description="The bearer token (for EventSource)")
    ] = None,
) -> StreamingResponse:
    """Server-sent events: `incident` on every create or change, `camera` on camera status
    changes, a comment heartbeat every 15 s. The stream ends once its token no longer stands
    for the same user, role and sites (checked every `stream_recheck_s`)."""
    del token  # read by the dependency
    settings: ServerSettings = request.app.state.settings
    recheck_s = settings.stream_recheck_s
    factory = request.app.state.session_factory
    next_check = time.monotonic() + recheck_s

    def valid() -> bool:
        with factory() as session:
            return still_valid(session, principal)

    async def gone() -> bool:
        nonlocal next_check
        if await request.is_disconnected():
            return True
        if time.monotonic() < next_check:
            return False
        next_check = time.monotonic() + recheck_s
        if await run_in_threadpool(valid):
            return False
        log.info("ending the live stream of %s: its token no longer holds", principal.name)
        return True

    with factory() as session:
        own_team = team_of(session, principal)
    hub = _notifier(request).hub
    subscriber = hub.subscribe(principal.sites, team=own_team)
    return StreamingResponse(
        hub.frames(subscriber, gone, heartbeat_s=min(HEARTBEAT_S, recheck_s)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# Cameras, statistics, site plans ---------------------------------------------------------------

views = APIRouter(prefix=API, tags=["views"])


@views.get("/cameras")
def get_cameras(principal: Viewer, session: SessionDep) -> CameraItems:
    """Each camera's health (online, why not, last seen) and its place on the site plan."""
    items = [item for item in camera_items(session) if principal.may_see(item.site_id)]
    return CameraItems(items=items)


@views.get("/stats")
def get_stats(
    principal: Viewer,
    session: SessionDep,
    days: Annotated[int, Query(ge=1, le=366)] = 7,
    site_id: Annotated[str | None, Query(max_length=63)] = None,
) -> Stats:
    """Incidents per type and day, time to acknowledge and to close, false-alarm rates."""
    if site_id is not None:
        _check_site(principal, site_id)
    return incident_stats(session, days=days, now=_now(), site_id=site_id, sites=principal.sites)


@views.put(
    "/sites/{site_id}/plan",
    status_code=status.HTTP_204_NO_CONTENT,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "image/png": {"schema": {"type": "string", "format": "binary"}},
                "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
    responses={413: {"description": "Image too large"}, 415: {"description": "Not PNG/JPEG"}},
)
async def put_plan(
    site_id: SiteId, principal: Admin, request: Request, session: SessionDep
) -> Response:
    """Upload the site plan image (admin of that site; PNG or JPEG body)."""
    _check_site(principal, site_id)
    settings: ServerSettings = request.app.state.settings
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    data = bytearray()
    async for chunk in request.stream():
        data.extend(chunk)
        if len(data) > settings.max_plan_bytes:
            raise HTTPException(status_code=413, detail="plan image too large")
    magic = PLAN_TYPES.get(content_type)
    if magic is None or not bytes(data).startswith(magic):
        raise HTTPException(status_code=415, detail="the plan must be a PNG or JPEG image")
    row = session.get(SitePlanRow, site_id)
    if row is None:
        row = SitePlanRow(site_id=site_id)
        session.add(row)
    row.content_type, row.data = content_type, bytes(data)
    row.updated_at, row.updated_by = _now(), principal.name
    _audit(session, request, principal, "upload_plan", f"site {site_id}", bytes=len(data))
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@views.get(
    "/sites/{site_id}/plan",
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}},
)
def get_plan(
    site_id: SiteId,
    principal: Annotated[Principal, Depends(require_role("viewer", query_token=True))],
    session: SessionDep,
    token: Annotated[str | None, Query(max_length=256)] = None,
) -> Response:
    """The site plan image."""
    del token
    _check_site(principal, site_id)
    row = session.get(SitePlanRow, site_id)
    if row is None:
        raise HTTPException(status_code=404, detail=f"no plan for site {site_id}")
    return Response(row.data, media_type=row.content_type, headers={"Cache-Control": "no-cache"})


@views.put("/sites/{site_id}/cameras/{camera_id}/plan-position")
def put_plan_position(
    site_id: SiteId,
    camera_id: CameraId,
    body: PlanPosition,
    principal: Admin,
    request: Request,
    session: SessionDep,
) -> PlanPosition:
    """Place a camera on its site plan (normalised x, y; admin of that site)."""
    _check_site(principal, site_id)
    row = session.get(CameraPositionRow, (site_id, camera_id))
    if row is None:
        row = CameraPositionRow(site_id=site_id, camera_id=camera_id)
        session.add(row)
    row.x, row.y, row.updated_at = body.x, body.y, _now()
    _audit(session, request, principal, "place_camera", f"camera {site_id}/{camera_id}")
    session.commit()
    notifier = _notifier(request)
    for item in camera_items(session, site_id=site_id):
        if item.camera_id == camera_id:
            notifier.hub.publish_camera(item)
    return body


# Silences --------------------------------------------------------------------------------------

silences = APIRouter(prefix=f"{API}/silences", tags=["silences"])


def _silence_view(row: SilenceRow, now: datetime) -> SilenceView:
    return SilenceView(
        id=row.id,
        site_id=row.site_id,
        camera_id=row.camera_id,
        rule_id=row.rule_id,
        type=row.type,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        created_by=row.created_by,
        created_at=row.created_at,
        comment=row.comment,
        active=row.starts_at <= now < row.ends_at,
    )


@silences.post("", status_code=status.HTTP_201_CREATED)
def post_silence(
    body: SilenceBody, principal: Operator, request: Request, session: SessionDep
) -> SilenceView:
    """A maintenance window: matching new incidents are recorded, not notified or escalated."""
    now = _now()
    starts = body.starts_at or now
    if body.ends_at <= starts:
        raise HTTPException(status_code=422, detail="ends_at must be after starts_at")
    if principal.sites is not None and (
        body.site_id is None or body.site_id not in principal.sites
    ):
        raise _forbidden("a silence must name one of your sites")
    row = SilenceRow(
        site_id=body.site_id,
        camera_id=body.camera_id,
        rule_id=body.rule_id,
        type=body.type,
        starts_at=starts,
        ends_at=body.ends_at,
        created_by=principal.name,
        created_at=now,
        comment=body.comment,
    )
    session.add(row)
    session.flush()
    _audit(session, request, principal, "create_silence", f"silence {row.id}")
    session.commit()
    return _silence_view(row, now)


@silences.get("")
def get_silences(principal: Viewer, session: SessionDep, expired: bool = False) -> SilenceList:
    """Active and future silences (with `expired=true`, past and ended ones too)."""
    now = _now()
    query = select(SilenceRow).order_by(SilenceRow.starts_at.desc(), SilenceRow.id.desc())
    if not expired:  # a future window ended before it began is empty: it is past
        query = query.where(SilenceRow.ends_at > now, SilenceRow.ends_at > SilenceRow.starts_at)
    rows = [
        row
        for row in session.scalars(query)
        if principal.sites is None or (row.site_id is not None and row.site_id in principal.sites)
    ]
    return SilenceList(items=[_silence_view(row, now) for row in rows])


@silences.delete("/{silence_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_silence(
    silence_id: Annotated[int, PathParam(ge=1, le=2**31)],
    principal: Operator,
    request: Request,
    session: SessionDep,
) -> Response:
    """End a silence now; it stays on record (who set it, when it ended: `?expired=true`)."""
    row = session.get(SilenceRow, silence_id)
    if row is None:
        raise HTTPException(status_code=404, detail=f"no silence {silence_id}")
    if principal.sites is not None and (row.site_id is None or row.site_id not in principal.sites):
        raise _forbidden("that silence is outside your sites")
    now = _now()
    if row.ends_at > now:
        row.ends_at = max(row.starts_at, now)  # a future window becomes an empty one
    _audit(session, request, principal, "end_silence", f"silence {silence_id}")
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# Administration --------------------------------------------------------------------------------

admin = APIRouter(prefix=API, tags=["admin"])


@admin.get("/audit")
def get_audit(
    principal: Admin,
    session: SessionDep,
    actor: Annotated[str | None, Query(max_length=128)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> AuditPage:
    """The audit log, newest first (admin of every site: it spans them all)."""
    if principal.sites is not None:
        raise _forbidden("the audit log spans every site: it needs an admin of every site")
    items, total = audit.list_entries(
        session, actor=actor, action=action, limit=limit, offset=offset
    )
    return AuditPage(items=items, total=total)


@admin.get("/webhooks/dead-letters")
def get_dead_letters(
    principal: Admin,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> DeadLetterList:
    """Webhook deliveries that failed every attempt (admin; of their sites), newest first."""
    query = select(WebhookDeliveryRow).where(WebhookDeliveryRow.status == "dead")
    if principal.sites is not None:
        query = query.join(IncidentRow, IncidentRow.id == WebhookDeliveryRow.incident_id).where(
            IncidentRow.site_id.in_(sorted(principal.sites))
        )
    rows = session.scalars(query.order_by(WebhookDeliveryRow.id.desc()).limit(limit))
    return DeadLetterList(
        items=[
            DeadLetter(
                id=row.id,
                webhook=row.webhook,
                url=row.url,
                incident_id=row.incident_id,
                kind=row.kind,
                attempts=row.attempts,
                last_error=row.last_error,
                created_at=row.created_at,
                finished_at=row.finished_at,
                payload=row.payload,
            )
            for row in rows
        ]
    )


ROUTERS = (auth, orders.router, incidents, stream, views, sites.router, silences, admin)
