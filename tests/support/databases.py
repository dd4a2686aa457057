"""A throwaway PostgreSQL database (on ZHIZHI_TEST_PG_URL, default the local server) for tests
that run on both backends; unreachable: skip locally, fail in CI."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from server.db.session import make_engine, make_session_factory, migrate
from tests.support.mosquitto import unavailable
from zhizhi.local_services import ServiceUnavailable, temporary_postgres_database

PG_SERVER = os.environ.get("ZHIZHI_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432")


def fresh_postgres_url() -> Iterator[str]:
    """Create and migrate a new database, yield its URL, drop it afterwards."""
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(temporary_postgres_database(PG_SERVER, "zhizhi_test"))
        except ServiceUnavailable as error:
            unavailable(str(error))  # raises: skipped, or failed in CI
        yield url


def sqlite_sessions(folder: Path) -> Iterator[sessionmaker[Session]]:
    """Sessions on a new migrated SQLite file in `folder`; the engine is disposed afterwards
    (a fixture body: `yield from sqlite_sessions(tmp_path)`)."""
    engine = make_engine(f"sqlite:///{folder / 'zhizhi.db'}")
    migrate(engine)
    yield make_session_factory(engine)
    engine.dispose()
