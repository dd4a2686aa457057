"""edge.capture.sources on real video files written by OpenCV, and on an RTSP port nobody
listens on."""

from __future__ import annotations

import itertools
import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.capture.sources import (
    Backoff,
    FileSource,
    LiveSource,
    open_source,
    open_video_file,
)
from edge.errors import SourceError
from edge.types import Frame

SIZE_WH = (160, 120)
BITS = 6  # the frame number is also coded as 6 black/white blocks along the top edge
MARKER = (slice(100, 116), slice(8, 40))  # a block whose grey level tells two videos apart


def _bit_block(bit: int) -> tuple[slice, slice]:
    return slice(4, 20), slice(8 + 24 * bit, 24 + 24 * bit)


def make_video(path: Path, frames: int, fps: float, marker: int = 0) -> Path:
    """A small mp4v video with the frame number drawn as text and coded in blocks."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, SIZE_WH)
    assert writer.isOpened()
    for index in range(frames):
        image = np.full((SIZE_WH[1], SIZE_WH[0], 3), 40, np.uint8)
        cv2.putText(image, str(index), (10, 90), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
        for bit in range(BITS):
            image[_bit_block(bit)] = 255 if index >> bit & 1 else 0
        image[MARKER] = marker
        writer.write(image)
    writer.release()
    return path


def coded_index(frame: Frame) -> int:
    bits = (float(frame.image[_bit_block(bit)].mean()) > 128 for bit in range(BITS))
    return sum(1 << bit for bit, on in enumerate(bits) if on)


def marker_of(frame: Frame) -> float:
    return float(frame.image[MARKER].mean())


def _atoms(data: bytes | bytearray, start: int, end: int) -> list[tuple[bytes, int, int]]:
    found, pos = [], start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        found.append((kind, pos, size))
        pos += size
    return found


def _shift_chunk_offsets(moov: bytearray, start: int, end: int, delta: int) -> None:
    for kind, pos, size in _atoms(moov, start, end):
        if kind in (b"trak", b"mdia", b"minf", b"stbl"):
            _shift_chunk_offsets(moov, pos + 8, pos + size, delta)
        elif kind == b"stco":
            (count,) = struct.unpack(">I", moov[pos + 12 : pos + 16])
            for at in range(pos + 16, pos + 16 + 4 * count, 4):
                (offset,) = struct.unpack(">I", moov[at : at + 4])
                moov[at : at + 4] = struct.pack(">I", offset + delta)


def faststart(data: bytes) -> bytes:
    """The MP4 with its index (moov) moved before the media (as cameras and ffmpeg write it)."""
    top = {kind: (pos, size) for kind, pos, size in _atoms(data, 0, len(data))}
    moov_pos, moov_size = top[b"moov"]
    mdat_pos = top[b"mdat"][0]
    assert mdat_pos < moov_pos
    moov = bytearray(data[moov_pos : moov_pos + moov_size])
    _shift_chunk_offsets(moov, 8, moov_size, moov_size)
    return data[:mdat_pos] + bytes(moov) + data[mdat_pos:moov_pos] + data[moov_pos + moov_size :]


def cut(source: Path, target: Path, fraction: float) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 frames, 160x120, 10 fps."""
    return make_video(tmp_path_factory.mktemp("clips") / "clip.mp4", frames=40, fps=10.0)


def wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# Files for replay ------------------------------------------------------------------------------


def test_reads_every_frame_in_order_with_stream_pts(clip: Path) -> None:
    with open_video_file(clip) as source:
        assert (source.fps, source.frame_count, source.size_wh) == (10.0, 40, SIZE_WH)
        frames = list(source)
    assert [f.index for f in frames] == list(range(40))
    assert [coded_index(f) for f in frames] == list(range(40))
    assert [f.pts_s for f in frames] == pytest.approx([i / 10 for i in range(40)], abs=1e-3)
    assert frames[0].image.shape == (120, 160, 3)
    assert not source.truncated and source.finished
    assert source.read() is None


@pytest.mark.parametrize("container", ["faststart.mp4", "avi"])
def test_truncated_file_yields_what_it_can_then_flags_it(
    clip: Path, tmp_path: Path, container: str, caplog: pytest.LogCaptureFixture
) -> None:
    if container == "avi":
        whole = make_video(tmp_path / "whole.avi", frames=40, fps=10.0)
    else:
        whole = tmp_path / "whole.mp4"
        whole.write_bytes(faststart(clip.read_bytes()))
    cut_file = cut(whole, tmp_path / f"cut.{container}", 0.6)
    with (
        caplog.at_level(logging.WARNING, logger="edge.capture.sources"),
        open_video_file(cut_file) as source,
    ):
        frames = list(source)
    assert 5 < len(frames) < 40
    intact = frames[:-1]  # the frame the cut goes through is decoded with damage
    assert [coded_index(f) for f in intact] == list(range(len(intact)))
    assert all(b.pts_s > a.pts_s for a, b in itertools.pairwise(frames))
    assert source.truncated
    assert "ended early" in caplog.text and str(cut_file) in caplog.text


def test_mp4_cut_before_its_index_is_a_source_error(clip: Path, tmp_path: Path) -> None:
    cut_file = cut(clip, tmp_path / "cut.mp4", 0.6)  # OpenCV writes moov last: now missing
    with pytest.raises(SourceError, match=r"cannot open video file .*cut\.mp4"):
        open_video_file(cut_file)


def test_missing_file_is_a_source_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "gate.mp4"
    with pytest.raises(SourceError, match="not found") as error:
        open_video_file(missing)
    assert str(missing) in str(error.value)


def test_zero_byte_file_is_a_source_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(SourceError, match=r"empty \(0 bytes\)"):
        open_video_file(empty)


def test_text_file_is_a_source_error(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 100)
    with pytest.raises(SourceError, match=r"cannot open video file .*notes\.mp4") as error:
        open_video_file(text)
    assert "\n" not in str(error.value)


def test_file_with_no_decodable_frame_is_a_source_error(clip: Path, tmp_path: Path) -> None:
    data = bytearray(faststart(clip.read_bytes()))
    _, pos, size = next(a for a in _atoms(data, 0, len(data)) if a[0] == b"mdat")
    data[pos + 8 : pos + size] = bytes(size - 8)  # container intact, every frame zeroed
    blank = tmp_path / "blank.mp4"
    blank.write_bytes(bytes(data))
    with pytest.raises(SourceError, match="no decodable frame"):
        open_video_file(blank)


def test_open_source_for_replay_gives_a_file_source(clip: Path) -> None:
    source = open_source(str(clip), "gate-east", realtime=False)
    assert isinstance(source, FileSource)
    first = source.take(timeout_s=0)
    assert first is not None and first.index == 0
    source.close()


def test_open_source_refuses_a_missing_file_at_once(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not found"):
        open_source(str(tmp_path / "gone.mp4"), "gate-east")


# Live sources ----------------------------------------------------------------------------------


class StatusLog:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bool, str]] = []
        self._lock = threading.Lock()

    def __call__(self, camera_id: str, online: bool, reason: str) -> None:
        with self._lock:
            self.calls.append((camera_id, online, reason))


def test_unreachable_camera_goes_offline_once_retries_and_stops_promptly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    status = StatusLog()
    url = "rtsp://viewer:hunter2@127.0.0.1:9/none"  # port 9: nothing listens
    source = LiveSource(
        "gate-east",
        url,
        on_status=status,
        backoff=Backoff(initial_s=0.02, max_s=0.1),
        open_timeout_s=1.0,
        read_timeout_s=1.0,
    )
    with caplog.at_level(logging.DEBUG, logger="edge.capture.sources"):
        source.start()
        assert wait_until(lambda: source.stats().reconnects >= 4, timeout_s=5.0)
        assert source.take(timeout_s=0.05) is None
        started = time.monotonic()
        source.close(timeout_s=2.0)
    assert time.monotonic() - started < 2.0
    assert not source.is_alive()
    assert status.calls == [("gate-east", False, "cannot open stream")]
    stats = source.stats()
    assert not stats.online and stats.frames_read == 0 and stats.last_frame_wall_s is None
    assert "hunter2" not in caplog.text and "viewer:***@127.0.0.1:9" in caplog.text
    assert "gate-east" in caplog.text
    assert os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS")


def test_reader_thread_is_named_after_the_camera(tmp_path: Path) -> None:
    stop = threading.Event()
    source = LiveSource("gate-2", str(tmp_path / "absent.mp4"), stop_event=stop)
    with source:
        assert any(t.name == "reader:gate-2" for t in threading.enumerate())
        stop.set()  # an outside stop event ends the reader as well
        assert wait_until(lambda: not source.is_alive(), timeout_s=2.0)


def test_close_does_not_set_the_outside_stop_event(clip: Path) -> None:
    stop = threading.Event()
    source = LiveSource("gate-2", str(clip), stop_event=stop).start()
    assert source.take(timeout_s=2.0) is not None
    source.close()
    assert not source.is_alive() and not stop.is_set()


def test_file_camera_is_paced_and_a_slow_consumer_sees_drops(tmp_path: Path) -> None:
    video = make_video(tmp_path / "fast.mp4", frames=30, fps=30.0)
    status = StatusLog()
    taken: list[Frame] = []
    started = time.monotonic()
    with LiveSource("yard", str(video), on_status=status, loop=False) as source:
        while not source.finished:
            frame = source.take(timeout_s=0.5)
            if frame is not None:
                taken.append(frame)
            time.sleep(0.2)  # a slow analysis
    elapsed = time.monotonic() - started
    stats = source.stats()
    assert elapsed > 0.8  # 30 frames at 30 fps: about a second, not instantly
    assert stats.frames_read == 30
    assert stats.frames_dropped > 10
    assert 2 <= len(taken) < 15
    assert stats.frames_dropped + len(taken) <= 30
    assert all(b.pts_s > a.pts_s and b.index > a.index for a, b in itertools.pairwise(taken))
    assert status.calls == [("yard", True, "frames arriving"), ("yard", False, "end of file")]


def test_pts_stay_monotonic_when_a_looped_file_is_replaced(tmp_path: Path) -> None:
    video = make_video(tmp_path / "loop.mp4", frames=10, fps=30.0, marker=0)
    replacement = make_video(tmp_path / "other.mp4", frames=10, fps=30.0, marker=255)
    taken: list[Frame] = []
    with LiveSource("yard", str(video), loop=True) as source:
        deadline = time.monotonic() + 1.6
        while time.monotonic() < deadline:
            frame = source.take(timeout_s=0.5)
            if frame is not None:
                taken.append(frame)
            if replacement.exists() and taken and taken[-1].pts_s > 0.5:
                replacement.replace(video)  # next loop opens the new file
    pts = [f.pts_s for f in taken]
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert pts[-1] > 1.0  # several loops, timeline kept going
    assert pts[-1] == pytest.approx(taken[-1].wall_s - taken[0].wall_s + pts[0], abs=0.3)
    assert marker_of(taken[0]) < 60 and marker_of(taken[-1]) > 200  # the replacement arrived
    assert source.stats().reconnects == 0  # loops are not reconnects


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_folder(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on loopback: a stream that ends, so the reader reconnects."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, name="test-http", daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_stream_reconnects_and_pts_keep_increasing(http_folder: tuple[Path, str]) -> None:
    folder, base_url = http_folder
    short = make_video(folder / "raw.mp4", frames=8, fps=30.0)
    (folder / "cam.mp4").write_bytes(faststart(short.read_bytes()))
    status = StatusLog()
    taken: list[Frame] = []
    source = LiveSource(
        "lobby",
        f"{base_url}/cam.mp4",
        on_status=status,
        backoff=Backoff(initial_s=0.2, max_s=0.2, jitter=0.0),
        paced=True,
    )
    with source:
        deadline = time.monotonic() + 5.0
        while source.stats().reconnects < 3 and time.monotonic() < deadline:
            if (frame := source.take(timeout_s=0.1)) is not None:
                taken.append(frame)
    assert source.stats().reconnects >= 3
    sessions = 1 + sum(coded_index(b) < coded_index(a) for a, b in itertools.pairwise(taken))
    assert sessions >= 3  # frames from several openings of the stream
    pts = [f.pts_s for f in taken]
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert max(b - a for a, b in itertools.pairwise(pts)) >= 0.15  # the outage is on the clock
    online = [call[1] for call in status.calls]
    assert online[:4] == [True, False, True, False]
    assert all(a != b for a, b in itertools.pairwise(online))  # once per transition
    assert status.calls[1][2] == "read failed"
