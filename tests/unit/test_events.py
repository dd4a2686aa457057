"""The event message (contract section 3), its topics (section 4) and the EventSequencer."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from common.events import (
    SCHEMA,
    Event,
    Evidence,
    ModelInfo,
    ack_topic,
    cmd_topic,
    events_topic,
    format_rfc3339,
    status_topic,
)
from edge.delivery.sequencer import EventSequencer
from edge.rules.base import RuleOutput, State

MODEL = ModelInfo(name="yolov8n-640", version="8.3", sha256="ab" * 32)
SNAPSHOT = Evidence(
    kind="snapshot", sha256="0f" * 32, content_type="image/jpeg", url="/ev/a.jpg", role="onset"
)
RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def wire(**overrides: Any) -> dict[str, Any]:
    """A valid event message as it travels (JSON-ready dict)."""
    message: dict[str, Any] = {
        "schema": SCHEMA,
        "event_id": "3f2a",
        "seq": 0,
        "state": "new",
        "type": "fire_lane",
        "site_id": "garden-court",
        "camera_id": "gate-east",
        "zone_id": "lane-north",
        "rule_id": "lane-north-blocked",
        "observed_at": "2026-11-23T02:12:35.120Z",
        "pts_s": 135.2,
        "onset_pts_s": 15.0,
        "bbox": [0.1, 0.5, 0.4, 0.9],
        "score": 0.87,
        "details": {"blocked_s": 120.2, "blockers": [{"kind": "vehicle"}]},
        "model": MODEL.model_dump(),
        "evidence": [SNAPSHOT.model_dump()],
    }
    message.update(overrides)
    return message


# The message ---------------------------------------------------------------------------------


def test_json_round_trip_keeps_every_field() -> None:
    event = Event.model_validate(wire())
    text = event.to_json()
    assert json.loads(text) == wire()
    assert Event.model_validate_json(text) == event


def test_schema_travels_as_schema_not_schema_underscore() -> None:
    event = Event.model_validate(wire())
    assert event.schema_ == "zhizhi.event/1"
    data = event.to_dict()
    assert data["schema"] == "zhizhi.event/1"
    assert "schema_" not in data
    assert "schema_" not in json.loads(event.to_json())


def test_schema_defaults_and_other_schemas_are_refused() -> None:
    without = {k: v for k, v in wire().items() if k != "schema"}
    assert Event.model_validate(without).schema_ == SCHEMA
    with pytest.raises(ValidationError):
        Event.model_validate(wire(schema="zhizhi.event/2"))


@pytest.mark.parametrize(
    ("when", "text"),
    [
        (datetime(2026, 11, 23, 2, 12, 35, 120000, tzinfo=UTC), "2026-11-23T02:12:35.120Z"),
        (
            datetime(2026, 11, 23, 10, 12, 35, 120999, tzinfo=timezone(timedelta(hours=8))),
            "2026-11-23T02:12:35.120Z",
        ),
        (
            datetime(2027, 1, 1, 0, 0, 0, tzinfo=timezone(timedelta(hours=-5))),
            "2027-01-01T05:00:00.000Z",
        ),
    ],
)
def test_rfc3339_z(when: datetime, text: str) -> None:
    assert format_rfc3339(when) == text
    event = Event.model_validate(wire(observed_at=when))
    assert event.to_dict()["observed_at"] == text
    assert RFC3339_Z.match(json.loads(event.to_json())["observed_at"])


def test_offset_times_are_read_as_the_same_instant() -> None:
    event = Event.model_validate(wire(observed_at="2026-11-23T10:12:35.120+08:00"))
    assert event.observed_at == datetime(2026, 11, 23, 2, 12, 35, 120000, tzinfo=UTC)
    assert event.to_dict()["observed_at"] == "2026-11-23T02:12:35.120Z"


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValidationError):
        Event.model_validate(wire(observed_at="2026-11-23T02:12:35"))


@pytest.mark.parametrize(
    "bbox",
    [
        [0.4, 0.5, 0.1, 0.9],  # x2 < x1
        [0.1, 0.9, 0.4, 0.5],  # y2 < y1
        [0.1, 0.5, 1.2, 0.9],  # outside the frame
        [-0.1, 0.5, 0.4, 0.9],
        [0.1, 0.5, 0.4],  # three numbers
    ],
)
def test_bad_bboxes_are_refused(bbox: list[float]) -> None:
    with pytest.raises(ValidationError):
        Event.model_validate(wire(bbox=bbox))


def test_degenerate_bbox_is_allowed() -> None:
    assert Event.model_validate(wire(bbox=[0.3, 0.3, 0.3, 0.3])).bbox == (0.3, 0.3, 0.3, 0.3)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("seq", -1),
        ("seq", 2**31),  # beyond what the databases store (the fuzz test found a 500)
        ("state", "open"),
        ("type", "smoke"),
        ("score", 1.5),
        ("pts_s", -0.1),
        ("event_id", ""),
        ("evidence", [{"kind": "video", "sha256": "0" * 64, "content_type": "x", "url": "u"}]),
        ("evidence", [{"kind": "clip", "sha256": "XYZ", "content_type": "x", "url": "u"}]),
    ],
)
def test_bad_fields_are_refused(key: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        Event.model_validate(wire(**{key: value}))


def test_extra_keys_are_ignored() -> None:
    event = Event.model_validate(wire(future_field={"x": 1}, edge_id="box-7"))
    assert "future_field" not in event.to_dict()
    assert Event.model_validate(wire()) == event


def test_model_may_be_null() -> None:
    assert Event.model_validate(wire(model=None)).to_dict()["model"] is None


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        (events_topic("gc", "edge-1", "gate-east"), "zhizhi/v1/gc/edge-1/gate-east/events"),
        (status_topic("gc", "edge-1"), "zhizhi/v1/gc/edge-1/status"),
        (ack_topic("gc", "edge-1"), "zhizhi/v1/gc/edge-1/ack"),
        (cmd_topic("gc", "edge-1"), "zhizhi/v1/gc/edge-1/cmd"),
    ],
)
def test_topics(topic: str, expected: str) -> None:
    assert topic == expected


# The sequencer -------------------------------------------------------------------------------

T0 = datetime(2026, 11, 23, 2, 0, 0, tzinfo=UTC)


def output(
    state: State, pts_s: float = 30.0, rule_id: str = "lane-blocked", **details: Any
) -> RuleOutput:
    return RuleOutput(
        rule_id=rule_id,
        zone_id="lane",
        state=state,
        onset_s=10.0,
        pts_s=pts_s,
        box=(0.1, 0.5, 0.4, 0.9),
        score=0.8,
        details=dict(details),
    )


def sequencer() -> EventSequencer:
    types = {"lane-blocked": "fire_lane", "bins": "garbage_pile"}
    return EventSequencer("garden-court", "gate-east", types, MODEL)


def test_a_situation_keeps_its_id_and_counts_its_messages() -> None:
    seq = sequencer()
    states: list[State] = ["new", "update", "update", "end"]
    events = [seq.make(output(state, pts_s=30.0 + i), T0) for i, state in enumerate(states)]
    assert [e.seq for e in events] == [0, 1, 2, 3]
    assert [e.state for e in events] == states
    assert len({e.event_id for e in events}) == 1
    first = events[0]
    assert (first.type, first.site_id, first.camera_id, first.zone_id, first.rule_id) == (
        "fire_lane",
        "garden-court",
        "gate-east",
        "lane",
        "lane-blocked",
    )
    assert first.model == MODEL
    assert (first.pts_s, first.onset_pts_s) == (30.0, 10.0)


def test_a_new_situation_after_end_gets_a_new_id() -> None:
    seq = sequencer()
    first = seq.make(output("new"), T0)
    seq.make(output("end"), T0)
    again = seq.make(output("new"), T0)
    later = seq.make(output("update"), T0)
    assert again.event_id != first.event_id
    assert (again.seq, later.seq) == (0, 1)
    assert later.event_id == again.event_id


def test_rules_have_separate_situations() -> None:
    seq = sequencer()
    lane = seq.make(output("new"), T0)
    bins = seq.make(output("new", rule_id="bins"), T0)
    lane_update = seq.make(output("update"), T0)
    bins_end = seq.make(output("end", rule_id="bins"), T0)
    assert lane.event_id != bins.event_id
    assert bins.type == "garbage_pile"
    assert (lane_update.event_id, lane_update.seq) == (lane.event_id, 1)
    assert (bins_end.event_id, bins_end.seq) == (bins.event_id, 1)


def test_situation_detail_separates_situations_of_one_rule() -> None:
    seq = sequencer()
    a = seq.make(output("new", situation="a"), T0)
    b = seq.make(output("new", situation="b"), T0)
    a_end = seq.make(output("end", situation="a"), T0)
    b_update = seq.make(output("update", situation="b"), T0)
    assert a.event_id != b.event_id
    assert (a_end.event_id, a_end.seq) == (a.event_id, 1)
    assert (b_update.event_id, b_update.seq) == (b.event_id, 1)


def test_next_id_does_not_consume() -> None:
    seq = sequencer()
    first = seq.make(output("new"), T0)
    peek = seq.next_id(output("update"))
    assert peek == seq.next_id(output("update")) == (first.event_id, 1)
    made = seq.make(output("update"), T0, ids=peek)
    assert (made.event_id, made.seq) == peek


def test_make_clamps_and_rounds_into_the_wire_ranges() -> None:
    raw = RuleOutput(
        rule_id="lane-blocked",
        zone_id="lane",
        state="new",
        onset_s=-0.0004,
        pts_s=12.34567,
        box=(-0.01, 0.123456, 1.2, 0.9),
        score=1.3,
    )
    local = datetime(2026, 11, 23, 10, 0, 0, tzinfo=timezone(timedelta(hours=8)))
    event = sequencer().make(raw, local, evidence=[SNAPSHOT])
    assert event.bbox == (0.0, 0.1235, 1.0, 0.9)
    assert (event.pts_s, event.onset_pts_s, event.score) == (12.346, 0.0, 1.0)
    assert event.observed_at == T0 + timedelta(hours=0)
    assert event.to_dict()["observed_at"] == "2026-11-23T02:00:00.000Z"
    assert event.evidence == [SNAPSHOT]
