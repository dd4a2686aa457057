"""What every command-center route shares: the session, the caller's role, site and team
checks, the audit helper, the notifier and a size-limited body reader."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi import Path as PathParam
from sqlalchemy.orm import Session

from server import audit
from server.auth import Principal, require_role
from server.db.models import UserRow
from server.errors import PayloadTooLarge
from server.notify import Notifier

API = "/api/v1"
IncidentId = Annotated[int, PathParam(ge=1, le=2**62)]
SiteId = Annotated[str, PathParam(pattern=r"^[a-z0-9-]{1,63}$")]
Viewer = Annotated[Principal, Depends(require_role("viewer"))]
Field = Annotated[Principal, Depends(require_role("field"))]
Operator = Annotated[Principal, Depends(require_role("operator"))]
Admin = Annotated[Principal, Depends(require_role("admin"))]


def _session(request: Request) -> Iterator[Session]:
    with request.app.state.session_factory() as session:
        yield session


SessionDep = Annotated[Session, Depends(_session)]


def now() -> datetime:
    return datetime.now(UTC)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def forbidden(detail: str) -> HTTPException:
    return HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=detail)


def check_site(principal: Principal, site_id: str) -> None:
    if not principal.may_see(site_id):
        raise forbidden(f"site {site_id} is outside your sites")


def team_of(session: Session, principal: Principal) -> str | None:
    """A field worker's team: only the orders dispatched to it are theirs (403 without one);
    None for every other role (no such restriction)."""
    if principal.role != "field":
        return None
    user = session.get(UserRow, principal.user_id) if principal.user_id is not None else None
    if user is None or not user.team:
        raise forbidden("a field worker needs a team to see orders")
    return user.team


def notifier(request: Request) -> Notifier:
    found: Notifier = request.app.state.notifier
    return found


def record(
    session: Session,
    request: Request,
    principal: Principal,
    action: str,
    target: str,
    **details: object,
) -> None:
    """Add an audit entry for the caller (the caller commits); None details are left out."""
    audit.record(
        session,
        actor=principal.name,
        role=principal.role,
        action=action,
        target=target,
        client_ip=client_ip(request),
        at=now(),
        details={key: value for key, value in details.items() if value is not None},
    )


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused (PayloadTooLarge) as soon as it grows past `limit` bytes."""
    try:
        declared = int(request.headers.get("content-length", "0"))
    except ValueError:
        declared = 0
    if declared > limit:
        raise PayloadTooLarge(f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
