"""The durable MQTT publisher (issue 5) against a private Mosquitto started on a free port.

A test "server" client subscribes to every edge's events like the real server does and
publishes the acks. The broker keeps persistence on, so queued QoS 1 messages survive its
restart. Without /usr/sbin/mosquitto these tests skip, and fail when CI=true; they are marked
`integration`.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from common.events import Event, ack_topic, parse_topic, status_topic
from edge.delivery.mqtt import JsonlSink, MqttSink
from edge.delivery.outbox import Outbox
from tests.support.events import numbered_event
from tests.support.mosquitto import PrivateBroker, free_port

# tests that start a broker; the others run anywhere
broker_test = pytest.mark.integration

SITE, EDGE = "site-t", "edge-t"
FAST = {"resend_after_s": 1.0, "reconnect_max_s": 1, "flush_timeout_s": 2.0}


# Helpers -----------------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def make_event(i: int, seq: int = 0, camera: str = "cam-1") -> Event:
    return numbered_event(i, seq, site=SITE, camera=camera)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    running = PrivateBroker(tmp_path / "broker")
    running.start()
    yield running
    running.stop()


def client(port: int, client_id: str | None = None, clean: bool = True) -> mqtt.Client:
    made = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or f"test-{uuid.uuid4().hex[:8]}",
        clean_session=clean,
    )
    made.reconnect_delay_set(min_delay=1, max_delay=1)
    return made


class FakeServer:
    """Subscribes to zhizhi/v1/+/+/+/events with a persistent session and acks what `should_ack`
    accepts; records every delivery in arrival order."""

    def __init__(self, port: int, should_ack: Callable[[Event, int], bool] | None = None) -> None:
        self.deliveries: list[tuple[str, int]] = []
        self.events: dict[tuple[str, int], Event] = {}
        self.times: dict[tuple[str, int], list[float]] = {}
        self._should_ack = should_ack or (lambda _event, _count: True)
        self._lock = threading.Lock()
        self._client = client(port, client_id=f"test-server-{uuid.uuid4().hex[:6]}", clean=False)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self.subscribed = threading.Event()
        self._client.connect_async("127.0.0.1", port)
        self._client.loop_start()

    def _on_connect(self, c: mqtt.Client, *_args: Any) -> None:
        c.subscribe("zhizhi/v1/+/+/+/events", qos=1)
        self.subscribed.set()

    def _on_message(self, c: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        event = Event.model_validate_json(message.payload)
        key = (event.event_id, event.seq)
        with self._lock:
            self.deliveries.append(key)
            self.events[key] = event
            self.times.setdefault(key, []).append(time.monotonic())
            count = self.deliveries.count(key)
        if self._should_ack(event, count):
            parsed = parse_topic(message.topic)
            assert parsed is not None
            site, edge, _camera, _kind = parsed
            ack = json.dumps({"event_id": event.event_id, "seq": event.seq})
            c.publish(ack_topic(site, edge), ack, qos=1)

    def first_deliveries(self) -> list[tuple[str, int]]:
        with self._lock:
            return list(dict.fromkeys(self.deliveries))

    def count(self, key: tuple[str, int]) -> int:
        with self._lock:
            return self.deliveries.count(key)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


@pytest.fixture
def server(broker: PrivateBroker) -> Iterator[FakeServer]:
    fake = FakeServer(broker.port)
    assert fake.subscribed.wait(5)
    yield fake
    fake.close()


def read_retained(port: int, topic: str, timeout_s: float = 3.0) -> dict[str, Any] | None:
    """The retained message on `topic` as a fresh subscriber sees it."""
    got: list[dict[str, Any]] = []
    done = threading.Event()
    reader = client(port)

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        if message.retain:
            got.append(json.loads(message.payload))
            done.set()

    reader.on_message = on_message
    reader.connect("127.0.0.1", port)
    reader.subscribe(topic, qos=1)
    reader.loop_start()
    done.wait(timeout_s)
    reader.loop_stop()
    reader.disconnect()
    return got[0] if got else None


def sink_for(broker: PrivateBroker, outbox_path: Path, **options: Any) -> MqttSink:
    return MqttSink(broker.url, SITE, EDGE, Outbox(outbox_path), **{**FAST, **options})


def keys(events: list[Event]) -> list[tuple[str, int]]:
    return [(event.event_id, event.seq) for event in events]


# (a) normal flow ---------------------------------------------------------------------------


@broker_test
def test_events_arrive_in_order_and_acks_empty_the_outbox(
    broker: PrivateBroker, server: FakeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = sink_for(broker, tmp_path / "outbox.sqlite")
    sent = [make_event(i, seq) for i in range(10) for seq in range(3)]
    for event in sent:
        sink.send(event)

    wait_for(lambda: sink.outbox.stats().pending_events == 0, 10, "all acks")
    sink.close()

    assert server.first_deliveries() == keys(sent)
    assert server.events[("ev-0003", 2)] == sent[11]
    assert all(server.count(key) == 1 for key in keys(sent))  # acked in time: no resend
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


@broker_test
def test_events_go_to_the_contract_topic(broker: PrivateBroker, tmp_path: Path) -> None:
    topics: list[str] = []
    spy = client(broker.port)
    spy.on_message = lambda _c, _u, message: topics.append(message.topic)
    spy.connect("127.0.0.1", broker.port)
    spy.subscribe("zhizhi/v1/#", qos=1)
    spy.loop_start()
    sink = sink_for(broker, tmp_path / "outbox.sqlite")

    sink.send(make_event(1, camera="gate-east"))

    wait_for(lambda: any(t.endswith("/events") for t in topics), 5, "the event")
    sink.close()
    spy.loop_stop()
    assert f"zhizhi/v1/{SITE}/{EDGE}/gate-east/events" in topics


# (b) broker outage mid-stream --------------------------------------------------------------


@broker_test
def test_broker_restart_mid_stream_loses_nothing_and_keeps_order(
    broker: PrivateBroker, server: FakeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge.delivery.mqtt")
    sink = sink_for(broker, tmp_path / "outbox.sqlite")
    sent = [make_event(i) for i in range(45)]
    for event in sent[:15]:
        sink.send(event)
        time.sleep(0.01)

    broker.stop()
    slowest = 0.0
    for event in sent[15:30]:
        started = time.monotonic()
        sink.send(event)
        slowest = max(slowest, time.monotonic() - started)
    assert sink.outbox.stats().pending_events >= 15
    broker.start()
    for event in sent[30:]:
        sink.send(event)
        time.sleep(0.01)

    wait_for(lambda: sink.outbox.stats().pending_events == 0, 20, "all acks after the restart")
    sink.close()

    assert server.first_deliveries() == keys(sent)
    assert slowest < 0.5  # send() only writes the outbox, even with the broker away
    messages = [r.getMessage() for r in caplog.records if r.name == "edge.delivery.mqtt"]
    assert sum("connection lost" in m for m in messages) == 1
    assert sum("connection back" in m for m in messages) == 1


@broker_test
def test_a_reconnect_sends_every_unacked_event_again_at_once(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    # the server ignores first deliveries; resend_after_s is far beyond the test's waits, so
    # only the reconnect can bring the second deliveries that it acks
    server = FakeServer(broker.port, lambda _event, count: count >= 2)
    assert server.subscribed.wait(5)
    sink = sink_for(broker, tmp_path / "outbox.sqlite", resend_after_s=60.0)
    sent = [make_event(i) for i in range(10)]
    for event in sent:
        sink.send(event)
    wait_for(lambda: len(server.first_deliveries()) == 10, 5, "first deliveries")
    time.sleep(0.3)
    assert sink.outbox.stats().pending_events == 10

    broker.restart()

    wait_for(lambda: sink.outbox.stats().pending_events == 0, 10, "acks after the reconnect")
    sink.close()
    server.close()
    assert server.first_deliveries() == keys(sent)


@broker_test
def test_a_restarted_edge_sends_every_unacked_event_again_at_once(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    server = FakeServer(broker.port, lambda _event, count: count >= 2)
    assert server.subscribed.wait(5)
    path = tmp_path / "outbox.sqlite"
    first = sink_for(broker, path, resend_after_s=60.0, flush_timeout_s=0.5)
    sent = [make_event(i) for i in range(10)]
    for event in sent:
        first.send(event)
    wait_for(lambda: len(server.first_deliveries()) == 10, 5, "first deliveries")
    first.close()
    first.outbox.close()

    second = sink_for(broker, path, resend_after_s=60.0)

    wait_for(lambda: second.outbox.stats().pending_events == 0, 10, "acks after the restart")
    second.close()
    server.close()
    assert all(server.count(key) == 2 for key in keys(sent))


# (c) edge killed -9 with events in its outbox ----------------------------------------------

EDGE_PROCESS = """
import sys, time
from pathlib import Path
from common.events import Event
from edge.delivery.outbox import Outbox
from edge.delivery.mqtt import MqttSink

mode, url, path = sys.argv[1:4]
sink = MqttSink(url, "site-t", "edge-t", Outbox(Path(path)), resend_after_s=1.0,
                reconnect_max_s=1, flush_timeout_s=2.0)
base = {"state": "new", "type": "fire_lane", "site_id": "site-t", "camera_id": "cam-1",
        "zone_id": "lane", "rule_id": "lane-blocked", "observed_at": "2026-11-23T02:12:35.120Z",
        "onset_pts_s": 0.0, "bbox": [0.1, 0.2, 0.3, 0.4], "score": 0.9}
if mode == "send":
    for i in range(50):
        sink.send(Event.model_validate({**base, "event_id": f"ev-{i:04d}", "seq": 0,
                                        "pts_s": float(i)}))
    print("sent", flush=True)
elif mode == "drain":
    deadline = time.monotonic() + 20
    while sink.outbox.stats().pending_events and time.monotonic() < deadline:
        time.sleep(0.05)
    sink.close()
    print("drained", sink.outbox.stats().pending_events, flush=True)
    sys.exit(0)
else:
    print("idle", flush=True)
time.sleep(60)
"""


def edge_process(tmp_path: Path, mode: str, url: str, outbox: Path) -> subprocess.Popen[str]:
    script = tmp_path / "edge_process.py"
    script.write_text(EDGE_PROCESS)
    process = subprocess.Popen(
        [sys.executable, str(script), mode, url, str(outbox)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    assert line.startswith({"send": "sent", "drain": "drained", "idle": "idle"}[mode]), line
    return process


def kill_9(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


@broker_test
def test_edge_killed_with_events_in_its_outbox_sends_them_after_restart(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox.sqlite"
    broker.stop()
    first = edge_process(tmp_path, "send", broker.url, outbox)
    kill_9(first)
    assert Outbox(outbox).stats().pending_events == 50

    broker.start()
    server = FakeServer(broker.port)
    assert server.subscribed.wait(5)
    second = edge_process(tmp_path, "drain", broker.url, outbox)
    second.wait(timeout=10)
    server.close()

    assert second.returncode == 0
    assert server.first_deliveries() == [(f"ev-{i:04d}", 0) for i in range(50)]
    assert Outbox(outbox).stats().pending_events == 0


# (d) partial acks --------------------------------------------------------------------------


@broker_test
def test_events_not_acked_are_sent_again_after_resend_after_s(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    # odd events are ignored the first time they arrive, acked the second time
    server = FakeServer(broker.port, lambda event, count: event.pts_s % 2 == 0 or count >= 2)
    assert server.subscribed.wait(5)
    sink = sink_for(broker, tmp_path / "outbox.sqlite", resend_after_s=1.0)
    sent = [make_event(i) for i in range(10)]
    for event in sent:
        sink.send(event)

    wait_for(lambda: sink.outbox.stats().pending_events == 0, 10, "every ack")
    sink.close()
    server.close()

    odd, even = keys(sent[1::2]), keys(sent[0::2])
    assert all(server.count(key) == 2 for key in odd)
    assert all(server.count(key) == 1 for key in even)
    gaps = [server.times[key][1] - server.times[key][0] for key in odd]
    assert min(gaps) >= 0.9
    assert max(gaps) < 3.0


# (e) status: retained, offline on close, last will ------------------------------------------


@broker_test
def test_status_is_retained_online_then_offline_after_close(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    topic = status_topic(SITE, EDGE)
    sink = sink_for(broker, tmp_path / "outbox.sqlite")
    wait_for(
        lambda: (read_retained(broker.port, topic, 0.5) or {}).get("state") == "online", 5, "online"
    )

    sink.camera_status("cam-1", False, "no frames for 10 s")
    wait_for(
        lambda: "cam-1" in (read_retained(broker.port, topic, 0.5) or {}).get("cameras", {}),
        5,
        "the camera in the status",
    )
    online = read_retained(broker.port, topic)
    sink.close()
    offline = read_retained(broker.port, topic)

    assert online is not None and offline is not None
    assert (online["state"], online["site_id"], online["edge_id"]) == ("online", SITE, EDGE)
    assert online["cameras"]["cam-1"]["online"] is False
    assert online["cameras"]["cam-1"]["reason"] == "no frames for 10 s"
    assert set(online["outbox"]) >= {"pending", "shed_events", "shed_evidence"}
    assert offline["state"] == "offline"


@broker_test
def test_status_goes_offline_through_the_last_will_after_kill_9(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    topic = status_topic(SITE, EDGE)
    process = edge_process(tmp_path, "idle", broker.url, tmp_path / "outbox.sqlite")
    wait_for(
        lambda: (read_retained(broker.port, topic, 0.5) or {}).get("state") == "online", 5, "online"
    )

    kill_9(process)

    wait_for(
        lambda: (read_retained(broker.port, topic, 0.5) or {}).get("state") == "offline",
        5,
        "the last will",
    )
    will = read_retained(broker.port, topic)
    assert will is not None and (will["site_id"], will["edge_id"]) == (SITE, EDGE)


# Robustness --------------------------------------------------------------------------------


def test_send_never_raises_into_the_caller(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = MqttSink(f"mqtt://127.0.0.1:{free_port()}", SITE, EDGE, Outbox(tmp_path / "o.sqlite"))
    sink.outbox.close()  # any storage failure

    sink.send(make_event(1))

    assert "could not be stored in the outbox" in caplog.text
    sink.flush_timeout_s = 0.1
    sink.close()


@broker_test
def test_an_invalid_ack_is_ignored(broker: PrivateBroker, tmp_path: Path) -> None:
    sink = sink_for(broker, tmp_path / "outbox.sqlite", resend_after_s=30.0)
    sink.send(make_event(1))
    wait_for(lambda: sink.outbox.due(time.time(), 30.0, 1) == [], 5, "the first send")
    poke = client(broker.port)
    poke.connect("127.0.0.1", broker.port)
    poke.loop_start()
    poke.publish(ack_topic(SITE, EDGE), b"{not json", qos=1).wait_for_publish(2)
    poke.publish(ack_topic(SITE, EDGE), json.dumps({"event_id": "ev-0001", "seq": 0}), qos=1)

    wait_for(lambda: sink.outbox.stats().pending_events == 0, 5, "the valid ack")
    poke.loop_stop()
    sink.close()


def test_jsonl_sink_appends_one_line_per_event(tmp_path: Path) -> None:
    path = tmp_path / "out" / "events.jsonl"
    sink = JsonlSink(path)
    sink.send(make_event(1))
    sink.send(make_event(1, seq=1))
    sink.close()

    lines = path.read_text().splitlines()
    assert [Event.model_validate_json(line).seq for line in lines] == [0, 1]


def test_a_rejection_ack_removes_the_event_and_logs_why(
    broker: PrivateBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server refuses a message for good (it can never be stored): the edge must stop
    re-sending it, and say so loudly."""
    sink = sink_for(broker, tmp_path / "outbox.sqlite", resend_after_s=30.0)
    sink.send(make_event(1))
    sink.send(make_event(2))
    wait_for(lambda: sink.outbox.due(time.time(), 30.0, 2) == [], 5, "the first sends")
    poke = client(broker.port)
    poke.connect("127.0.0.1", broker.port)
    poke.loop_start()
    rejection = {"event_id": "ev-0001", "seq": 0, "rejected": "invalid_event"}
    poke.publish(ack_topic(SITE, EDGE), json.dumps(rejection), qos=1).wait_for_publish(2)

    wait_for(lambda: sink.outbox.stats().pending_events == 1, 5, "the rejection")
    assert "rejected event ev-0001/0 for good (invalid_event)" in caplog.text
    poke.loop_stop()
    sink.close()
