"""The box's load figures from the counters its processes report (edge.runtime.load)."""

from __future__ import annotations

import pytest

from common.events import DetectorLoad
from edge.runtime.load import (
    CameraCounters,
    LaneCounters,
    box_load,
    camera_load,
    summary_line,
)

FRAME = LaneCounters(rule_ids=("throw",), need_fps=None)
ZONES = LaneCounters(rule_ids=("lane-blocked",), need_fps=5.0)


def counters(mono_s: float, read: int, **lanes: LaneCounters) -> CameraCounters:
    return CameraCounters(mono_s=mono_s, frames_read=read, cpu_s=mono_s * 0.3, lanes=lanes)


def lane(base: LaneCounters, **changes: float) -> LaneCounters:
    values = {
        "offered": 0,
        "processed": 0,
        "dropped": 0,
        "busy_s": 0.0,
        "starved": 0,
        "max_gap_s": 0.0,
        "lag_s": 0.0,
    }
    values.update(changes)
    return LaneCounters(base.rule_ids, base.need_fps, **values)  # type: ignore[arg-type]


def test_a_camera_that_keeps_up_is_ok_with_full_coverage() -> None:
    before = counters(0.0, 0, frames=lane(FRAME), zones=lane(ZONES))
    now = counters(
        10.0,
        300,
        frames=lane(FRAME, offered=300, processed=300, max_gap_s=0.034),
        zones=lane(ZONES, offered=50, processed=50, max_gap_s=0.2),
    )
    load = camera_load(now, before, target_analysis_fps=5.0)
    assert load.state == "ok" and load.problems == []
    assert load.camera_fps == pytest.approx(30.0)
    assert load.analysis_fps == pytest.approx(5.0)
    assert load.coverage["throw"].coverage == 1.0
    assert load.coverage["throw"].need_fps == pytest.approx(30.0)  # every frame it sends
    assert load.coverage["lane-blocked"].got_fps == pytest.approx(5.0)
    assert load.cpu == pytest.approx(0.3)


def test_dropped_frames_of_an_every_frame_rule_overload_the_camera() -> None:
    before = counters(0.0, 0, frames=lane(FRAME))
    now = counters(10.0, 300, frames=lane(FRAME, offered=300, processed=280, dropped=20))
    load = camera_load(now, before, target_analysis_fps=None)
    assert load.state == "overloaded"
    assert [p.code for p in load.problems] == ["frame_rules_behind"]
    assert load.problems[0].params["dropped"] == 20
    assert load.dropped_fps == pytest.approx(2.0)


def test_a_zone_analysis_below_its_rate_is_degraded_and_a_held_judgement_overloaded() -> None:
    before = counters(0.0, 0, zones=lane(ZONES))
    slow = counters(10.0, 250, zones=lane(ZONES, offered=50, processed=30, dropped=20))
    degraded = camera_load(slow, before, target_analysis_fps=5.0)
    assert degraded.state == "degraded"
    assert [p.code for p in degraded.problems] == ["frames_dropped"]
    assert degraded.coverage["lane-blocked"].coverage == pytest.approx(0.6)
    starved = counters(10.0, 250, zones=lane(ZONES, offered=50, processed=30, starved=4))
    held = camera_load(starved, before, target_analysis_fps=5.0)
    assert held.state == "overloaded" and held.coverage["lane-blocked"].holding
    assert [p.code for p in held.problems] == ["analysis_starved"]


def test_lag_slow_detections_flooding_and_restarts_are_reported() -> None:
    waits = tuple([0.1] * 18 + [1.6, 1.8])
    before = counters(0.0, 0, zones=lane(ZONES))
    now = CameraCounters(
        mono_s=2.0,
        frames_read=200,
        detector_waits_s=waits,
        lanes={"zones": lane(ZONES, offered=10, processed=10, lag_s=3.5)},
    )
    load = camera_load(now, before, target_analysis_fps=5.0, restarts=2)
    codes = {p.code for p in load.problems}
    assert {"lagging", "detector_slow", "source_flooding"} <= codes
    assert load.state == "overloaded"
    assert load.detector_wait_ms == pytest.approx(1800.0)
    assert load.detection_fps == pytest.approx(10.0)
    first = camera_load(now, None, target_analysis_fps=5.0, restarts=2)
    assert "restarted" in {p.code for p in first.problems}


def test_the_box_is_overloaded_when_a_camera_is_and_the_line_names_every_camera() -> None:
    before = counters(0.0, 0, frames=lane(FRAME))
    good = camera_load(
        counters(10.0, 300, frames=lane(FRAME, offered=300, processed=300)),
        before,
        target_analysis_fps=None,
    )
    bad = camera_load(
        counters(10.0, 300, frames=lane(FRAME, offered=300, processed=200, dropped=100)),
        before,
        target_analysis_fps=None,
    )
    box = box_load(10.0, 2, 0.93, 1.7, 900.0, 20000.0, 3.2, DetectorLoad(busy=0.8), {"a": good})
    assert not box.overloaded and box.cores == 2 and box.cpu == pytest.approx(0.93)
    box = box_load(10.0, 2, 0.99, 1.9, 900.0, None, None, None, {"a": good, "b": bad})
    assert box.overloaded
    line = summary_line({"a": good, "b": bad}, box)
    assert "a=ok(" in line and "b=overloaded(" in line and "cpu=99%" in line


def test_a_camera_read_slower_than_it_sends_outruns_the_box() -> None:
    before = counters(0.0, 0, zones=lane(ZONES))
    now = CameraCounters(
        mono_s=10.0,
        frames_read=380,  # 38 a second of the 60 it sends (4K decoding on a small box)
        nominal_fps=60.0,
        lanes={"zones": lane(ZONES, offered=50, processed=50)},
    )
    load = camera_load(now, before, target_analysis_fps=5.0)
    (problem,) = load.problems
    assert problem.code == "source_flooding"
    assert problem.params == {"fps": 60.0, "read_fps": 38.0}
    assert load.state == "degraded"
    keeping_up = CameraCounters(mono_s=10.0, frames_read=600, nominal_fps=60.0, lanes=now.lanes)
    assert camera_load(keeping_up, before, target_analysis_fps=5.0).problems == []
