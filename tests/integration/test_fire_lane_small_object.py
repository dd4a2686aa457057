"""A small bag left in a busy walkway (issue 17): 25x30 px in a 720x480 view, people passing.

Ground truth by construction on real footage: the crowd of the plaza clip, cut to 3:2 and
scaled to 720x480 (a walkway seen from a first floor), played forwards and backwards to 40 s,
with the real rubbish bag of the littering clip cut out of its ground and set down with a soft
shadow from `DROP_S` for 26 s. Replayed with `zhizhi edge replay` on one camera whose lane is
watched twice: once with the lane's width in metres (`lane_width_m`), once with the pinned keys
alone (the frame-relative default). Both must report the bag once, with its onset; the same
footage without the bag must raise nothing at all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edge.capture.sources import open_video_file
from edge.offline.synthetic import (
    ping_pong,
    real_bag_cutout,
    reframed,
    with_left_object,
    write_frames,
)
from tests.support.cli import read_events, replay_args, run

pytestmark = pytest.mark.integration

SIZE = (720, 480)
SECONDS = 40.0
DROP_S, LEFT_S = 8.0, 26.0
BAG_PX = (25, 30)  # width, height: about 0.2 % of the frame
BAG_XY = (0.52, 0.70)  # top-left corner, on the walkway where people pass
# the walkway, kerb to kerb, seen along its length; about 4 m wide where the bag lies (the
# people there are 25-30 px across the shoulders)
WALKWAY = [[0.36, 0.05], [0.64, 0.05], [0.72, 0.98], [0.30, 0.98]]
ONSET_TOLERANCE_S = 5.0  # fire_lane's tolerance in the contract (section 6)


def bag_box() -> tuple[float, float, float, float]:
    (x, y), (w, h) = BAG_XY, BAG_PX
    return (x, y, x + w / SIZE[0], y + h / SIZE[1])


def write_walkway(clips_dir: Path, path: Path, with_bag: bool) -> None:
    with open_video_file(clips_dir / "pedestrians_plaza_overhead_bw.mp4") as source:
        frames = list(reframed(iter(source), SIZE))
        fps = source.fps
    footage = ping_pong(frames, SECONDS)
    if with_bag:
        patch, alpha = real_bag_cutout(clips_dir)
        footage = with_left_object(
            footage, patch, bag_box(), DROP_S, DROP_S + LEFT_S, alpha=alpha, shadow=0.35
        )
    write_frames(footage, str(path), fps)


def site_config(folder: Path, video: Path) -> Path:
    """One camera, the walkway watched twice: with its width in metres, and with the pinned
    keys alone."""
    config = folder / "site.yaml"
    config.write_text(
        f"""
site: {{id: walkway}}
cameras:
  - id: walkway-cam
    source: {video.name}
    zones:
      - {{id: walkway, polygon: {json.dumps(WALKWAY)}, lane_width_m: 4}}
      - {{id: walkway-plain, polygon: {json.dumps(WALKWAY)}}}
    rules:
      - {{id: walkway-metres, type: fire_lane, zone: walkway, dwell_s: 20}}
      - {{id: walkway-defaults, type: fire_lane, zone: walkway-plain, dwell_s: 20}}
""",
        encoding="utf-8",
    )
    return config


def replay(folder: Path, video: Path) -> list[dict[str, Any]]:
    out = folder / "events.jsonl"
    args = replay_args(site_config(folder, video), "walkway-cam", video, out)
    result = run(args, timeout=900)
    assert result.returncode == 0, result.stderr
    return read_events(out)


def test_a_small_bag_left_in_a_busy_walkway_is_reported_with_and_without_a_lane_width(
    tmp_path: Path, models_dir: Path, clips_dir: Path
) -> None:
    video = tmp_path / "walkway-bag.mp4"
    write_walkway(clips_dir, video, with_bag=True)
    events = replay(tmp_path, video)
    box = bag_box()
    centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    for rule_id in ("walkway-metres", "walkway-defaults"):
        alerts = [e for e in events if e["state"] == "new" and e["rule_id"] == rule_id]
        assert len(alerts) == 1, (rule_id, events)
        (alert,) = alerts
        assert alert["type"] == "fire_lane"
        onset = float(alert["onset_pts_s"])
        assert abs(onset - DROP_S) <= ONSET_TOLERANCE_S, (rule_id, alert)
        x1, y1, x2, y2 = alert["bbox"]
        assert x1 < centre[0] < x2 and y1 < centre[1] < y2, (rule_id, alert)


def test_the_same_walkway_without_the_bag_raises_nothing(
    tmp_path: Path, models_dir: Path, clips_dir: Path
) -> None:
    video = tmp_path / "walkway.mp4"
    write_walkway(clips_dir, video, with_bag=False)
    assert replay(tmp_path, video) == []
