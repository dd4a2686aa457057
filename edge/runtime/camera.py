"""One camera, live, in a process of its own (started and restarted by edge.runtime.supervisor).

Inside the process: the reader thread decodes the stream and asks each lane of the camera's
`CameraPipeline` whether it wants the frame (edge.analysis.lanes); a frame nobody wants is never
converted to BGR. Each lane has its own thread and its own bounded queue: a frame rule gets
every frame it wants in order, whatever the zone analysis is doing, and a lane that falls behind
drops its own oldest frames (counted) without holding up the others. The recorder has a thread
too, so writing a clip never stops the analysis. Models run in the box's detection service
(edge.runtime.detection); events, status changes and the camera's counters go to the supervisor
over the process's connection.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import resource
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from common.config import SiteConfig
from common.events import Event, ModelInfo
from edge.analysis.detect.base import Detector, Need, Pending, Priority
from edge.analysis.detect.yolo import PoseDetection
from edge.analysis.faces import FACE_IOU, FACE_MIN_SCORE, FaceModel
from edge.analysis.lanes import Finding, Lane
from edge.analysis.pipeline import WEAK_DETECTION_SCORE, CameraPipeline
from edge.analysis.pose import PoseEstimator
from edge.capture.sources import LiveSource, reason_code
from edge.evidence.store import DirectoryStore
from edge.runtime.detection import (
    REPLY_TIMEOUT_S,
    ClientPending,
    DetectionClient,
    InferenceUnavailable,
    ModelSlot,
    Reply,
)
from edge.runtime.load import CameraCounters, LaneCounters
from edge.runtime.models import ModelSpec, load_registry
from edge.types import Detection, Frame

logger = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]

REPORT_EVERY_S = 2.0  # the camera's counters go to the supervisor this often
LANE_QUEUE_S = 1.5  # a lane's queue holds at most this long of the frames it wants...
LANE_QUEUE_MIN = 4  # ...and never fewer than this many
# The zone analysis (fire lanes, garbage) needs no run of consecutive frames: on a busy box
# an older queued frame only delays its alerts (a 1.5 s queue kept them 1.5 s behind live; two
# frames, 0.3 s); at 5 analyses a second it takes the newest frame
ZONE_QUEUE_S = 0.2
ZONE_QUEUE_MIN = 1
STALL_RELEASE_S = 5.0  # a stream that stopped: held messages leave after this long
ZONE_NICE = 5  # the zone analysis yields the CPU to the frame rules of its own camera
CLIP_NICE = 5  # clips (redacted, encoded) yield to every analysis of their camera
FINISH_CLIPS_S = 8.0  # a camera that stops waits this long for the clips being cut


# -------------------------------------------------------------------------- models, remote


class RemoteDetector:
    """A detector run by the box's detection service (`Detector` and `SharedDetector`)."""

    def __init__(self, client: DetectionClient, slot: ModelSlot, info: ModelInfo) -> None:
        self._client = client
        self._slot = slot
        self._info = info

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def names(self) -> Sequence[str]:
        return ()

    def detect(self, image_bgr: Image) -> list[Detection]:
        reply = self._client.infer(self._slot, image_bgr, Need(Priority.DUE))
        self._seen(reply)
        return list(reply.detections)

    def submit(self, image_bgr: Image, need: Need) -> Pending:
        return _Answer(self, self._client.submit(self._slot, image_bgr, need))

    def _seen(self, reply: Reply) -> None:
        if reply.model is not None:
            self._info = reply.model  # a roll-out swapped the model: events name the new one


class _Answer:
    """A `Pending` of the edge.analysis kind over a request to the service."""

    def __init__(self, detector: RemoteDetector, pending: ClientPending) -> None:
        self._detector = detector
        self._pending = pending

    def wait(self, timeout_s: float) -> bool:
        return self._pending.wait(timeout_s)

    def result(self) -> list[Detection] | None:
        reply = self._pending.reply
        if reply is None or reply.status != "ok":
            return None
        self._detector._seen(reply)
        return list(reply.detections)


class RemotePose:
    """A pose model run by the box's detection service (`PoseEstimator`); a run that is not
    made raises `InferenceUnavailable` (the rule skips that frame, redaction writes nothing)."""

    def __init__(
        self, client: DetectionClient, slot: ModelSlot, info: ModelInfo, priority: Priority
    ) -> None:
        self._client = client
        self._slot = slot
        self._info = info
        self._need = Need(priority)

    @property
    def info(self) -> ModelInfo:
        return self._info

    def detect_pose(self, image_bgr: Image) -> list[PoseDetection]:
        return self.answered(self._client.infer(self._slot, image_bgr, self._need))

    def submit_pose(self, image_bgr: Image) -> RemotePosePending:
        """Ask for a run and return at once (`edge.analysis.pose.submit_pose`): a fall room
        asks for its next frame while the service runs this one."""
        return RemotePosePending(self, self._client.submit(self._slot, image_bgr, self._need))

    def answered(self, reply: Reply) -> list[PoseDetection]:
        if reply.status != "ok":
            raise InferenceUnavailable(f"{self._slot.model}: {reply.status} {reply.error}".strip())
        if reply.model is not None:
            self._info = reply.model
        return list(reply.poses)


class RemotePosePending:
    """A pose run asked of the service (`edge.analysis.pose.PosePending`)."""

    def __init__(self, pose: RemotePose, pending: ClientPending) -> None:
        self._pose = pose
        self._pending = pending

    def wait(self, timeout_s: float) -> bool:
        return self._pending.wait(timeout_s)

    def result(self) -> list[PoseDetection]:
        reply = self._pending.reply
        if reply is None:
            raise InferenceUnavailable("no answer from the detection service yet")
        return self._pose.answered(reply)


class RemoteFaces:
    """A face model run by the box's detection service (`FaceModel`): all views of a frame are
    asked for at once, so the service can run them as one batch; a view that is not answered
    raises `InferenceUnavailable` (redaction writes nothing)."""

    def __init__(
        self, client: DetectionClient, slot: ModelSlot, spec: ModelSpec, priority: Priority
    ) -> None:
        self._client = client
        self._slot = slot
        self._input_wh = spec.input_wh
        self._info = ModelInfo(name=spec.name, version=spec.version, sha256=spec.sha256)
        self._need = Need(priority)

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def input_wh(self) -> tuple[int, int]:
        return self._input_wh

    def detect_faces(self, images: Sequence[Image]) -> list[list[Detection]]:
        asked = [self._client.submit(self._slot, image, self._need) for image in images]
        out = []
        for pending in asked:
            if not pending.wait(REPLY_TIMEOUT_S):
                raise InferenceUnavailable(f"{self._slot.model}: no answer in {REPLY_TIMEOUT_S} s")
            reply = pending.reply
            if reply is None or reply.status != "ok":
                why = "no answer" if reply is None else f"{reply.status} {reply.error}".strip()
                raise InferenceUnavailable(f"{self._slot.model}: {why}")
            out.append(list(reply.detections))
        return out


class ServiceModels:
    """`ModelSource` backed by the box's detection service."""

    def __init__(self, client: DetectionClient, specs: dict[str, ModelSpec]) -> None:
        self._client = client
        self._specs = specs

    def _info(self, model: str) -> ModelInfo:
        spec = self._specs[model]
        return ModelInfo(name=spec.name, version=spec.version, sha256=spec.sha256)

    def detector(
        self, model: str, min_score: float, iou: float, providers: tuple[str, ...]
    ) -> Detector:
        slot = ModelSlot(model, "detect", min_score, iou, providers)
        return RemoteDetector(self._client, slot, self._info(model))

    def pose(self, model: str, priority: Priority) -> PoseEstimator:
        slot = ModelSlot(model, "pose", POSE_MIN_SCORE, 0.5)
        return RemotePose(self._client, slot, self._info(model), priority)

    def faces(self, model: str, priority: Priority) -> FaceModel:
        slot = ModelSlot(model, "faces", FACE_MIN_SCORE, FACE_IOU)
        return RemoteFaces(self._client, slot, self._specs[model], priority)


POSE_MIN_SCORE = 0.1  # as edge.analysis.pose: callers filter further


def camera_slots(site: SiteConfig, camera_id: str) -> list[ModelSlot]:
    """Every model slot a camera's enabled rules will ask the service for (loaded before the
    cameras start, so a missing model is refused at start-up)."""
    from common.config import GarbagePileRuleConfig, PersonFallRuleConfig

    camera = site.camera(camera_id)
    config = camera.detector
    slots: list[ModelSlot] = []
    zone_rules = [r for r in camera.rules if r.enabled and r.type in ("fire_lane", "garbage_pile")]
    if zone_rules:
        min_score = min(config.min_score, WEAK_DETECTION_SCORE)
        slots.append(ModelSlot(config.model, "detect", min_score, config.iou, config.providers))
    for rule in camera.rules:
        if not rule.enabled:
            continue
        if isinstance(rule, PersonFallRuleConfig):
            slots.append(ModelSlot(rule.model, "pose", POSE_MIN_SCORE, 0.5))
        if isinstance(rule, GarbagePileRuleConfig) and rule.classifier is not None:
            c = rule.classifier
            slots.append(ModelSlot(c.model, "detect", c.min_score, config.iou, config.providers))
    faces = camera.privacy.blur_faces and any(
        r.enabled and r.evidence_faces == "blur" for r in camera.rules
    )
    if faces:
        slots.append(ModelSlot(camera.privacy.face_model, "pose", POSE_MIN_SCORE, 0.5))
        if camera.privacy.face_detector is not None:
            slots.append(ModelSlot(camera.privacy.face_detector, "faces", FACE_MIN_SCORE, FACE_IOU))
    return list(dict.fromkeys(slots))


# --------------------------------------------------------------------------------- lanes


class LaneQueue:
    """Frames waiting for one lane: bounded; when full the oldest goes (counted as dropped)."""

    def __init__(self, capacity: int) -> None:
        self._frames: deque[Frame] = deque()
        self._capacity = max(1, capacity)
        self._cond = threading.Condition()
        self.dropped = 0

    def put(self, frame: Frame) -> None:
        with self._cond:
            if len(self._frames) >= self._capacity:
                self._frames.popleft()
                self.dropped += 1
            self._frames.append(frame)
            self._cond.notify()

    def get(self, timeout_s: float) -> Frame | None:
        with self._cond:
            if not self._frames:
                self._cond.wait(timeout_s)
            return self._frames.popleft() if self._frames else None

    def __len__(self) -> int:
        return len(self._frames)


@dataclass
class _Meter:
    """What one lane did (see `LaneCounters`)."""

    offered: int = 0
    processed: int = 0
    busy_s: float = 0.0
    max_gap_s: float = 0.0
    lag_s: float = 0.0
    last_pts: float | None = None
    errors: int = 0


class LiveCamera:
    """A camera's lanes and recorder on threads of their own, fed by its reader thread (see
    the module docstring). `wants` and `put` are the reader's `FrameConsumer`."""

    def __init__(
        self,
        pipeline: CameraPipeline,
        emit: Callable[[Event], None],
        fps_hint: float = 25.0,
    ) -> None:
        self.pipeline = pipeline
        self._emit = emit
        self._lanes: list[Lane] = list(pipeline.lanes)
        self._queues: dict[str, LaneQueue] = {}
        for lane in self._lanes:
            rate = lane.need_fps or fps_hint
            if lane.name == "zones":
                capacity = max(ZONE_QUEUE_MIN, round(rate * ZONE_QUEUE_S))
            else:
                capacity = max(LANE_QUEUE_MIN, round(rate * LANE_QUEUE_S))
            self._queues[lane.name] = LaneQueue(capacity)
        self._meters = {lane.name: _Meter() for lane in self._lanes}
        self._targets: list[Lane] = []
        self._findings: queue.SimpleQueue[list[Finding] | None] = queue.SimpleQueue()
        self._clips: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        pipeline.recorder.cut_clips_with(self._clips.put)
        self._progress_pts = float("-inf")  # the newest frame every lane that wanted it has had
        self._progress_mono = time.monotonic()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.base_nice = os.nice(0)
        self.started_mono = time.monotonic()

    # -- the reader's FrameConsumer ------------------------------------------------------------

    def wants(self, pts_s: float) -> bool:
        self._targets = [lane for lane in self._lanes if lane.wants(pts_s)]
        if not self._targets:
            self._progress(pts_s)
        return bool(self._targets)

    def put(self, frame: Frame) -> None:
        self.pipeline.stats.frames_seen += 1
        for lane in self._targets:
            self._meters[lane.name].offered += 1
            self._queues[lane.name].put(frame)

    # -- running ------------------------------------------------------------------------------

    def start(self) -> None:
        for lane in self._lanes:
            # the zone analysis yields to the frame rules of its own camera, if it has any
            mixed = any(other.name.startswith("frame:") for other in self._lanes)
            nice = ZONE_NICE if lane.name == "zones" and mixed else 0
            thread = threading.Thread(
                target=self._run_lane, args=(lane, nice), name=f"lane:{lane.name}", daemon=True
            )
            self._threads.append(thread)
        self._threads.append(
            threading.Thread(target=self._run_recorder, name="recorder", daemon=True)
        )
        self._threads.append(threading.Thread(target=self._run_clips, name="clips", daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the lanes, then let the recorder send what it holds (clips cut from what was
        seen)."""
        self._stop.set()
        self._findings.put(None)
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))

    def _run_lane(self, lane: Lane, nice: int) -> None:
        _thread_nice(self.base_nice + nice)
        lane_queue = self._queues[lane.name]
        meter = self._meters[lane.name]
        while not self._stop.is_set():
            frame = lane_queue.get(0.2)
            if frame is None:
                continue
            started = time.perf_counter()
            try:
                findings = lane.process(frame)
            except Exception:  # the boundary of a lane: one bad frame never stops the camera
                meter.errors += 1
                if meter.errors <= 3 or meter.errors % 100 == 0:
                    logger.exception("lane %s failed on the frame at %.2fs", lane.name, frame.pts_s)
                findings = []
            meter.busy_s += time.perf_counter() - started
            meter.processed += 1
            if meter.last_pts is not None:
                meter.max_gap_s = max(meter.max_gap_s, frame.pts_s - meter.last_pts)
            meter.last_pts = frame.pts_s
            meter.lag_s = max(0.0, time.time() - frame.wall_s)
            if findings:
                self._findings.put(findings)
            self._progress(self._slowest_pts())

    def _slowest_pts(self) -> float:
        """The stream time every lane has reached (a lane with nothing queued is up to date)."""
        behind = [
            meter.last_pts if meter.last_pts is not None else float("-inf")
            for name, meter in self._meters.items()
            if len(self._queues[name])
        ]
        newest = max(
            (m.last_pts for m in self._meters.values() if m.last_pts is not None),
            default=float("-inf"),
        )
        return min(behind, default=newest)

    def _progress(self, pts_s: float) -> None:
        if pts_s > self._progress_pts:
            self._progress_pts = pts_s
            self._progress_mono = time.monotonic()

    def _run_recorder(self) -> None:
        _thread_nice(self.base_nice + 2)
        recorder = self.pipeline.recorder
        while True:
            try:
                findings = self._findings.get(timeout=0.1)
            except queue.Empty:
                findings = []
            if findings is None:
                break
            if findings:
                recorder.add(findings)
            stalled = time.monotonic() - self._progress_mono > STALL_RELEASE_S
            for event in recorder.release(float("inf") if stalled else self._progress_pts):
                self._send(event)
        while True:  # the lanes stopped: what they found last, then everything held
            try:
                rest = self._findings.get_nowait()
            except queue.Empty:
                break
            if rest:
                recorder.add(rest)
        for event in recorder.finish(FINISH_CLIPS_S):
            self._send(event)
        self._clips.put(None)

    def _run_clips(self) -> None:
        """Cut the alerts' clips (redact and encode), one after the other, at a low priority."""
        _thread_nice(self.base_nice + CLIP_NICE)
        while (job := self._clips.get()) is not None:
            job()

    def _send(self, event: Event) -> None:
        try:
            self._emit(event)
        except Exception:  # the supervisor's connection: reported, the camera carries on
            logger.exception("event %s/%d could not be handed over", event.event_id, event.seq)

    # -- counters -----------------------------------------------------------------------------

    def counters(
        self, source_stats: Any, waits: Sequence[float], nominal_fps: float | None = None
    ) -> CameraCounters:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        lanes: dict[str, LaneCounters] = {}
        for lane in self._lanes:
            meter = self._meters[lane.name]
            lanes[lane.name] = LaneCounters(
                rule_ids=tuple(lane.rule_ids),
                need_fps=lane.need_fps,
                offered=meter.offered,
                processed=meter.processed,
                dropped=self._queues[lane.name].dropped,
                busy_s=meter.busy_s,
                starved=lane.starved,
                max_gap_s=meter.max_gap_s,
                lag_s=meter.lag_s if len(self._queues[lane.name]) else 0.0,
            )
            meter.max_gap_s = 0.0
        return CameraCounters(
            mono_s=time.monotonic(),
            started_mono_s=self.started_mono,
            frames_read=source_stats.frames_read,
            frames_skipped=source_stats.frames_skipped,
            nominal_fps=nominal_fps,
            cpu_s=usage.ru_utime + usage.ru_stime,
            rss_mb=usage.ru_maxrss / 1024.0,
            detector_waits_s=tuple(waits),
            detections_missed=self.pipeline.stats.detections_missed,
            lanes=lanes,
        )


def _thread_nice(nice: int) -> None:
    """Give the calling thread a niceness of its own (Linux: threads are scheduled one by one)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)


# ------------------------------------------------------------------------ the process


@dataclass(frozen=True, slots=True)
class CameraJob:
    """What a camera process needs to run (picklable: it crosses to a spawned process)."""

    site: SiteConfig
    camera_id: str
    evidence_dir: Path | None
    service_address: str
    service_authkey: bytes
    nice: int = 0
    loop_files: bool = True
    log_level: int = logging.INFO


@dataclass(frozen=True, slots=True)
class CameraStarted:
    camera_id: str
    pid: int
    shm_name: str


@dataclass(frozen=True, slots=True)
class CameraEvent:
    camera_id: str
    event_json: str


@dataclass(frozen=True, slots=True)
class CameraOnline:
    camera_id: str
    online: bool
    reason: str
    reason_code: str


@dataclass(frozen=True, slots=True)
class CameraReport:
    camera_id: str
    counters: CameraCounters
    source_online: bool
    reconnects: int


@dataclass(frozen=True, slots=True)
class CameraFailed:
    """The camera could not start (its source file is gone, a model it needs is missing)."""

    camera_id: str
    error: str


class _Channel:
    """The process's connection to the supervisor, shared by its threads."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def send(self, message: object) -> None:
        with self._lock:
            self._conn.send(message)


STOP = "stop"  # the supervisor's only message to a camera


def run_camera(job: CameraJob, conn: Connection) -> None:
    """The camera process's entry point (spawned by the supervisor). It stops when the
    supervisor says so, or when the supervisor's end of the connection is gone."""
    from edge.runtime.process import prepare_child

    prepare_child(job.nice, job.log_level)
    channel = _Channel(conn)
    stop = threading.Event()
    threading.Thread(target=_listen, args=(conn, stop), name="control", daemon=True).start()
    camera = job.site.camera(job.camera_id)
    try:
        registry = load_registry()
        slots = camera_slots(job.site, job.camera_id)
        specs = {slot.model: registry[slot.model] for slot in slots}
        client = DetectionClient(job.service_address, job.service_authkey, job.camera_id, specs)
    except Exception as error:  # told to the supervisor, which backs off and tries again
        logger.exception("camera %s could not start", job.camera_id)
        channel.send(CameraFailed(job.camera_id, str(error)))
        return
    try:
        _run(job, camera, client, specs, channel, stop)
    finally:
        client.close()


def _run(
    job: CameraJob,
    camera: Any,
    client: DetectionClient,
    specs: dict[str, ModelSpec],
    channel: _Channel,
    stop: threading.Event,
) -> None:
    models = ServiceModels(client, specs)
    detector_config = camera.detector
    if detector_config.model in specs:
        min_score = min(detector_config.min_score, WEAK_DETECTION_SCORE)
        detector = models.detector(
            detector_config.model, min_score, detector_config.iou, detector_config.providers
        )
    else:  # no zone rule: the detector is never asked; events name the registry's model
        detector = _Unused(detector_config.model)
    store = DirectoryStore(job.evidence_dir / camera.id) if job.evidence_dir is not None else None
    pipeline = CameraPipeline(job.site, camera, detector, store, models=models)
    live = LiveCamera(
        pipeline, emit=lambda event: channel.send(CameraEvent(camera.id, event.to_json()))
    )

    def on_status(camera_id: str, online: bool, reason: str) -> None:
        channel.send(CameraOnline(camera_id, online, reason, reason_code(reason)))

    source = LiveSource(
        camera.id,
        job.site.resolve_source(camera),
        on_status=on_status,
        stop_event=stop,
        loop=job.loop_files,
        consumer=live,
    )
    channel.send(CameraStarted(camera.id, os.getpid(), client.shm_name))
    live.start()
    source.start()
    try:
        while not stop.wait(REPORT_EVERY_S):
            waits = list(client.waits)
            client.waits.clear()
            stats = source.stats()
            try:
                counters = live.counters(stats, waits, source.nominal_fps)
            except Exception:  # figures are not worth the camera: it goes on without them
                logger.exception("camera %s: its counters could not be read", camera.id)
                continue
            channel.send(CameraReport(camera.id, counters, stats.online, stats.reconnects))
            if source.finished:
                break
    except (OSError, EOFError):  # the supervisor's end is gone
        pass
    finally:
        source.close()
        live.stop()


def _listen(conn: Connection, stop: threading.Event) -> None:
    """Wait for the supervisor's stop (a process-wide event would not do: a camera killed
    while it waited on one would leave it broken for every other camera)."""
    try:
        while conn.recv() != STOP:
            pass
    except (EOFError, OSError):  # the supervisor is gone: nobody reads our events any more
        pass
    stop.set()


class _Unused:
    """The detector of a camera without zone rules: never asked (frame rules use their own
    models), it only names the model its events would carry."""

    def __init__(self, model: str) -> None:
        try:
            spec = load_registry()[model]
            self._info = ModelInfo(name=spec.name, version=spec.version, sha256=spec.sha256)
        except KeyError:
            self._info = ModelInfo(name=model, version="", sha256="")

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def names(self) -> Sequence[str]:
        return ()

    def detect(self, image_bgr: Image) -> list[Detection]:
        del image_bgr
        raise InferenceUnavailable("this camera runs no detector")
