"""The server processes of the shared group (issue 18): `GET /api/v1/server-members`, for
admins of every site (the processes serve all sites; host names and pids are infrastructure)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from server.repositories import MemberRepository
from server.routes.deps import API, Admin, SessionDep, forbidden, now
from server.schemas import ServerMemberList
from server.services.membership import member_view
from server.settings import ServerSettings

router = APIRouter(prefix=API, tags=["server"])


@router.get("/server-members")
def list_server_members(
    request: Request, principal: Admin, session: SessionDep
) -> ServerMemberList:
    """Every server process that recorded itself: live ones first, with the events each took
    from the shared subscription; late, stopped, left and removed ones too (when and by whom)."""
    if principal.sites is not None:
        raise forbidden("server processes are shown to admins of every site")
    settings: ServerSettings = request.app.state.settings
    moment = now()
    items = [
        member_view(row, moment, settings.member_heartbeat_s)
        for row in MemberRepository(session).all()
    ]
    return ServerMemberList(
        items=items,
        total=len(items),
        grace_s=settings.member_grace_s,
        heartbeat_s=settings.member_heartbeat_s,
    )
