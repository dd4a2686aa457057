"""Fuzzing the MQTT consumer (issue 14): thousands of generated messages, every poison class the
attacks used mixed with valid events, through a private Mosquitto into the real ingest service
on PostgreSQL (the strict one: it refuses NUL in text).

After each generated batch: every valid event is stored exactly once, nothing else is stored,
every message the broker delivered got its PUBACK, every refused message is a dead letter, and
the consumer is healthy. Hypothesis runs derandomized (the same messages on every run) with a
fixed number of examples, so CI time is bounded. The summary line (-s) gives the counts.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, text

from common.events import events_topic, status_topic
from server.consumers.mqtt import MqttConsumer
from server.db.session import make_engine, make_session_factory
from server.ingest import IngestService
from tests.support.databases import fresh_postgres_url
from tests.support.mosquitto import PrivateBroker

pytestmark = pytest.mark.integration

MAX_PAYLOAD = 8 * 1024  # small, so oversized messages stay cheap to make
EXAMPLES = 100
SITES = ("garden-court", "river-park")
TALLY: Counter[str] = Counter()


@dataclass(frozen=True)
class Sent:
    topic: str
    payload: bytes
    kind: str  # "valid" or the poison class
    key: tuple[str, int] | None = None  # (event_id, seq) a valid event must be stored under


# Strategies -----------------------------------------------------------------------------------

TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12)
IDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)
UNIT = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
TIME = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)
DETAILS = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | UNIT | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def valid_event(draw: st.DrawFn, tag: str) -> dict[str, Any]:
    x1, x2 = sorted((draw(UNIT), draw(UNIT)))
    y1, y2 = sorted((draw(UNIT), draw(UNIT)))
    seq = draw(st.integers(0, 5))
    return {
        "schema": "zhizhi.event/1",
        "event_id": f"{tag}-{draw(IDS)}",
        "seq": seq,
        "state": "new" if seq == 0 else draw(st.sampled_from(["update", "end"])),
        "type": draw(st.sampled_from(["fire_lane", "garbage_pile", "falling_object"])),
        "site_id": draw(st.sampled_from(SITES)),
        "camera_id": draw(st.sampled_from(["gate-east", "door-2"])),
        "zone_id": draw(IDS),
        "rule_id": draw(IDS),
        "observed_at": "2026-11-23T02:12:35.120Z",
        "pts_s": draw(TIME),
        "onset_pts_s": draw(TIME),
        "bbox": [x1, y1, x2, y2],
        "score": draw(UNIT),
        "details": {"note": draw(TEXT), "extra": draw(DETAILS)},
    }


def topic_of(event: dict[str, Any], edge: str = "box1") -> str:
    return events_topic(str(event["site_id"]), edge, str(event["camera_id"]))


def dumps(value: Any) -> bytes:
    """JSON as a careless edge writes it: NaN, Infinity and lone surrogates pass through."""
    return json.dumps(value, allow_nan=True).encode()


PLACEHOLDER = 98765.4321


@st.composite
def poison(draw: st.DrawFn, event: dict[str, Any]) -> Sent:
    """One message of a poison class, made from a valid event."""
    kind = draw(
        st.sampled_from(
            [
                "nul",
                "surrogate",
                "nan",
                "infinity",
                "1e400",
                "seq_beyond_int32",
                "negative_seq",
                "deep",
                "huge_int",
                "not_utf8",
                "truncated",
                "random_bytes",
                "oversized",
                "site_lies",
                "camera_lies",
                "bad_status",
                "empty",
                "not_an_object",
            ]
        )
    )
    topic = topic_of(event)
    bad = dict(event)
    if kind == "nul":
        # (not in the topic: MQTT forbids U+0000 in topic names, the broker drops the client)
        field = draw(st.sampled_from(["zone_id", "rule_id", "event_id"]))
        bad[field] = f"{bad[field]}\x00"
        return Sent(topic, dumps(bad), kind)
    if kind == "surrogate":
        bad["details"] = {"note": "\ud800" + draw(TEXT)}
        return Sent(topic, dumps(bad), kind)
    if kind in ("nan", "infinity"):
        field = draw(st.sampled_from(["pts_s", "onset_pts_s", "score"]))
        bad[field] = float("nan") if kind == "nan" else float("inf")
        return Sent(topic, dumps(bad), kind)
    if kind == "1e400":
        bad["pts_s"] = PLACEHOLDER
        return Sent(topic, dumps(bad).replace(str(PLACEHOLDER).encode(), b"1e400"), kind)
    if kind == "seq_beyond_int32":
        bad["seq"] = draw(st.integers(2**31, 2**62))
        return Sent(topic, dumps(bad), kind)
    if kind == "negative_seq":
        bad["seq"] = draw(st.integers(-(2**40), -1))
        return Sent(topic, dumps(bad), kind)
    if kind == "deep":
        depth = draw(st.integers(33, 3000))
        raw = dumps({**bad, "details": {}}).replace(
            b'"details": {}', b'"details": ' + b"[" * depth + b"]" * depth
        )
        return Sent(topic, raw, kind)
    if kind == "huge_int":
        bad["details"] = {"n": draw(st.integers(2**64, 2**200))}
        return Sent(topic, dumps(bad), kind)
    if kind == "not_utf8":
        raw = dumps(bad)
        cut = draw(st.integers(0, len(raw)))
        return Sent(topic, raw[:cut] + b"\xff\xfe" + raw[cut:], kind)
    if kind == "truncated":
        raw = dumps(bad)
        return Sent(topic, raw[: draw(st.integers(1, len(raw) - 1))], kind)
    if kind == "random_bytes":
        return Sent(topic, draw(st.binary(min_size=1, max_size=64)), kind)
    if kind == "oversized":
        bad["details"] = {"pad": "x" * (MAX_PAYLOAD + draw(st.integers(1, 2000)))}
        return Sent(topic, dumps(bad), kind)
    if kind == "site_lies":
        other = SITES[1 - SITES.index(str(event["site_id"]))]
        return Sent(events_topic(other, "box1", str(event["camera_id"])), dumps(bad), kind)
    if kind == "camera_lies":
        return Sent(events_topic(str(event["site_id"]), "box1", "other-cam"), dumps(bad), kind)
    if kind == "bad_status":
        body = draw(st.sampled_from([b'{"state": "sleeping"}', b'{"state": NaN}', b"[]"]))
        return Sent(status_topic(str(event["site_id"]), "box1"), body, kind)
    if kind == "empty":
        return Sent(topic, b"", kind)
    # not_an_object (a topic outside the contract never reaches the server: the broker
    # matches no subscription; the unit tests check the consumer's own topic checks)
    return Sent(topic, dumps(draw(st.lists(st.integers(), max_size=3))), kind)


RUNS = iter(range(1, 10**9))


@st.composite
def traffic(draw: st.DrawFn) -> list[Sent]:
    """A batch of messages: valid events (some sent twice), poison of every class, and events
    whose event_id another site's event of this batch claimed first. Each batch has its own
    event id prefix, so batches (and hypothesis' replays of one) never share an id."""
    tag = f"fz{next(RUNS):06d}"
    messages: list[Sent] = []
    claimed: dict[str, dict[str, Any]] = {}
    for _ in range(draw(st.integers(10, 60))):
        event = draw(valid_event(tag))
        choice = draw(st.integers(0, 9))
        if choice < 4:
            first = claimed.setdefault(str(event["event_id"]), event)
            if (first["site_id"], first["camera_id"]) != (event["site_id"], event["camera_id"]):
                messages.append(Sent(topic_of(event), dumps(event), "foreign_id"))
            else:
                key = (str(event["event_id"]), int(event["seq"]))
                copies = 2 if choice == 0 else 1
                messages += [Sent(topic_of(event), dumps(event), "valid", key)] * copies
        else:
            messages.append(draw(poison(event)))
    return messages


# Fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    for url in fresh_postgres_url():
        made = make_engine(url)
        yield made
        made.dispose()


@pytest.fixture(scope="module")
def consumer(
    engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[MqttConsumer, mqtt.Client]]:
    broker = PrivateBroker(tmp_path_factory.mktemp("fuzz-broker"), start_timeout_s=5)
    broker.start()
    made = MqttConsumer(
        broker.url,
        IngestService(make_session_factory(engine)),
        client_id="fuzz-server",
        max_payload_bytes=MAX_PAYLOAD,
        retry_initial_s=0.01,
        retry_max_s=0.1,
    )
    made.start()
    edge = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fuzz-edge")
    edge.max_inflight_messages_set(100)
    edge.connect("127.0.0.1", broker.port)
    edge.loop_start()
    try:
        wait_until(lambda: made.healthy, 10, "the consumer to subscribe")
        yield made, edge
    finally:
        edge.disconnect()
        edge.loop_stop()
        made.stop(timeout_s=2)
        broker.stop()
    sys.stdout.write(
        f"\n[fuzz mqtt] examples={TALLY['examples']} messages={TALLY['messages']} "
        f"valid={TALLY['valid']} refused={TALLY['refused']} stored={TALLY['stored']} lost=0 "
        f"classes={len([k for k in TALLY if k.startswith('class:')])}\n"
    )


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def stored_keys(engine: Engine, tag_like: str) -> Counter[tuple[str, int]]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT event_id, seq FROM events WHERE event_id LIKE :tag"), {"tag": tag_like}
        ).all()
    return Counter((str(event_id), int(seq)) for event_id, seq in rows)


# The property ---------------------------------------------------------------------------------


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same messages on every run: CI stays deterministic
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(messages=traffic())
def test_no_message_holds_the_consumer_and_every_valid_event_is_stored_once(
    consumer: tuple[MqttConsumer, mqtt.Client], engine: Engine, messages: list[Sent]
) -> None:
    server, edge = consumer
    tag = next((m.key[0].split("-")[0] for m in messages if m.key is not None), None)
    received = server.stats.get("received")
    rejected = sum(server.stats.rejected.values())
    infos = [edge.publish(m.topic, m.payload, qos=1) for m in messages]
    wait_until(lambda: all(info.is_published() for info in infos), 20, "the broker's PUBACKs")

    wait_until(
        lambda: server.stats.get("received") - received == len(messages), 20, "all delivered"
    )
    wait_until(
        lambda: (
            server.stats.get("pubacks") == server.stats.get("received")
            and server.health()["pending"] == 0
        ),
        20,
        "a PUBACK for every message",
    )
    valid = {m.key for m in messages if m.key is not None}
    refused = [m for m in messages if m.kind != "valid"]
    assert sum(server.stats.rejected.values()) - rejected == len(refused)
    if tag is not None:
        stored = stored_keys(engine, f"{tag}-%")
        assert set(stored) == valid, f"lost {valid - set(stored)}, extra {set(stored) - valid}"
        assert all(n == 1 for n in stored.values())
    assert server.healthy, server.health()
    assert server.stats.get("puback_skipped") == 0
    TALLY.update(examples=1, messages=len(messages), valid=len(valid), refused=len(refused))
    TALLY["stored"] += len(valid)
    TALLY.update(f"class:{m.kind}" for m in refused)
