"""The falling-object rule on the real clips, scored as `zhizhi eval` scores them: every
labelled throw found with no false alarm, and no alert on footage without falling objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from common.config import load_site_config
from edge.offline.evaluation import LabelsFile, load_labels
from edge.offline.replay import evaluate

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "eval" / "shared-clips.yaml"
LABELS = REPO / "tests" / "data" / "labels" / "all.yaml"


def falling_object_labels() -> LabelsFile:
    labels = load_labels(LABELS)
    clips = [c for c in labels.clips if any(e.type == "falling_object" for e in c.events)]
    return LabelsFile(clips=clips)


@pytest.mark.integration
def test_every_labelled_throw_is_found_with_no_false_alarm(
    models_dir: Path, clips_dir: Path
) -> None:
    labels = falling_object_labels()
    assert {c.camera for c in labels.clips} == {"roof-throw-2", "roof-throw-3"}
    report = evaluate(load_site_config(CONFIG), labels, clips_dir)
    score = report["types"]["falling_object"]
    expected = sum(len(c.events) for c in labels.clips)
    assert (score["true_positives"], score["false_alarms"], score["misses"]) == (expected, 0, 0)
    for clip in report["clips"]:
        for match in clip["matches"]:
            assert abs(match["event_onset_s"] - match["label_onset_s"]) <= 0.5, clip["file"]
            assert match["alert_pts_s"] - match["event_onset_s"] <= 2.5  # ~1 s after landing
    for run in report["runs"]:
        for event in run["events"]:
            assert event["type"] == "falling_object" and event["model"] is None
            trajectory = event["details"]["trajectory"]
            assert trajectory[0][0] == pytest.approx(event["onset_pts_s"], abs=1e-3)
            assert len(trajectory) >= 10
    throw_2 = next(r for r in report["runs"] if r["camera"] == "roof-throw-2")
    assert [len(e["details"]["trajectories"]) for e in throw_2["events"]] == [1]  # at `new`


NEGATIVES = {
    "pedestrians_plaza_overhead_bw.mp4": "plaza",
    "traffic_motorway_nostop.mp4": "motorway",
    "parkinglot_topdown_cars_passing.mp4": "carpark",
}


@pytest.mark.integration
def test_crowds_and_traffic_raise_no_falling_object_alert(
    models_dir: Path, clips_dir: Path, tmp_path: Path
) -> None:
    """A falling-object rule with a zone over almost the whole picture, on footage with
    people and vehicles moving down the view and no falling object."""
    cameras: list[dict[str, Any]] = [
        {
            "id": camera,
            "source": str(clips_dir / clip),
            "zones": [
                {"id": "all", "polygon": [[0.02, 0.02], [0.98, 0.02], [0.98, 0.98], [0.02, 0.98]]}
            ],
            "rules": [{"id": "throw", "type": "falling_object", "zone": "all"}],
            "detect_fps": 1,  # no zone rule here: the detector need not run often
        }
        for clip, camera in NEGATIVES.items()
    ]
    config = tmp_path / "negatives.yaml"
    config.write_text(yaml.safe_dump({"site": {"id": "negatives"}, "cameras": cameras}))
    labels = LabelsFile.model_validate(
        {"clips": [{"file": f, "camera": c, "events": []} for f, c in NEGATIVES.items()]}
    )
    report = evaluate(load_site_config(config), labels, clips_dir)
    alarms = [a for clip in report["clips"] for a in clip["false_alarms"]]
    assert alarms == []
    assert [run["frames"] > 100 for run in report["runs"]] == [True, True, True]
