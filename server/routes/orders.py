"""Work orders as the command center's people work them: the header's counters and the alarm
(`GET /api/v1/counters`), bulk acknowledgement for operators, and photos attached to an
incident by a field worker (反馈) or the center (核查)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool

from server.errors import PayloadTooLarge
from server.evidence import EvidenceService
from server.incidents import (
    IncidentChange,
    IncidentNotFound,
    apply_action,
    counters,
    get_incident,
    team_orders,
)
from server.routes.deps import (
    API,
    Field,
    IncidentId,
    Operator,
    SessionDep,
    Viewer,
    notifier,
    now,
    read_limited,
    record,
    team_of,
)
from server.schemas import BulkAckBody, BulkResult, BulkResults, CountersView, PhotoStored
from server.services.photos import NotAPhoto, PhotoStage, attach_photo
from server.settings import ServerSettings
from server.workflow import TransitionNotAllowed

router = APIRouter(prefix=API, tags=["orders"])


@router.get("/counters")
def get_counters(principal: Viewer, session: SessionDep) -> CountersView:
    """未处理 (still reported), 紧急 (open and critical), 已超时 (not acknowledged in time)
    over the caller's open incidents, and the critical ones not yet acknowledged (neither
    silenced nor inhibited): the dashboard's alarm repeats until they are. A field worker
    gets their team's open orders counted too."""
    own_team = team_of(session, principal)
    found = counters(session, sites=principal.sites, now=now())
    return CountersView(
        unacknowledged=found.unacknowledged,
        urgent=found.urgent,
        overdue=found.overdue,
        alarming=found.alarming if own_team is None else [],
        my_orders=None if own_team is None else team_orders(session, own_team, principal.sites),
    )


@router.post("/incidents/bulk-ack")
def post_bulk_ack(
    body: BulkAckBody, principal: Operator, request: Request, session: SessionDep
) -> BulkResults:
    """上报 → 立案 for several incidents at once; each is acknowledged (and audited) on its
    own, and the answer says, per id, whether it was (not_found, forbidden, not_allowed)."""
    results: list[BulkResult] = []
    changes: list[IncidentChange] = []
    for incident_id in dict.fromkeys(body.ids):
        row = get_incident(session, incident_id)
        if row is None:
            results.append(BulkResult(id=incident_id, ok=False, error="not_found"))
            continue
        if not principal.may_see(row.site_id):
            results.append(BulkResult(id=incident_id, ok=False, error="forbidden"))
            continue
        try:
            with session.begin_nested():
                change = apply_action(
                    session, incident_id, "ack", by=principal.name, at=now(), note=body.note
                )
        except (TransitionNotAllowed, IncidentNotFound):
            results.append(
                BulkResult(id=incident_id, ok=False, status=row.status, error="not_allowed")
            )
            continue
        record(session, request, principal, "ack", f"incident {incident_id}", note=body.note)
        changes.append(change)
        results.append(BulkResult(id=incident_id, ok=True, status="filed"))
    changes = notifier(request).write_outbox(session, changes)  # with the changes
    session.commit()
    if changes:
        notifier(request).incidents_changed(changes)
    return BulkResults(items=results)


@router.post(
    "/incidents/{incident_id}/photos",
    status_code=status.HTTP_201_CREATED,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                "image/png": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
    responses={
        404: {"description": "No such incident, or not an order of the worker's team"},
        413: {"description": "Photo too large"},
        415: {"description": "Not a JPEG or PNG image (decided from the bytes)"},
    },
)
async def post_photo(
    incident_id: IncidentId,
    principal: Field,
    request: Request,
    session: SessionDep,
    stage: Annotated[PhotoStage, Query(description="What the photo shows")] = "feedback",
) -> PhotoStored:
    """Attach a photo (raw JPEG or PNG body) to an incident: stored as evidence under its
    sha256 and audited. A field worker attaches to their team's orders only; `核查` photos
    (stage=verify) need an operator."""
    row = get_incident(session, incident_id)
    own_team = team_of(session, principal)
    if row is None or (own_team is not None and row.assignee != own_team):
        raise HTTPException(status_code=404, detail=f"no incident {incident_id}")
    if not principal.may_see(row.site_id):
        raise HTTPException(status_code=403, detail=f"site {row.site_id} is outside your sites")
    if stage == "verify" and principal.role == "field":
        raise HTTPException(status_code=403, detail="核查 photos are the center's")
    settings: ServerSettings = request.app.state.settings
    evidence: EvidenceService = request.app.state.evidence
    limit = min(settings.max_photo_bytes, evidence.max_bytes)
    try:
        data = await read_limited(request, limit)
    except PayloadTooLarge:
        raise HTTPException(status_code=413, detail=f"photo larger than {limit} bytes") from None
    at = now()
    try:
        stored, _ = await run_in_threadpool(
            attach_photo, session, evidence, row, data, stage=stage, by=principal.name, at=at
        )
    except NotAPhoto as error:
        raise HTTPException(status_code=415, detail=str(error)) from None
    record(
        session,
        request,
        principal,
        "upload_photo",
        f"incident {incident_id}",
        sha256=stored.sha256,
        bytes=stored.size,
        stage=stage,
    )
    session.commit()
    notifier(request).incidents_changed([IncidentChange(incident_id, "updated", False)])
    return PhotoStored(
        kind="photo",
        sha256=stored.sha256,
        content_type=stored.content_type,
        role=stage,
        url=f"{API}/evidence/{stored.sha256}",
        by=principal.name,
        observed_at=at,
        stored=stored.stored,
    )
