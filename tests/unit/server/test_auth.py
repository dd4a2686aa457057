"""Tokens: random, stored only as sha256, verified by hash, revocable; roles and their order."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from server.auth import (
    Principal,
    create_token,
    hash_token,
    issue_token,
    revoke_token,
    role_allows,
    verify_token,
)
from server.db.models import TokenRow
from server.db.session import make_engine, make_session_factory, migrate


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    engine = make_engine(f"sqlite:///{tmp_path}/auth.db")
    migrate(engine)
    with make_session_factory(engine)() as session:
        yield session
    engine.dispose()


def test_a_token_is_long_random_and_urlsafe(session: Session) -> None:
    tokens = {create_token(session, "viewer", f"v{i}") for i in range(5)}

    assert len(tokens) == 5
    for token in tokens:
        assert len(token) >= 43  # 32 bytes, base64url
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_only_the_sha256_of_a_token_is_stored(session: Session) -> None:
    token = create_token(session, "admin", "ops")

    row = session.scalars(select(TokenRow)).one()
    assert row.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    stored = session.connection().exec_driver_sql("SELECT * FROM api_tokens").all()
    assert all(token not in str(value) for record in stored for value in record)
    assert (row.name, row.role, row.revoked_at) == ("ops", "admin", None)
    assert row.created_at.tzinfo is not None


def test_a_valid_token_gives_its_principal(session: Session) -> None:
    token = create_token(session, "operator", "night-shift")

    principal = verify_token(session, token)

    assert principal is not None
    assert (principal.name, principal.role) == ("night-shift", "operator")
    assert isinstance(principal, Principal)


@pytest.mark.parametrize("wrong", ["", "x", "Bearer abc", "a" * 43])
def test_unknown_tokens_are_refused(session: Session, wrong: str) -> None:
    create_token(session, "admin", "ops")

    assert verify_token(session, wrong) is None


def test_a_token_differing_in_one_character_is_refused(session: Session) -> None:
    token = create_token(session, "admin", "ops")
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")

    assert verify_token(session, flipped) is None


def test_a_revoked_token_is_refused(session: Session) -> None:
    token = create_token(session, "edge", "box-1")
    principal = verify_token(session, token)
    assert principal is not None

    assert revoke_token(session, principal.token_id) is True
    assert revoke_token(session, principal.token_id) is False
    assert verify_token(session, token) is None


def test_an_unknown_role_is_refused(session: Session) -> None:
    with pytest.raises(ValueError, match="role"):
        create_token(session, "root", "x")


def test_issue_token_migrates_and_stores(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/fresh.db"

    token = issue_token(url, "viewer", "wall-screen")

    engine = make_engine(url)
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT token_sha256, role FROM api_tokens")).all()
    engine.dispose()
    assert [tuple(row) for row in stored] == [(hash_token(token), "viewer")]


@pytest.mark.parametrize(
    ("role", "allowed", "expected"),
    [
        ("admin", ("viewer",), True),
        ("operator", ("viewer",), True),
        ("viewer", ("viewer",), True),
        ("viewer", ("operator",), False),
        ("operator", ("admin",), False),
        ("edge", ("viewer",), False),
        ("edge", ("edge", "operator"), True),
        ("admin", ("edge", "operator"), True),
        ("viewer", ("edge", "operator"), False),
        ("admin", ("edge",), False),
    ],
)
def test_role_order(role: str, allowed: tuple[str, ...], expected: bool) -> None:
    assert role_allows(role, allowed) is expected


def test_every_token_lapses(session: Session) -> None:
    """Issue 14, item 10: CLI tokens never expired."""
    token = create_token(session, "edge", "box", days=30)

    row = session.scalars(select(TokenRow)).one()
    assert row.expires_at is not None
    assert 29.9 < (row.expires_at - row.created_at).total_seconds() / 86400 <= 30
    assert verify_token(session, token) is not None
    row.expires_at = row.created_at  # as if 30 days had passed
    session.commit()
    assert verify_token(session, token) is None
    with pytest.raises(ValueError, match="at most"):
        create_token(session, "edge", "box", days=10_000)


def test_a_token_without_an_expiry_is_refused(session: Session) -> None:
    token = create_token(session, "admin", "old")
    session.execute(text("UPDATE api_tokens SET expires_at = NULL"))
    session.commit()

    assert verify_token(session, token) is None


def test_migration_0005_gives_tokens_without_an_expiry_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    engine = make_engine(url)
    migrate(engine, "0004")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO api_tokens (name, role, token_sha256, created_at) "
                "VALUES ('old', 'edge', :sha, '2026-01-01 00:00:00')"
            ),
            {"sha": hash_token("old-token")},
        )
    migrate(engine)
    with make_session_factory(engine)() as session:
        principal = verify_token(session, "old-token")
        row = session.scalars(select(TokenRow)).one()
    engine.dispose()
    assert principal is not None and principal.name == "old"
    assert row.expires_at is not None
