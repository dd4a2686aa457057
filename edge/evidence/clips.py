"""Evidence clips: H.264 MP4 files cut from the rolling frame histories.

Clips are encoded with PyAV (FFmpeg's libx264), so that any browser plays them in the dashboard
(OpenCV's pip wheels only write MPEG-4 part 2, which browsers do not play). Frames keep their
own stream timestamps (variable frame rate): a history that kept one frame a second while the
scene was quiet and every analysed frame while people moved plays back at the real pace.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]

CONTENT_TYPE = "video/mp4"
TIME_BASE = Fraction(1, 1000)  # milliseconds
CRF = 28  # x264 quality: 23 is its default; 28 keeps a 10 s 720p clip near 1 MB
PRESET = "veryfast"  # the edge CPU matters more than a few kB


class ClipError(ValueError):
    """No clip could be made (no frames, or the encoder failed)."""


def decode_jpeg(data: bytes) -> Image:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ClipError("a kept frame could not be decoded")
    return np.asarray(image, dtype=np.uint8)


def _even(image: Image, width: int, height: int) -> Image:
    """The frame at the clip's size (even sides, as yuv420p needs)."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    return np.asarray(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA))


def encode_mp4(frames: Sequence[tuple[float, Image]]) -> bytes:
    """`(pts_s, BGR image)` pairs, in time order, as an H.264 MP4 (yuv420p, faststart).

    Each frame is shown from its own timestamp until the next one; the last one for the median
    frame interval, so a single frame still makes a playable clip.
    """
    if not frames:
        raise ClipError("no frames to encode")
    h, w = frames[0][1].shape[:2]
    width, height = max(2, w - w % 2), max(2, h - h % 2)
    start = frames[0][0]
    # faststart (the index before the data, so a browser starts playing at once) rewrites the
    # file at the end: FFmpeg needs a real file for that, not a memory buffer
    with tempfile.TemporaryDirectory(prefix="zhizhi-clip-") as folder:
        path = Path(folder) / "clip.mp4"
        _write(path, frames, width, height, start)
        return path.read_bytes()


def _write(
    path: Path, frames: Sequence[tuple[float, Image]], width: int, height: int, start: float
) -> None:
    try:
        with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream = out.add_stream("libx264", rate=30)
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p"
            stream.time_base = TIME_BASE
            stream.codec_context.time_base = TIME_BASE
            stream.options = {"preset": PRESET, "crf": str(CRF)}
            last_pts = -1
            for pts_s, image in frames:
                pts = max(last_pts + 1, round((pts_s - start) / TIME_BASE))
                frame = av.VideoFrame.from_ndarray(_even(image, width, height), format="bgr24")
                frame.pts, frame.time_base = pts, TIME_BASE
                last_pts = pts
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
    except (av.FFmpegError, ValueError, OSError) as error:
        raise ClipError(f"clip encoding failed: {error}") from error


def probe_mp4(data: bytes) -> tuple[int, float, tuple[int, int], str]:
    """Frames, duration in seconds, (width, height) and codec name of an MP4 (for tests and
    checks on received evidence)."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        pts = [
            float(frame.pts * frame.time_base)
            for frame in container.decode(stream)
            if frame.pts is not None and frame.time_base is not None
        ]
        size = (stream.codec_context.width, stream.codec_context.height)
        name = stream.codec_context.name
    duration = (pts[-1] - pts[0]) if len(pts) > 1 else 0.0
    return len(pts), duration, size, name
