"""server/consumers/mqtt.py MqttConsumer against private Mosquitto brokers (one per test, a
random port).

The store is an in-memory fake that enforces (event_id, seq) uniqueness and can be told to fail
like a database that went away. Missing mosquitto binary: skip locally, fail with CI=true.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client import REGISTRY

from common.events import Event, StatusMessage, ack_topic, events_topic, status_topic
from server.consumers.mqtt import EventStore, MqttConsumer
from server.services.dead_letters import DeadLetter
from tests.support.databases import fresh_postgres_url
from tests.support.mosquitto import PrivateBroker, unavailable

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "mosquitto"
SITE, EDGE, CAMERA = "garden-court", "box1", "gate-east"
REJECTED = "zhizhi_messages_rejected_total"


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


class FakeStore:
    """EventStore in memory: (event_id, seq) stored once; `failing` makes every call raise."""

    def __init__(self, poison: frozenset[str] = frozenset()) -> None:
        self.lock = threading.Lock()
        self.events: dict[tuple[str, int], tuple[Event, str | None]] = {}
        self.statuses: list[tuple[str, str, StatusMessage, datetime]] = []
        self.calls = 0
        self.failures = 0
        self.failing = False
        self.poison = poison  # event ids that make any batch holding them raise
        self.dead_letters: list[DeadLetter] = []

    def ingest_many(self, items: Sequence[tuple[Event, str | None]], *, source: str) -> list[bool]:
        assert source == "mqtt"
        with self.lock:
            self.calls += 1
            if self.failing or any(event.event_id in self.poison for event, _ in items):
                self.failures += 1
                raise ConnectionError("database away")
            results = []
            for event, edge_id in items:
                key = (event.event_id, event.seq)
                results.append(key not in self.events)
                self.events.setdefault(key, (event, edge_id))
            return results

    def record_status(
        self, site_id: str, edge_id: str, status: StatusMessage, received_at: datetime
    ) -> None:
        with self.lock:
            if self.failing:
                raise ConnectionError("database away")
            self.statuses.append((site_id, edge_id, status, received_at))

    def available(self) -> bool:
        return not self.failing

    def keep_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        with self.lock:
            if self.failing:
                self.failures += 1
                raise ConnectionError("database away")
            self.dead_letters.extend(letters)

    def count(self) -> int:
        with self.lock:
            return len(self.events)

    def keys(self) -> set[tuple[str, int]]:
        with self.lock:
            return set(self.events)


class Edge:
    """Plays an edge box (MQTT 3.1.1 like edge/publish.py) and records every ack it sees."""

    def __init__(
        self, port: int, *, username: str | None = None, password: str | None = None
    ) -> None:
        self.acks: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-edge-{uuid.uuid4().hex[:8]}"
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.acks.append((message.topic, json.loads(message.payload)))

    def listen_acks(self, topic: str = "zhizhi/v1/+/+/ack") -> None:
        """Subscribe to acks, again after every reconnect (this client's session is clean)."""
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_args: subscribed.set()
        self.client.on_connect = lambda client, *_args: client.subscribe(topic, qos=1)
        self.client.subscribe(topic, qos=1)
        assert subscribed.wait(5), "ack subscription not confirmed"

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
        self.infos.append(self.client.publish(topic, payload, qos=1, retain=retain))

    def send(self, event: Event, *, edge_id: str = EDGE) -> None:
        self.publish(events_topic(event.site_id, edge_id, event.camera_id), event.to_json())

    def flush(self, timeout_s: float = 10) -> None:
        """Wait until the broker has PUBACKed everything sent (paho resends after a reconnect)."""
        infos, self.infos = self.infos, []
        wait_until(lambda: all(info.is_published() for info in infos), timeout_s, "PUBACKs")

    def ack_list(self) -> list[tuple[str, dict[str, Any]]]:
        with self.lock:
            return list(self.acks)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def make_event(n: int, *, event_id: str | None = None, seq: int = 0, **fields: Any) -> Event:
    values: dict[str, Any] = {
        "event_id": event_id or f"ev-{n:05d}",
        "seq": seq,
        "state": "new" if seq == 0 else "update",
        "type": "fire_lane",
        "site_id": SITE,
        "camera_id": CAMERA,
        "zone_id": "lane-north",
        "rule_id": "lane-north-blocked",
        "observed_at": datetime(2026, 11, 23, 2, 12, 35, tzinfo=UTC),
        "pts_s": 130.0 + n,
        "onset_pts_s": 10.0,
        "bbox": (0.1, 0.5, 0.3, 0.9),
        "score": 0.8,
    }
    values.update(fields)
    return Event.model_validate(values)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    instance = PrivateBroker(tmp_path, start_timeout_s=5)
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    yield from fresh_postgres_url()


@pytest.fixture
def cleanup() -> Iterator[list[Callable[[], None]]]:
    """Stop consumers and edge clients even when a test fails."""
    actions: list[Callable[[], None]] = []
    yield actions
    for action in reversed(actions):
        action()


def start_consumer(
    broker: PrivateBroker,
    store: EventStore,
    cleanup: list[Callable[[], None]],
    client_id: str = "server-1",
    **options: Any,
) -> MqttConsumer:
    options.setdefault("retry_initial_s", 0.05)
    options.setdefault("retry_max_s", 0.2)
    consumer = MqttConsumer(broker.url, store, client_id=client_id, **options)
    consumer.start()
    cleanup.append(lambda: consumer.stop(timeout_s=2))
    wait_until(lambda: consumer.healthy, 5, f"{client_id} to connect and subscribe")
    return consumer


def start_edge(broker: PrivateBroker, cleanup: list[Callable[[], None]], **login: Any) -> Edge:
    edge = Edge(broker.port, **login)
    cleanup.append(edge.close)
    return edge


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# ---------------------------------------------------------------------------------------------


def test_events_are_stored_once_and_acked_on_their_edges_ack_topic(
    broker: PrivateBroker, cleanup: list[Callable[[], None]]
) -> None:
    store = FakeStore()
    consumer = start_consumer(broker, store, cleanup)
    edge = start_edge(broker, cleanup)
    edge.listen_acks()
    for n in range(5):
        edge.send(make_event(n))
    repeated = make_event(99, event_id="ev-repeated", seq=3)
    for _ in range(3):
        edge.send(repeated)
    other = make_event(7, site_id="river-park", camera_id="door-2")
    edge.send(other, edge_id="box9")
    edge.flush()

    wait_until(lambda: len(edge.ack_list()) == 9, 10, "9 acks")
    assert store.keys() == {(f"ev-{n:05d}", 0) for n in range(5)} | {
        ("ev-repeated", 3),
        ("ev-00007", 0),
    }
    assert store.events[("ev-00007", 0)][1] == "box9"  # the edge id comes from the topic
    assert store.events[("ev-00000", 0)][1] == EDGE
    acks = edge.ack_list()
    assert [a for a in acks if a[1]["event_id"] == "ev-repeated"] == [
        (ack_topic(SITE, EDGE), {"event_id": "ev-repeated", "seq": 3})
    ] * 3
    assert (ack_topic("river-park", "box9"), {"event_id": "ev-00007", "seq": 0}) in acks
    assert sorted(a[1]["event_id"] for a in acks if a[0] == ack_topic(SITE, EDGE)) == sorted(
        [f"ev-{n:05d}" for n in range(5)] + ["ev-repeated"] * 3
    )
    assert consumer.stats.get("stored") == 7 and consumer.stats.get("duplicate") == 2
    assert consumer.stats.rejected == {}


def test_bad_payloads_are_rejected_and_counted_while_valid_events_go_through(
    broker: PrivateBroker, cleanup: list[Callable[[], None]]
) -> None:
    store = FakeStore()
    consumer = start_consumer(broker, store, cleanup, max_payload_bytes=4096)
    edge = start_edge(broker, cleanup)
    edge.listen_acks()
    before = {r: metric(REJECTED, reason=r) for r in ("bad_json", "oversized")}
    topic = events_topic(SITE, EDGE, CAMERA)
    valid = make_event(1).to_json()
    edge.send(make_event(0))
    edge.publish(topic, b"this is not json")
    edge.publish(topic, valid[: len(valid) // 2])  # truncated
    edge.publish(topic, make_event(2, details={"pad": "x" * 5000}).to_json())  # oversized
    edge.publish(topic, b"\xff\xfe\x00garbage")  # not UTF-8
    edge.publish(topic, json.dumps({**json.loads(valid), "score": 7}))  # not a valid event
    edge.publish(events_topic("river-park", EDGE, CAMERA), make_event(3).to_json())  # lies
    edge.publish(events_topic(SITE, EDGE, "door-2"), make_event(4).to_json())  # wrong camera
    edge.publish(f"zhizhi/v1//{EDGE}/{CAMERA}/events", make_event(5).to_json())  # bad topic
    edge.send(make_event(1))
    edge.flush()

    wait_until(lambda: sum(consumer.stats.rejected.values()) == 8, 10, "8 rejections")
    wait_until(lambda: store.count() == 2, 10, "the 2 valid events")
    assert consumer.stats.rejected == {
        "bad_json": 2,
        "oversized": 1,
        "not_utf8": 1,
        "invalid_event": 1,
        "site_mismatch": 1,
        "camera_mismatch": 1,
        "bad_topic": 1,
    }
    assert metric(REJECTED, reason="bad_json") == before["bad_json"] + 2
    # every refused message is kept, with its reason, for an admin to inspect or replay
    wait_until(lambda: len(store.dead_letters) == 8, 5, "8 dead letters")
    assert sorted(x.reason for x in store.dead_letters) == sorted(
        ["bad_json"] * 2
        + ["oversized", "not_utf8", "invalid_event", "site_mismatch", "camera_mismatch"]
        + ["bad_topic"]
    )
    assert b"this is not json" in {x.payload for x in store.dead_letters}
    assert metric(REJECTED, reason="oversized") == before["oversized"] + 1
    assert store.keys() == {("ev-00000", 0), ("ev-00001", 0)}
    # stored events are acked; so are messages refused for good that still name their event
    # (so the edge stops re-sending them), with the reason: never a stored one
    wait_until(lambda: len(edge.ack_list()) == 6, 5, "6 acks")
    time.sleep(0.2)
    acks = [a[1] for a in edge.ack_list()]
    assert sorted(a["event_id"] for a in acks if "rejected" not in a) == ["ev-00000", "ev-00001"]
    assert sorted((a["event_id"], a["rejected"]) for a in acks if "rejected" in a) == [
        ("ev-00001", "invalid_event"),
        ("ev-00002", "oversized"),
        ("ev-00003", "site_mismatch"),  # on the ack topic of the site the topic named
        ("ev-00004", "camera_mismatch"),
    ]
    assert consumer.healthy

    # Everything was PUBACKed, poison included: a restart with the same session gets nothing
    # back. The broker would send redeliveries before the new sentinel event.
    consumer.stop()
    again = FakeStore()
    restarted = start_consumer(broker, again, cleanup, max_payload_bytes=4096)
    edge.send(make_event(6, event_id="sentinel"))
    edge.flush()
    wait_until(lambda: again.count() == 1, 10, "the sentinel")
    assert again.keys() == {("sentinel", 0)}
    assert restarted.stats.rejected == {}


def test_what_is_published_while_the_server_is_down_arrives_after_restart(
    broker: PrivateBroker, cleanup: list[Callable[[], None]]
) -> None:
    store = FakeStore()
    first = start_consumer(broker, store, cleanup, client_id="server-a")
    first.stop()
    assert not first.connected
    edge = start_edge(broker, cleanup)
    edge.listen_acks()
    for n in range(50):
        edge.send(make_event(n))
    edge.flush()  # the broker has them all (PUBACKed to the edge) and queues them for server-a
    time.sleep(0.2)
    assert store.count() == 0

    second = start_consumer(broker, store, cleanup, client_id="server-a")
    wait_until(lambda: store.count() == 50, 10, "the 50 queued events")
    wait_until(lambda: len(edge.ack_list()) == 50, 10, "50 acks")
    assert second.stats.get("stored") == 50


def test_two_consumers_in_one_shared_group_split_the_events(
    broker: PrivateBroker, cleanup: list[Callable[[], None]]
) -> None:
    stores = [FakeStore(), FakeStore()]
    consumers = [
        start_consumer(broker, stores[0], cleanup, client_id="server-a"),
        start_consumer(broker, stores[1], cleanup, client_id="server-b"),
    ]
    edge = start_edge(broker, cleanup)
    edge.listen_acks()
    for n in range(400):
        edge.send(make_event(n))
    edge.flush()

    wait_until(lambda: stores[0].count() + stores[1].count() >= 400, 15, "400 events")
    time.sleep(0.2)
    a, b = stores[0].keys(), stores[1].keys()
    assert not a & b, "an event went to both consumers"
    assert len(a | b) == 400 and len(a) + len(b) == 400
    assert a and b, f"one consumer got everything: {len(a)} / {len(b)}"
    wait_until(lambda: len(edge.ack_list()) == 400, 10, "400 acks")
    assert all(c.stats.get("duplicate") == 0 for c in consumers)


def test_nothing_is_lost_while_the_store_is_down(
    broker: PrivateBroker, cleanup: list[Callable[[], None]]
) -> None:
    store = FakeStore()
    store.failing = True
    consumer = start_consumer(broker, store, cleanup)  # healthy until the first failure
    edge = start_edge(broker, cleanup)
    edge.listen_acks()
    for n in range(30):
        edge.send(make_event(n))
    edge.publish(events_topic(SITE, EDGE, CAMERA), b'{"event_id": "bad", "seq": 1}')
    edge.flush()

    wait_until(lambda: store.failures >= 5, 10, "several failed store attempts")
    assert consumer.connected and not consumer.healthy
    assert consumer.health()["store_ok"] is False
    assert edge.ack_list() == [] and store.count() == 0
    assert store.dead_letters == []  # the refused one waits too, unacknowledged

    store.failing = False
    wait_until(lambda: store.count() == 30, 10, "the 30 events once the store is back")
    wait_until(lambda: len(edge.ack_list()) == 31, 10, "30 acks and a rejection")
    assert consumer.healthy
    assert consumer.stats.rejected == {"invalid_event": 1}
    assert [(x.event_id, x.seq, x.reason) for x in store.dead_letters] == [
        ("bad", 1, "invalid_event")
    ]


def test_a_server_stopped_while_the_store_is_down_gets_the_events_again(
    broker: PrivateBroker, cleanup: list[Callable[[], None]]
) -> None:
    broken = FakeStore()
    broken.failing = True
    consumer = start_consumer(broker, broken, cleanup)
    edge = start_edge(broker, cleanup)
    for n in range(10):
        edge.send(make_event(n))
    edge.flush()
    wait_until(lambda: broken.failures >= 2, 10, "failed store attempts")
    consumer.stop(timeout_s=0.5)  # gives up on the batch: nothing was PUBACKed

    working = FakeStore()
    start_consumer(broker, working, cleanup, client_id="server-1")
    wait_until(lambda: working.count() == 10, 10, "the 10 events, delivered again")


def test_an_event_the_store_always_refuses_does_not_block_the_others(
    broker: PrivateBroker, cleanup: list[Callable[[], None]]
) -> None:
    store = FakeStore(poison=frozenset({"ev-poison"}))
    consumer = start_consumer(broker, store, cleanup, retry_initial_s=0.01, retry_max_s=0.05)
    edge = start_edge(broker, cleanup)
    edge.send(make_event(0))
    edge.send(make_event(1, event_id="ev-poison"))
    for n in range(2, 20):
        edge.send(make_event(n))
    edge.flush()
    wait_until(lambda: store.count() == 19, 10, "the 19 good events")
    # Other traffic proves the store works: after max_store_attempts the poison is dropped.
    for n in range(20, 30):
        edge.send(make_event(n))
        edge.flush()
        time.sleep(0.05)
    wait_until(lambda: consumer.stats.rejected.get("store_error") == 1, 10, "poison dropped")
    wait_until(lambda: store.count() == 29, 10, "all good events")
    assert consumer.healthy


def test_a_batch_holding_only_messages_the_store_refuses_does_not_hold_the_rest(
    broker: PrivateBroker, cleanup: list[Callable[[], None]]
) -> None:
    """Issue 14, item 1 (the class): a full batch of messages the store refuses while it
    answers. Before, the consumer took that for "store down" and never let anything else in."""
    poison = frozenset(f"ev-poison-{n}" for n in range(60))
    store = FakeStore(poison=poison)
    consumer = start_consumer(
        broker, store, cleanup, batch_max=20, retry_initial_s=0.01, retry_max_s=0.05
    )
    edge = start_edge(broker, cleanup)
    edge.listen_acks()
    for n, event_id in enumerate(sorted(poison)):
        edge.send(make_event(n, event_id=event_id))
    edge.send(make_event(100, event_id="ev-after-the-poison", site_id="river-park"))
    edge.flush()

    wait_until(lambda: store.count() == 1, 20, "the event after the poison")
    wait_until(lambda: consumer.stats.rejected.get("store_error") == 60, 20, "60 rejections")
    assert consumer.healthy, consumer.health()
    # store_error is not acked as rejected: the edge may send it again later
    assert all("rejected" not in ack for _, ack in edge.ack_list())


def test_poison_events_do_not_stop_ingestion_for_any_site(
    broker: PrivateBroker, cleanup: list[Callable[[], None]], postgres_url: str
) -> None:
    """Issue 14, item 1, as reported: 200 events with a NUL in `zone_id` (PostgreSQL refuses
    it), then a valid event of another site; before, it was never stored."""
    from sqlalchemy import text

    from server.db.session import make_engine, make_session_factory
    from server.ingest import IngestService

    engine = make_engine(postgres_url)
    cleanup.append(engine.dispose)
    consumer = start_consumer(
        broker,
        IngestService(make_session_factory(engine)),
        cleanup,
        client_id="server-pg",
    )
    edge = start_edge(broker, cleanup)
    edge.listen_acks()
    for n in range(200):
        edge.send(make_event(n, zone_id="z\x00"))
    valid = make_event(1000, event_id="ev-valid", site_id="river-park", camera_id="door-2")
    edge.send(valid, edge_id="box9")
    edge.flush()

    def stored() -> int:
        with engine.connect() as connection:
            query = text("SELECT count(*) FROM events WHERE event_id = 'ev-valid'")
            return int(connection.execute(query).scalar_one())

    wait_until(lambda: stored() == 1, 20, "the valid event after 200 poison ones")
    wait_until(lambda: sum(consumer.stats.rejected.values()) == 200, 20, "200 rejections")
    assert consumer.stats.rejected == {"bad_text": 200}
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM events")).scalar_one() == 1
        letters = text("SELECT reason, count(*) FROM dead_letters GROUP BY reason")
        wait_until(
            lambda: connection.execute(letters).all() == [("bad_text", 200)], 10, "dead letters"
        )
    wait_until(lambda: len([a for _, a in edge.ack_list() if "rejected" in a]) == 200, 10, "acks")
    assert consumer.healthy, consumer.health()


def test_every_refused_message_gets_its_puback(
    broker: PrivateBroker, cleanup: list[Callable[[], None]]
) -> None:
    """Issue 14, item 2: refusing a message whose `seq` no ack can carry (> 2**31 - 1), or that
    nests deeper than Python's parser can go, raised before the PUBACK. With a Receive Maximum
    of 20, 50 such messages used it up and the broker delivered nothing more."""
    store = FakeStore()
    consumer = start_consumer(broker, store, cleanup, receive_maximum=20)
    edge = start_edge(broker, cleanup)
    topic = events_topic(SITE, EDGE, CAMERA)
    wire = json.loads(make_event(0).to_json())
    for n in range(25):
        edge.publish(topic, json.dumps({**wire, "event_id": f"big-{n}", "seq": 2**31 + n}))
    deep = "[" * 1500 + "]" * 1500
    for n in range(25):
        edge.publish(topic, f'{{"event_id": "deep-{n}", "seq": 1, "details": {deep}}}')
    edge.send(make_event(1, event_id="ev-after"))
    edge.flush()

    wait_until(lambda: store.keys() == {("ev-after", 0)}, 15, "the event after 50 refused ones")
    wait_until(lambda: sum(consumer.stats.rejected.values()) == 50, 10, "50 rejections")
    assert consumer.stats.rejected == {"invalid_event": 25, "too_deep": 25}


def test_an_event_id_of_another_site_is_refused_and_the_rest_of_the_batch_stored(
    tmp_path: Path, broker: PrivateBroker, cleanup: list[Callable[[], None]]
) -> None:
    """Issue 14, item 5 over MQTT: an edge of river-park sending garden-court's event_id (its
    own topic and site, so the ACL and the topic check pass) would change that incident."""
    from sqlalchemy import text

    from server.db.session import make_engine, make_session_factory, migrate
    from server.ingest import IngestService

    engine = make_engine(f"sqlite:///{tmp_path / 'zhizhi.db'}")
    cleanup.append(engine.dispose)
    migrate(engine)
    service = IngestService(make_session_factory(engine))
    service.ingest(make_event(0, event_id="ev-garden"), source="http")
    consumer = start_consumer(broker, service, cleanup, batch_wait_s=0.3)
    edge = start_edge(broker, cleanup)
    edge.listen_acks()
    river = {"site_id": "river-park", "camera_id": "door-2"}
    edge.send(make_event(1, event_id="ev-river-1", **river), edge_id="box9")
    edge.send(make_event(2, event_id="ev-garden", seq=1, state="end", **river), edge_id="box9")
    edge.send(make_event(3, event_id="ev-river-2", **river), edge_id="box9")
    edge.flush()

    wait_until(lambda: consumer.stats.rejected == {"foreign_id": 1}, 10, "the hijack refused")
    wait_until(lambda: consumer.stats.get("stored") == 2, 10, "the two river-park events")
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT event_id, seq, site_id FROM events")).all()
    assert sorted(tuple(row) for row in rows) == [
        ("ev-garden", 0, SITE),
        ("ev-river-1", 0, "river-park"),
        ("ev-river-2", 0, "river-park"),
    ]
    wait_until(
        lambda: (
            ("ev-garden", "foreign_id")
            in {(a["event_id"], a.get("rejected")) for _, a in edge.ack_list()}
        ),
        5,
        "the rejection ack",
    )


@pytest.mark.parametrize("group", [None, "zhizhi-server"])
def test_broker_restart_mid_stream(
    broker: PrivateBroker, cleanup: list[Callable[[], None]], group: str | None
) -> None:
    store = FakeStore()
    changes: list[bool] = []
    consumer = start_consumer(
        broker, store, cleanup, group=group, on_connected_change=changes.append
    )
    edge = start_edge(broker, cleanup)
    edge.listen_acks()
    events = [make_event(n) for n in range(50)]
    for event in events[:20]:
        edge.send(event)
    edge.flush()
    wait_until(lambda: store.count() == 20, 10, "first 20")
    broker.stop()
    wait_until(lambda: not consumer.connected, 5, "the consumer to notice")
    for event in events[20:]:  # paho keeps these in memory and sends them on reconnect
        edge.send(event)
    edge.infos.clear()  # published while disconnected: paho reports them as failed, yet resends
    broker.start()
    wait_until(lambda: consumer.healthy, 10, "the consumer to reconnect")
    if group is not None:
        # Mosquitto 2.0 restores a persistent session's plain subscriptions after a restart but
        # not its shared ones, so events that reach the restarted broker before the server has
        # subscribed again are dropped (docs/mqtt.md). The edge's outbox sends again whatever
        # the server has not acked; play that here.
        deadline = time.monotonic() + 15
        while store.count() < 50 and time.monotonic() < deadline:
            time.sleep(1.0)
            acked = {payload["event_id"] for _, payload in edge.ack_list()}
            for event in events:
                if event.event_id not in acked:
                    edge.send(event)
    wait_until(lambda: store.count() == 50, 15, "all 50 after the broker restart")
    assert changes[:3] == [True, False, True]
    wait_until(
        lambda: {p["event_id"] for _, p in edge.ack_list()} == {e.event_id for e in events},
        10,
        "an ack for every event",
    )


def test_status_messages_are_recorded_and_lying_ones_rejected(
    broker: PrivateBroker, cleanup: list[Callable[[], None]]
) -> None:
    edge = start_edge(broker, cleanup)
    online = StatusMessage(state="online", edge_id=EDGE, site_id=SITE, ts=1.0)
    edge.publish(status_topic(SITE, EDGE), online.model_dump_json(), retain=True)
    edge.flush()
    store = FakeStore()
    consumer = start_consumer(broker, store, cleanup)  # gets the retained status on subscribe
    wait_until(lambda: len(store.statuses) == 1, 5, "the retained status")
    liar = StatusMessage(state="offline", edge_id="box7", site_id=SITE)
    edge.publish(status_topic(SITE, EDGE), liar.model_dump_json())
    edge.publish(status_topic(SITE, EDGE), b'{"state": "sleeping"}')
    edge.flush()
    wait_until(lambda: sum(consumer.stats.rejected.values()) == 2, 5, "2 rejections")
    assert consumer.stats.rejected == {"edge_mismatch": 1, "invalid_status": 1}
    site_id, edge_id, status, received_at = store.statuses[0]
    assert (site_id, edge_id, status) == (SITE, EDGE, online)
    assert received_at.tzinfo is not None


# --- broker security: the shipped ACL ------------------------------------------------------


SERVER_USER = "zhizhi-server"
BOX1_USER, BOX2_USER = "edge-garden-court-box1", "edge-garden-court-box2"
LOGINS = {u: f"{u}-{uuid.uuid4().hex[:8]}" for u in (SERVER_USER, BOX1_USER, BOX2_USER)}


def _secured_broker(folder: Path) -> PrivateBroker:
    """A private broker running deploy/mosquitto/mosquitto.conf, with the access rules that
    deploy/mosquitto/zhizhi_dynsec.py writes; only the TLS listener, paths and ports are
    swapped for the test's."""
    plugin = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")
    if not plugin.exists():
        unavailable(f"{plugin} not found (install mosquitto)")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "edges.txt").write_text("garden-court box1\ngarden-court box2\n")
    (folder / "passwords.txt").write_text("".join(f"{u} {p}\n" for u, p in LOGINS.items()))
    rules = folder / "dynamic-security.json"
    subprocess.run(
        [
            sys.executable,
            str(DEPLOY / "zhizhi_dynsec.py"),
            "--edges",
            str(folder / "edges.txt"),
            "--passwords",
            str(folder / "passwords.txt"),
            "--out",
            str(rules),
        ],
        check=True,
        capture_output=True,
    )
    broker = PrivateBroker(folder, start_timeout_s=5)
    dropped = re.compile(
        r"^\s*(listener|certfile|keyfile|tls_version|cafile|require_certificate"
        r"|plugin_opt_config_file|persistence_location|log_dest)\b"
    )
    kept = [
        line
        for line in (DEPLOY / "mosquitto.conf").read_text().splitlines()
        if not dropped.match(line)
    ]
    assert f"plugin {plugin}" in kept, "the shipped mosquitto.conf loads the plugin"
    broker.write_config([*kept, f"plugin_opt_config_file {rules}"])
    return broker


def test_the_acl_lets_an_edge_publish_only_under_its_own_site_and_edge(
    tmp_path: Path, cleanup: list[Callable[[], None]]
) -> None:
    broker = _secured_broker(tmp_path)
    broker.start()
    cleanup.append(broker.stop)
    store = FakeStore()
    consumer = start_consumer(
        broker, store, cleanup, username=SERVER_USER, password=LOGINS[SERVER_USER]
    )
    box1 = start_edge(broker, cleanup, username=BOX1_USER, password=LOGINS[BOX1_USER])
    box1.listen_acks("zhizhi/v1/garden-court/box1/ack")
    # Forbidden first; the broker handles one connection's messages in order, so once the
    # allowed one is stored, the forbidden ones would have been too.
    box1.send(make_event(1, site_id="river-park"))  # another site
    box1.send(make_event(2), edge_id="box2")  # another edge of the same site
    box1.send(make_event(3))  # its own
    box1.flush()
    wait_until(lambda: store.count() == 1, 5, "the edge's own event")
    time.sleep(0.3)
    assert store.keys() == {("ev-00003", 0)}
    wait_until(lambda: len(box1.ack_list()) == 1, 5, "the ack, readable by box1")

    # box2 cannot read box1's acks; a wrong password and anonymous clients get nowhere.
    box2 = start_edge(broker, cleanup, username=BOX2_USER, password=LOGINS[BOX2_USER])
    box2.listen_acks("zhizhi/v1/garden-court/box1/ack")
    box1.send(make_event(4))
    box1.flush()
    wait_until(lambda: len(box1.ack_list()) == 2, 5, "box1's second ack")
    time.sleep(0.2)
    assert box2.ack_list() == []
    for login in ({"username": BOX1_USER, "password": LOGINS[BOX2_USER]}, {}):
        with pytest.raises(ConnectionRefusedError):
            _connect_or_raise(broker, **login)
    assert consumer.stats.rejected == {}


def test_an_edge_login_cannot_join_the_servers_shared_subscription(
    tmp_path: Path, cleanup: list[Callable[[], None]]
) -> None:
    """Issue 14, item 3: with the shipped acl_file an edge login could subscribe to
    $share/zhizhi-server/...; the broker gave it its turn and the ACL dropped the message:
    50 of 100 of another edge's events lost with one such subscriber, 75 with three persistent
    sessions. With the shipped access rules the subscription is refused and all 100 arrive."""
    broker = _secured_broker(tmp_path)
    broker.start()
    cleanup.append(broker.stop)
    store = FakeStore()
    start_consumer(broker, store, cleanup, username=SERVER_USER, password=LOGINS[SERVER_USER])
    refused: list[list[str]] = []
    for n in range(3):  # three persistent sessions of box2, each trying the server's group
        intruder = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"box2-intruder-{n}", protocol=mqtt.MQTTv5
        )
        intruder.username_pw_set(BOX2_USER, LOGINS[BOX2_USER])
        intruder.on_subscribe = lambda _c, _u, _m, codes, _p: refused.append(
            [str(code) for code in codes]
        )
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 3600
        intruder.connect("127.0.0.1", broker.port, clean_start=False, properties=properties)
        intruder.loop_start()
        cleanup.append(intruder.loop_stop)
        cleanup.append(intruder.disconnect)
        for topic in ("$share/zhizhi-server/zhizhi/v1/+/+/+/events", "zhizhi/v1/#", "#"):
            intruder.subscribe(topic, qos=1)
    wait_until(lambda: len(refused) == 9, 5, "the intruders' SUBACKs")
    assert all(codes == ["Not authorized"] for codes in refused), refused

    box1 = start_edge(broker, cleanup, username=BOX1_USER, password=LOGINS[BOX1_USER])
    for n in range(100):
        box1.send(make_event(n))
    box1.flush()
    wait_until(lambda: store.count() == 100, 10, "all 100 of box1's events")


def _connect_or_raise(
    broker: PrivateBroker, username: str | None = None, password: str | None = None
) -> None:
    refused: list[bool] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"intruder-{uuid.uuid4().hex[:6]}")
    if username is not None:
        client.username_pw_set(username, password)
    client.on_connect = lambda _c, _u, _f, reason, _p: refused.append(reason.is_failure)
    client.connect("127.0.0.1", broker.port)
    try:
        deadline = time.monotonic() + 5
        while not refused and time.monotonic() < deadline:
            client.loop(timeout=0.1)
    finally:
        client.disconnect()
    if refused == [True]:
        raise ConnectionRefusedError("broker refused the login")


# --- the real storage ---------------------------------------------------------------------------


def test_with_the_real_ingest_service_on_sqlite(
    tmp_path: Path, broker: PrivateBroker, cleanup: list[Callable[[], None]]
) -> None:
    """The EventStore protocol matches server/ingest.py: stored once, duplicates counted."""
    from sqlalchemy import text

    from server.db.session import make_engine, make_session_factory, migrate
    from server.ingest import IngestService

    engine = make_engine(f"sqlite:///{tmp_path / 'zhizhi.db'}")
    cleanup.append(engine.dispose)
    migrate(engine)
    service: EventStore = IngestService(make_session_factory(engine))
    stored = ("zhizhi_events_ingested_total", {"source": "mqtt", "result": "stored"})
    duplicate = ("zhizhi_events_ingested_total", {"source": "mqtt", "result": "duplicate"})
    before = (metric(stored[0], **stored[1]), metric(duplicate[0], **duplicate[1]))
    consumer = MqttConsumer(broker.url, service, client_id="server-sqlite")
    consumer.start()
    cleanup.append(lambda: consumer.stop(timeout_s=2))
    wait_until(lambda: consumer.healthy, 5, "connect")
    edge = start_edge(broker, cleanup)
    edge.listen_acks()
    for n in range(20):
        edge.send(make_event(n))
    for _ in range(3):
        edge.send(make_event(0))
    edge.publish(
        status_topic(SITE, EDGE), StatusMessage(state="online", edge_id=EDGE).model_dump_json()
    )
    edge.flush()
    wait_until(lambda: len(edge.ack_list()) == 23, 10, "23 acks")
    wait_until(lambda: consumer.stats.get("status_recorded") == 1, 5, "the status")
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT count(*) FROM events")).scalar_one()
        edges = connection.execute(text("SELECT count(*) FROM edges")).scalar_one()
    assert (rows, edges) == (20, 1)
    assert metric(stored[0], **stored[1]) - before[0] == 20
    assert metric(duplicate[0], **duplicate[1]) - before[1] == 3


def test_mqtt_311_mode_with_the_embedded_demo_broker(cleanup: list[Callable[[], None]]) -> None:
    """`zhizhi demo` runs amqtt (MQTT 3.1.1, no shared subscriptions): mqtt_version="3.1.1"."""
    pytest.importorskip("amqtt")
    from zhizhi.embedded_broker import EmbeddedBroker

    embedded = EmbeddedBroker().start()
    cleanup.append(embedded.stop)
    store = FakeStore()
    consumer = MqttConsumer(
        embedded.url, store, client_id="server-demo", group=None, mqtt_version="3.1.1"
    )
    consumer.start()
    cleanup.append(lambda: consumer.stop(timeout_s=2))
    wait_until(lambda: consumer.healthy, 5, "connect")
    edge = Edge(embedded.port)
    cleanup.append(edge.close)
    edge.listen_acks()
    for n in range(30):
        edge.send(make_event(n))
    edge.send(make_event(0))
    edge.publish(events_topic("river-park", EDGE, CAMERA), make_event(1).to_json())
    edge.flush()
    stored_acks = lambda: [a for a in edge.ack_list() if "rejected" not in a[1]]  # noqa: E731
    wait_until(lambda: len(stored_acks()) == 31, 10, "31 acks")
    wait_until(lambda: consumer.stats.rejected == {"site_mismatch": 1}, 5, "the liar rejected")
    assert store.count() == 30


# Sessions ended (issue 18) -------------------------------------------------------------------


def _session_present(broker: PrivateBroker, client_id: str) -> bool:
    """Whether the broker still holds a session for `client_id` (then ends it again)."""
    answer: list[bool] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.on_connect = lambda _c, _u, flags, _rc, _p: answer.append(flags.session_present)
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 0
    client.connect("127.0.0.1", broker.port, clean_start=False, properties=properties)
    client.loop_start()
    try:
        wait_until(lambda: bool(answer), 5, f"CONNACK for {client_id}")
    finally:
        client.disconnect()
        client.loop_stop()
    return answer[0]


def test_ending_a_gone_members_session_gives_its_turn_back_to_the_group(
    broker: PrivateBroker, cleanup: list[Callable[[], None]]
) -> None:
    from common.mqtt_url import parse_mqtt_url
    from server.consumers.sessions import end_session

    live, gone = FakeStore(), FakeStore()
    start_consumer(broker, live, cleanup, client_id="server-live")
    start_consumer(broker, gone, cleanup, client_id="server-gone").stop(timeout_s=2)
    edge = start_edge(broker, cleanup)
    for n in range(100):
        edge.send(make_event(n))
    edge.flush()
    wait_until(lambda: live.count() >= 40, 10, "the live member's share")
    time.sleep(0.5)
    assert live.count() < 100, "the stopped member took no turn: nothing to prove"

    end_session(parse_mqtt_url(broker.url), "server-gone")

    assert not _session_present(broker, "server-gone")
    for n in range(100, 300):
        edge.send(make_event(n))
    edge.flush()
    wait_until(
        lambda: len(live.keys() & {(f"ev-{n:05d}", 0) for n in range(100, 300)}) == 200,
        10,
        "all 200 at the live member",
    )


def test_a_member_that_stops_and_ends_its_session_leaves_the_group_at_once(
    broker: PrivateBroker, cleanup: list[Callable[[], None]]
) -> None:
    stores = [FakeStore(), FakeStore()]
    start_consumer(broker, stores[0], cleanup, client_id="server-a")
    leaving = start_consumer(broker, stores[1], cleanup, client_id="server-b")
    leaving.stop(timeout_s=2, end_session=True)
    keeping = start_consumer(broker, FakeStore(), cleanup, client_id="server-c", group="other")
    keeping.stop(timeout_s=2)  # a plain stop keeps the session (what the check must see)

    assert not _session_present(broker, "server-b")
    assert _session_present(broker, "server-c")
    edge = start_edge(broker, cleanup)
    for n in range(100):
        edge.send(make_event(n))
    edge.flush()
    wait_until(lambda: stores[0].count() == 100, 10, "all 100 at the member that stayed")


_KILLED_CONSUMER = """
import os, sys, time
from server.consumers.mqtt import MqttConsumer

class Store:
    def ingest_many(self, items, *, source): return [True] * len(items)
    def record_status(self, *args): pass
    def available(self): return True
    def keep_dead_letters(self, letters): pass

consumer = MqttConsumer(sys.argv[1], Store(), client_id="bench-x", group="bench-x",
                        session_expiry_s=0)
consumer.start()
deadline = time.monotonic() + 10
while not consumer.healthy and time.monotonic() < deadline:
    time.sleep(0.05)
print("subscribed" if consumer.healthy else "not subscribed", flush=True)
os.kill(os.getpid(), 9)
"""


def test_a_consumer_with_session_expiry_0_leaves_nothing_at_the_broker_even_killed(
    broker: PrivateBroker,
) -> None:
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_CONSUMER, broker.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert killed.stdout.strip() == "subscribed", killed.stderr[-2000:]
    assert killed.returncode == -9
    time.sleep(0.5)  # the broker notices the closed socket
    assert not _session_present(broker, "bench-x")
