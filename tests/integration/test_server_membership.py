"""A server process that goes away does not keep a share of the events (issue 18).

Real parts: a private Mosquitto (persistence on, $SYS every second), a fresh PostgreSQL
database, `zhizhi server` processes configured by ZHIZHI_* variables as containers are (grace
6 s, heartbeat 1 s), two `zhizhi edge run` boxes on a synthetic lane played in a loop, the
edge's own delivery code (Outbox + MqttSink, re-send window 10 s) for a third box, a plain
QoS-1 publisher (no outbox, no re-sends: an integration or a sensor gateway), and `zhizhi bench
ingest`.

Story: servers srv-a, srv-b and srv-c share the group; srv-b is killed for good and srv-c is
killed and comes back as srv-d (a container renamed on restart). While the dead members are in
the group the plain publisher loses events to them (checked: the premise); once srv-a has
removed them (their broker sessions ended, audited), every plain event is stored once; every
event of the boxes is stored once, none later than the grace plus one re-send window (plus the
heartbeat and a margin); the box whose events went to dead members reports the re-sends
(`outbox.late_acks`) and the server shows them on /metrics; the bench leaves no session at
the broker and no member in the table. Run with -s for the figures (one `[membership]` line
per phase).
"""

from __future__ import annotations

import json
import queue
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from common.events import Event, events_topic
from edge.delivery.mqtt import MqttSink
from edge.delivery.outbox import Outbox
from edge.offline.synthetic import LANE, LaneScene, write_video
from tests.support.databases import fresh_postgres_url
from tests.support.mosquitto import PrivateBroker
from tests.support.servers import REPO, ServerProcess, zhizhi_binary

pytestmark = pytest.mark.integration

GRACE_S, BEAT_S, RESEND_S = 6.0, 1.0, 10.0  # RESEND_S: MqttSink's default, as edge run uses
SITE = "member-site"
PUB_SITE, PUB_EDGE, PUB_CAMERA = "plain-site", "gateway-1", "sensor-1"


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


def say(line: str) -> None:
    sys.stdout.write(f"\n[membership] {line}\n")


def plain_event(tag: str, i: int, site: str = PUB_SITE, camera: str = PUB_CAMERA) -> Event:
    return Event.model_validate(
        {
            "event_id": f"{tag}-{i:04d}",
            "seq": 0,
            "state": "new",
            "type": "fire_lane",
            "site_id": site,
            "camera_id": camera,
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


def publish_plain(broker: PrivateBroker, tag: str, count: int) -> set[str]:
    """`count` events at QoS 1 from a publisher without an outbox; their ids once the broker
    has PUBACKed every one."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"plain-{uuid.uuid4().hex[:6]}")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        infos = [
            client.publish(
                events_topic(PUB_SITE, PUB_EDGE, PUB_CAMERA),
                plain_event(tag, i).to_json(),
                qos=1,
            )
            for i in range(count)
        ]
        for info in infos:
            info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()
    return {f"{tag}-{i:04d}" for i in range(count)}


class Database:
    def __init__(self, url: str) -> None:
        self.engine: Engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"))

    def copies(self, event_ids: set[str]) -> dict[str, int]:
        """Rows per event_id among `event_ids` (all seqs counted)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                text("SELECT event_id, seq, count(*) FROM events GROUP BY event_id, seq")
            ).all()
        found: dict[str, int] = {}
        for event_id, _seq, n in rows:
            if event_id in event_ids:
                found[event_id] = found.get(event_id, 0) + int(n)
        return found

    def keys(self, site: str) -> dict[tuple[str, int], tuple[int, datetime, datetime]]:
        """(event_id, seq) → (rows, observed_at, received_at) of one site."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT event_id, seq, count(*), min(observed_at), min(received_at) "
                    "FROM events WHERE site_id = :site GROUP BY event_id, seq"
                ),
                {"site": site},
            ).all()
        return {(e, int(s)): (int(n), observed, received) for e, s, n, observed, received in rows}

    def members(self) -> dict[str, str]:
        with self.engine.connect() as connection:
            rows = connection.execute(text("SELECT client_id, state FROM server_members")).all()
        return {str(client_id): str(state) for client_id, state in rows}

    def audit(self) -> list[tuple[str, str, str]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                text("SELECT actor, action, target FROM audit_log ORDER BY id")
            ).all()
        return [(a, b, c) for a, b, c in rows]


class Observer:
    """A plain subscriber to the site's events: when each (event_id, seq) first reached the
    broker, the start of its publish → stored latency (an edge's `observed_at` may be earlier
    by the time its evidence took to write)."""

    def __init__(self, broker: PrivateBroker, site: str) -> None:
        self.first_seen: dict[tuple[str, int], datetime] = {}
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"observer-{uuid.uuid4().hex[:6]}"
        )
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", broker.port)
        self._client.subscribe(f"zhizhi/v1/{site}/+/+/events", qos=1)
        self._client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        data = json.loads(message.payload)
        self.first_seen.setdefault((data["event_id"], int(data["seq"])), datetime.now(UTC))

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def broker_clients(broker: PrivateBroker) -> int:
    """$SYS/broker/clients/total: connected clients plus sessions kept for absent ones."""
    answers: queue.Queue[int] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sys-{uuid.uuid4().hex[:6]}")
    client.on_message = lambda _c, _u, message: answers.put(int(message.payload))
    client.connect("127.0.0.1", broker.port)
    client.subscribe("$SYS/broker/clients/total")
    client.loop_start()
    try:
        time.sleep(2.5)  # past one $SYS period: the latest value
        value = answers.get(timeout=5)
        while not answers.empty():
            value = answers.get()
    finally:
        client.disconnect()
        client.loop_stop()
    return value - 1  # not this client


def site_yaml(folder: Path, video: Path) -> Path:
    polygon = ", ".join(f"[{x}, {y}]" for x, y in LANE)
    path = folder / "site.yaml"
    path.write_text(
        f"""
site: {{id: {SITE}}}
cameras:
  - id: lane-cam
    source: "{video}"
    zones: [{{id: lane, polygon: [{polygon}]}}]
    rules: [{{id: lane-blocked, type: fire_lane, zone: lane, dwell_s: 2, clear_s: 3}}]
"""
    )
    return path


class Box:
    """`zhizhi edge run` on the looped lane: events to the broker through its outbox."""

    def __init__(self, folder: Path, config: Path, edge_id: str, broker: PrivateBroker) -> None:
        folder.mkdir(parents=True)
        self.folder = folder
        self.events = folder / "events.jsonl"
        self.outbox = folder / "outbox.sqlite"
        self.log = folder / "edge.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [
                    str(zhizhi_binary()),
                    "edge",
                    "run",
                    "--config",
                    str(config),
                    "--mqtt",
                    broker.url,
                    "--edge-id",
                    edge_id,
                    "--events-out",
                    str(self.events),
                    "--evidence-dir",
                    str(folder / "evidence"),
                    "--outbox",
                    str(self.outbox),
                    "--metrics-listen",
                    "",
                    "--detector-workers",
                    "1",
                ],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def sent(self) -> set[tuple[str, int]]:
        if not self.events.exists():
            return set()
        keys = set()
        for line in self.events.read_text().splitlines():
            message = json.loads(line)
            keys.add((message["event_id"], int(message["seq"])))
        return keys

    def pending(self) -> int:
        with sqlite3.connect(self.outbox, timeout=10) as db:
            count: int = db.execute("SELECT count(*) FROM events").fetchone()[0]
        return count

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def tail(self) -> str:
        return f"--- {self.folder.name}:\n{self.log.read_text(errors='replace')[-2500:]}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from fresh_postgres_url()


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(server.metrics()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_dead_and_renamed_members_are_removed_and_no_event_is_lost(
    tmp_path: Path, pg_url: str, models_dir: Path
) -> None:
    broker = PrivateBroker(tmp_path / "broker", ["max_queued_messages 100000", "sys_interval 1"])
    env = {
        "ZHIZHI_DB_URL": pg_url,
        "ZHIZHI_MQTT_URL": broker.url,
        "ZHIZHI_MEMBER_GRACE_S": str(GRACE_S),
        "ZHIZHI_MEMBER_HEARTBEAT_S": str(BEAT_S),
    }
    servers = {
        name: ServerProcess(tmp_path / name, name, env) for name in ("srv-a", "srv-b", "srv-c")
    }
    boxes: list[Box] = []
    sink: MqttSink | None = None
    observer: Observer | None = None
    db = Database(pg_url)
    try:
        broker.start()
        observer = Observer(broker, SITE)
        for server in servers.values():
            server.start()
        for server in servers.values():
            server.wait_healthy()
        assert db.members() == dict.fromkeys(servers, "live")

        video = tmp_path / "lane.mp4"
        write_video(LaneScene(seconds=12, drop_s=2.0, clear_s=None, fps=10), str(video))
        config = site_yaml(tmp_path, video)
        boxes = [Box(tmp_path / f"box-{n}", config, f"box-{n}", broker) for n in (1, 2)]
        wait_until(
            lambda: all(box.sent() for box in boxes) and len(db.keys(SITE)) >= 2,
            90,
            "an event of each box stored",
        )

        # srv-b goes for good; srv-c comes back under another client id (srv-d)
        servers["srv-b"].kill()
        servers["srv-c"].kill()
        killed_at = time.monotonic()
        servers["srv-d"] = ServerProcess(tmp_path / "srv-d", "srv-d", env)
        servers["srv-d"].start()

        # the edge's own delivery code as a third box, sending into the dead members' turns
        outbox = Outbox(tmp_path / "box-3" / "outbox.sqlite")
        sink = MqttSink(
            broker.url, SITE, "box-3", outbox, resend_after_s=RESEND_S, status_every_s=1.0
        )
        for i in range(20):
            sink.send(plain_event(f"b3{uuid.uuid4().hex[:6]}", i, site=SITE, camera="lane-cam"))

        # while srv-b and srv-c are still members, a publisher without re-sends loses events
        before = publish_plain(broker, "dead", 100)
        time.sleep(2.0)
        stored_before = len(db.copies(before))
        states = db.members()
        assert states["srv-b"] == states["srv-c"] == "live", "removed before the phase ran"
        assert stored_before < 100, "the dead members took no turn: the test proves nothing"
        say(f"dead members present: plain publisher stored {stored_before} of 100")

        wait_until(
            lambda: db.members().get("srv-b") == db.members().get("srv-c") == "removed",
            GRACE_S + 10,
            "srv-b and srv-c removed",
        )
        removed_after_s = time.monotonic() - killed_at
        servers["srv-d"].wait_healthy()
        audited = [target for _, action, target in db.audit() if action == "remove_server_member"]
        assert sorted(audited) == ["server srv-b", "server srv-c"]  # once each

        after = publish_plain(broker, "live", 200)
        wait_until(lambda: len(db.copies(after)) == 200, 20, "all 200 plain events stored")
        assert set(db.copies(after).values()) == {1}
        say(f"dead members removed after {removed_after_s:.1f} s: plain stored 200 of 200")

        # the boxes run on past one re-send window after the removal, then stop cleanly
        time.sleep(RESEND_S + 3)
        wait_until(lambda: outbox.stats().pending_events == 0, 2 * RESEND_S, "box-3 acked")
        for box in boxes:
            box.stop()
        sent = set().union(*(box.sent() for box in boxes))
        stored = db.keys(SITE)
        missing = sent - stored.keys()
        assert not missing, f"{len(missing)} lost\n" + "\n".join(b.tail() for b in boxes)
        assert all(rows == 1 for rows, _, _ in stored.values())
        assert all(box.pending() == 0 for box in boxes)
        bound_s = GRACE_S + BEAT_S + RESEND_S + 3.0
        latency = {
            key: (received - observer.first_seen[key]).total_seconds()
            for key, (_, _, received) in stored.items()
        }
        worst = max(latency.values())
        slowest = sorted(latency.items(), key=lambda item: -item[1])[:5]
        assert worst <= bound_s, f"publish → stored {slowest} (bound {bound_s} s)"
        say(
            f"boxes: {len(sent)} events from edge run + 20 from box-3 stored once each; "
            f"latency median {statistics.median(latency.values()):.2f} s, max {worst:.2f} s "
            f"(bound grace+beat+resend+3 = {bound_s:.0f} s)"
        )

        # the latency guard: box-3's re-sends for want of an ack show in its status and metrics
        late = outbox.stats().late_acks
        assert late > 0
        wait_until(
            lambda: metric(servers["srv-a"], "zhizhi_edge_late_acks", edge_id="box-3") == late,
            10,
            "box-3's late acks on srv-a's /metrics",
        )
        assert metric(servers["srv-a"], "zhizhi_server_members", state="removed") == 2
        assert metric(servers["srv-a"], "zhizhi_server_members", state="live") == 2
        say(f"latency guard: box-3 re-sent {late} for want of a timely ack (status, /metrics)")

        # the bench joins no group of the servers and leaves nothing at the broker
        sink.close()
        sink = None
        clients_before = broker_clients(broker)
        bench = subprocess.run(
            [
                str(zhizhi_binary()),
                "bench",
                "ingest",
                "--db",
                f"sqlite:///{tmp_path / 'bench.db'}",
                "--mqtt",
                broker.url,
                "--events",
                "100",
                "--rate",
                "50",
                "--seconds",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert bench.returncode == 0, bench.stderr[-2000:]
        assert broker_clients(broker) == clients_before
        assert not any(name.startswith("zhizhi-bench") for name in db.members())
        last = publish_plain(broker, "after-bench", 100)
        wait_until(lambda: len(db.copies(last)) == 100, 20, "plain events after the bench")
        say(f"bench: broker clients {clients_before} before and after; 100 of 100 stored after")
    finally:
        if observer is not None:
            observer.close()
        if sink is not None:
            sink.close()
        for box in boxes:
            box.stop()
        for server in servers.values():
            server.stop()
        broker.stop()
        db.engine.dispose()
