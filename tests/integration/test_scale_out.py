"""Two server processes make one server (issue 16): proof on this machine.

Real parts: a private Mosquitto with the shared subscription, a fresh PostgreSQL database,
moto's S3 server for the evidence, two `zhizhi server` processes configured by ZHIZHI_*
variables (grace 4 s, heartbeat 1 s, no grouping so each situation is an incident), a webhook
receiver on loopback, a live stream (SSE) open on each process, and two edges (the edge's own
Outbox + MqttSink in processes of their own, this file run as a script) sending 100 events/s
each. srv-2 is killed with SIGKILL in the middle. Then: every message stored exactly once
(0 lost, 0 duplicate rows); srv-1's stream showed every situation live, srv-2's every one
created before it died; every incident's webhook went out under one idempotency key; evidence
uploaded to either process is served by the survivor. Run with -s for the `[scale-out]` line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from common.events import Event
from tests.support.databases import fresh_postgres_url
from tests.support.mosquitto import PrivateBroker, unavailable
from tests.support.servers import REPO, ServerProcess, zhizhi_binary
from zhizhi.local_services import MotoS3, ServiceUnavailable

pytestmark = pytest.mark.integration

SITE, CAMERA = "scale-site", "cam-1"
RATE, SECONDS = 100.0, 12.0  # per edge
STATES = ("new", "update", "end")


# The edge process: `python test_scale_out.py edge --mqtt URL --edge-id E --outbox F --count N`
def scale_event(edge: str, i: int) -> Event:
    seq = i % 3
    return Event.model_validate(
        {
            "event_id": f"{edge}-{i // 3:05d}",
            "seq": seq,
            "state": STATES[seq],
            "type": "fire_lane",
            "site_id": SITE,
            "camera_id": CAMERA,
            "zone_id": "lane",
            "rule_id": "lane-blocked",
            "observed_at": datetime.now(UTC),
            "pts_s": 0.5 * i,
            "onset_pts_s": 1.5 * (i // 3),
            "bbox": [0.1, 0.2, 0.3, 0.4],
            "score": 0.9,
            "details": {},
        }
    )


def edge_main(argv: list[str]) -> int:
    from edge.delivery.mqtt import MqttSink
    from edge.delivery.outbox import Outbox

    parser = argparse.ArgumentParser()
    for name in ("--mqtt", "--edge-id", "--outbox"):
        parser.add_argument(name, required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args(argv)
    outbox = Outbox(Path(args.outbox))
    sink = MqttSink(args.mqtt, SITE, args.edge_id, outbox, resend_after_s=5.0, reconnect_max_s=1)
    started = time.monotonic()
    for i in range(args.count):
        delay = started + i / RATE - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sink.send(scale_event(args.edge_id, i))
    print("all-sent", flush=True)  # noqa: T201
    deadline = time.monotonic() + 90
    while outbox.stats().pending_events and time.monotonic() < deadline:
        time.sleep(0.1)
    pending = outbox.stats().pending_events
    sink.close()
    print(f"pending {pending}", flush=True)  # noqa: T201
    return 0 if pending == 0 else 3


class Receiver:
    """A webhook receiver: every request's Idempotency-Key and incident id."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.seen.append((self.headers["Idempotency-Key"], body["incident"]["id"]))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Stream:
    """The live stream of one process: the event ids of the incidents it showed."""

    def __init__(self, base: str, token: str) -> None:
        self.event_ids: set[str] = set()
        self.open = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(base, token), daemon=True)
        self._thread.start()

    def _read(self, base: str, token: str) -> None:
        try:
            url = f"{base}/api/v1/stream?token={token}"
            with httpx.stream("GET", url, timeout=httpx.Timeout(5, read=None)) as response:
                for line in response.iter_lines():
                    if line.startswith(": connected"):
                        self.open.set()
                    if line.startswith("data:"):
                        data = json.loads(line[5:])
                        if "event_id" in data:
                            self.event_ids.add(data["event_id"])
        except httpx.HTTPError:
            return  # the process died or the test ended


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from fresh_postgres_url()


@pytest.fixture
def s3_url() -> Iterator[str]:
    try:
        server = MotoS3()
    except ServiceUnavailable as error:
        unavailable(str(error))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def token(db_url: str, role: str) -> str:
    made = subprocess.run(
        [str(zhizhi_binary()), "token", "create", "--db", db_url, "--role", role],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return made.stdout.strip().splitlines()[-1]


def test_two_processes_one_killed_lose_nothing_and_every_stream_sees_every_event(
    tmp_path: Path, pg_url: str, s3_url: str
) -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_url,
        region_name="us-east-1",
        aws_access_key_id="k",
        aws_secret_access_key="s",  # noqa: S106 (moto takes any)
    )
    s3.create_bucket(Bucket="evidence")
    receiver = Receiver()
    dispatch = tmp_path / "dispatch.yaml"
    dispatch.write_text(
        f"webhooks:\n  - id: bridge\n    url: {receiver.url}\n    secret: {'s' * 32}\n"
    )
    broker = PrivateBroker(tmp_path / "broker", ["max_queued_messages 100000"])
    env = {
        "ZHIZHI_DB_URL": pg_url,
        "ZHIZHI_MQTT_URL": broker.url,
        "ZHIZHI_MEMBER_GRACE_S": "4",
        "ZHIZHI_MEMBER_HEARTBEAT_S": "1",
        "ZHIZHI_GROUP_WINDOW_S": "0",
        "ZHIZHI_DISPATCH_FILE": str(dispatch),
        "ZHIZHI_EVIDENCE_STORE": "s3",
        "ZHIZHI_S3_BUCKET": "evidence",
        "ZHIZHI_S3_ENDPOINT_URL": s3_url,
        "ZHIZHI_S3_ACCESS_KEY_ID": "k",
        "ZHIZHI_S3_SECRET_ACCESS_KEY": "s",
    }
    servers = [ServerProcess(tmp_path / f"srv-{n}", f"srv-{n}", env) for n in (1, 2)]
    edges: list[subprocess.Popen[str]] = []
    count = int(RATE * SECONDS)
    engine = create_engine(make_url(pg_url).set(drivername="postgresql+psycopg"))
    try:
        broker.start()
        for server in servers:
            server.start()
        for server in servers:
            server.wait_healthy()
        viewer, edge_token = token(pg_url, "viewer"), token(pg_url, "edge")
        streams = [Stream(server.base, viewer) for server in servers]
        assert all(stream.open.wait(10) for stream in streams)
        files = [os.urandom(64) for _ in range(4)]
        for n, blob in enumerate(files):  # evidence into the bucket through either process
            body = b"\xff\xd8\xff\xe0" + blob
            answer = httpx.put(
                f"{servers[n % 2].base}/api/v1/evidence/{hashlib.sha256(body).hexdigest()}",
                content=body,
                headers={"Authorization": f"Bearer {edge_token}"},
                timeout=10,
            )
            assert answer.status_code == 201, answer.text

        started = time.monotonic()
        for name in ("edge-a", "edge-b"):
            edges.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(Path(__file__).resolve()),
                        "edge",
                        "--mqtt",
                        broker.url,
                        "--edge-id",
                        name,
                        "--outbox",
                        str(tmp_path / f"{name}.sqlite"),
                        "--count",
                        str(count),
                    ],
                    cwd=REPO,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                    env={**os.environ, "PYTHONPATH": str(REPO)},
                )
            )
        time.sleep(SECONDS / 2)
        before_kill = stored_event_ids(engine)
        time.sleep(1.0)  # what was stored by now has reached every stream
        servers[1].kill()  # srv-2 goes, mid-stream, with whatever it held
        for edge in edges:
            out, _ = edge.communicate(timeout=150)
            assert edge.returncode == 0, out
        elapsed = time.monotonic() - started

        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT event_id, seq, count(*) FROM events GROUP BY event_id, seq")
            ).all()
        copies = Counter({(e, int(s)): int(n) for e, s, n in rows})
        sent = {(f"{e}-{i // 3:05d}", i % 3) for e in ("edge-a", "edge-b") for i in range(count)}
        assert set(copies) == sent, f"lost {len(sent - set(copies))}"
        assert set(copies.values()) == {1}  # no duplicate rows
        situations = {event_id for event_id, _ in sent}

        deadline = time.monotonic() + 30
        while situations - streams[0].event_ids and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not situations - streams[0].event_ids, "srv-1's stream missed situations"
        assert before_kill <= streams[1].event_ids, "srv-2's stream missed some"

        with engine.connect() as connection:
            incidents = {int(i) for (i,) in connection.execute(text("SELECT id FROM incidents"))}
            deliveries = {
                f"zhizhi-delivery-{i}"
                for (i,) in connection.execute(text("SELECT id FROM webhook_deliveries"))
            }
        deadline = time.monotonic() + 90
        while {key for key, _ in receiver.seen} != deliveries and time.monotonic() < deadline:
            time.sleep(0.5)
        keys = {key for key, _ in receiver.seen}
        assert keys == deliveries, f"{len(deliveries - keys)} deliveries never came"
        assert {incident for _, incident in receiver.seen} == incidents  # each one notified
        for blob in files:  # the survivor serves what either process stored
            body = b"\xff\xd8\xff\xe0" + blob
            got = httpx.get(
                f"{servers[0].base}/api/v1/evidence/{hashlib.sha256(body).hexdigest()}",
                headers={"Authorization": f"Bearer {viewer}"},
                timeout=10,
            )
            assert got.content == body
        sys.stdout.write(
            f"\n[scale-out] 2 edges x {count} messages at {RATE:.0f}/s each, srv-2 killed "
            f"mid-stream: {len(copies)} stored once (0 lost, 0 duplicate rows) in "
            f"{elapsed:.1f} s; srv-1's stream {len(streams[0].event_ids)} of {len(situations)} "
            f"situations, srv-2's {len(streams[1].event_ids)} before it died; "
            f"{len(incidents)} incidents, {len(receiver.seen)} webhook posts under "
            f"{len(keys)} idempotency keys ({len(deliveries)} deliveries)\n"
        )
    finally:
        for edge in edges:
            if edge.poll() is None:
                edge.kill()
        for server in servers:
            server.stop()
        broker.stop()
        receiver.close()
        engine.dispose()


def stored_event_ids(engine: Any) -> set[str]:
    with engine.connect() as connection:
        return {str(e) for (e,) in connection.execute(text("SELECT DISTINCT event_id FROM events"))}


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "edge":
    sys.exit(edge_main(sys.argv[2:]))
