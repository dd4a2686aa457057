"""Video sources for the edge: files replayed frame by frame, live cameras read by a thread.

Two ways to get frames:

* `open_video_file(path)` for replay: every frame of a file, in order, as fast as the caller
  pulls them; a file cut mid-stream yields what it can decode and sets `truncated`.
* `LiveSource` for the live worker: a reader thread keeps only the newest frame of an RTSP/HTTP
  stream, a USB device or a file played at real-time pace, in a one-slot `LatestFrame`;
  it reconnects with capped, jittered backoff and reports the camera online/offline once per
  change. `open_source()` builds the right one from a config's `source`.

Timestamps (`Frame.pts_s`) come from the stream (`CAP_PROP_POS_MSEC`) and never decrease, also
across reconnects and loops (`StreamClock`).
"""

from __future__ import annotations

import enum
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

import cv2
import numpy as np
import numpy.typing as npt

from common.config import redact_url
from edge.errors import SourceError
from edge.types import Frame

logger = logging.getLogger(__name__)

DEFAULT_FPS = 25.0  # assumed when a container does not say its frame rate
MAX_SANE_FPS = 1000.0
RTSP_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
END_OF_FILE = "end of file"
STOP_POLL_S = 0.05  # how often waits look at an outside stop flag

Image = npt.NDArray[np.uint8]  # BGR, HxWx3

REASON_CODES = {
    "frames arriving": "frames_arriving",
    END_OF_FILE: "end_of_file",
    "read failed": "read_failed",
    "reader crashed": "reader_crashed",
    "stopped": "stopped",
}


def reason_code(reason: str) -> str:
    """The stable code of an online/offline reason (a dashboard translates codes, not text)."""
    if reason.startswith("cannot open"):
        return "cannot_open"
    return REASON_CODES.get(reason, "other")


StatusCallback = Callable[[str, bool, str], None]
"""on_status(camera_id, online, reason): called once per online/offline transition."""


class StopSignal(Protocol):
    """What the reader needs of an outside stop flag: threading or multiprocessing Event."""

    def is_set(self) -> bool: ...


# --------------------------------------------------------------------------------------------
# Pure parts: backoff, mailbox, timestamps.


class Backoff:
    """Capped exponential backoff with jitter: 1 s, 2 s, 4 s ... 30 s, each shortened randomly.

    Each delay lies in ``[base * (1 - jitter), base]`` where ``base = min(max_s, initial_s *
    factor**attempt)``, so the cap is never exceeded and many cameras that drop together do not
    retry in lockstep.
    """

    def __init__(
        self,
        initial_s: float = 1.0,
        max_s: float = 30.0,
        factor: float = 2.0,
        jitter: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 < initial_s <= max_s:
            raise ValueError(f"backoff needs 0 < initial_s <= max_s, got {initial_s}, {max_s}")
        if factor < 1 or not 0 <= jitter < 1:
            raise ValueError(
                f"backoff needs factor >= 1 and 0 <= jitter < 1, got {factor}, {jitter}"
            )
        self.initial_s = initial_s
        self.max_s = max_s
        self.factor = factor
        self.jitter = jitter
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.attempt = 0

    def base_s(self) -> float:
        """The un-jittered delay the next call to `next_s()` is drawn from."""
        return min(self.max_s, self.initial_s * self.factor**self.attempt)

    def next_s(self) -> float:
        """The delay to wait before the next retry; each call moves one step up."""
        base = self.base_s()
        self.attempt += 1
        return base * (1.0 - self.jitter * self._rng.random())

    def reset(self) -> None:
        """Back to `initial_s`, after a success."""
        self.attempt = 0


class LatestFrame:
    """One-slot mailbox between the reader thread and the analysis loop.

    The reader overwrites; the loop takes the newest frame. Old frames are dropped on purpose:
    analytics wants fresh frames, not a growing backlog. `dropped` counts the overwritten ones.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self.dropped = 0

    def put(self, frame: Frame) -> None:
        with self._cond:
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self._cond.notify()

    def take(self, timeout_s: float) -> Frame | None:
        """The newest frame, waiting up to `timeout_s` for one; None if none came."""
        with self._cond:
            if self._frame is None:
                self._cond.wait(timeout_s)
            frame, self._frame = self._frame, None
            return frame


class StreamClock:
    """Turns a stream's raw timestamps into `pts_s` that never decrease.

    Within a session (one opening of the stream) the raw timestamp is used when it is valid:
    finite, not negative, and later than the previous raw one (a container that gives 0 for
    every frame, or jumps back, is not valid); otherwise the caller's `fallback_s` (index/fps for
    files, elapsed time for live streams). After `restart(gap_s)` the next session is shifted so
    its first frame comes `gap_s` after the last frame of the previous one.
    """

    def __init__(self) -> None:
        self._offset_s = 0.0
        self._last_pts_s: float | None = None
        self._last_raw_s: float | None = None
        self._pending_gap_s: float | None = None

    def restart(self, gap_s: float) -> None:
        """A new session begins; its first frame will be `gap_s` after the last one seen."""
        self._last_raw_s = None
        if self._last_pts_s is not None:
            self._pending_gap_s = max(0.0, gap_s)

    def pts(self, raw_s: float | None, fallback_s: float) -> float:
        """The pts of the next frame, given its raw stream time (None if unknown)."""
        valid_raw_s = self._valid_raw(raw_s)
        if valid_raw_s is not None:
            self._last_raw_s = valid_raw_s
        session_s = fallback_s if valid_raw_s is None else valid_raw_s
        if self._pending_gap_s is not None and self._last_pts_s is not None:
            self._offset_s = self._last_pts_s + self._pending_gap_s - session_s
            self._pending_gap_s = None
        pts_s = self._offset_s + session_s
        if self._last_pts_s is not None:
            pts_s = max(pts_s, self._last_pts_s)
        self._last_pts_s = pts_s
        return pts_s

    def _valid_raw(self, raw_s: float | None) -> float | None:
        if raw_s is None or not math.isfinite(raw_s) or raw_s < 0:
            return None
        if self._last_raw_s is not None and raw_s <= self._last_raw_s:
            return None
        return raw_s


@dataclass(frozen=True, slots=True)
class SourceStats:
    frames_read: int
    frames_dropped: int  # overwritten in the mailbox before analysis took them
    reconnects: int  # times the source was reopened after a failure
    online: bool
    last_frame_wall_s: float | None  # time.time() of the newest frame read
    frames_skipped: int = 0  # read but wanted by no analysis (never converted to BGR)


class FrameConsumer(Protocol):
    """Where a live source hands its frames when it is given one (the box's camera runtime):
    `wants` is asked for every frame read, in order, before the frame is converted to BGR; a
    frame nobody wants is never converted."""

    def wants(self, pts_s: float) -> bool: ...

    def put(self, frame: Frame) -> None: ...


class FrameSource(Protocol):
    """What the live worker uses of a source; `LiveSource` and `FileSource` both fit."""

    @property
    def finished(self) -> bool: ...

    def take(self, timeout_s: float) -> Frame | None: ...

    def stats(self) -> SourceStats: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------------------------
# OpenCV helpers.


def _capture_params(open_timeout_s: float, read_timeout_s: float) -> list[int]:
    return [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        int(open_timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        int(read_timeout_s * 1000),
    ]


def _open_ffmpeg(target: str, open_timeout_s: float, read_timeout_s: float) -> cv2.VideoCapture:
    """A file or URL opened with FFmpeg only (no image-sequence guessing), with timeouts."""
    params = _capture_params(open_timeout_s, read_timeout_s)
    return cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)


def _read(capture: cv2.VideoCapture) -> Image | None:
    """The next decoded image, or None at the end of the stream or on a read error."""
    return _retrieve(capture) if _grab(capture) else None


def _grab(capture: cv2.VideoCapture) -> bool:
    """Read and decode the next frame without converting it (False: end or read error)."""
    try:
        return bool(capture.grab())
    except cv2.error as exc:
        logger.warning("Video read failed: %s", str(exc).strip().splitlines()[-1])
        return False


def _retrieve(capture: cv2.VideoCapture) -> Image | None:
    """The frame just grabbed, as BGR (None on a decoding error)."""
    try:
        ok, image = capture.retrieve()
    except cv2.error as exc:
        logger.warning("Video read failed: %s", str(exc).strip().splitlines()[-1])
        return None
    if not ok or image is None:
        return None
    return np.asarray(image, dtype=np.uint8)


def _raw_pts_s(capture: cv2.VideoCapture) -> float | None:
    """The stream timestamp of the frame just read, in seconds, or None if unknown."""
    msec = float(capture.get(cv2.CAP_PROP_POS_MSEC))
    return msec / 1000.0 if math.isfinite(msec) and msec >= 0 else None


def _nominal_fps(capture: cv2.VideoCapture) -> float | None:
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    return fps if math.isfinite(fps) and 0 < fps <= MAX_SANE_FPS else None


def _frame_count(capture: cv2.VideoCapture) -> int | None:
    count = float(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    return int(count) if math.isfinite(count) and count > 0 else None


# --------------------------------------------------------------------------------------------
# Files, for replay: every frame, no dropping.


def _check_video_path(path: Path) -> None:
    if not path.exists():
        raise SourceError(f"video file not found: {path}")
    if not path.is_file():
        raise SourceError(f"video source is not a file: {path}")
    if path.stat().st_size == 0:
        raise SourceError(f"video file is empty (0 bytes): {path}")


def open_video_file(
    path: str | os.PathLike[str],
    *,
    open_timeout_s: float = 30.0,
    read_timeout_s: float = 30.0,
) -> FileSource:
    """Open a video file for replay: all its frames, in order, as fast as they are pulled.

    Raises:
        SourceError: the file is missing, empty, not a video FFmpeg can read (a text file, a
            corrupt file, an MP4 cut before its index), or has no decodable frame.
    """
    file = Path(path)
    _check_video_path(file)
    capture = _open_ffmpeg(str(file), open_timeout_s, read_timeout_s)
    if not capture.isOpened():
        capture.release()
        raise SourceError(
            f"cannot open video file {file}: not a video FFmpeg can read "
            "(corrupt, unsupported, or cut before its index)"
        )
    first = _read(capture)
    if first is None:
        capture.release()
        raise SourceError(f"video file {file} has no decodable frame")
    return FileSource(file, capture, first)


class FileSource:
    """Every frame of a video file in order; made by `open_video_file`.

    Iterate it (once) for the frames. `truncated` is set when the file ended before the frame
    count its container announced (cut mid-stream or corrupt): the frames before the damage are
    still yielded and iteration stops cleanly.
    """

    def __init__(self, path: Path, capture: cv2.VideoCapture, first_image: Image) -> None:
        self.path = path
        self._capture = capture
        self._pending: Image | None = first_image
        self._clock = StreamClock()
        fps = _nominal_fps(capture)
        if fps is None:
            logger.warning(
                "Video file %s: frame rate unknown, assuming %.0f fps", path, DEFAULT_FPS
            )
        self.fps = fps or DEFAULT_FPS
        self.frame_count = _frame_count(capture)  # announced by the container; None if unknown
        self.size_wh = (int(first_image.shape[1]), int(first_image.shape[0]))
        self.frames_read = 0
        self.truncated = False
        self.finished = False
        self._started_wall_s = time.time()
        self._last_wall_s: float | None = None

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.read()) is not None:
            yield frame

    def read(self) -> Frame | None:
        """The next frame, or None once the file has ended (then `finished` is True)."""
        if self.finished:
            return None
        image = self._next_image()
        if image is None:
            self._finish()
            return None
        return self._make_frame(image)

    def take(self, timeout_s: float = 0.0) -> Frame | None:  # noqa: ARG002 - FrameSource API
        """`read()` under the `FrameSource` name; a file never makes the caller wait."""
        return self.read()

    def stats(self) -> SourceStats:
        return SourceStats(
            frames_read=self.frames_read,
            frames_dropped=0,
            reconnects=0,
            online=not self.finished,
            last_frame_wall_s=self._last_wall_s,
        )

    def close(self) -> None:
        self.finished = True
        self._pending = None
        self._capture.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _next_image(self) -> Image | None:
        if self._pending is not None:
            image, self._pending = self._pending, None
            return image
        return _read(self._capture)

    def _make_frame(self, image: Image) -> Frame:
        index = self.frames_read
        pts_s = self._clock.pts(_raw_pts_s(self._capture), index / self.fps)
        self.frames_read += 1
        self._last_wall_s = self._started_wall_s + pts_s
        return Frame(image=image, pts_s=pts_s, index=index, wall_s=self._last_wall_s)

    def _finish(self) -> None:
        self.finished = True
        expected = self.frame_count
        if expected is not None and self.frames_read < expected:
            self.truncated = True
            logger.warning(
                "Video file %s ended early: %d of %d frames decoded (truncated or corrupt)",
                self.path,
                self.frames_read,
                expected,
            )
        self._capture.release()


# --------------------------------------------------------------------------------------------
# Live sources: a reader thread, newest frame wins.


class SourceKind(enum.StrEnum):
    STREAM = "stream"  # rtsp://, http://, ... read by FFmpeg
    DEVICE = "device"  # a USB/V4L2 camera index
    FILE = "file"  # a video file, played at real-time pace like a camera


def classify_source(source: str | int) -> SourceKind:
    """What kind of source a config's `source` names: 0 or "0" is a device, "x://..." a stream."""
    if isinstance(source, int) or source.strip().isdigit():
        return SourceKind.DEVICE
    if "://" in source and not source.startswith("file://"):
        return SourceKind.STREAM
    return SourceKind.FILE


def _capture_target(source: str | int, kind: SourceKind) -> str | int:
    if kind is SourceKind.DEVICE:
        return int(source)
    text = str(source)
    return text.removeprefix("file://") if kind is SourceKind.FILE else text


class LiveSource:
    """A camera read by a thread named ``reader:{camera_id}``; `take()` gives the newest frame.

    Args:
        camera_id: used in logs, the thread name and `on_status`.
        source: an RTSP/HTTP URL, a device index, or a video file path (a simulated camera).
        on_status: called as ``on_status(camera_id, online, reason)`` once per change between
            online and offline, not on every retry; its errors are logged and ignored.
        backoff: delays between reconnection attempts (default 1 s doubling to 30 s).
        stop_event: an outside stop flag (a worker's); when it is set the reader ends too.
            `close()` never sets it, so closing a source does not stop its worker.
        open_timeout_s, read_timeout_s: a stream that does not answer within these is
            treated as failed and retried (FFmpeg sources; devices use the driver's own).
        loop: for files, start again at the end instead of going offline.
        paced: deliver frames at the file's frame rate; defaults to True for files.
        consumer: where frames go instead of the newest-frame mailbox (`take` then gives
            nothing); frames it does not want are skipped before their conversion to BGR.
    """

    def __init__(
        self,
        camera_id: str,
        source: str | int,
        *,
        on_status: StatusCallback | None = None,
        backoff: Backoff | None = None,
        stop_event: StopSignal | None = None,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 10.0,
        loop: bool = False,
        paced: bool | None = None,
        consumer: FrameConsumer | None = None,
    ) -> None:
        self.camera_id = camera_id
        self._consumer = consumer
        self.kind = classify_source(source)
        self._target = _capture_target(source, self.kind)
        self._log_name = redact_url(source)
        self._on_status = on_status
        self._backoff = backoff or Backoff()
        self._outside_stop = stop_event
        self._stop = threading.Event()
        self._timeouts = (open_timeout_s, read_timeout_s)
        self._loop = loop
        self._paced = self.kind is SourceKind.FILE if paced is None else paced
        self._slot = LatestFrame()
        self._clock = StreamClock()
        self._lock = threading.Lock()
        self._frames_read = 0
        self._frames_skipped = 0  # read, but wanted by nobody (never converted to BGR)
        self._nominal_fps: float | None = None  # what the stream says it sends
        self._reconnects = 0
        self._online: bool | None = None
        self._finished = False
        self._last_wall_s: float | None = None
        self._last_mono_s: float | None = None
        self._thread = threading.Thread(target=self._run, name=f"reader:{camera_id}", daemon=True)
        if isinstance(self._target, str) and self._target.lower().startswith("rtsp"):
            os.environ.setdefault(RTSP_OPTIONS_ENV, "rtsp_transport;tcp")

    # Public API ------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the reader thread; a second call does nothing. Returns self for chaining."""
        if self._thread.ident is None:
            self._thread.start()
        return self

    def take(self, timeout_s: float) -> Frame | None:
        """The newest frame not yet taken, waiting up to `timeout_s`; None if none came."""
        return self._slot.take(timeout_s)

    def stats(self) -> SourceStats:
        with self._lock:
            return SourceStats(
                frames_read=self._frames_read,
                frames_dropped=self._slot.dropped,
                reconnects=self._reconnects,
                online=bool(self._online),
                last_frame_wall_s=self._last_wall_s,
                frames_skipped=self._frames_skipped,
            )

    @property
    def nominal_fps(self) -> float | None:
        """The frame rate the stream says it sends (None: it does not say, or not open yet)."""
        return self._nominal_fps

    @property
    def finished(self) -> bool:
        """True once a file source without `loop` has played to its end."""
        return self._finished

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop the reader and wait up to `timeout_s` for it to release the stream."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if self._thread.is_alive():
            logger.warning(
                "Camera %s (%s): reader still blocked in OpenCV after %.1fs; it exits when "
                "the open/read timeout expires",
                self.camera_id,
                self._log_name,
                timeout_s,
            )

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # Reader thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._read_until_stopped()
        except Exception:
            logger.exception("Camera %s (%s): reader crashed", self.camera_id, self._log_name)
            self._set_online(False, "reader crashed")

    def _read_until_stopped(self) -> None:
        while not self._stopping():
            reason = self._session()
            if self._stopping():
                return
            if reason != END_OF_FILE:
                self._retry_later(reason)
            elif not self._loop:
                self._finish()
                return

    def _session(self) -> str:
        """Open the source once and read it until it fails; returns why it stopped."""
        capture = self._open()
        if capture is None:
            return f"cannot open {self.kind.value}"
        try:
            return self._pump(capture)
        finally:
            capture.release()

    def _open(self) -> cv2.VideoCapture | None:
        if isinstance(self._target, int):
            capture = cv2.VideoCapture(self._target)
        else:
            capture = _open_ffmpeg(self._target, *self._timeouts)
        if capture.isOpened():
            return capture
        capture.release()
        return None

    def _pump(self, capture: cv2.VideoCapture) -> str:
        self._nominal_fps = _nominal_fps(capture)
        fps = self._nominal_fps or DEFAULT_FPS
        self._clock.restart(self._gap_since_last_frame(fps))
        session_start = time.monotonic()
        session_index = 0
        while not self._stopping():
            if not _grab(capture):
                return END_OF_FILE if self.kind is SourceKind.FILE else "read failed"
            due_s = session_start + session_index / fps
            if self._paced and self._wait(due_s - time.monotonic()):
                break
            fallback_s = (
                session_index / fps
                if self.kind is SourceKind.FILE
                else time.monotonic() - session_start
            )
            pts_s = self._clock.pts(_raw_pts_s(capture), fallback_s)
            session_index += 1
            if self._consumer is not None and not self._consumer.wants(pts_s):
                self._skip()
                continue
            image = _retrieve(capture)
            if image is None:
                return END_OF_FILE if self.kind is SourceKind.FILE else "read failed"
            self._deliver(image, pts_s)
        return "stopped"

    def _stopping(self) -> bool:
        return self._stop.is_set() or (
            self._outside_stop is not None and self._outside_stop.is_set()
        )

    def _wait(self, timeout_s: float) -> bool:
        """Sleep up to `timeout_s`, waking early on either stop flag; True if stopping."""
        deadline = time.monotonic() + timeout_s
        while not self._stopping():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._stop.wait(min(remaining, STOP_POLL_S))
        return True

    def _gap_since_last_frame(self, fps: float) -> float:
        if self._last_mono_s is None:
            return 1.0 / fps
        return max(1.0 / fps, time.monotonic() - self._last_mono_s)

    def _skip(self) -> None:
        with self._lock:
            self._frames_read += 1
            self._frames_skipped += 1
            self._last_wall_s = time.time()
            self._last_mono_s = time.monotonic()
        self._arrived()

    def _deliver(self, image: Image, pts_s: float) -> None:
        wall_s = time.time()
        with self._lock:
            index = self._frames_read
            self._frames_read += 1
            self._last_wall_s = wall_s
            self._last_mono_s = time.monotonic()
        frame = Frame(image=image, pts_s=pts_s, index=index, wall_s=wall_s)
        if self._consumer is not None:
            self._consumer.put(frame)
        else:
            self._slot.put(frame)
        self._arrived()

    def _arrived(self) -> None:
        if not self._online:
            self._backoff.reset()
            self._set_online(True, "frames arriving")

    def _finish(self) -> None:
        self._finished = True
        self._set_online(False, END_OF_FILE)

    def _retry_later(self, reason: str) -> None:
        delay_s = self._backoff.next_s()
        self._set_online(False, reason)
        logger.debug(
            "Camera %s (%s): %s, retry in %.1fs", self.camera_id, self._log_name, reason, delay_s
        )
        if not self._wait(delay_s):
            with self._lock:
                self._reconnects += 1

    def _set_online(self, online: bool, reason: str) -> None:
        with self._lock:
            changed = self._online is not online
            self._online = online
        if not changed:
            return
        if online:
            logger.info("Camera %s (%s): online", self.camera_id, self._log_name)
        else:
            logger.warning(
                "Camera %s (%s): offline (%s), retrying with backoff up to %.0fs",
                self.camera_id,
                self._log_name,
                reason,
                self._backoff.max_s,
            )
        self._notify(online, reason)

    def _notify(self, online: bool, reason: str) -> None:
        if self._on_status is None:
            return
        try:
            self._on_status(self.camera_id, online, reason)
        except Exception:
            logger.exception("Camera %s: on_status callback failed", self.camera_id)


def check_file_source(source: str | int) -> None:
    """Refuse a file source that cannot be played (missing, not a file, empty): a config error
    to report at start-up, unlike a stream that is down (retried).

    Raises:
        SourceError: with the reason.
    """
    _check_video_path(Path(str(_capture_target(source, SourceKind.FILE))))


def open_source(
    source: str | int,
    camera_id: str,
    *,
    realtime: bool = True,
    on_status: StatusCallback | None = None,
    backoff: Backoff | None = None,
    stop_event: StopSignal | None = None,
    loop: bool = True,
) -> FrameSource:
    """The source for a camera's `source`, started and ready for `take()`.

    Streams and devices get a `LiveSource`. A file gets a `LiveSource` played at its frame rate
    (looping unless `loop=False`) when `realtime`, else a `FileSource` that gives every frame
    as fast as it is pulled.

    Raises:
        SourceError: a file path that does not exist or cannot be read (fail at startup;
            streams and devices that are down are retried instead).
    """
    kind = classify_source(source)
    if kind is SourceKind.FILE:
        path = Path(str(_capture_target(source, kind)))
        if not realtime:
            return open_video_file(path)
        _check_video_path(path)
    live = LiveSource(
        camera_id,
        source,
        on_status=on_status,
        backoff=backoff,
        stop_event=stop_event,
        loop=loop,
    )
    return live.start()
