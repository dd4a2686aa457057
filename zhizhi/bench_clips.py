"""`zhizhi bench clips`: the footage the box benchmarks play, made from the shared clips.

Cameras of a real box send H.264 at 720p or more: each clip is written as H.264 (libx264 via
PyAV) at the size asked for (default 1280x720, aspect kept for portrait footage), so that
decoding costs what it costs on a real camera. The lanes of the shared clips hold no object
left standing, so two of them get the real rubbish bag of the littering clip pasted into the
lane from a known second (`edge.offline.synthetic.with_left_object`): a fire-lane and garbage
positive with ground truth by construction, on real footage with its real traffic.

    zhizhi bench clips --clips ../shared/clips --out ~/.cache/zhizhi/bench-clips

configs/bench/*.yaml name these files as ${ZHIZHI_BENCH_CLIPS}/NAME.mp4.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt

from edge.capture.sources import open_video_file
from edge.offline.synthetic import real_bag, with_left_object
from edge.types import Frame

Image = npt.NDArray[np.uint8]
DEFAULT_OUT = Path.home() / ".cache" / "zhizhi" / "bench-clips"
CRF = 23  # what a camera's encoder gives at a moderate bit rate


@dataclass(frozen=True, slots=True)
class BenchClip:
    name: str
    source: str  # a file of the shared clips
    bag_box: tuple[float, float, float, float] | None = None  # where a bag is left, if any
    bag_s: float = 0.0  # from when


CLIPS = (
    BenchClip("facade-throw", "fallobj_office_roof_throw_2.mp4"),
    BenchClip("fall-room", "personfall_dorm_06.mp4"),
    BenchClip("fall-room-side", "personfall_urfd_side.mp4"),
    BenchClip("lane-motorway", "traffic_motorway_nostop.mp4"),
    BenchClip("lane-carpark", "parkinglot_topdown_cars_passing.mp4"),
    BenchClip("lane-plaza", "pedestrians_plaza_overhead_bw.mp4"),
    BenchClip(
        "lane-carpark-bag", "parkinglot_topdown_cars_passing.mp4", (0.45, 0.45, 0.53, 0.62), 10.0
    ),
    BenchClip("lane-motorway-bag", "traffic_motorway_nostop.mp4", (0.80, 0.72, 0.86, 0.86), 8.0),
)


def fit(width: int, height: int, most: tuple[int, int]) -> tuple[int, int]:
    """The picture's size scaled, its shape kept, to fit `most` (a 640x360 lane becomes
    1280x720, a 406x720 portrait room stays as it is); both sides even, as H.264 wants."""
    target_w, target_h = most
    scale = min(target_w / width, target_h / height)
    w, h = round(width * scale), round(height * scale)
    return w - w % 2, h - h % 2


def write_h264(frames: Iterator[Frame], path: Path, fps: float, size: tuple[int, int]) -> int:
    """Encode frames (resized to `size`) as an H.264 MP4 at a constant `fps`; the frames
    written."""
    rate = Fraction(fps).limit_denominator(1001)
    count = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part.mp4")
    with av.open(str(partial), mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "veryfast", "crf": str(CRF)}
        for frame in frames:
            image = frame.image
            if image.ndim == 2:
                image = np.asarray(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), np.uint8)
            if (image.shape[1], image.shape[0]) != size:
                image = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_LINEAR))
            video = av.VideoFrame.from_ndarray(image, format="bgr24")
            video.pts = count
            out.mux(stream.encode(video))
            count += 1
        out.mux(stream.encode(None))
    partial.replace(path)
    return count


def prepare(clips_dir: Path, out: Path, size: tuple[int, int] = (1280, 720)) -> list[Path]:
    """Write every bench clip into `out` (those already there are kept)."""
    written = []
    bag: Image | None = None
    for clip in CLIPS:
        path = out / f"{clip.name}.mp4"
        written.append(path)
        if path.is_file():
            continue
        with open_video_file(clips_dir / clip.source) as source:
            frames: Iterator[Frame] = iter(source)
            if clip.bag_box is not None:
                bag = bag if bag is not None else real_bag(clips_dir)
                frames = with_left_object(frames, bag, clip.bag_box, clip.bag_s)
            width, height = source.size_wh
            write_h264(frames, path, source.fps, fit(width, height, size))
    return written
