"""The person-fall rule on the real clips with the real pose model, scored as `zhizhi eval`
scores them: every labelled fall found with its onset within the 2 s tolerance, no alert on the
pick-up (bending down) clip, nor on a crowd walking across a plaza."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from common.config import load_site_config
from edge.offline.evaluation import LabelsFile, load_labels
from edge.offline.replay import evaluate

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "eval" / "shared-clips.yaml"
LABELS = REPO / "tests" / "data" / "labels" / "all.yaml"
FALL_CAMERAS = {"dorm-03", "dorm-06", "urfd-side", "urfd-overhead", "urfd-adl"}


def person_fall_labels() -> LabelsFile:
    labels = load_labels(LABELS)
    return LabelsFile(clips=[c for c in labels.clips if c.camera in FALL_CAMERAS])


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_every_labelled_fall_is_found_and_the_pick_up_raises_nothing(
    models_dir: Path, clips_dir: Path
) -> None:
    labels = person_fall_labels()
    assert {c.camera for c in labels.clips} == FALL_CAMERAS
    report = evaluate(load_site_config(CONFIG), labels, clips_dir)
    score = report["types"]["person_fall"]
    assert (score["true_positives"], score["false_alarms"], score["misses"]) == (4, 0, 0)
    for clip in report["clips"]:
        for match in clip["matches"]:
            assert abs(match["event_onset_s"] - match["label_onset_s"]) <= 1.0, clip["file"]
            assert match["latency_s"] <= 3.0, clip["file"]  # within a few seconds of the fall
    for run in report["runs"]:
        for event in run["events"]:
            assert event["type"] == "person_fall"
            assert event["model"]["name"] == "yolov8n-pose-640"
            x1, y1, x2, y2 = event["bbox"]
            assert x2 - x1 > 0.1 and y2 - y1 > 0.1  # the person's box
            details = event["details"]
            assert details["fall_speed"] > 0 and details["lying_s"] >= 1.0
    pickup = next(r for r in report["runs"] if r["camera"] == "urfd-adl")
    assert pickup["events"] == []


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_crowd_walking_across_a_plaza_raises_no_fall(
    models_dir: Path, clips_dir: Path, tmp_path: Path
) -> None:
    """A person-fall rule over the whole picture of dozens of people walking, towards and away
    from a high camera (heads moving down the view), in and out of the frame."""
    clip = "pedestrians_plaza_overhead_bw.mp4"
    camera = {
        "id": "plaza",
        "source": str(clips_dir / clip),
        "zones": [{"id": "all", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}],
        "rules": [{"id": "fall", "type": "person_fall", "zone": "all", "lying_s": 1.0}],
        "detect_fps": 1,  # no zone rule here: the detector need not run often
    }
    config = tmp_path / "plaza.yaml"
    config.write_text(yaml.safe_dump({"site": {"id": "crowd"}, "cameras": [camera]}))
    labels = LabelsFile.model_validate({"clips": [{"file": clip, "camera": "plaza"}]})
    report = evaluate(load_site_config(config), labels, clips_dir)
    assert report["runs"][0]["events"] == []
    assert report["types"].get("person_fall", {}).get("false_alarms", 0) == 0
