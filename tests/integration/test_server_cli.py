"""`zhizhi server`, `token create`, `demo` and `bench ingest` as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from tests.support.databases import PG_SERVER
from tests.support.mosquitto import unavailable

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
FIRST = "first password"  # a test user's


def zhizhi(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zhizhi.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
        env=os.environ.copy(),
        check=False,
    )


def test_token_create_prints_a_token_once(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'z.db'}"
    first = zhizhi("token", "create", "--db", db, "--role", "operator", "--name", "duty desk")
    second = zhizhi("token", "create", "--db", db, "--role", "viewer")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert len(first.stdout.strip()) >= 40 and first.stdout != second.stdout
    assert first.stdout.strip() not in (tmp_path / "z.db").read_bytes().decode("latin-1")


def test_token_create_refuses_an_unknown_role(tmp_path: Path) -> None:
    result = zhizhi("token", "create", "--db", f"sqlite:///{tmp_path / 'z.db'}", "--role", "root")
    assert result.returncode != 0
    assert result.stderr.startswith("zhizhi: error: token create: role must be one of")


def test_user_create_reads_the_password_from_stdin_and_the_user_can_log_in(
    tmp_path: Path,
) -> None:
    db = f"sqlite:///{tmp_path / 'z.db'}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "zhizhi.cli",
            "user",
            "create",
            "--db",
            db,
            "--username",
            "li",
            "--role",
            "operator",
            "--sites",
            "garden-court,north-park",
            "--password-stdin",
        ],
        input="a long enough password\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("created operator user li (sites: garden-court,north-park)")
    from server.db.session import make_engine, make_session_factory
    from server.users import LoginLimits, login

    engine = make_engine(db)
    with make_session_factory(engine)() as session:
        token, user = login(
            session, "li", "a long enough password", client_ip="test", limits=LoginLimits()
        )
    engine.dispose()
    assert token and user.sites == ["garden-court", "north-park"]


def test_tokens_are_listed_with_their_expiry_and_revoked_without_sql(tmp_path: Path) -> None:
    """Issue 14, item 10: `token` had only `create`, its tokens never expired, revoking
    needed SQL."""
    from server.auth import verify_token
    from server.db.session import make_engine, make_session_factory

    db = f"sqlite:///{tmp_path / 'z.db'}"
    edge = zhizhi("token", "create", "--db", db, "--role", "edge", "--name", "box1", "--sites", "a")
    ops = zhizhi("token", "create", "--db", db, "--role", "admin", "--days", "7")
    forever = zhizhi("token", "create", "--db", db, "--role", "admin", "--days", "100000")
    assert edge.returncode == ops.returncode == 0, edge.stderr + ops.stderr
    assert forever.returncode != 0 and "at most 3650" in forever.stderr

    listed = zhizhi("token", "list", "--db", db)
    lines = [line.split("\t") for line in listed.stdout.strip().splitlines()]
    assert lines[0] == ["id", "state", "role", "name", "sites", "expires"]
    assert [(row[0], row[1], row[2], row[3], row[4]) for row in lines[1:]] == [
        ("1", "active", "edge", "box1", "a"),
        ("2", "active", "admin", "admin", "*"),
    ]
    assert all(row[5] != "-" for row in lines[1:])  # every token has an expiry
    assert edge.stdout.strip() not in listed.stdout

    revoked = zhizhi("token", "revoke", "--db", db, "1")
    again = zhizhi("token", "revoke", "--db", db, "1")
    assert revoked.returncode == 0 and revoked.stdout.strip() == "revoked token 1"
    assert again.returncode != 0 and "no live token with id 1" in again.stderr
    assert "\trevoked\t" in zhizhi("token", "list", "--db", db).stdout
    engine = make_engine(db)
    with make_session_factory(engine)() as session:
        assert verify_token(session, edge.stdout.strip()) is None
        assert verify_token(session, ops.stdout.strip()) is not None
    engine.dispose()


def test_a_user_is_disabled_and_given_a_new_password_without_sql(tmp_path: Path) -> None:
    from server.auth import verify_token
    from server.db.session import make_engine, make_session_factory
    from server.users import LoginLimits, LoginRefused, create_user, login

    db = f"sqlite:///{tmp_path / 'z.db'}"
    engine = make_engine(db)
    zhizhi("token", "list", "--db", db)  # migrates
    sessions = make_session_factory(engine)
    with sessions() as session:
        create_user(session, username="li", password=FIRST, role="viewer", sites=["*"])
        token, _ = login(session, "li", FIRST, client_ip="t", limits=LoginLimits())

    changed = subprocess.run(
        [
            sys.executable,
            "-m",
            "zhizhi.cli",
            "user",
            "passwd",
            "--db",
            db,
            "--username",
            "li",
            "--password-stdin",
        ],
        input="second password\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.strip() == "new password for li (1 session(s) ended)"
    with sessions() as session:
        assert verify_token(session, token) is None  # the old session ended with the password
        with pytest.raises(LoginRefused):
            login(session, "li", FIRST, client_ip="t", limits=LoginLimits())
        token, _ = login(session, "li", "second password", client_ip="t", limits=LoginLimits())

    disabled = zhizhi("user", "disable", "--db", db, "--username", "li")
    unknown = zhizhi("user", "disable", "--db", db, "--username", "nobody")
    assert disabled.returncode == 0, disabled.stderr
    assert disabled.stdout.strip() == "disabled user li (1 session(s) ended)"
    assert unknown.returncode != 0 and "no user 'nobody'" in unknown.stderr
    with sessions() as session:
        assert verify_token(session, token) is None
        with pytest.raises(LoginRefused):
            login(session, "li", "second password", client_ip="t", limits=LoginLimits())
    assert zhizhi("user", "enable", "--db", db, "--username", "li").returncode == 0
    with sessions() as session:
        assert login(session, "li", "second password", client_ip="t", limits=LoginLimits())
    engine.dispose()


def test_user_create_lists_every_problem(tmp_path: Path) -> None:
    result = zhizhi(
        "user",
        "create",
        "--db",
        f"sqlite:///{tmp_path / 'z.db'}",
        "--username",
        "a b",
        "--role",
        "root",
        "--sites",
        ",",
        "--password-stdin",
    )

    assert result.returncode != 0
    assert result.stderr.startswith("zhizhi: error: user create: username must be")
    for fragment in ("role must be one of", "sites must name", "password must have"):
        assert fragment in result.stderr


def test_server_with_an_invalid_dispatch_file_lists_every_problem(tmp_path: Path) -> None:
    dispatch = tmp_path / "dispatch.yaml"
    dispatch.write_text(
        "timezone: Nowhere/City\nrules:\n  - {id: r, assign: ''}\n", encoding="utf-8"
    )

    result = zhizhi("server", "--db", f"sqlite:///{tmp_path / 'z.db'}", "--dispatch", str(dispatch))

    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("zhizhi: error:"))
    assert lines[first] == f"zhizhi: error: {dispatch}: invalid dispatch file (2 problem(s))"
    details = lines[first + 1 :]
    assert len(details) == 2
    assert any("timezone" in line for line in details)
    assert any("rules[0].assign" in line for line in details)
    assert "Traceback" not in result.stderr


def test_server_with_an_unreachable_database_fails_with_one_line() -> None:
    result = zhizhi("server", "--db", "postgresql://postgres@127.0.0.1:1/none", timeout=60)
    assert result.returncode != 0
    assert "zhizhi: error: server: cannot reach the database" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_runs_the_whole_chain(models_dir: Path) -> None:
    result = zhizhi("demo", "--seconds", "30", timeout=150)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "dashboard: http://127.0.0.1:" in out and "API:     Authorization: Bearer " in out
    login = next(line for line in out.splitlines() if line.strip().startswith("login:"))
    assert login.split()[1:3] == ["admin", "/"] and "operator /" in login
    # the box left in lane-a at 6 s is stored by the server with its onset, read back over REST
    alerts = [line for line in out.splitlines() if "new fire_lane camera=lane-a" in line]
    assert len(alerts) == 1, out
    assert "onset=6." in alerts[0] or "onset=7." in alerts[0]
    assert "camera=lane-b" not in out  # traffic only: no alert
    # the object thrown from the 9th floor of the facade at 12 s, with its floor
    throws = [line for line in out.splitlines() if "new falling_object camera=facade-a" in line]
    assert len(throws) == 1, out
    assert "onset=11." in throws[0] or "onset=12." in throws[0]
    assert "floor=9" in throws[0] or "floor=8" in throws[0] or "floor=10" in throws[0]
    # at the end: every story the run was long enough for, told; and the box's own figures
    stories = out[out.index("stories") :]
    assert "✗" not in stories, stories
    assert stories.count("✓") == 3 and "not reached yet" in stories  # the end comes at 45 s
    assert "edge box (last report)" in out and "facade-a" in stories[stories.index("edge box") :]
    assert "detector busy" in out


def bench_row(stdout: str) -> list[str]:
    """The cells of the figures' row (the line after the table's header)."""
    lines = stdout.strip().splitlines()
    rule = next(n for n, line in enumerate(lines) if line.startswith("|---"))
    row = lines[rule + 1]
    return [cell.strip() for cell in row.strip("|").split("|")]


def test_bench_ingest_stores_every_event_once(tmp_path: Path) -> None:
    """One server process on SQLite, its private broker, snapshots to its media folder."""
    result = zhizhi(
        "bench",
        "ingest",
        "--db",
        f"sqlite:///{tmp_path / 'b.db'}",
        "--events",
        "300",
        "--rate",
        "100",
        "--seconds",
        "1",
        "--snapshot-kb",
        "8",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    cells = bench_row(result.stdout)
    assert cells[:5] == ["1", "sqlite", "8 kB snapshot each, local disk", "1", "300"]
    assert cells[10:12] == ["0", "0 rows, 0 acks twice"]  # nothing lost, nothing doubled
    assert "(the goal is set for two processes" in result.stdout


def bench_databases() -> set[str]:
    """The bench's temporary databases on the PostgreSQL server now."""
    url = make_url(f"{PG_SERVER}/postgres").set(drivername="postgresql+psycopg")
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            names = connection.execute(text("SELECT datname FROM pg_database")).scalars()
            return {name for name in names if name.startswith("zhizhi_bench_")}
    except OperationalError as error:
        unavailable(f"PostgreSQL not reachable: {error.orig}")
        return set()
    finally:
        engine.dispose()


def test_bench_ingest_with_two_servers_and_the_object_store_leaves_nothing_behind() -> None:
    """Two server processes on a temporary PostgreSQL database, moto's S3 server: every event
    stored once, every snapshot in the bucket, the database dropped afterwards."""
    before = bench_databases()
    result = zhizhi(
        "bench",
        "ingest",
        "--db",
        PG_SERVER,
        "--servers",
        "2",
        "--s3",
        "--cameras",
        "16",
        "--events",
        "300",
        "--rate",
        "100",
        "--seconds",
        "1",
        "--snapshot-kb",
        "8",
        timeout=120,
    )
    if "not reachable" in result.stderr or "not installed" in result.stderr:
        unavailable(result.stderr.strip())
    assert result.returncode == 0, result.stderr
    cells = bench_row(result.stdout)
    assert cells[:5] == ["2", "postgresql", "8 kB snapshot each, s3 (moto)", "16", "300"]
    assert cells[10:13] == ["0", "0 rows, 0 acks twice", "400 of 400"]
    assert "nothing lost or doubled: yes" in result.stdout
    assert bench_databases() <= before  # its temporary database is gone
