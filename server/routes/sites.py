"""Sites as the dashboard names them: `GET /api/v1/sites` (names of each site, its cameras,
zones and rules, and whether it has a plan) and `PUT /api/v1/sites/{id}/directory` (register
a site's names: an admin of that site, or the site's own edge box)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from sqlalchemy.orm import Session

from server.auth import Principal, require_role
from server.db.models import UserRow
from server.routes.deps import API, SessionDep, SiteId, Viewer, check_site, now, record
from server.schemas import SiteDirectoryBody, SiteList
from server.services.directory import list_sites, store_directory

router = APIRouter(prefix=API, tags=["sites"])
AdminOrEdge = Annotated[Principal, Depends(require_role("admin", "edge"))]


def _own_sites(session: Session, principal: Principal) -> list[str]:
    user = session.get(UserRow, principal.user_id) if principal.user_id is not None else None
    return [site for site in (user.sites if user else []) if site != "*"]


@router.get("/sites")
def get_sites(principal: Viewer, session: SessionDep) -> SiteList:
    """The caller's sites with their names (from the registered directory), their cameras',
    zones' and rules' names, and whether a site plan is uploaded (no 404 to probe for it)."""
    items = list_sites(session, principal.sites, own=_own_sites(session, principal))
    return SiteList(items=items)


@router.put("/sites/{site_id}/directory", status_code=status.HTTP_204_NO_CONTENT)
def put_directory(
    site_id: SiteId,
    body: SiteDirectoryBody,
    principal: AdminOrEdge,
    request: Request,
    session: SessionDep,
) -> Response:
    """Register the names of a site, its cameras, zones and rules (what its config says;
    `zhizhi site register` sends them). Replaces what was registered before."""
    check_site(principal, site_id)
    store_directory(session, site_id, body, by=principal.name, at=now())
    record(session, request, principal, "register_site", f"site {site_id}")
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
