"""The falling-object rule on the real clips, scored as `zhizhi eval` scores them: every
labelled throw found with no false alarm, and no alert on footage without falling objects."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest
import yaml

from common.config import load_site_config
from common.events import Event
from edge.capture.sources import open_video_file
from edge.offline.evaluation import LabelsFile, load_labels, match_clip
from edge.offline.replay import evaluate, replay_events

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


# footage as it comes from the field (issue 17): a slower camera stored at a higher rate, and
# a stream that starts, or comes back after an outage, just before the throw ------------------

Image = npt.NDArray[np.uint8]
X264_CRF = "18"  # a good recording: the throws' 2-8 px objects survive one more encoding


def write_h264(path: Path, frames: Iterator[tuple[float, Image]]) -> list[float]:
    """`(pts_s, image)` pairs as an H.264 MP4 with those timestamps (gaps kept); returns
    the timestamps."""
    written: list[float] = []
    time_base = Fraction(1, 1000)
    with av.open(str(path), mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.pix_fmt = "yuv420p"
        stream.time_base = stream.codec_context.time_base = time_base
        stream.options = {"preset": "veryfast", "crf": X264_CRF}
        for pts_s, image in frames:
            if not written:
                stream.height, stream.width = image.shape[:2]
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = round(pts_s * 1000), time_base
            out.mux(stream.encode(frame))
            written.append(pts_s)
        out.mux(stream.encode(None))
    return written


def repeated(source: Path, times: int) -> Iterator[tuple[float, Image]]:
    """Every `times`-th image, shown `times` times at the container's own timestamps (a
    10 fps camera stored at 30 fps for 3)."""
    kept: Image | None = None
    with open_video_file(source) as video:
        for frame in video:
            if frame.index % times == 0 or kept is None:
                kept = frame.image
            yield frame.pts_s, kept


def resumed(
    source: Path, until_s: float, gap_s: float, from_s: float
) -> Iterator[tuple[float, Image]]:
    """The clip up to `until_s` (nothing of it if 0), then, `gap_s` later, from `from_s` on:
    a camera that went away and came back just before something happened."""
    last: float | None = None
    with open_video_file(source) as video:
        for frame in video:
            if frame.pts_s < until_s:
                last = frame.pts_s
                yield frame.pts_s, frame.image
            elif frame.pts_s >= from_s:
                start = 0.0 if last is None else last + gap_s
                yield start + frame.pts_s - from_s, frame.image


def throw_labels(camera: str, file: str, shift_s: float = 0.0) -> LabelsFile:
    """The labels of one camera's throws for a remade clip, times moved by `shift_s`."""
    clip = next(c for c in falling_object_labels().clips if c.camera == camera)
    events = [
        e.model_copy(
            update={
                "onset_s": e.onset_s + shift_s,
                "end_s": None if e.end_s is None else e.end_s + shift_s,
            }
        )
        for e in clip.events
    ]
    return LabelsFile(clips=[clip.model_copy(update={"file": file, "events": events})])


def assert_found_alone(labels: LabelsFile, folder: Path) -> list[Event]:
    """Every throw found with its onset within the tolerance (1 s), nothing else raised;
    returns the events."""
    site = load_site_config(CONFIG)
    (clip,) = labels.clips
    events = [
        e
        for e in replay_events(site, site.camera(clip.camera), folder / clip.file)
        if isinstance(e, Event)
    ]
    result = match_clip(clip, events)
    assert (len(result.matches), result.false_alarms, result.misses) == (len(clip.events), (), ())
    return events


def objects(events: list[Event]) -> int:
    """How many objects the incidents raised named, at most (the roof throw 2 has two)."""
    return max(int(e.details["objects"]) for e in events if e.state in ("new", "update"))


@pytest.mark.integration
@pytest.mark.parametrize("times", [3, 2])
def test_throws_are_found_when_each_image_is_repeated(
    models_dir: Path, clips_dir: Path, tmp_path: Path, times: int
) -> None:
    """10 and 15 fps cameras stored at 30 fps: each image two or three times, re-encoded
    (the copies are not identical). The throws are found at the images' own times."""
    for clip in falling_object_labels().clips:
        file = f"{clip.camera}-x{times}.mp4"
        write_h264(tmp_path / file, repeated(clips_dir / clip.file, times))
        events = assert_found_alone(throw_labels(clip.camera, file), tmp_path)
        for event in events:
            seen = [point[0] for point in event.details["trajectory"][1:]]
            # one sighting per distinct image: the steps are multiples of the camera's own
            assert min(np.diff(seen)) >= times / 30 - 0.01, file


LEAD_S = 0.5  # the stream starts (or comes back) this long before the object first moves


@pytest.mark.integration
def test_throws_are_found_when_the_stream_starts_just_before(
    models_dir: Path, clips_dir: Path, tmp_path: Path
) -> None:
    """The clip cut to start half a second before the throw: the finder cannot wait for its
    background and busy areas to be learnt."""
    for clip in falling_object_labels().clips:
        start = min(e.onset_s for e in clip.events) - LEAD_S
        write_h264(tmp_path / clip.file, resumed(clips_dir / clip.file, 0.0, 0.0, start))
        events = assert_found_alone(throw_labels(clip.camera, clip.file, -start), tmp_path)
        # the first object of the roof throw, 0.5 s in, is not lost among the leaves and glass
        # reflections the busy-cell map has not learnt yet (it was before issue 17)
        assert objects(events) == (2 if clip.camera == "roof-throw-2" else 1)


@pytest.mark.integration
def test_throws_are_found_when_the_stream_comes_back_just_before(
    models_dir: Path, clips_dir: Path, tmp_path: Path
) -> None:
    """Two seconds of the camera, an outage of five, and the stream back half a second
    before the throw: the maps learnt before the outage are kept (or learnt again), and the
    onset is not put in the outage."""
    gap_s = 5.0
    for clip in falling_object_labels().clips:
        back = min(e.onset_s for e in clip.events) - LEAD_S
        written = write_h264(tmp_path / clip.file, resumed(clips_dir / clip.file, 2.0, gap_s, back))
        back_pts = next(t for t in written if t > 2.0)
        labels = throw_labels(clip.camera, clip.file, back_pts - back)
        events = assert_found_alone(labels, tmp_path)
        assert objects(events) == (2 if clip.camera == "roof-throw-2" else 1)
        assert all(e.onset_pts_s >= back_pts - 1e-3 for e in events)
