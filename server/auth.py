"""API bearer tokens and role checks (contract section 5: `Authorization: Bearer TOKEN`).

A token is 32 random bytes, URL-safe; the database keeps only its sha256, so a leaked
database does not leak tokens, and looking a token up by its hash compares in constant time
with respect to the secret. Roles: admin > operator > field > viewer, and `edge`, which may
only send events and evidence. A `field` worker sees what a viewer sees and works the orders
dispatched to their team (start handling, feedback with photos).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal, get_args

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from server.db.models import TokenRow, UserRow
from server.db.session import make_engine, make_session_factory, migrate
from server.repositories import TokenRepository

log = logging.getLogger(__name__)

Role = Literal["admin", "operator", "field", "viewer", "edge"]
ROLES: tuple[Role, ...] = get_args(Role)
# Rank of the hierarchical roles; `edge` stands outside the hierarchy.
RANK: dict[str, int] = {"viewer": 1, "field": 2, "operator": 3, "admin": 4}
ALL_SITES = "*"
DEFAULT_TOKEN_DAYS = 90.0  # API tokens (`zhizhi token create --days`); login sessions: hours
MAX_TOKEN_DAYS = 3650.0

bearer = HTTPBearer(auto_error=False, description="An API token from `zhizhi token create`")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's id, name and role; for a user's session token, the user
    and the sites they may see (`sites` None: every site)."""

    token_id: int
    name: str
    role: Role
    user_id: int | None = None
    sites: frozenset[str] | None = None

    def may_see(self, site_id: str) -> bool:
        return self.sites is None or site_id in self.sites


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _check_role(role: str) -> Role:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    return role


def create_token(
    session: Session,
    role: str,
    name: str,
    sites: Sequence[str] | None = None,
    *,
    days: float = DEFAULT_TOKEN_DAYS,
) -> str:
    """A new token for `role`, stored as its sha256 and committed; the token is returned once.
    `sites`: the sites it acts for (an edge box: its own); None, every site. It lapses after
    `days` (every token does: issue 14; at most MAX_TOKEN_DAYS)."""
    if not 0 < days <= MAX_TOKEN_DAYS:
        raise ValueError(f"a token lasts more than 0 and at most {MAX_TOKEN_DAYS} days")
    token = secrets.token_urlsafe(32)
    scoped = None if sites is None or ALL_SITES in sites else sorted(set(sites))
    now = _now()
    TokenRepository(session).add(
        name=name,
        role=_check_role(role),
        token_sha256=hash_token(token),
        created_at=now,
        sites=scoped,
        expires_at=now + timedelta(days=days),
    )
    session.commit()
    log.info("created a %s token named %s for %s days", role, name, days)
    return token


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as `zhizhi token list` shows it (never the token itself)."""

    id: int
    name: str
    role: str
    sites: tuple[str, ...] | None
    user_id: int | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is None or self.expires_at <= now:
            return "expired"
        return "active"


def list_tokens(session: Session, *, with_sessions: bool = False) -> list[TokenInfo]:
    """Every API token (and login sessions, with `with_sessions`), oldest first."""
    return [
        TokenInfo(
            id=row.id,
            name=row.name,
            role=row.role,
            sites=None if row.sites is None else tuple(row.sites),
            user_id=row.user_id,
            created_at=row.created_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
        )
        for row in TokenRepository(session).list_all(with_sessions=with_sessions)
    ]


def verify_token(session: Session, token: str) -> Principal | None:
    """The principal of a valid, unrevoked, unexpired token (of an enabled user), else None."""
    if not token:
        return None
    digest = hash_token(token)
    row = TokenRepository(session).find_active(digest)
    if row is None or not hmac.compare_digest(row.token_sha256, digest):
        return None
    return _principal_of(session, row)


def still_valid(session: Session, principal: Principal) -> bool:
    """Whether the principal's token still stands for exactly this principal: not revoked,
    not expired, its user enabled with the same role and sites (long-lived streams ask)."""
    row = session.get(TokenRow, principal.token_id)
    if row is None or row.revoked_at is not None:
        return False
    return _principal_of(session, row) == principal


def _principal_of(session: Session, row: TokenRow) -> Principal | None:
    if row.expires_at is None or row.expires_at <= _now():
        return None  # every token lapses (migration 0005 gave the older ones an expiry)
    if row.user_id is None:
        scope = None if row.sites is None else frozenset(row.sites)
        return Principal(token_id=row.id, name=row.name, role=_check_role(row.role), sites=scope)
    user = session.get(UserRow, row.user_id)
    if user is None or user.disabled:
        return None
    sites = None if ALL_SITES in user.sites else frozenset(user.sites)
    return Principal(
        token_id=row.id,
        name=user.username,
        role=_check_role(user.role),
        user_id=user.id,
        sites=sites,
    )


def revoke_token(session: Session, token_id: int) -> bool:
    """Revoke a token by id (committed); False when it was unknown or revoked already."""
    revoked = TokenRepository(session).revoke(token_id, revoked_at=_now())
    session.commit()
    return revoked


def issue_token(
    db_url: str,
    role: str,
    name: str,
    sites: Sequence[str] | None = None,
    *,
    days: float = DEFAULT_TOKEN_DAYS,
) -> str:
    """`zhizhi token create`: migrate the database if needed, then create a token."""
    with _cli_session(db_url) as session:
        return create_token(session, role, name, sites, days=days)


@contextmanager
def _cli_session(db_url: str) -> Iterator[Session]:
    """A session on a migrated database, for the `zhizhi token` and `user` commands."""
    engine = make_engine(db_url)
    try:
        migrate(engine)
        with make_session_factory(engine)() as session:
            yield session
    finally:
        engine.dispose()


def tokens_of(db_url: str, *, with_sessions: bool = False) -> list[TokenInfo]:
    """`zhizhi token list`."""
    with _cli_session(db_url) as session:
        return list_tokens(session, with_sessions=with_sessions)


def revoke_by_id(db_url: str, token_id: int) -> bool:
    """`zhizhi token revoke`: False when no live token has that id."""
    with _cli_session(db_url) as session:
        return revoke_token(session, token_id)


def role_allows(role: str, allowed: tuple[str, ...]) -> bool:
    """Whether `role` satisfies one of `allowed`; a higher rank satisfies a lower one."""
    for wanted in allowed:
        if role == wanted:
            return True
        if role in RANK and wanted in RANK and RANK[role] >= RANK[wanted]:
            return True
    return False


def _now() -> datetime:
    return datetime.now(UTC)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": "Bearer"},
    )


def _session_from(request: Request) -> Session:
    factory: Callable[[], Session] = request.app.state.session_factory
    return factory()


def require_role(*roles: str, query_token: bool = False) -> Callable[..., Principal]:
    """A FastAPI dependency: the caller's principal, 401 without a valid token, 403 for a role
    that `roles` does not allow (admin > operator > viewer; `edge` only where named).

    With `query_token`, the token may come as `?token=` instead (the browser's EventSource,
    <img> and <video> cannot set headers); the header wins when both are given.
    """
    for role in roles:
        _check_role(role)

    def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        token = None
        if credentials is not None and credentials.scheme.lower() == "bearer":
            token = credentials.credentials
        elif query_token:
            token = request.query_params.get("token") or None
        if token is None:
            raise _unauthorized("missing bearer token")
        with _session_from(request) as session:
            principal = verify_token(session, token)
        if principal is None:
            raise _unauthorized("invalid or revoked token")
        if not role_allows(principal.role, roles):
            raise HTTPException(
                status_code=status.HTTP_403_FORBIDDEN,
                detail=f"role {principal.role} may not do this",
            )
        return principal

    return dependency
