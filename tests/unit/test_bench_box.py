"""The box bench's judgement (live alerts against replay, loop by loop) and the capacity search."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import zhizhi.bench_box as bench
from common.config import SiteConfig
from zhizhi.bench_box import Alert, CameraResult

REPO = Path(__file__).resolve().parents[2]


def result(replayed: list[Alert], live: list[Alert], period: float = 30.0) -> CameraResult:
    camera = CameraResult("lane", ("fire_lane",), "1280x720", 12.5, period, replayed)
    camera.live = live
    return camera


def test_every_complete_loop_must_find_the_replayed_alert() -> None:
    bag = Alert("blocked", "fire_lane", 10.0)
    live = [Alert("blocked", "fire_lane", onset) for onset in (10.4, 40.1, 100.2)]
    camera = result([bag], live)
    camera.judge(seconds_played=125.0)  # loops 0-3 complete; loop 2 (60-90 s) found nothing
    assert (camera.loops, camera.expected, camera.found, camera.missed) == (4, 4, 3, 1)
    assert camera.unexpected == [] and not camera.replay_quality


def test_an_alert_replay_does_not_raise_is_unexpected_whatever_the_loop() -> None:
    bag = Alert("blocked", "fire_lane", 10.0)
    live = [
        Alert("blocked", "fire_lane", 10.2),
        Alert("blocked", "fire_lane", 22.0),  # 12 s off: beyond the 5 s of a fire lane
        Alert("other-rule", "fire_lane", 40.0),
    ]
    camera = result([bag], live)
    camera.judge(seconds_played=35.0)
    assert camera.found == 1 and camera.missed == 0
    assert [a.onset_s for a in camera.unexpected] == [22.0, 40.0]


def test_an_onset_near_a_loops_end_may_belong_to_the_next_loop() -> None:
    # replay sees the situation start at 0.3 s; live, the loop's first frames come 0.2 s
    # early, so the onset is at the end of the previous loop
    camera = result(
        [Alert("throw", "falling_object", 0.3)], [Alert("throw", "falling_object", 29.9)]
    )
    camera.judge(seconds_played=61.0)
    assert camera.unexpected == []


def test_the_capacity_search_steps_then_closes_in_on_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ZHIZHI_BENCH_CLIPS", "/bench-clips")
    tried: list[int] = []

    class Run:
        def __init__(self, site: SiteConfig) -> None:
            self.cameras: dict[str, Any] = {}
            self.replay_quality = len(site.cameras) <= 7
            self.boxes: list[Any] = []
            tried.append(len(site.cameras))

    monkeypatch.setattr(bench, "run_box_bench", lambda site, _ids, _s, faces=None: Run(site))  # noqa: ARG005
    template = REPO / "configs" / "bench" / "kind-fire-lane.yaml"
    best, tries = bench.capacity(template, "yolov8n-320", 10.0, start=2, most=24, step=3)
    assert best == 7 and tried == [2, 5, 8, 6, 7]
    assert [count for count, _ in tries] == [2, 5, 6, 7, 8]
    copies = bench.copies({"site": {"id": "s"}, "cameras": [{"id": "cam"}]}, 3, "yolox-nano-416")
    assert [c["id"] for c in copies["cameras"]] == ["cam-1", "cam-2", "cam-3"]
    assert {c["detector"]["model"] for c in copies["cameras"]} == {"yolox-nano-416"}


def test_faces_set_on_every_rule_of_every_camera_or_left_as_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ZHIZHI_BENCH_CLIPS", "/bench-clips")
    site = bench.load_site_config(REPO / "configs" / "bench" / "box-8.yaml")
    assert bench.with_evidence_faces(site, None) is site
    kept = bench.with_evidence_faces(site, "keep")
    rules = [rule for camera in kept.cameras for rule in camera.rules]
    assert len(rules) == 8 and {rule.evidence_faces for rule in rules} == {"keep"}
    assert {r.evidence_faces for c in site.cameras for r in c.rules} == {"blur"}  # untouched
    assert [c.id for c in kept.cameras] == [c.id for c in site.cameras]


def test_the_alert_latency_is_reported_for_all_and_by_alert_type() -> None:
    latencies = [("fire_lane", 0.1 * n) for n in range(1, 11)] + [("person_fall", 2.0)]
    box = bench.BoxResult(60.0, {}, [], latencies)
    text = box.markdown()
    assert "p50 600 ms, p95 2000 ms (11 alerts)" in text
    assert "fire_lane 600 / 1000 ms (10), person_fall 2000 / 2000 ms (1)" in text
