"""A throwaway PostgreSQL database (on ZHIZHI_TEST_PG_URL, default the local server) for tests
that run on both backends; unreachable: skip locally, fail in CI."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from server.db.session import migrate

PG_SERVER = os.environ.get("ZHIZHI_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432")


def fresh_postgres_url() -> Iterator[str]:
    """Create and migrate a new database, yield its URL, drop it afterwards."""
    name = f"zhizhi_test_{uuid.uuid4().hex[:12]}"
    admin_url = make_url(f"{PG_SERVER}/postgres").set(drivername="postgresql+psycopg")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as error:
        admin.dispose()
        reason = str(error.orig).strip()
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL is required in CI: {reason}")
        pytest.skip(f"PostgreSQL not reachable: {reason}")
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    migrate(url)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
