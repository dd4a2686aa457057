"""Edges over TLS (issue 16): the shipped broker config's TLS listener (deploy/mosquitto/
mosquitto.conf, client certificates required, the dynamic-security logins) with certificates
the test makes; the edge's delivery code (Outbox + MqttSink) on mqtts:// with a CA file and a
client certificate, the server's consumer on mqtts:// too. An edge that does not trust the
broker's CA, or has no client certificate, never connects and keeps its events."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from common.events import Event, StatusMessage
from common.mqtt_url import TlsFiles
from edge.delivery.mqtt import MqttSink
from edge.delivery.outbox import Outbox
from server.consumers.mqtt import MqttConsumer
from server.services.dead_letters import DeadLetter
from tests.support.mosquitto import PrivateBroker, free_port, unavailable
from tests.support.tls import PrivateCA

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "mosquitto"
PLUGIN = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")
SITE, EDGE = "garden-court", "box1"
SERVER_USER, EDGE_USER = "zhizhi-server", f"edge-{SITE}-{EDGE}"
LOGINS = {user: f"{user}-{uuid.uuid4().hex[:8]}" for user in (SERVER_USER, EDGE_USER)}


class Store:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.keys: set[tuple[str, int]] = set()

    def ingest_many(self, items: Sequence[tuple[Event, str | None]], *, source: str) -> list[bool]:
        with self.lock:
            fresh = [(e.event_id, e.seq) not in self.keys for e, _ in items]
            self.keys |= {(e.event_id, e.seq) for e, _ in items}
        return fresh

    def record_status(
        self, site_id: str, edge_id: str, status: StatusMessage, received_at: datetime
    ) -> None:
        pass

    def available(self) -> bool:
        return True

    def keep_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        pass


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def event(i: int) -> Event:
    return Event.model_validate(
        {
            "event_id": f"tls-{i:04d}",
            "seq": 0,
            "state": "new",
            "type": "fire_lane",
            "site_id": SITE,
            "camera_id": "gate-east",
            "zone_id": "lane",
            "rule_id": "lane-blocked",
            "observed_at": datetime.now(UTC),
            "pts_s": float(i),
            "onset_pts_s": 0.0,
            "bbox": [0.1, 0.2, 0.3, 0.4],
            "score": 0.9,
            "details": {},
        }
    )


@pytest.fixture
def ca(tmp_path: Path) -> PrivateCA:
    return PrivateCA(tmp_path / "ca", "Zhizhi test CA")


@pytest.fixture
def tls_broker(tmp_path: Path, ca: PrivateCA) -> Iterator[tuple[PrivateBroker, int]]:
    """The shipped mosquitto.conf with its TLS listener on a free port, the test's broker
    certificate and CA, client certificates required (its commented lines taken in)."""
    if not PLUGIN.exists():
        unavailable(f"{PLUGIN} not found (install mosquitto)")
    folder = tmp_path / "broker"
    folder.mkdir()
    (folder / "edges.txt").write_text(f"{SITE} {EDGE}\n")
    (folder / "passwords.txt").write_text("".join(f"{u} {p}\n" for u, p in LOGINS.items()))
    rules = folder / "dynamic-security.json"
    subprocess.run(
        [sys.executable, str(DEPLOY / "zhizhi_dynsec.py"), "--edges", str(folder / "edges.txt"),
         "--passwords", str(folder / "passwords.txt"), "--out", str(rules)],
        check=True, capture_output=True,
    )  # fmt: skip
    issued = ca.issue("broker", server=True)
    tls_port = free_port()
    swapped = {
        "listener 8883": f"listener {tls_port} 127.0.0.1",
        "certfile ": f"certfile {issued.cert}",
        "keyfile ": f"keyfile {issued.key}",
        "#   cafile ": f"cafile {ca.cert}",
        "#   require_certificate true": "require_certificate true",
    }
    dropped = re.compile(
        r"^\s*(listener 1883|plugin_opt_config_file|persistence_location|log_dest)"
    )
    lines = []
    for line in (DEPLOY / "mosquitto.conf").read_text().splitlines():
        for start, replacement in swapped.items():
            if line.startswith(start):
                line = replacement
        if not dropped.match(line):
            lines.append(line)
    assert "require_certificate true" in lines and "tls_version tlsv1.2" in lines
    broker = PrivateBroker(folder, start_timeout_s=5)
    broker.write_config([*lines, f"plugin_opt_config_file {rules}"])
    broker.start()
    yield broker, tls_port
    broker.stop()


def edge_sink(folder: Path, port: int, tls: TlsFiles | None) -> MqttSink:
    return MqttSink(
        f"mqtts://127.0.0.1:{port}",
        SITE,
        EDGE,
        Outbox(folder / "outbox.sqlite"),
        username=EDGE_USER,
        password=LOGINS[EDGE_USER],
        resend_after_s=2.0,
        reconnect_max_s=1,
        flush_timeout_s=1.0,
        tls_files=tls,
    )


def test_an_edge_sends_over_tls_with_a_client_certificate_and_gets_its_acks(
    tmp_path: Path, ca: PrivateCA, tls_broker: tuple[PrivateBroker, int]
) -> None:
    _, tls_port = tls_broker
    server_cert, edge_cert = ca.issue("zhizhi-server"), ca.issue(EDGE_USER)
    store = Store()
    consumer = MqttConsumer(
        f"mqtts://{SERVER_USER}:{LOGINS[SERVER_USER]}@127.0.0.1:{tls_port}",
        store,
        client_id="server-tls",
        tls_files=TlsFiles(ca.cert, server_cert.cert, server_cert.key),
    )
    consumer.start()
    sink = edge_sink(tmp_path / "edge", tls_port, TlsFiles(ca.cert, edge_cert.cert, edge_cert.key))
    try:
        wait_until(lambda: consumer.healthy, 10, "the server's consumer over TLS")
        for i in range(20):
            sink.send(event(i))
        wait_until(lambda: len(store.keys) == 20, 15, "20 events over TLS")
        wait_until(lambda: sink.outbox.stats().pending_events == 0, 15, "the acks over TLS")
    finally:
        sink.close()
        consumer.stop(timeout_s=2)


@pytest.mark.parametrize("case", ["stranger_ca", "no_client_certificate"])
def test_an_edge_that_cannot_prove_or_check_identities_never_connects_and_keeps_its_events(
    tmp_path: Path, ca: PrivateCA, tls_broker: tuple[PrivateBroker, int], case: str
) -> None:
    _, tls_port = tls_broker
    if case == "stranger_ca":  # the edge trusts another CA: the broker's certificate fails
        stranger = PrivateCA(tmp_path / "stranger", "Someone else's CA")
        mine = stranger.issue(EDGE_USER)
        files = TlsFiles(stranger.cert, mine.cert, mine.key)
    else:  # the broker requires a client certificate
        files = TlsFiles(ca.cert)
    sink = edge_sink(tmp_path / "edge", tls_port, files)
    try:
        sink.send(event(1))
        time.sleep(3.0)  # several connection attempts (reconnect_max_s=1)
        assert not sink._connected.is_set()
        assert sink.outbox.stats().pending_events == 1
    finally:
        sink.close()
