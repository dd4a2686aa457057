"""Users of the command center: argon2id password hashes, login with attempt limiting, sessions.

A successful login returns a bearer token of the same kind as `zhizhi token create` makes,
linked to the user (role and sites are read from the user on every request, so a change takes
effect at once) and lapsing after the session lifetime; logout revokes it. Failed logins are
recorded and counted per username and per client address over a sliding window: past the
limit the login is refused with 429 and a Retry-After, whether or not the password is right.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from server.auth import ALL_SITES, RANK, hash_token
from server.db.models import LoginAttemptRow, UserRow
from server.db.session import make_engine, make_session_factory, migrate
from server.repositories import TokenRepository
from server.schemas import UserView

log = logging.getLogger(__name__)

USER_ROLES = tuple(RANK)  # viewer, field, operator, admin
LOCALES = ("zh-CN", "en")
_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verified against when the username is unknown, so both cases take the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))
MIN_PASSWORD_LENGTH = 8


class LoginRefused(Exception):
    """Wrong username or password (HTTP 401); deliberately does not say which."""


class LoginThrottled(Exception):
    """Too many failed logins for this username or address (HTTP 429)."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many failed logins; retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class LoginLimits:
    """At most `per_user` failures per username and `per_ip` per address in `window_s`."""

    per_user: int = 5
    per_ip: int = 20
    window_s: float = 900.0
    session_ttl_s: float = 12 * 3600.0
    max_checks: int = 2  # password checks at once (ServerSettings.max_password_checks)
    check_wait_s: float = 10.0  # how long a login waits for one before LoginThrottled


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def password_matches(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def user_view(user: UserRow) -> UserView:
    return UserView(
        username=user.username,
        display_name=user.display_name,
        role=user.role,
        sites=list(user.sites),
        locale="en" if user.locale == "en" else "zh-CN",
        team=user.team,
    )


def check_user_fields(username: str, role: str, sites: Sequence[str], password: str) -> list[str]:
    """Every reason these values cannot make a user (empty when they can)."""
    problems = []
    if not username or len(username) > 64 or not username.isprintable() or " " in username:
        problems.append("username must be 1 to 64 printable characters without spaces")
    if role not in USER_ROLES:
        problems.append(f"role must be one of {', '.join(USER_ROLES)}, got {role!r}")
    if not sites:
        problems.append("sites must name at least one site, or * for every site")
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    return problems


def create_user(
    session: Session,
    *,
    username: str,
    password: str,
    role: str,
    sites: Sequence[str],
    display_name: str | None = None,
    locale: str = "zh-CN",
    team: str | None = None,
) -> UserRow:
    """Add a user (committed); ValueError listing every problem with the values. A field
    worker needs the `team` their orders are dispatched to."""
    problems = check_user_fields(username, role, sites, password)
    if role == "field" and not (team or "").strip():
        problems.append("a field worker needs a team (the one their orders are dispatched to)")
    if team is not None and len(team) > 128:
        problems.append("team must have at most 128 characters")
    if locale not in LOCALES:
        problems.append(f"locale must be one of {', '.join(LOCALES)}")
    if session.scalar(select(UserRow.id).where(UserRow.username == username)) is not None:
        problems.append(f"user {username!r} exists already")
    if problems:
        raise ValueError("; ".join(problems))
    user = UserRow(
        username=username,
        display_name=display_name or username,
        password_hash=hash_password(password),
        role=role,
        sites=[ALL_SITES] if ALL_SITES in sites else sorted(set(sites)),
        locale=locale,
        disabled=False,
        created_at=_now(),
        team=team.strip() if team else None,
    )
    session.add(user)
    session.commit()
    log.info("created %s user %s for sites %s", role, username, ",".join(user.sites))
    return user


def add_user(db_url: str, **fields: object) -> UserRow:
    """`zhizhi user create`: migrate the database if needed, then add the user."""
    engine = make_engine(db_url)
    try:
        migrate(engine)
        with make_session_factory(engine)() as session:
            return create_user(session, **fields)  # type: ignore[arg-type]
    finally:
        engine.dispose()


def set_disabled(session: Session, username: str, *, disabled: bool) -> int:
    """Disable (or enable again) a user, committed; disabling revokes its login sessions at
    once. How many sessions were revoked; LookupError for an unknown user."""
    user = _user_named(session, username)
    user.disabled = disabled
    revoked = TokenRepository(session).revoke_of_user(user.id, revoked_at=_now()) if disabled else 0
    session.commit()
    log.info(
        "user %s %s (%d sessions revoked)", username, "disabled" if disabled else "enabled", revoked
    )
    return revoked


def set_password(session: Session, username: str, password: str) -> int:
    """A new password (argon2id), committed; every login session of the user is revoked (a
    stolen session ends with the password). How many; ValueError for a short password,
    LookupError for an unknown user."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    user = _user_named(session, username)
    user.password_hash = hash_password(password)
    revoked = TokenRepository(session).revoke_of_user(user.id, revoked_at=_now())
    session.commit()
    log.info("new password for user %s (%d sessions revoked)", username, revoked)
    return revoked


def _user_named(session: Session, username: str) -> UserRow:
    user = session.scalars(select(UserRow).where(UserRow.username == username)).one_or_none()
    if user is None:
        raise LookupError(f"no user {username!r}")
    return user


def change_user(
    db_url: str, username: str, *, disable: bool | None = None, password: str | None = None
) -> int:
    """`zhizhi user disable|enable|passwd`: migrate the database if needed, then change."""
    engine = make_engine(db_url)
    try:
        migrate(engine)
        with make_session_factory(engine)() as session:
            if password is not None:
                return set_password(session, username, password)
            return set_disabled(session, username, disabled=bool(disable))
    finally:
        engine.dispose()


def _retry_after(
    session: Session,
    column: InstrumentedAttribute[str],
    value: str,
    limit: int,
    limits: LoginLimits,
    now: datetime,
) -> int | None:
    since = now - timedelta(seconds=limits.window_s)
    times = session.scalars(
        select(LoginAttemptRow.at)
        .where(column == value, LoginAttemptRow.at > since)
        .order_by(LoginAttemptRow.at.desc())
        .limit(limit)
    ).all()
    if len(times) < limit:
        return None
    # The window frees a slot when the oldest of the last `limit` failures leaves it.
    oldest = times[-1]
    return max(1, int((oldest - since).total_seconds()) + 1)


def login(
    session: Session,
    username: str,
    password: str,
    *,
    client_ip: str,
    limits: LoginLimits,
    now: datetime | None = None,
) -> tuple[str, UserRow]:
    """A new session token for the user (committed), or LoginRefused / LoginThrottled."""
    now = now or _now()
    _reserve_attempt(session, username, client_ip, limits, now)
    user = session.scalars(select(UserRow).where(UserRow.username == username)).one_or_none()
    with _password_check(limits):
        matches = password_matches(user.password_hash if user else _DUMMY_HASH, password)
    if user is None or user.disabled or not matches:
        log.info("failed login for %r from %s", username, client_ip)
        raise LoginRefused("wrong username or password")  # the reserved attempt stays counted
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    session.execute(delete(LoginAttemptRow).where(LoginAttemptRow.username == username))
    token = secrets.token_urlsafe(32)
    TokenRepository(session).add(
        name=f"session:{user.username}",
        role=user.role,
        token_sha256=hash_token(token),
        created_at=now,
        user_id=user.id,
        expires_at=now + timedelta(seconds=limits.session_ttl_s),
    )
    session.commit()
    return token, user


_reserving = threading.Lock()
_checks_lock = threading.Lock()
_checks: dict[int, threading.BoundedSemaphore] = {}


def _reserve_attempt(
    session: Session, username: str, client_ip: str, limits: LoginLimits, now: datetime
) -> None:
    """Count this attempt as a failure before the password is checked (committed), or
    LoginThrottled when the username or address is over its limit.

    Check and insert happen under one lock (a thread lock; on PostgreSQL also advisory locks
    on the username and the address, for other server processes), so parallel attempts
    cannot all pass the check before any is recorded (issue 14: 30 parallel wrong passwords
    for one user were all checked against a limit of 5). A correct password then deletes it.
    """
    with _reserving:
        if session.get_bind().dialect.name == "postgresql":
            for key in sorted((f"login-user:{username}", f"login-ip:{client_ip}")):
                session.execute(select(func.pg_advisory_xact_lock(func.hashtext(key))))
        waits = [
            _retry_after(session, LoginAttemptRow.username, username, limits.per_user, limits, now),
            _retry_after(session, LoginAttemptRow.client_ip, client_ip, limits.per_ip, limits, now),
        ]
        if any(wait is not None for wait in waits):
            session.rollback()
            raise LoginThrottled(max(wait for wait in waits if wait is not None))
        session.add(LoginAttemptRow(username=username[:64], client_ip=client_ip[:64], at=now))
        _forget_old_attempts(session, now - timedelta(seconds=limits.window_s))
        session.commit()


@contextmanager
def _password_check(limits: LoginLimits) -> Iterator[None]:
    """At most `limits.max_checks` argon2id checks at once in this process (64 MiB each: 40 in
    parallel took the server from 117 MB to 1,276 MB); LoginThrottled when no slot frees up
    within `limits.check_wait_s`."""
    with _checks_lock:
        gate = _checks.setdefault(limits.max_checks, threading.BoundedSemaphore(limits.max_checks))
    if not gate.acquire(timeout=limits.check_wait_s):
        raise LoginThrottled(1)
    try:
        yield
    finally:
        gate.release()


def _forget_old_attempts(session: Session, before: datetime) -> None:
    session.execute(delete(LoginAttemptRow).where(LoginAttemptRow.at <= before))


def count_users(session: Session) -> int:
    return int(session.scalar(select(func.count(UserRow.id))) or 0)


def _now() -> datetime:
    return datetime.now(UTC)
