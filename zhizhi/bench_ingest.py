"""`zhizhi bench ingest`: events per second from MQTT into the database, and the latency from
publish to stored.

The server's real consumer and ingest service run in this process against the given broker and
database; a publisher plays many edges. An event counts as stored when its ack comes back (the
server acks only after the transaction that stored it committed), so publish → ack is an upper
bound of publish → stored.

- throughput: `events` messages published as fast as the broker takes them, at most `window`
  unacknowledged at a time (as an edge's outbox does), sustained rate = events / wall time;
- latency: `rate` events per second for `seconds`, then p50 and p99 of publish → ack.

The bench never joins the servers' group (issue 18: a bench with a persistent session stayed a
member and took events from the servers long after it ended): its consumer subscribes in a
group of its own (`zhizhi-bench-<run>`) with a session that ends with its connection (Session
Expiry 0, clean start), and it does not record itself as a server member. Run it against a
broker of its own: servers on the same broker also receive (and store) its events.
"""

from __future__ import annotations

import multiprocessing
import platform
import statistics
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import text

from common.events import AckMessage, Event, events_topic
from server.main import build_server
from server.settings import ServerSettings

SITE = "bench-site"
EDGES = 8  # the publisher spreads events over this many edge ids, as a real site would


@dataclass(frozen=True, slots=True)
class IngestBench:
    database: str
    events: int
    throughput_eps: float
    rate_eps: float
    latency_p50_ms: float
    latency_p99_ms: float
    stored: int

    def markdown_row(self) -> str:
        return (
            f"| {self.database} | {self.events} | {self.throughput_eps:.0f} | "
            f"{self.rate_eps:.0f} | {self.latency_p50_ms:.1f} | {self.latency_p99_ms:.1f} | "
            f"{self.stored} |"
        )

    def append_to(self, path: Path, command: str) -> None:
        when = datetime.now(UTC).strftime("%Y-%m-%d")
        block = (
            f"\n### ingest into {self.database} ({when}, {platform.machine()})\n\n"
            f"```\nzhizhi {command}\n```\n\n"
            "| database | events | sustained events/s | latency test rate (events/s) | "
            "p50 publish→stored ms | p99 publish→stored ms | rows stored |\n"
            "|---|---|---|---|---|---|---|\n"
            f"{self.markdown_row()}\n"
        )
        with path.open("a", encoding="utf-8") as stream:
            stream.write(block)


def _event(run: str, index: int) -> tuple[str, Event]:
    edge = f"edge-{index % EDGES}"
    event = Event.model_validate(
        {
            "event_id": f"{run}-{index}",
            "seq": 0,
            "state": "new",
            "type": "fire_lane",
            "site_id": SITE,
            "camera_id": "cam-1",
            "zone_id": "lane",
            "rule_id": "lane-blocked",
            "observed_at": datetime.now(UTC),
            "pts_s": 130.0,
            "onset_pts_s": 10.0,
            "bbox": [0.1, 0.2, 0.3, 0.4],
            "score": 0.9,
            "details": {"blocked_s": 120.0},
        }
    )
    return events_topic(SITE, edge, "cam-1"), event


class _Publisher:
    """Publishes events and waits for their acks; keeps at most `window` unacknowledged."""

    def __init__(self, url_host: str, port: int, window: int) -> None:
        self._sent: dict[str, float] = {}
        self.latencies: list[float] = []
        self._lock = threading.Condition()
        self._window = window
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid.uuid4().hex[:8]}"
        )
        self._client.max_inflight_messages_set(window)
        self._client.on_message = self._on_ack
        self._client.connect(url_host, port)
        self._client.subscribe(f"zhizhi/v1/{SITE}/+/ack", qos=1)
        self._client.loop_start()
        time.sleep(0.3)

    def _on_ack(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        ack = AckMessage.model_validate_json(message.payload)
        now = time.perf_counter()
        with self._lock:
            sent = self._sent.pop(ack.event_id, None)
            if sent is not None:
                self.latencies.append(now - sent)
            self._lock.notify_all()

    def publish(self, topic: str, event: Event) -> None:
        with self._lock:
            self._lock.wait_for(lambda: len(self._sent) < self._window, timeout=30)
            self._sent[event.event_id] = time.perf_counter()
        self._client.publish(topic, event.to_json(), qos=1)

    def drain(self, timeout_s: float = 60.0) -> None:
        with self._lock:
            if not self._lock.wait_for(lambda: not self._sent, timeout=timeout_s):
                raise TimeoutError(f"{len(self._sent)} events were never acknowledged")

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def _publish_runs(
    host: str, port: int, window: int, run: str, events: int, rate: float, seconds: float
) -> tuple[float, list[float]]:
    """In a process of its own (so the publisher does not share the server's interpreter):
    the throughput run, then the paced latency run. Returns (events/s, latencies in s)."""
    publisher = _Publisher(host, port, window)
    try:
        started = time.perf_counter()
        for index in range(events):
            publisher.publish(*_event(run, index))
        publisher.drain()
        throughput = events / (time.perf_counter() - started)
        publisher.latencies.clear()
        started = time.perf_counter()
        for index in range(int(rate * seconds)):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            publisher.publish(*_event(run, events + index))
        publisher.drain()
        return throughput, sorted(publisher.latencies)
    finally:
        publisher.close()


def bench_ingest(
    db_url: str, mqtt_url: str, events: int, rate: float, seconds: float, window: int
) -> IngestBench:
    run_id = uuid.uuid4().hex[:6]
    settings = ServerSettings(
        db_url=db_url,
        mqtt_url=mqtt_url,
        mqtt_client_id=f"zhizhi-bench-{run_id}",
        mqtt_group=f"zhizhi-bench-{run_id}",  # never the servers' group
        mqtt_session_expiry_s=0,  # nothing left at the broker when it ends, even killed
    )
    runtime = build_server(settings, member=False)
    runtime.start_consumer()
    deadline = time.monotonic() + 10
    while not runtime.consumer.connected and time.monotonic() < deadline:
        time.sleep(0.05)
    run = uuid.uuid4().hex[:10]
    try:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            throughput, latencies = pool.submit(
                _publish_runs,
                settings.mqtt_host,
                settings.mqtt_port,
                window,
                run,
                events,
                rate,
                seconds,
            ).result()
        with runtime.engine.connect() as connection:
            stored = connection.execute(
                text("SELECT count(*) FROM events WHERE event_id LIKE :run"), {"run": f"{run}-%"}
            ).scalar_one()
    finally:
        runtime.stop()
    return IngestBench(
        database=db_url.split("://", 1)[0].split("+", 1)[0],
        events=events,
        throughput_eps=throughput,
        rate_eps=rate,
        latency_p50_ms=statistics.median(latencies) * 1000,
        latency_p99_ms=latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000,
        stored=int(stored),
    )
