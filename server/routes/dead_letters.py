"""Dead letters (issue 14): MQTT messages refused for good, for admins to inspect, replay or
discard. A site-scoped admin sees the letters whose topic named one of its sites; letters
without a site (a topic that is no contract topic) need an admin of every site."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, field_serializer

from common.events import format_rfc3339
from common.limits import clean_text
from server.auth import Principal
from server.db.models import DeadLetterRow
from server.repositories import DeadLetterRepository
from server.routes.deps import API, Admin, SessionDep, forbidden, now, record
from server.services import dead_letters
from server.settings import ServerSettings

router = APIRouter(prefix=f"{API}/dead-letters", tags=["dead letters"])
LetterId = Annotated[int, PathParam(ge=1, le=2**62)]
PREVIEW_CHARS = 4000


class DeadLetterView(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    received_at: datetime
    last_at: datetime
    times: int
    source: str
    topic: str
    site_id: str | None
    edge_id: str | None
    event_id: str | None
    seq: int | None
    reason: str
    detail: str
    size: int
    payload_sha256: str
    status: Literal["held", "replayed", "discarded"]
    handled_by: str | None
    handled_at: datetime | None

    @field_serializer("received_at", "last_at", "handled_at")
    def _rfc3339(self, value: datetime | None) -> str | None:
        return None if value is None else format_rfc3339(value)


class DeadLetterDetail(DeadLetterView):
    payload_text: str  # the payload as text (replacement characters where it is not UTF-8)
    payload_base64: str  # the bytes kept, exactly
    truncated: bool  # only the start of an oversized payload was kept


class DeadLetterPage(BaseModel):
    items: list[DeadLetterView]
    total: int
    held: int  # letters still waiting for someone, of every site the caller sees


class ReplayResult(BaseModel):
    status: Literal["held", "replayed", "discarded"]
    stored: bool
    refused: str | None = None


def _view(row: DeadLetterRow) -> DeadLetterView:
    return DeadLetterView.model_validate(row, from_attributes=True)


def _visible(principal: Principal, row: DeadLetterRow | None, letter_id: int) -> DeadLetterRow:
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dead letter {letter_id}")
    if principal.sites is not None and (row.site_id is None or row.site_id not in principal.sites):
        raise forbidden("that dead letter is outside your sites")
    return row


@router.get("")
def list_dead_letters(
    principal: Admin,
    session: SessionDep,
    status_: Annotated[
        Literal["held", "replayed", "discarded"] | None, Query(alias="status")
    ] = "held",
    reason: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> DeadLetterPage:
    """Refused MQTT messages, newest first (admin; of their sites), held ones by default."""
    repository = DeadLetterRepository(session)
    rows, total = repository.page(
        status=status_, reason=reason, sites=principal.sites, limit=limit, offset=offset
    )
    _, held = repository.page(status="held", reason=None, sites=principal.sites, limit=1, offset=0)
    return DeadLetterPage(items=[_view(row) for row in rows], total=total, held=held)


@router.get("/{letter_id}")
def get_dead_letter(letter_id: LetterId, principal: Admin, session: SessionDep) -> DeadLetterDetail:
    """One letter with its payload (as text, and its exact bytes in base64)."""
    row = _visible(principal, DeadLetterRepository(session).get(letter_id), letter_id)
    text = clean_text(row.payload.decode("utf-8", errors="replace"), PREVIEW_CHARS)
    return DeadLetterDetail(
        **_view(row).model_dump(),
        payload_text=text,
        payload_base64=base64.b64encode(row.payload).decode("ascii"),
        truncated=row.size > len(row.payload),
    )


@router.post(
    "/{letter_id}/replay",
    responses={409: {"description": "Refused again (the detail says why); it stays held"}},
)
def replay_dead_letter(
    letter_id: LetterId, principal: Admin, request: Request, session: SessionDep
) -> ReplayResult:
    """Check the message again as the consumer would and store it when it passes (after the
    cause was fixed); 409 with the reason when it is refused again."""
    row = _visible(principal, DeadLetterRepository(session).get(letter_id), letter_id)
    if row.status != "held":
        raise HTTPException(status.HTTP_409_CONFLICT, f"dead letter {letter_id} is {row.status}")
    settings: ServerSettings = request.app.state.settings
    outcome = dead_letters.replay(
        session,
        letter_id,
        store=request.app.state.ingest,
        by=principal.name,
        at=now(),
        max_payload_bytes=settings.max_payload_bytes,
    )
    if outcome.refused is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"refused again: {outcome.refused}")
    record(session, request, principal, "replay_dead_letter", f"dead_letter {letter_id}")
    session.commit()
    return ReplayResult(status=outcome.status, stored=outcome.stored)


@router.post("/{letter_id}/discard")
def discard_dead_letter(
    letter_id: LetterId, principal: Admin, request: Request, session: SessionDep
) -> ReplayResult:
    """Mark a letter handled without storing it (it stays on record, with who and when)."""
    _visible(principal, DeadLetterRepository(session).get(letter_id), letter_id)
    dead_letters.discard(session, letter_id, by=principal.name, at=now())
    record(session, request, principal, "discard_dead_letter", f"dead_letter {letter_id}")
    session.commit()
    return ReplayResult(status="discarded", stored=False)
