"""The `zhizhi` command end to end: real models, real clips, real subprocesses."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge.capture.sources import open_video_file
from edge.offline.synthetic import (
    LANE,
    LaneScene,
    real_bag,
    with_left_object,
    write_frames,
    write_video,
)
from tests.support.cli import REPO, read_events, replay_args, run

pytestmark = pytest.mark.integration
EVAL_CONFIG = REPO / "configs" / "eval" / "shared-clips.yaml"


def lane_config(tmp_path: Path, video: Path) -> Path:
    polygon = ", ".join(f"[{x}, {y}]" for x, y in LANE)
    config = tmp_path / "site.yaml"
    config.write_text(
        f"""
site: {{id: synthetic}}
cameras:
  - id: lane-cam
    source: {video.name}
    zones: [{{id: lane, polygon: [{polygon}]}}]
    rules: [{{id: lane-blocked, type: fire_lane, zone: lane, dwell_s: 5, clear_s: 4}}]
"""
    )
    return config


def test_left_object_is_reported_once_with_its_onset(tmp_path: Path, models_dir: Path) -> None:
    scene = LaneScene(seconds=30, drop_s=9.0, clear_s=24.0)
    video = tmp_path / "lane.mp4"
    write_video(scene, str(video))
    out = tmp_path / "events.jsonl"
    result = run(
        replay_args(
            str(lane_config(tmp_path, video)),
            "lane-cam",
            str(video),
            str(out),
            evidence_dir=str(tmp_path / "ev"),
        )
    )
    assert result.returncode == 0, result.stderr
    assert "frames=300" in result.stdout and "fps=" in result.stdout
    events = read_events(out)
    # the alert, its clip in the situation's next message, the end
    assert [e["state"] for e in events] == ["new", "update", "end"]
    new, follow_up, end = events
    assert new["event_id"] == follow_up["event_id"] == end["event_id"]
    assert (new["seq"], follow_up["seq"], end["seq"]) == (0, 1, 2)
    assert [e["kind"] for e in follow_up["evidence"]] == ["clip"]  # type: ignore[index]
    assert abs(float(new["onset_pts_s"]) - 9.0) <= 1.0  # type: ignore[arg-type]
    assert 14.0 <= float(new["pts_s"]) <= 16.0  # type: ignore[arg-type]  # dwell 5 s after onset
    # the object goes at 24 s; `end` comes once the lane has been clear for clear_s (4 s)
    assert 27.5 <= float(end["pts_s"]) <= 30.0  # type: ignore[arg-type]
    snapshot = Path(new["evidence"][0]["url"])  # type: ignore[index]
    assert snapshot.is_file() and snapshot.stat().st_size > 1000


def test_moving_traffic_raises_no_fire_lane_alert(
    tmp_path: Path, models_dir: Path, clips_dir: Path
) -> None:
    out = tmp_path / "events.jsonl"
    result = run(
        replay_args(
            str(EVAL_CONFIG), "motorway", str(clips_dir / "traffic_motorway_nostop.mp4"), str(out)
        )
    )
    assert result.returncode == 0, result.stderr
    assert "frames=917" in result.stdout
    assert read_events(out) == []


EvalReport = Callable[[str], dict[str, Any]]


@pytest.fixture(scope="module")
def eval_report(
    tmp_path_factory: pytest.TempPathFactory, models_dir: Path, clips_dir: Path
) -> EvalReport:
    """`zhizhi eval` of the shared clips against one type's labels, run once per type for the
    tests that read its report."""
    reports: dict[str, dict[str, Any]] = {}

    def report(kind: str) -> dict[str, Any]:
        if kind not in reports:
            report_path = tmp_path_factory.mktemp(f"eval-{kind}") / "report.json"
            labels = REPO / "tests" / "data" / "labels" / f"{kind}.yaml"
            result = run(
                [
                    "eval",
                    "--config",
                    str(EVAL_CONFIG),
                    "--labels",
                    str(labels),
                    "--clips",
                    str(clips_dir),
                    "--out",
                    str(report_path),
                ]
            )
            assert result.returncode == 0, result.stderr
            reports[kind] = json.loads(report_path.read_text())
        return reports[kind]

    return report


@pytest.mark.parametrize("kind", ["fire_lane", "garbage_pile"])
def test_eval_on_the_shared_clips(eval_report: EvalReport, kind: str) -> None:
    report = eval_report(kind)
    clips = {clip["file"]: clip for clip in report["clips"]}
    # negatives: traffic, a car-park aisle with cars passing, a crowd: nothing is raised
    for negative in (
        "traffic_motorway_nostop.mp4",
        "parkinglot_topdown_cars_passing.mp4",
        "pedestrians_plaza_overhead_bw.mp4",
    ):
        assert clips[negative]["false_alarms"] == [], negative
    assert kind in report["types"]


def test_the_dumped_bags_are_found_with_their_onset_and_where_they_lie(
    eval_report: EvalReport,
) -> None:
    """garbage_pile on the two hand-held littering videos (a drifting phone over a stair
    landing, a phone panning over a pavement), with the rule's defaults but the dwell: each bag
    is reported once, with its onset, and the alert's box holds the bag (CLIPS.md), not
    something beside it."""
    report = eval_report("garbage_pile")
    score = report["types"]["garbage_pile"]
    assert (score["true_positives"], score["false_alarms"], score["misses"]) == (2, 0, 0), report
    # where the bag lies when the alert goes out (the camera moves: read off those frames)
    bags = {
        "littering_bag_stair_landing.mp4": (0.40, 0.74),
        "littering_bag_sidewalk.mp4": (0.56, 0.55),
    }
    runs = {run["file"]: run for run in report["runs"]}
    clips = {clip["file"]: clip for clip in report["clips"]}
    for clip, (x, y) in bags.items():
        (alert,) = [e for e in runs[clip]["events"] if e["type"] == "garbage_pile"]
        x1, y1, x2, y2 = alert["bbox"]
        assert x1 <= x <= x2 and y1 <= y <= y2, (clip, alert["bbox"])
        (match,) = clips[clip]["matches"]
        assert abs(match["event_onset_s"] - match["label_onset_s"]) <= 1.0, match


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["config", "check", "missing.yaml"], "cannot read"),
        (
            replay_args(str(EVAL_CONFIG), "nope", "x.mp4", "/tmp/x.jsonl"),
            "no camera 'nope'",
        ),
    ],
)
def test_errors_are_one_line_reasons(args: list[str], needle: str) -> None:
    result = run(args)
    assert result.returncode != 0
    assert result.stderr.startswith("zhizhi: error:") and needle in result.stderr
    assert "Traceback" not in result.stderr


def test_unreadable_video_is_refused(tmp_path: Path, models_dir: Path) -> None:
    video = tmp_path / "lane.mp4"
    video.write_text("this is not a video")
    result = run(
        replay_args(
            str(lane_config(tmp_path, video)), "lane-cam", str(video), str(tmp_path / "e.jsonl")
        )
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "lane.mp4" in result.stderr.splitlines()[0]


def test_model_with_wrong_sha256_is_refused(tmp_path: Path, models_dir: Path) -> None:
    fake = tmp_path / "models"
    fake.mkdir()
    (fake / "yolov8n_640.onnx").write_bytes(b"not the registered model")
    video = tmp_path / "lane.mp4"
    write_video(LaneScene(seconds=1), str(video))
    result = run(
        replay_args(
            str(lane_config(tmp_path, video)), "lane-cam", str(video), str(tmp_path / "e.jsonl")
        ),
        env={"ZHIZHI_MODEL_DIR": str(fake)},
    )
    assert result.returncode != 0
    assert "sha256" in result.stderr and "Traceback" not in result.stderr


def test_config_check_lists_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        """
site: {id: Bad Site}
cameras:
  - id: cam-1
    source: x.mp4
    zones:
      - {id: lane, polygon: [[0.1, 0.1], [1.4, 0.1]]}
    rules:
      - {id: r1, type: fire_lane, zone: nowhere}
"""
    )
    result = run(["config", "check", str(bad)])
    assert result.returncode != 0
    text = result.stderr
    assert "site.id" in text or "key site" in text
    assert "camera cam-1, zone lane, key polygon" in text
    assert "camera cam-1, rule r1, key zone" in text and "nowhere" in text


@pytest.mark.parametrize(
    ("clip", "camera", "box", "drop_s"),
    [
        # a static camera over a car-park aisle; cars drive past, auto-exposure swings
        ("parkinglot_topdown_cars_passing.mp4", "carpark-topdown", (0.45, 0.45, 0.53, 0.62), 10.0),
        # a motorway lane with continuous traffic around the object
        ("traffic_motorway_nostop.mp4", "motorway", (0.80, 0.72, 0.86, 0.86), 8.0),
    ],
)
def test_a_bag_left_in_a_real_lane_is_reported_once_with_its_onset(
    tmp_path: Path,
    models_dir: Path,
    clips_dir: Path,
    clip: str,
    camera: str,
    box: tuple[float, float, float, float],
    drop_s: float,
) -> None:
    """Real footage with the real bag pasted into the lane from `drop_s`: ground truth by
    construction (the shared clips have no fixed camera with an object left in a lane)."""
    video = tmp_path / "composite.mp4"
    with open_video_file(clips_dir / clip) as source:
        write_frames(
            with_left_object(iter(source), real_bag(clips_dir), box, drop_s), str(video), source.fps
        )
    out = tmp_path / "events.jsonl"
    result = run(
        replay_args(
            str(EVAL_CONFIG), camera, str(video), str(out), evidence_dir=str(tmp_path / "ev")
        )
    )
    assert result.returncode == 0, result.stderr
    events = read_events(out)
    # the lane is both a fire lane and a no-dumping zone: each rule reports the bag once
    for kind in ("fire_lane", "garbage_pile"):
        alerts = [e for e in events if e["state"] == "new" and e["type"] == kind]
        assert len(alerts) == 1, (kind, events)
        (alert,) = alerts
        # within the contract's tolerance (5 s for both types). With the 0.0015 frame-share
        # default (issue 17) a small static region the scene model finds where the bag is
        # later put (car park, from 6 s) joins the bag's blocker, and fire_lane's onset comes
        # 4 s early there: within the tolerance, a known shortfall (docs/fire-lane.md)
        assert abs(float(alert["onset_pts_s"]) - drop_s) <= 5.0  # type: ignore[arg-type]
        x1, y1, x2, y2 = alert["bbox"]  # type: ignore[misc]
        assert x1 < (box[0] + box[2]) / 2 < x2 and y1 < (box[1] + box[3]) / 2 < y2


def test_a_real_model_confirms_and_classifies_the_pile_and_a_clip_shows_it(
    tmp_path: Path, models_dir: Path, clips_dir: Path
) -> None:
    """The car-park composite with a garbage model configured and required. No garbage model
    ships (one is trained as in docs/training.md); COCO yolov8n stands in, its bag-like
    classes mapped to `bag` at a low score, since it sees the dumped bag only weakly. With
    classes it cannot find ('mattress'), the same pile is held back: the model decides."""
    drop_s, box = 10.0, (0.45, 0.45, 0.53, 0.62)
    video = tmp_path / "composite.mp4"
    with open_video_file(clips_dir / "parkinglot_topdown_cars_passing.mp4") as source:
        write_frames(
            with_left_object(iter(source), real_bag(clips_dir), box, drop_s), str(video), source.fps
        )

    def replay(classes: str) -> list[dict[str, object]]:
        config = tmp_path / f"site-{classes}.yaml"
        config.write_text(
            f"""
site: {{id: composite}}
cameras:
  - id: aisle-cam
    source: {video.name}
    zones: [{{id: aisle, polygon: [[0.0, 0.10], [1.0, 0.10], [1.0, 1.0], [0.0, 1.0]]}}]
    rules:
      - id: aisle-no-dumping
        type: garbage_pile
        zone: aisle
        dwell_s: 5
        classifier:
          model: yolov8n-640
          min_score: 0.05
          require: true
          recheck_s: 2
          classes: {{bag: [{classes}]}}
"""
        )
        out = tmp_path / f"events-{classes}.jsonl"
        result = run(
            replay_args(config, "aisle-cam", video, out, evidence_dir=tmp_path / f"ev-{classes}")
        )
        assert result.returncode == 0, result.stderr
        return read_events(out)

    events = replay("backpack, handbag, suitcase")
    alerts = [e for e in events if e["state"] == "new"]
    assert len(alerts) == 1, events
    (alert,) = alerts
    assert abs(float(alert["onset_pts_s"]) - drop_s) <= 1.5  # type: ignore[arg-type]
    contents = alert["details"]["contents"]  # type: ignore[index]
    assert contents and {c["kind"] for c in contents} == {"bag"}, contents
    assert alert["details"]["classified_by"] == "yolov8n-640"  # type: ignore[index]
    (follow_up,) = [
        e
        for e in events
        if e["event_id"] == alert["event_id"] and e["details"].get("update_reason") == "clip"  # type: ignore[attr-defined]
    ]
    (clip,) = [e for e in follow_up["evidence"] if e["kind"] == "clip"]  # type: ignore[attr-defined]
    assert clip["content_type"] == "video/mp4" and Path(clip["url"]).stat().st_size > 1000
    assert not [e for e in replay("mattress") if e["state"] == "new"]
