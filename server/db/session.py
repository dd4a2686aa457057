"""Engines and schema migration for SQLite (embedded default) and PostgreSQL (deployments).

`make_engine` tunes each backend: SQLite runs in WAL mode with a busy timeout so the REST API
and the MQTT consumer can write from several threads; PostgreSQL goes through psycopg 3 with a
pre-pinged pool. `migrate` runs Alembic `upgrade head` from code, no alembic.ini needed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from server.settings import normalise_db_url

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000
PG_POOL_SIZE = 10
PG_MAX_OVERFLOW = 10
PG_CONNECT_TIMEOUT_S = 5
# Any constant: serialises `migrate` between server processes sharing one PostgreSQL.
_MIGRATION_LOCK_KEY = 0x7A68697A6869  # "zhizhi"


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:  # noqa: ARG001
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _make_sqlite_engine(url: str, echo: bool) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        echo=echo,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _make_postgres_engine(url: str, echo: bool) -> Engine:
    return create_engine(
        url,
        echo=echo,
        pool_size=PG_POOL_SIZE,
        max_overflow=PG_MAX_OVERFLOW,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S},
    )


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for `sqlite:///path` or `postgresql://...` (normalised to psycopg 3)."""
    url = normalise_db_url(url)
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return _make_sqlite_engine(url, echo)
    if backend == "postgresql":
        return _make_postgres_engine(url, echo)
    raise ValueError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (they are turned into models)."""
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config() -> Config:
    """An Alembic config pointing at server/migrations, without an ini file."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def newest_revision() -> str:
    """The head revision of server/migrations (what `migrate` brings a database to)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations in {MIGRATIONS_DIR}")
    return head


def migrate(engine_or_url: Engine | str, revision: str = "head") -> None:
    """Bring the schema up to `revision` (Alembic upgrade), safe to call on every start."""
    if isinstance(engine_or_url, str):
        own_engine = make_engine(engine_or_url)
        try:
            _upgrade(own_engine, revision)
        finally:
            own_engine.dispose()
    else:
        _upgrade(engine_or_url, revision)


def _upgrade(engine: Engine, revision: str) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Two server processes starting together must not both create the tables.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    log.info("database schema at %s (%s)", revision, engine.url.render_as_string())


def database_answers(engine: Engine) -> bool:
    """True when the database answers `SELECT 1`."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:  # any driver or network failure means "not reachable"
        log.warning("database check failed: %s", error)
        return False
    return True
