"""Scoring events against labels (contract section 6)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from common.events import Event
from edge.offline.evaluation import (
    TOLERANCE_S,
    LabelledClip,
    LabelledEvent,
    load_labels,
    match_clip,
    report,
    score,
)

REPO = Path(__file__).resolve().parents[2]
TYPES = ("falling_object", "person_fall", "fire_lane", "garbage_pile")


def event(
    onset_s: float,
    pts_s: float | None = None,
    type: str = "fire_lane",
    state: str = "new",
    event_id: str = "e1",
) -> Event:
    return Event.model_validate(
        {
            "event_id": event_id,
            "seq": {"new": 0, "update": 1, "end": 2}[state],
            "state": state,
            "type": type,
            "site_id": "s",
            "camera_id": "c",
            "zone_id": "z",
            "rule_id": "r",
            "observed_at": datetime(2026, 1, 1, tzinfo=UTC),
            "pts_s": onset_s + 2.0 if pts_s is None else pts_s,
            "onset_pts_s": onset_s,
            "bbox": (0.1, 0.2, 0.3, 0.4),
            "score": 0.9,
        }
    )


def clip(*labels: tuple[str, float], file: str = "a.mp4") -> LabelledClip:
    return LabelledClip(
        file=file,
        camera="c",
        events=[LabelledEvent(type=kind, onset_s=onset) for kind, onset in labels],
    )


def counts(result: Any) -> tuple[int, int, int]:
    return len(result.matches), len(result.false_alarms), len(result.misses)


def test_tolerances_are_the_contract_ones() -> None:
    assert TOLERANCE_S == {
        "falling_object": 1.0,
        "person_fall": 2.0,
        "fire_lane": 5.0,
        "garbage_pile": 5.0,
    }


@pytest.mark.parametrize("kind", TYPES)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_onset_within_tolerance_matches(kind: str, sign: float) -> None:
    onset = 20.0 + sign * TOLERANCE_S[kind]
    result = match_clip(clip((kind, 20.0)), [event(onset, type=kind)])
    assert counts(result) == (1, 0, 0)
    (match,) = result.matches
    assert (match.type, match.label_onset_s, match.event_onset_s) == (kind, 20.0, onset)


@pytest.mark.parametrize("kind", TYPES)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_just_outside_tolerance_is_a_false_alarm_and_a_miss(kind: str, sign: float) -> None:
    onset = 20.0 + sign * (TOLERANCE_S[kind] + 0.05)
    result = match_clip(clip((kind, 20.0)), [event(onset, type=kind)])
    assert counts(result) == (0, 1, 1)
    assert result.false_alarms[0].onset_pts_s == onset
    assert result.misses[0].onset_s == 20.0


def test_person_fall_tolerance_is_wider_than_falling_object() -> None:
    labels = clip(("falling_object", 10.0), ("person_fall", 30.0))
    alerts = [event(11.5, type="falling_object"), event(31.5, type="person_fall")]
    result = match_clip(labels, alerts)
    assert [m.type for m in result.matches] == ["person_fall"]
    assert [e.type for e in result.false_alarms] == ["falling_object"]
    assert [m.type for m in result.misses] == ["falling_object"]


def test_each_label_matches_at_most_once_closest_onset_wins() -> None:
    alerts = [event(13.0, event_id="far"), event(10.5, event_id="near")]
    result = match_clip(clip(("fire_lane", 10.0)), alerts)
    assert counts(result) == (1, 1, 0)
    assert result.matches[0].event_onset_s == 10.5
    assert result.false_alarms[0].event_id == "far"


def test_each_alert_matches_at_most_one_label() -> None:
    result = match_clip(clip(("fire_lane", 10.0), ("fire_lane", 12.0)), [event(11.0)])
    assert counts(result) == (1, 0, 1)


def test_two_labels_two_alerts_are_paired_by_closeness() -> None:
    labels = clip(("fire_lane", 10.0), ("fire_lane", 30.0))
    alerts = [event(31.0, pts_s=40.0, event_id="b"), event(9.0, pts_s=20.0, event_id="a")]
    result = match_clip(labels, alerts)
    assert counts(result) == (2, 0, 0)
    pairs = sorted((m.label_onset_s, m.event_onset_s, m.latency_s) for m in result.matches)
    assert pairs == [(10.0, 9.0, 10.0), (30.0, 31.0, 10.0)]


@pytest.mark.parametrize("state", ["update", "end"])
def test_only_new_events_count(state: str) -> None:
    result = match_clip(clip(("fire_lane", 10.0)), [event(10.0, state=state)])
    assert counts(result) == (0, 0, 1)


def test_updates_of_a_matched_alert_are_not_false_alarms() -> None:
    alerts = [event(10.0, pts_s=12.0), event(10.0, pts_s=72.0, state="update")]
    alerts.append(event(10.0, pts_s=90.0, state="end"))
    assert counts(match_clip(clip(("fire_lane", 10.0)), alerts)) == (1, 0, 0)


@pytest.mark.parametrize("kind", ["garbage_pile", "falling_object", "person_fall"])
def test_wrong_type_never_matches(kind: str) -> None:
    result = match_clip(clip(("fire_lane", 10.0)), [event(10.0, type=kind)])
    assert counts(result) == (0, 1, 1)


def test_no_labels_every_alert_is_a_false_alarm() -> None:
    result = match_clip(clip(), [event(3.0), event(30.0)])
    assert counts(result) == (0, 2, 0)


def test_scores_on_a_hand_computed_example() -> None:
    # clip a: two fire_lane labels, both found (latencies 7 and 12), one false alarm
    a = match_clip(
        clip(("fire_lane", 10.0), ("fire_lane", 40.0)),
        [event(11.0, pts_s=17.0), event(38.0, pts_s=52.0), event(80.0, pts_s=85.0)],
    )
    # clip b: one fire_lane found (latency 3), one missed; a falling object found (0.5)
    b = match_clip(
        clip(("fire_lane", 5.0), ("fire_lane", 60.0), ("falling_object", 8.0), file="b.mp4"),
        [event(5.5, pts_s=8.0), event(8.2, pts_s=8.5, type="falling_object")],
    )
    scores = score([a, b])
    assert list(scores) == ["falling_object", "fire_lane"]
    fire = scores["fire_lane"]
    assert (fire.true_positives, fire.false_alarms, fire.misses) == (3, 1, 1)
    assert fire.precision == pytest.approx(3 / 4)
    assert fire.recall == pytest.approx(3 / 4)
    assert fire.median_latency_s == pytest.approx(7.0)  # median of 7, 12, 3
    falling = scores["falling_object"]
    assert (falling.precision, falling.recall) == (1.0, 1.0)
    assert falling.median_latency_s == pytest.approx(0.5)


def test_undefined_ratios_are_none() -> None:
    only_misses = score([match_clip(clip(("person_fall", 3.0)), [])])["person_fall"]
    assert only_misses.precision is None
    assert only_misses.recall == 0.0
    assert only_misses.median_latency_s is None
    only_alarms = score([match_clip(clip(), [event(3.0)])])["fire_lane"]
    assert only_alarms.precision == 0.0
    assert only_alarms.recall is None


def test_report_structure() -> None:
    results = [
        match_clip(clip(("fire_lane", 10.0)), [event(11.0, pts_s=20.0)]),
        match_clip(clip(("fire_lane", 5.0), file="b.mp4"), [event(50.0, pts_s=55.0)]),
    ]
    out = report(results, extra={"frames": 123})
    json.dumps(out)  # JSON-ready
    assert set(out) == {"types", "clips", "frames"}
    assert out["frames"] == 123
    assert out["types"] == {
        "fire_lane": {
            "true_positives": 1,
            "false_alarms": 1,
            "misses": 1,
            "precision": 0.5,
            "recall": 0.5,
            "median_latency_s": 10.0,
        }
    }
    first, second = out["clips"]
    assert first["file"] == "a.mp4"
    assert first["matches"] == [
        {
            "type": "fire_lane",
            "label_onset_s": 10.0,
            "event_onset_s": 11.0,
            "alert_pts_s": 20.0,
            "latency_s": 10.0,
        }
    ]
    assert first["false_alarms"] == [] and first["misses"] == []
    assert second["false_alarms"] == [
        {
            "type": "fire_lane",
            "onset_pts_s": 50.0,
            "pts_s": 55.0,
            "rule_id": "r",
            "bbox": [0.1, 0.2, 0.3, 0.4],
        }
    ]
    assert second["misses"] == [{"type": "fire_lane", "onset_s": 5.0}]


def test_report_rounds_to_milliseconds() -> None:
    result = match_clip(clip(("fire_lane", 1.0)), [event(1.0, pts_s=4.33333)])
    out = report([result])
    assert out["types"]["fire_lane"]["median_latency_s"] == 3.333
    assert out["clips"][0]["matches"][0]["latency_s"] == 3.333


@pytest.mark.parametrize("path", sorted((REPO / "tests" / "data" / "labels").glob("*.yaml")))
def test_shipped_label_files_load(path: Path) -> None:
    labels = load_labels(path)
    assert labels.clips
    assert all(e.onset_s >= 0 for c in labels.clips for e in c.events)


CLIP_HEAD = "clips:\n  - file: a.mp4\n    camera: c\n"


@pytest.mark.parametrize(
    "text",
    [
        "clips: []\n",
        CLIP_HEAD + "    events:\n      - {type: fire, onset_s: 1}\n",
        CLIP_HEAD + "    events:\n      - {type: fire_lane, onset_s: -1}\n",
        CLIP_HEAD + "    colour: red\n",
    ],
)
def test_bad_label_files_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "labels.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValidationError):
        load_labels(path)
