"""Fault tests of the whole chain (issue 5): edge process → private Mosquitto → `zhizhi server`
process(es) → SQLite or PostgreSQL.

Nothing is faked. The edge is a subprocess (this file run as a script, `edge_main`) that puts
synthetic contract events through the real `Outbox` + `MqttSink` at a steady rate, then waits
until its outbox is empty, printing its progress. The server is `zhizhi server` on a free port.
Each test breaks one link mid-stream, then checks in the database (directly, and through the
REST API with an admin token from `zhizhi token create`) that every (event_id, seq) sent is
stored exactly once, and that the edge's outbox ended empty.

1. the broker stopped (SIGTERM: it saves its sessions; and SIGKILL: it loses them) and started
   again mid-stream, persistence on;
2. the server killed with SIGKILL mid-stream and restarted (same client id, same database),
   between batches and while it holds messages it never stored; the edge's resend timer is
   longer than the test there, so the server's persistent session alone must bring them back;
3. the edge killed with SIGKILL with everything still in its outbox, then a fresh edge process
   on the same outbox file that sends nothing new;
4. duplicate deliveries: resend_after_s=0.2 s and the server frozen (SIGSTOP) for a while;
5. two server processes in one shared-subscription group against one PostgreSQL.

Every scenario runs on SQLite and PostgreSQL (the fifth on PostgreSQL only: SQLite is one
process's database). PostgreSQL: a fresh database on ZHIZHI_TEST_PG_URL (default
postgresql://postgres@127.0.0.1:5432), dropped afterwards. Without PostgreSQL or
/usr/sbin/mosquitto the tests skip, and fail when CI=true. Each test writes one summary line
(counts and time) to stdout: run with -s to see them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from common.events import Event
from edge.delivery.mqtt import MqttSink
from edge.delivery.outbox import Outbox
from tests.support.mosquitto import PrivateBroker, free_port, unavailable
from tests.support.postgres import PrivatePostgres
from tests.support.tcpproxy import TcpProxy
from zhizhi.local_services import http_get, stop_process

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PG_SERVER = os.environ.get("ZHIZHI_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432")
SITE, EDGE, CAMERA = "site-chain", "edge-chain", "cam-1"
STATES = ("new", "update", "end")

N_EVENTS = 300  # per scenario, at RATE events/s
RATE = 100.0
N_SCALE_OUT = 1000
EDGE_TIMEOUT_S = 60.0  # the edge gives up waiting for its outbox to empty after this
READY_TIMEOUT_S = 20.0

EventKey = tuple[str, int]


# The edge process ----------------------------------------------------------------------------
# `python tests/integration/test_chain_faults.py edge --mqtt ... --outbox ... --tag ... --count N`
# Output, one line each, flushed: "started pending=P", "sent K" (every 10), "all-sent N",
# "pending P" (every 0.5 s), then "empty publishes=X" (exit 0) or "timeout pending=P" (exit 3).


def chain_event(tag: str, i: int) -> Event:
    """The i-th synthetic message: situations of three messages (new, update, end)."""
    seq = i % 3
    return Event.model_validate(
        {
            "event_id": f"{tag}-{i // 3:05d}",
            "seq": seq,
            "state": STATES[seq],
            "type": "fire_lane",
            "site_id": SITE,
            "camera_id": CAMERA,
            "zone_id": "lane-north",
            "rule_id": "lane-north-blocked",
            "observed_at": datetime.now(UTC),
            "pts_s": 0.5 * i,
            "onset_pts_s": 1.5 * (i // 3),
            "bbox": [0.1, 0.2, 0.3, 0.4],
            "score": 0.9,
            "details": {"blocked_s": 30.0 + seq, "n": i},
        }
    )


def expected_keys(tag: str, count: int) -> set[EventKey]:
    return {(f"{tag}-{i // 3:05d}", i % 3) for i in range(count)}


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def edge_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="chain-edge")
    parser.add_argument("--mqtt", required=True)
    parser.add_argument("--outbox", required=True, type=Path)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--rate", type=float, default=RATE)
    parser.add_argument("--resend-after", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=EDGE_TIMEOUT_S)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    outbox = Outbox(args.outbox)
    sink = MqttSink(
        args.mqtt,
        SITE,
        EDGE,
        outbox,
        resend_after_s=args.resend_after,
        reconnect_max_s=1,
        flush_timeout_s=2.0,
        keepalive_s=5,
    )
    publishes = [0]  # event publishes, first sends and resends (for the report only)
    client = sink._client
    original_publish = client.publish

    def counting_publish(topic: str, *rest: Any, **options: Any) -> Any:
        if topic.endswith("/events"):
            publishes[0] += 1
        return original_publish(topic, *rest, **options)

    client.publish = counting_publish  # type: ignore[method-assign]
    say(f"started pending={outbox.stats().pending_events}")

    started = time.monotonic()
    for i in range(args.count):
        delay = started + i / args.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sink.send(chain_event(args.tag, i))
        if (i + 1) % 10 == 0:
            say(f"sent {i + 1}")
    say(f"all-sent {args.count}")

    deadline = time.monotonic() + args.timeout
    report_at = 0.0
    while (pending := outbox.stats().pending_events) > 0:
        now = time.monotonic()
        if now > deadline:
            say(f"timeout pending={pending}")
            sink.close()
            return 3
        if now >= report_at:
            say(f"pending {pending}")
            report_at = now + 0.5
        time.sleep(0.05)
    sink.close()
    say(f"empty publishes={publishes[0]}")
    outbox.close()
    return 0


# Helpers -------------------------------------------------------------------------------------


def wait_until(
    condition: Callable[[], bool],
    timeout_s: float,
    what: str,
    diagnostics: Callable[[], str] | None = None,
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            detail = "\n" + diagnostics() if diagnostics is not None else ""
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}{detail}")
        time.sleep(0.05)


def tail(path: Path, chars: int = 3000) -> str:
    if not path.exists():
        return f"--- {path.name}: (none)"
    return f"--- {path.name}:\n{path.read_text(errors='replace')[-chars:]}"


class Server:
    """One `zhizhi server` process; restartable on the same port, client id and database."""

    def __init__(self, folder: Path, db_url: str, mqtt_url: str, client_id: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.db_url = db_url
        self.mqtt_url = mqtt_url
        self.client_id = client_id
        self.port = free_port()
        self.log = folder / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        for attempt in range(3):
            self.starts += 1
            with self.log.open("a") as log:
                log.write(f"=== start {self.starts} on port {self.port}\n")
                log.flush()
                self.process = subprocess.Popen(
                    [
                        str(zhizhi_binary()),
                        "server",
                        "--db",
                        self.db_url,
                        "--mqtt",
                        self.mqtt_url,
                        "--port",
                        str(self.port),
                        "--media-dir",
                        str(self.folder / "media"),
                        "--client-id",
                        self.client_id,
                        "--metrics-public",  # the test reads the counters without a token
                    ],
                    cwd=self.folder,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            try:
                self.wait_healthy()
                return
            except AssertionError:
                stop_process(self.process, kill=True)
                if "address already in use" in self.log.read_text().lower() and attempt < 2:
                    self.port = free_port()  # lost the race for the port: take another
                    continue
                raise

    def health(self) -> tuple[int, dict[str, Any]]:
        """/healthz: its status code and body (0 and {} when the server does not answer)."""
        code, body = http_get(f"{self.base}/healthz", timeout_s=8)
        return code, json.loads(body) if body else {}

    def healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"zhizhi server exited with {self.process.returncode}")
        return http_get(f"{self.base}/healthz", timeout_s=2)[0] == 200

    def wait_healthy(self) -> None:
        wait_until(self.healthy, READY_TIMEOUT_S, f"{self.client_id} /healthz", self.diagnostics)

    def send(self, sig: int) -> None:
        """Send `sig`; for SIGKILL and SIGTERM also wait until the process is gone."""
        assert self.process is not None
        self.process.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self.process.wait(timeout=15)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ingested(self) -> dict[str, float]:
        """zhizhi_events_ingested_total{source="mqtt"} of this process, by result."""
        code, body = http_get(f"{self.base}/metrics")
        assert code == 200, f"{self.client_id} /metrics answered {code}"
        results: dict[str, float] = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                if (
                    sample.name == "zhizhi_events_ingested_total"
                    and sample.labels.get("source") == "mqtt"
                ):
                    results[sample.labels["result"]] = sample.value
        return results

    def diagnostics(self) -> str:
        return tail(self.log)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # in case a test left it stopped
        stop_process(self.process, kill=True)


class EdgeProcess:
    """One run of `edge_main` in a subprocess; its stdout goes to a file the test polls."""

    def __init__(self, folder: Path, name: str, args: list[str]) -> None:
        self.out = folder / f"{name}.out"
        self.err = folder / f"{name}.err"
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with self.out.open("w") as out, self.err.open("w") as err:
            self.process = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "edge", *args],
                cwd=REPO,
                stdout=out,
                stderr=err,
                env=env,
            )

    def lines(self) -> list[str]:
        return self.out.read_text().splitlines() if self.out.exists() else []

    def sent(self) -> int:
        for line in reversed(self.lines()):
            if line.startswith(("sent ", "all-sent ")):
                return int(line.split()[-1])
        return 0

    def all_sent(self) -> bool:
        self._check_running_or_done()
        return any(line.startswith("all-sent ") for line in self.lines())

    def publishes(self) -> int:
        for line in self.lines():
            if line.startswith("empty publishes="):
                return int(line.split("=", 1)[1])
        return -1

    def _check_running_or_done(self) -> None:
        code = self.process.poll()
        if code not in (None, 0):
            raise AssertionError(f"edge exited with {code}\n{self.diagnostics()}")

    def wait_sent(self, count: int, timeout_s: float = 30.0) -> None:
        def reached() -> bool:
            self._check_running_or_done()
            return self.sent() >= count

        wait_until(reached, timeout_s, f"the edge to send {count}", self.diagnostics)

    def wait_done(self, timeout_s: float = EDGE_TIMEOUT_S + 15) -> None:
        try:
            code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"edge still running after {timeout_s} s\n{self.diagnostics()}"
            ) from None
        assert code == 0, f"edge exited with {code} (outbox not emptied)\n{self.diagnostics()}"

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def diagnostics(self) -> str:
        lines = self.lines()
        return f"--- {self.out.name} (last lines): {lines[-5:]}\n{tail(self.err)}"

    def stop(self) -> None:
        stop_process(self.process, kill=True)


def zhizhi_binary() -> Path:
    beside = Path(sys.executable).parent / "zhizhi"
    return beside if beside.exists() else REPO / ".venv" / "bin" / "zhizhi"


# The chain -----------------------------------------------------------------------------------


class Chain:
    """Broker, servers and edges of one test, all in tmp_path; `close` kills what is left."""

    def __init__(self, folder: Path, db_url: str, backend: str) -> None:
        self.folder = folder
        self.db_url = db_url
        self.backend = backend
        self.tag = f"ev{uuid.uuid4().hex[:8]}"
        self.outbox = folder / "edge" / "outbox.sqlite"
        self.outbox.parent.mkdir(parents=True)
        self.broker = PrivateBroker(folder / "broker", ["max_queued_messages 100000"])
        self.servers: list[Server] = []
        self.edges: list[EdgeProcess] = []
        self.started = time.monotonic()

    def server(self, client_id: str = "chain-server-1", *, start: bool = True) -> Server:
        made = Server(self.folder / client_id, self.db_url, self.broker.url, client_id)
        self.servers.append(made)
        if start:
            made.start()
        return made

    def edge(
        self,
        count: int,
        *,
        rate: float = RATE,
        resend_after_s: float = 2.0,
        mqtt_url: str | None = None,
    ) -> EdgeProcess:
        name = f"edge-{len(self.edges) + 1}"
        args = [
            "--mqtt",
            mqtt_url or self.broker.url,
            "--outbox",
            str(self.outbox),
            "--tag",
            self.tag,
            "--count",
            str(count),
            "--rate",
            str(rate),
            "--resend-after",
            str(resend_after_s),
        ]
        made = EdgeProcess(self.outbox.parent, name, args)
        self.edges.append(made)
        return made

    def outbox_pending(self) -> int:
        with sqlite3.connect(self.outbox, timeout=10) as db:
            count: int = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        return count

    def stored(self) -> Counter[EventKey]:
        """Rows per (event_id, seq), read from the database itself."""
        engine = create_engine(make_url(self.db_url).set(drivername=self._driver()))
        try:
            with engine.connect() as connection:
                rows = connection.execute(
                    text("SELECT event_id, seq, COUNT(*) FROM events GROUP BY event_id, seq")
                ).all()
        finally:
            engine.dispose()
        return Counter({(event_id, int(seq)): int(n) for event_id, seq, n in rows})

    def _driver(self) -> str:
        return "postgresql+psycopg" if self.backend == "postgresql" else "sqlite"

    def admin_token(self) -> str:
        result = subprocess.run(
            [str(zhizhi_binary()), "token", "create", "--db", self.db_url, "--role", "admin"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"token create failed: {result.stderr}"
        return result.stdout.strip().splitlines()[-1]

    def listed(self, server: Server) -> tuple[int, list[EventKey]]:
        """Every stored message through GET /api/v1/events (pages of 500): total and keys."""
        token = self.admin_token()
        keys: list[EventKey] = []
        total = -1
        while True:
            url = f"{server.base}/api/v1/events?site_id={SITE}&limit=500&offset={len(keys)}"
            code, body = http_get(url, token)
            assert code == 200, f"GET /api/v1/events answered {code}: {body[:300]!r}"
            page = json.loads(body)
            total = page["total"]
            keys.extend((item["event_id"], item["seq"]) for item in page["items"])
            if not page["items"] or len(keys) >= total:
                return total, keys

    def diagnostics(self) -> str:
        parts = [edge.diagnostics() for edge in self.edges]
        parts += [server.diagnostics() for server in self.servers]
        parts.append(self.broker.log(1500))
        return "\n".join(parts)

    def assert_exactly_once(self, sent: set[EventKey], api_server: Server) -> dict[str, int]:
        """Every key stored once, nothing else stored, the outbox empty; returns the counts."""
        stored = self.stored()
        missing = sent - stored.keys()
        extra = stored.keys() - sent
        doubled = {key: n for key, n in stored.items() if n != 1}
        assert not missing, f"{len(missing)} lost, e.g. {sorted(missing)[:5]}\n{self.diagnostics()}"
        assert not extra, f"{len(extra)} stored that were never sent: {sorted(extra)[:5]}"
        assert not doubled, f"{len(doubled)} stored more than once: {list(doubled.items())[:5]}"
        total, listed = self.listed(api_server)
        assert total == len(sent), f"the API counts {total}, sent {len(sent)}"
        assert len(listed) == len(set(listed)) == len(sent)
        assert set(listed) == sent
        pending = self.outbox_pending()
        assert pending == 0, f"the edge's outbox still holds {pending}\n{self.diagnostics()}"
        return {"sent": len(sent), "stored": sum(stored.values()), "duplicate_rows": 0}

    def close(self) -> None:
        for edge in self.edges:
            edge.stop()
        for server in self.servers:
            server.stop()
        self.broker.stop()


def summary(chain: Chain, scenario: str, counts: dict[str, Any]) -> None:
    details = " ".join(f"{name}={value}" for name, value in counts.items())
    elapsed = time.monotonic() - chain.started
    sys.stdout.write(f"\n[chain] {scenario} [{chain.backend}]: {details} time={elapsed:.1f}s\n")


# Fixtures ------------------------------------------------------------------------------------


def _postgres_admin() -> Any:
    return create_engine(
        make_url(f"{PG_SERVER}/postgres").set(drivername="postgresql+psycopg"),
        isolation_level="AUTOCOMMIT",
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(backend, URL as given to `zhizhi server`): a SQLite file, or a fresh PostgreSQL db."""
    if request.param == "sqlite":
        yield "sqlite", f"sqlite:///{tmp_path / 'zhizhi.db'}"
        return
    name = f"zhizhi_chain_{uuid.uuid4().hex[:12]}"
    admin = _postgres_admin()
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as error:
        admin.dispose()
        unavailable(f"PostgreSQL not reachable at {PG_SERVER}: {str(error.orig).strip()}")
    try:
        yield "postgresql", f"{PG_SERVER}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def chain(database: tuple[str, str], tmp_path: Path) -> Iterator[Chain]:
    backend, url = database
    made = Chain(tmp_path / "chain", url, backend)
    try:
        made.broker.start()
        yield made
    finally:
        made.close()


# Scenarios -----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["terminate", "kill"])
def test_broker_stopped_and_started_again_mid_stream(chain: Chain, how: str) -> None:
    """terminate: Mosquitto saves its sessions and queues and restores them. kill: it loses
    everything since its last save (here: all of it); the outboxes and resends cover that."""
    server = chain.server()
    edge = chain.edge(N_EVENTS)
    edge.wait_sent(N_EVENTS // 3)
    if how == "terminate":
        chain.broker.stop()
    else:
        chain.broker.stop(kill=True)
    down_from = edge.sent()

    def says_broker_away() -> bool:  # health tells the truth while the broker is away
        code, body = server.health()
        return code == 503 and body.get("broker") is False

    wait_until(says_broker_away, 10, "/healthz to name the broker", chain.diagnostics)
    time.sleep(1.0)  # the edge keeps adding events to its outbox meanwhile
    down_to = edge.sent()
    chain.broker.start()
    edge.wait_done()
    assert server.alive(), server.diagnostics()
    server.wait_healthy()
    counts = chain.assert_exactly_once(expected_keys(chain.tag, N_EVENTS), server)
    assert down_to > down_from, "the edge should have sent while the broker was down"
    counts.update(sent_while_down=down_to - down_from, publishes=edge.publishes())
    summary(chain, f"broker {how} + restart", counts)


@pytest.mark.parametrize("when", ["idle", "holding"])
def test_server_killed_and_restarted_mid_stream(chain: Chain, when: str) -> None:
    """idle: killed between batches. holding: frozen for a second first, so the broker has
    handed it up to a second of events it never stored or PUBACKed when it dies.

    The edge's resend timer is 60 s here, longer than the test: everything must come through
    the server's persistent session (queued by the broker while it was down, or delivered
    again because it was never PUBACKed), so the edge publishes each message exactly once."""
    server = chain.server()
    edge = chain.edge(N_EVENTS, resend_after_s=60.0)
    edge.wait_sent(N_EVENTS // 3)
    down_from = edge.sent()
    if when == "holding":
        server.send(signal.SIGSTOP)
        time.sleep(1.0)
    server.send(signal.SIGKILL)
    time.sleep(1.0)
    down_to = edge.sent()
    server.start()  # same port, client id and database
    edge.wait_done(timeout_s=30)
    counts = chain.assert_exactly_once(expected_keys(chain.tag, N_EVENTS), server)
    assert down_to > down_from, "the edge should have sent while the server was down"
    after = server.ingested()
    publishes = edge.publishes()
    counts.update(
        sent_while_down=down_to - down_from,
        publishes=publishes,
        stored_after_restart=int(after.get("stored", 0)),
        duplicates_after_restart=int(after.get("duplicate", 0)),
    )
    assert publishes == N_EVENTS, f"the edge had to re-publish: {counts}"
    summary(chain, f"server kill -9 ({when})", counts)


def test_edge_killed_with_events_in_its_outbox(chain: Chain) -> None:
    server = chain.server()
    server.send(signal.SIGTERM)  # its session stays in the broker, which queues for it
    first = chain.edge(N_EVENTS, rate=4 * RATE)
    wait_until(first.all_sent, 30, "the first edge to queue everything", chain.diagnostics)
    held = chain.outbox_pending()
    assert held == N_EVENTS, f"with no server nothing is acked, yet the outbox holds {held}"
    first.kill()
    assert chain.stored() == Counter(), "nothing can be stored while the server is down"
    server.start()
    second = chain.edge(0)  # same outbox file, sends nothing new
    second.wait_done()
    counts = chain.assert_exactly_once(expected_keys(chain.tag, N_EVENTS), server)
    ingested = server.ingested()
    counts.update(
        in_outbox_at_kill=held,
        republished=second.publishes(),
        server_duplicates=int(ingested.get("duplicate", 0)),
    )
    summary(chain, "edge kill -9", counts)


def test_duplicate_deliveries_are_stored_once(chain: Chain) -> None:
    server = chain.server()
    edge = chain.edge(N_EVENTS, resend_after_s=0.2)
    edge.wait_sent(N_EVENTS // 4)
    assert server.process is not None
    server.send(signal.SIGSTOP)  # frozen: no acks, so the edge re-publishes every 0.2 s
    try:
        time.sleep(2.0)
    finally:
        server.send(signal.SIGCONT)
    edge.wait_done()
    counts = chain.assert_exactly_once(expected_keys(chain.tag, N_EVENTS), server)
    ingested = server.ingested()
    duplicates = int(ingested.get("duplicate", 0))
    assert int(ingested.get("stored", 0)) == N_EVENTS
    assert duplicates >= N_EVENTS // 4, f"expected many duplicate deliveries, got {duplicates}"
    counts.update(publishes=edge.publishes(), server_duplicates=duplicates)
    summary(chain, "duplicate deliveries", counts)


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_two_servers_in_one_shared_group_share_the_load(chain: Chain) -> None:
    first = chain.server("chain-server-1")
    second = chain.server("chain-server-2")  # after the first: one of them migrates
    edge = chain.edge(N_SCALE_OUT, rate=2 * RATE)
    edge.wait_done()
    counts = chain.assert_exactly_once(expected_keys(chain.tag, N_SCALE_OUT), second)
    stored = [int(server.ingested().get("stored", 0)) for server in (first, second)]
    assert all(n > 0 for n in stored), f"each server should store a share, stored {stored}"
    assert sum(stored) == N_SCALE_OUT, f"rows inserted per server {stored} != {N_SCALE_OUT}"
    dups = [int(server.ingested().get("duplicate", 0)) for server in (first, second)]
    counts.update(stored_per_server=stored, duplicates_per_server=dups, publishes=edge.publishes())
    summary(chain, "two servers, one group", counts)


# Issue 14: the database, the media folder and the network fail ------------------------------


@pytest.mark.parametrize("how", ["fast", "immediate"])
def test_postgres_stopped_and_started_again_mid_stream(tmp_path: Path, how: str) -> None:
    """A private PostgreSQL stopped mid-stream (fast: a clean shutdown; immediate: like a
    crash) and started again. /healthz says 503 with database and ingest false while it is
    away and 200 after; nothing is lost or stored twice."""
    postgres = PrivatePostgres()
    chain: Chain | None = None
    try:
        postgres.start()
        admin = create_engine(
            make_url(postgres.url).set(drivername="postgresql+psycopg"),
            isolation_level="AUTOCOMMIT",
        )
        with admin.connect() as connection:
            connection.execute(text('CREATE DATABASE "zhizhi"'))
        admin.dispose()
        url = make_url(postgres.url).set(database="zhizhi").render_as_string(hide_password=False)
        chain = Chain(tmp_path / "chain", url, "postgresql")
        chain.broker.start()
        server = chain.server()
        edge = chain.edge(N_EVENTS)
        edge.wait_sent(N_EVENTS // 3)
        postgres.stop(how)
        down_from = edge.sent()

        def says_database_away() -> bool:
            code, body = server.health()
            return code == 503 and body.get("database") is False

        wait_until(says_database_away, 20, "/healthz to name the database", chain.diagnostics)
        time.sleep(2.0)  # the edge goes on; the server holds what it gets, unacknowledged
        down_to = edge.sent()
        postgres.start()
        server.wait_healthy()
        edge.wait_done()
        code, body = server.health()
        assert code == 200 and body["status"] == "ok", body
        counts = chain.assert_exactly_once(expected_keys(chain.tag, N_EVENTS), server)
        assert down_to > down_from, "the edge should have sent while the database was down"
        counts.update(sent_while_down=down_to - down_from, publishes=edge.publishes())
        summary(chain, f"PostgreSQL stop -m {how} + start", counts)
    finally:
        if chain is not None:
            chain.close()
        postgres.close()


JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"


def test_the_media_folder_fills_up_mid_stream(tmp_path: Path) -> None:
    """The server's media folder on a 1 MiB file system that fills up while events flow and
    an uploader sends snapshots: uploads get 507 (never a 500, never a half file), /healthz says
    media false ("degraded", still 200: alerts go on), events are all stored once; once space
    is freed the same uploads succeed and every file reads back whole."""
    if os.geteuid() != 0:
        unavailable("mounting a small tmpfs for the media folder needs root")
    chain = Chain(tmp_path / "chain", f"sqlite:///{tmp_path / 'zhizhi.db'}", "sqlite")
    media = chain.folder / "chain-server-1" / "media"
    media.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(media)], check=True)
    try:
        chain.broker.start()
        filler = media / "filler"
        filler.write_bytes(b"\0" * 600 * 1024)  # what the operator will delete
        server = chain.server()
        token = chain.admin_token()
        edge = chain.edge(N_EVENTS)
        files = [JPEG_HEAD + bytes([n]) * (150 * 1024) for n in range(6)]
        codes = [put_evidence(server, token, data) for data in files]
        assert set(codes) == {201, 507}, codes
        full = codes.count(507)
        code, body = server.health()
        assert (code, body["status"], body["media"]) == (200, "degraded", False), body
        filler.unlink()  # the operator frees space; the uploader tries again
        retried = [
            put_evidence(server, token, d) for d, c in zip(files, codes, strict=True) if c == 507
        ]
        assert set(retried) == {201}, retried
        code, body = server.health()
        assert (code, body["status"], body["media"]) == (200, "ok", True), body
        for data in files:
            status, stored = http_get(f"{server.base}/api/v1/evidence/{sha(data)}", token)
            assert status == 200 and stored == data
        assert not [p for p in media.rglob("*") if p.name.endswith(".part")]
        edge.wait_done()
        counts = chain.assert_exactly_once(expected_keys(chain.tag, N_EVENTS), server)
        counts.update(uploads_refused_full=full, uploads_stored=len(files))
        summary(chain, "media folder full", counts)
    finally:
        chain.close()
        subprocess.run(["umount", str(media)], check=False)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put_evidence(server: Server, token: str, data: bytes) -> int:
    request = urllib.request.Request(  # noqa: S310 (http://127.0.0.1 only)
        f"{server.base}/api/v1/evidence/{sha(data)}",
        data=data,
        method="PUT",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_the_network_between_edge_and_broker_is_cut_mid_stream(tmp_path: Path) -> None:
    """The edge reaches the broker through a proxy the test controls: first the connection is
    reset (2 s), then it goes silent (a partition, 10 s: longer than 1.5 keepalives, so the
    broker gives up on the edge and publishes its last will). The server's view of the edge
    tells the truth (offline during the partition, online after); nothing is lost or doubled."""
    chain = Chain(tmp_path / "chain", f"sqlite:///{tmp_path / 'zhizhi.db'}", "sqlite")
    proxy: TcpProxy | None = None
    try:
        chain.broker.start()
        proxy = TcpProxy(chain.broker.port)
        server = chain.server()
        token = chain.admin_token()
        edge = chain.edge(N_EVENTS, rate=RATE / 4, mqtt_url=proxy.url)

        def edge_state() -> str | None:
            code, body = http_get(f"{server.base}/api/v1/edges", token)
            items = json.loads(body)["items"] if code == 200 else []
            return next((e["state"] for e in items if e["edge_id"] == EDGE), None)

        wait_until(lambda: edge_state() == "online", 20, "the edge online", chain.diagnostics)
        edge.wait_sent(N_EVENTS // 4)
        proxy.cut("reset")
        time.sleep(2.0)
        proxy.restore()
        edge.wait_sent(N_EVENTS // 2)
        proxy.cut("blackhole")
        wait_until(lambda: edge_state() == "offline", 20, "the edge's last will", chain.diagnostics)
        time.sleep(1.0)
        proxy.restore()
        wait_until(lambda: edge_state() == "online", 30, "the edge back", chain.diagnostics)
        edge.wait_done()
        counts = chain.assert_exactly_once(expected_keys(chain.tag, N_EVENTS), server)
        counts.update(cuts=proxy.cuts, publishes=edge.publishes())
        summary(chain, "network cut edge-broker (reset, partition)", counts)
    finally:
        if proxy is not None:
            proxy.close()
        chain.close()


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "edge":
    sys.exit(edge_main(sys.argv[2:]))
