"""What the MQTT consumer accepts from an edge, checked without a broker
(server/consumers/mqtt.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from common.events import SCHEMA, events_topic, status_topic
from server.consumers.mqtt import (
    EVENTS_FILTER,
    STATUS_FILTER,
    BrokerAddress,
    EventDelivery,
    MqttConsumer,
    Rejected,
    StatusDelivery,
    parse_broker_url,
    validate_message,
)

SITE, EDGE, CAMERA = "garden-court", "box1", "gate-east"
TOPIC = events_topic(SITE, EDGE, CAMERA)
LIMIT = 2048


def wire(**overrides: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "schema": SCHEMA,
        "event_id": "evt-secret-7f3a",
        "seq": 2,
        "state": "update",
        "type": "fire_lane",
        "site_id": SITE,
        "camera_id": CAMERA,
        "zone_id": "lane-north",
        "rule_id": "lane-north-blocked",
        "observed_at": "2026-11-23T02:12:35.120Z",
        "pts_s": 131.2,
        "onset_pts_s": 10.0,
        "bbox": [0.1, 0.5, 0.3, 0.9],
        "score": 0.8,
        "details": {},
        "model": None,
        "evidence": [],
    }
    message.update(overrides)
    return message


def payload(**overrides: Any) -> bytes:
    return json.dumps(wire(**overrides)).encode()


def check(topic: str, body: bytes) -> EventDelivery | StatusDelivery | Rejected:
    return validate_message(topic, body, max_payload_bytes=LIMIT)


def reason(topic: str, body: bytes) -> str:
    verdict = check(topic, body)
    assert isinstance(verdict, Rejected), verdict
    return verdict.reason


def test_a_valid_event_is_accepted_with_site_edge_and_camera_from_the_topic() -> None:
    verdict = check(TOPIC, payload())
    assert isinstance(verdict, EventDelivery)
    assert (verdict.site_id, verdict.edge_id, verdict.camera_id) == (SITE, EDGE, CAMERA)
    assert (verdict.event.event_id, verdict.event.seq) == ("evt-secret-7f3a", 2)


def test_unknown_keys_are_ignored_so_newer_edges_are_accepted() -> None:
    assert isinstance(check(TOPIC, payload(extra_field={"x": 1})), EventDelivery)


def test_oversized_payload_is_rejected_before_parsing() -> None:
    body = payload(details={"pad": "x" * LIMIT})
    assert len(body) > LIMIT
    assert reason(TOPIC, body) == "oversized"
    # The limit itself is allowed.
    padded = payload(details={"pad": ""})
    exact = payload(details={"pad": "x" * (LIMIT - len(padded))})
    assert len(exact) == LIMIT
    assert isinstance(check(TOPIC, exact), EventDelivery)
    assert reason(TOPIC, exact + b" ") == "oversized"


def test_truncated_json_is_rejected() -> None:
    body = payload()
    for cut in (1, len(body) // 2, len(body) - 1):
        assert reason(TOPIC, body[:cut]) == "bad_json"


@pytest.mark.parametrize("body", [b"hello", b"{", b"{'event_id': 1}", b"\x00\x01"])
def test_non_json_is_rejected(body: bytes) -> None:
    assert reason(TOPIC, body) == "bad_json"


def test_bytes_that_are_not_utf8_are_rejected() -> None:
    assert reason(TOPIC, b"\xff\xfe" + payload()) == "not_utf8"


def test_empty_payload_is_rejected() -> None:
    assert reason(TOPIC, b"") == "empty"


@pytest.mark.parametrize(
    "overrides",
    [
        {"score": 1.5},
        {"state": "maybe"},
        {"type": "fire"},
        {"seq": -1},
        {"bbox": [0.5, 0.5, 0.1, 0.9]},
        {"observed_at": "2026-11-23T02:12:35"},  # no time zone
        {"observed_at": "9999-12-31T23:59:59-10:00"},  # past year 9999 once in UTC
        {"observed_at": "0001-01-01T00:00:00+10:00"},  # before year 1 once in UTC
        {"schema": "zhizhi.event/2"},
        {"event_id": ""},
    ],
)
def test_json_that_is_not_a_contract_event_is_rejected(overrides: dict[str, Any]) -> None:
    assert reason(TOPIC, payload(**overrides)) == "invalid_event"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (payload(zone_id="z\x00"), "bad_text"),  # PostgreSQL refuses NUL (issue 14, item 1)
        (payload(details={"note": "\ud800"}), "bad_text"),
        (payload().replace(b'"score": 0.8', b'"score": NaN'), "not_finite"),
        (payload().replace(b'"pts_s": 131.2', b'"pts_s": Infinity'), "not_finite"),
        (payload().replace(b'"pts_s": 131.2', b'"pts_s": 1e400'), "not_finite"),
        (payload(details={"n": 2**64}), "number_range"),
        (payload(details={"deep": json.loads("[" * 40 + "]" * 40)}), "too_deep"),
        (b'{"seq": 1, "details": ' + b"[" * 1000 + b"]" * 1000 + b"}", "too_deep"),
        (payload(seq=2**31), "invalid_event"),  # beyond what any ack or column carries
    ],
)
def test_input_outside_the_shared_limits_is_rejected(body: bytes, expected: str) -> None:
    assert reason(TOPIC, body) == expected


def test_missing_field_and_json_that_is_not_an_object_are_rejected() -> None:
    message = wire()
    del message["rule_id"]
    assert reason(TOPIC, json.dumps(message).encode()) == "invalid_event"
    assert reason(TOPIC, b"[1, 2, 3]") == "invalid_event"


def test_rejection_detail_names_the_field_but_not_the_payload() -> None:
    verdict = check(TOPIC, payload(score=1.5))
    assert isinstance(verdict, Rejected)
    assert "score" in verdict.detail
    assert "evt-secret-7f3a" not in verdict.detail and "1.5" not in verdict.detail


def test_topic_that_lies_about_the_site_is_rejected() -> None:
    verdict = check(events_topic("river-park", EDGE, CAMERA), payload())
    assert isinstance(verdict, Rejected) and verdict.reason == "site_mismatch"
    assert "river-park" in verdict.detail and SITE in verdict.detail


def test_topic_that_disagrees_on_the_camera_is_rejected() -> None:
    assert reason(events_topic(SITE, EDGE, "door-2"), payload()) == "camera_mismatch"


@pytest.mark.parametrize(
    "topic",
    [
        "zhizhi/v2/garden-court/box1/gate-east/events",
        "zhizhi/v1/garden-court/box1/events",
        "zhizhi/v1/garden-court/box1/gate-east/alerts",
        "zhizhi/v1/garden-court/box1/ack",
        "zhizhi/v1/garden-court/box1/cmd",
        "zhizhi/v1//box1/gate-east/events",
        "zhizhi/v1/garden-court//gate-east/events",
        "zhizhi/v1/garden-court/box1//events",
        "zhizhi/v1/garden-court/box1/gate-east/events/extra",
        "other/garden-court/box1/gate-east/events",
        "",
    ],
)
def test_topic_that_is_not_a_contract_topic_is_rejected(topic: str) -> None:
    assert reason(topic, payload()) == "bad_topic"


def test_valid_status_is_accepted() -> None:
    body = json.dumps({"state": "online", "edge_id": EDGE, "site_id": SITE, "ts": 5.0}).encode()
    verdict = check(status_topic(SITE, EDGE), body)
    assert isinstance(verdict, StatusDelivery)
    assert (verdict.site_id, verdict.edge_id, verdict.status.state) == (SITE, EDGE, "online")
    bare = check(status_topic(SITE, EDGE), b'{"state": "offline"}')
    assert isinstance(bare, StatusDelivery) and bare.status.state == "offline"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"state": "online", "site_id": "river-park"}, "site_mismatch"),
        ({"state": "online", "edge_id": "box7"}, "edge_mismatch"),
        ({"state": "sleeping"}, "invalid_status"),
        ({"edge_id": EDGE}, "invalid_status"),
    ],
)
def test_invalid_or_lying_status_is_rejected(body: dict[str, Any], expected: str) -> None:
    assert reason(status_topic(SITE, EDGE), json.dumps(body).encode()) == expected


def test_truncated_status_is_bad_json() -> None:
    assert reason(status_topic(SITE, EDGE), b'{"state": "onl') == "bad_json"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1:1884", BrokerAddress("127.0.0.1", 1884)),
        ("mqtt://broker", BrokerAddress("broker", 1883)),
        ("tcp://broker:1883", BrokerAddress("broker", 1883)),
        ("mqtts://broker", BrokerAddress("broker", 8883, tls=True)),
        (
            "mqtt://zhizhi-server:s%40cret@broker:1883",
            BrokerAddress("broker", 1883, False, "zhizhi-server", "s@cret"),
        ),
    ],
)
def test_broker_url(url: str, expected: BrokerAddress) -> None:
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize("url", ["http://broker:1883", "broker:1883", "mqtt://"])
def test_bad_broker_url(url: str) -> None:
    with pytest.raises(ValueError, match="MQTT URL"):
        parse_broker_url(url)


class _NoStore:
    def ingest_many(self, items: Any, *, source: str) -> list[bool]:
        raise AssertionError("not called")

    def record_status(self, *args: Any) -> None:
        raise AssertionError("not called")

    def available(self) -> bool:
        raise AssertionError("not called")

    def keep_dead_letters(self, letters: Any) -> None:
        raise AssertionError("not called")


def test_subscriptions_shared_by_group_or_plain() -> None:
    shared = MqttConsumer("mqtt://broker", _NoStore(), client_id="server-1")
    assert shared.events_filter == f"$share/zhizhi-server/{EVENTS_FILTER}"
    assert shared.status_filter == STATUS_FILTER  # retained: never sent to shared subscriptions
    plain = MqttConsumer("mqtt://broker", _NoStore(), client_id="server-1", group=None)
    assert plain.events_filter == EVENTS_FILTER == "zhizhi/v1/+/+/+/events"
    assert not shared.connected and not shared.healthy


@pytest.mark.parametrize(
    "options",
    [
        {"client_id": ""},
        {"client_id": "s", "group": "a/b"},
        {"client_id": "s", "group": "#"},
        {"client_id": "s", "batch_max": 0},
        {"client_id": "s", "receive_maximum": 70000},
    ],
)
def test_consumer_refuses_bad_options(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        MqttConsumer("mqtt://broker", _NoStore(), **options)
