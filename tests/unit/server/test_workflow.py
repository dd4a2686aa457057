"""The work-order lifecycle, grouping, silences and percentiles: pure decisions, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from server.workflow import (
    ACTIONS,
    CLOSED_STATUSES,
    OPEN_STATUSES,
    STATUSES,
    TRANSITIONS,
    GroupCandidate,
    Matchers,
    SilenceWindow,
    TransitionNotAllowed,
    allowed_actions,
    choose_group,
    dwell_seconds,
    next_status,
    p50_p90,
    severity_of,
    silence_applies,
)

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def test_the_grid_management_path_runs_from_report_to_close() -> None:
    status = "reported"
    for action, expected in [
        ("ack", "filed"),
        ("dispatch", "dispatched"),
        ("handle", "handling"),
        ("feedback", "feedback"),
        ("verify", "verified"),
        ("resolve", "closed"),
    ]:
        status = next_status(action, status)
        assert status == expected


@pytest.mark.parametrize("status", sorted(OPEN_STATUSES))
def test_resolve_and_false_alarm_are_allowed_from_every_open_status(status: str) -> None:
    assert next_status("resolve", status) == "closed"
    assert next_status("false_alarm", status) == "false_alarm"


@pytest.mark.parametrize("status", sorted(CLOSED_STATUSES))
def test_a_closed_incident_only_reopens(status: str) -> None:
    assert allowed_actions(status) == ["reopen"]
    assert next_status("reopen", status) == "filed"
    with pytest.raises(TransitionNotAllowed, match="cannot ack"):
        next_status("ack", status)


def test_steps_cannot_be_skipped() -> None:
    with pytest.raises(TransitionNotAllowed):
        next_status("verify", "dispatched")
    with pytest.raises(TransitionNotAllowed):
        next_status("handle", "reported")
    with pytest.raises(TransitionNotAllowed, match="unknown action"):
        next_status("teleport", "reported")


def test_the_table_names_only_known_statuses_and_every_action() -> None:
    assert set(TRANSITIONS) == set(ACTIONS)
    for allowed, target in TRANSITIONS.values():
        assert set(allowed) <= set(STATUSES)
        assert target in STATUSES


def test_severity_and_dwell_by_type() -> None:
    assert severity_of("falling_object") == severity_of("person_fall") == "critical"
    assert severity_of("fire_lane") == "high"
    assert severity_of("garbage_pile") == "normal"
    assert dwell_seconds("fire_lane", 10.0, 135.5) == 125.5
    assert dwell_seconds("falling_object", 10.0, 12.0) is None


def test_a_new_alert_joins_the_open_incident_nearest_in_time_within_the_window() -> None:
    candidates = [
        GroupCandidate(1, "filed", T0),
        GroupCandidate(2, "dispatched", T0 + timedelta(seconds=200)),
    ]

    assert choose_group(candidates, T0 + timedelta(seconds=250), window_s=300) == 2
    assert choose_group(candidates, T0 + timedelta(seconds=501), window_s=300) is None
    assert choose_group(candidates, T0 + timedelta(seconds=10), window_s=0) is None


def test_closed_incidents_never_group() -> None:
    candidates = [GroupCandidate(1, "closed", T0), GroupCandidate(2, "false_alarm", T0)]

    assert choose_group(candidates, T0, window_s=300) is None


def test_a_silence_matches_its_labels_inside_its_window_only() -> None:
    silence = SilenceWindow(
        Matchers(site_id="garden-court", camera_id="gate-east"), T0, T0 + timedelta(hours=1)
    )
    labels = {"site_id": "garden-court", "camera_id": "gate-east", "rule_id": "r", "type": "x"}

    assert silence_applies(silence, at=T0 + timedelta(minutes=5), **labels)
    assert not silence_applies(silence, at=T0 + timedelta(hours=1), **labels)
    assert not silence_applies(silence, at=T0 - timedelta(seconds=1), **labels)
    assert not silence_applies(silence, at=T0, **{**labels, "camera_id": "gate-west"})


def test_percentiles_interpolate_like_numpy() -> None:
    assert p50_p90([]) == (None, None)
    assert p50_p90([7.0]) == (7.0, 7.0)
    assert p50_p90([10.0, 20.0, 30.0, 40.0]) == (25.0, 37.0)
