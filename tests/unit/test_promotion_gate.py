"""The promotion gate and the INT8 decision: pure functions on reports and measurements."""

from __future__ import annotations

from typing import Any

from training.export import decide_int8
from training.gate import GateConfig, detector_figures, judge


def report(**types: dict[str, Any]) -> dict[str, Any]:
    base = {
        "true_positives": 4,
        "false_alarms": 1,
        "misses": 1,
        "precision": 0.8,
        "recall": 0.8,
        "median_latency_s": 3.0,
    }
    return {"types": {name: {**base, **values} for name, values in types.items()}}


def test_equal_results_are_promoted() -> None:
    decision = judge(report(fire_lane={}), report(fire_lane={}), GateConfig())
    assert decision.promoted


def test_a_recall_drop_in_any_type_blocks_promotion() -> None:
    current = report(fire_lane={}, garbage_pile={})
    candidate = report(fire_lane={"recall": 0.9}, garbage_pile={"recall": 0.6})
    decision = judge(current, candidate, GateConfig(max_recall_drop=0.1))
    assert not decision.promoted
    assert any("garbage_pile: recall" in reason for reason in decision.reasons)


def test_a_drop_within_the_margin_passes() -> None:
    candidate = report(fire_lane={"precision": 0.76})
    assert judge(report(fire_lane={}), candidate, GateConfig(max_precision_drop=0.05)).promoted


def test_extra_false_alarms_and_slower_alerts_block() -> None:
    candidate = report(fire_lane={"false_alarms": 2, "median_latency_s": 6.0})
    decision = judge(report(fire_lane={}), candidate, GateConfig(max_latency_increase_s=2.0))
    assert not decision.promoted
    assert len(decision.reasons) == 2


def test_a_type_the_candidate_no_longer_reports_counts_as_lost() -> None:
    decision = judge(report(fire_lane={}), {"types": {}}, GateConfig())
    assert not decision.promoted


def test_no_event_results_is_not_a_pass() -> None:
    assert not judge({"types": {}}, {"types": {}}, GateConfig()).promoted


def test_detector_map_is_gated_only_when_configured() -> None:
    detector = {"current": {"map50": 0.6}, "candidate": {"map50": 0.5}}
    same = report(fire_lane={})
    assert judge(same, same, GateConfig(), detector).promoted
    assert not judge(same, same, GateConfig(max_map50_drop=0.05), detector).promoted


def test_int8_needs_both_speed_and_accuracy() -> None:
    assert decide_int8(50.0, 30.0, 0.6, 0.6).use_int8
    assert not decide_int8(50.0, 30.0, 0.6, 0.5).use_int8  # faster but worse
    assert not decide_int8(50.0, 49.0, 0.6, 0.6).use_int8  # as good but not faster


def test_a_candidate_raising_no_alert_is_judged_by_recall_alone() -> None:
    silent = report(
        fire_lane={"true_positives": 0, "false_alarms": 0, "misses": 5, "precision": None}
    )
    silent["types"]["fire_lane"].update(recall=0.0, median_latency_s=None)
    decision = judge(report(fire_lane={}), silent, GateConfig(max_recall_drop=0.8))
    assert decision.promoted  # precision undefined is no second regression
    assert not judge(report(fire_lane={}), silent, GateConfig(max_recall_drop=0.5)).promoted


def test_the_detector_is_compared_over_the_classes_both_models_have() -> None:
    evaluation = {
        "models": {
            "current": {"detector": {"map50": 0.84}},  # COCO: person, car, truck only
            "candidate": {"detector": {"map50": 0.31}},  # and garbage_bag
        },
        "shared_classes": {
            "classes": ["car", "person", "truck"],
            "map": {"current": {"ap50": 0.84}, "candidate": {"ap50": 0.38}},
        },
    }
    figures = detector_figures(evaluation)
    assert figures == {"current": {"map50": 0.84}, "candidate": {"map50": 0.38}}
    decision = judge(
        report(fire_lane={}), report(fire_lane={}), GateConfig(max_map50_drop=0.02), figures
    )
    assert not decision.promoted
    assert "mAP50 worse by +0.4600" in decision.reasons[0]
    del evaluation["shared_classes"]
    assert detector_figures(evaluation) == {
        "current": {"map50": 0.84},
        "candidate": {"map50": 0.31},
    }
    assert detector_figures({"models": {"current": {}, "candidate": {}}}) is None
