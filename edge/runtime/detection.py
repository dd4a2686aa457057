"""The box's detection service: one process runs every camera's model inferences, in order of
need (issue 13).

Cameras do not run onnxruntime themselves. A camera letterboxes the image to the model's input
size (`letterbox_image`), copies it into one of its own shared-memory slots and sends a small
`Request` over its connection; the service keeps every waiting request of every camera in one
queue, runs the most needed one (together with the other waiting requests for the same model as
one batch, when the model file takes batches) and answers on that camera's connection. A request
that has waited beyond its `expires_s` is answered `shed` without running: a look that comes too
late is worth nothing, and the time goes to one that is still useful.

Order of need (`Priority`, lower first): faces to blur in an alert's snapshot, a frame rule's
inference (someone moving in a fall room, a fall being watched), a zone analysis that has gone
too long without a look, a zone analysis at its normal rate, a quiet scene's periodic re-check.
Waiting promotes a request by one class per `AGING_S`, so no camera starves for good.

The service listens on a Unix socket (`multiprocessing.connection.Listener` with an auth key):
a camera that restarts connects again, and a service that restarts is found again by every
camera. One control connection (the supervisor's) receives the service's load figures and
carries model roll-outs (`Swap`, `Rollback`).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from multiprocessing.connection import Client, Connection, Listener, wait
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from common.events import DetectorLoad, ModelInfo
from edge.analysis.detect.base import Need, Priority
from edge.analysis.detect.yolo import Letterbox, PoseDetection, letterbox_image
from edge.runtime.models import ModelSpec
from edge.types import Detection

logger = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]
Task = Literal["detect", "pose", "faces"]  # faces: evidence redaction (CenterFace)

AGING_S = 2.0  # a request waiting this long is served as if it were one class more urgent
AGED_AT_MOST = Priority.DUE  # ...but never as urgent as a frame rule's or an alert's evidence
BACKGROUND = Priority.CLIPS  # work nothing waits on: never on every worker at once
URGENT = Priority.DUE  # below it: a frame rule's inference, the faces of an alert's snapshot
URGENT_RECENT_S = 10.0  # a worker is kept free for urgent work while some came this recently
STATS_EVERY_S = 2.0  # the service sends its load figures this often
COST_WEIGHT = 0.2  # weight of the latest run in a model's measured cost per image
CONNECT_TIMEOUT_S = 30.0  # a camera waits this long for the service at start-up
REPLY_TIMEOUT_S = 10.0  # a request unanswered this long is given up (the service is stuck)
POSE_MIN_SCORE = 0.1  # as edge.analysis.pose: callers filter further


@dataclass(frozen=True, slots=True)
class ModelSlot:
    """One model as the service runs it: the registry name and how its output is decoded."""

    model: str
    task: Task = "detect"
    min_score: float = 0.25
    iou: float = 0.5
    providers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Request:
    request_id: int
    slot: ModelSlot
    priority: int
    expires_s: float | None
    shm: str
    offset: int  # where in the camera's shared memory the image (input H x W x 3) starts
    box: Letterbox  # how the camera letterboxed it (input size, scale, padding)
    sent_mono: float  # time.monotonic() when sent (CLOCK_MONOTONIC is one clock for the box)


ReplyStatus = Literal["ok", "shed", "error"]


@dataclass(frozen=True, slots=True)
class Reply:
    request_id: int
    status: ReplyStatus
    detections: tuple[Detection, ...] = ()
    poses: tuple[PoseDetection, ...] = ()
    model: ModelInfo | None = None
    input_wh: tuple[int, int] | None = None  # of the model that answered (a roll-out may change it)
    layout: str | None = None
    wait_s: float = 0.0  # in the service's queue
    run_s: float = 0.0  # inferring (the batch's run time)
    error: str = ""


@dataclass(frozen=True, slots=True)
class Hello:
    """The first message on a connection: who is calling."""

    client: str  # a camera id, or "control"


@dataclass(frozen=True, slots=True)
class Swap:
    """Control: run the model file at `path` (registry entry `spec`) for every slot of
    `model_name`; answered with a `SwapResult`."""

    model_name: str
    spec: ModelSpec
    path: str


@dataclass(frozen=True, slots=True)
class Rollback:
    model_name: str


@dataclass(frozen=True, slots=True)
class SwapResult:
    model_name: str
    ok: bool
    info: ModelInfo | None
    error: str = ""


@dataclass(frozen=True, slots=True)
class Ready:
    """Sent on the control connection once every model is loaded (or why not)."""

    ok: bool
    models: dict[str, ModelInfo] = field(default_factory=dict)
    error: str = ""


@dataclass(frozen=True, slots=True)
class ServiceStats:
    """The service's figures since the last `ServiceStats` (`window_s`), and per camera."""

    load: DetectorLoad
    window_s: float
    per_camera: dict[str, tuple[int, float]]  # camera id -> (requests answered, p95 wait in s)


class InferenceUnavailable(RuntimeError):
    """The service did not run the inference: shed as too late, failed, or out of reach."""


# ------------------------------------------------------------------------------- the queue


@dataclass(order=True)
class _Waiting:
    key: float
    order: int
    request: Request = field(compare=False)
    camera: str = field(compare=False)
    received_mono: float = field(compare=False)


def _expired(item: _Waiting, now: float) -> bool:
    expires = item.request.expires_s
    return expires is not None and now - item.request.sent_mono > expires


class RequestQueue:
    """Every camera's waiting requests, most needed first (pure: time is passed in)."""

    def __init__(self, aging_s: float = AGING_S) -> None:
        self._aging_s = aging_s
        self._items: list[_Waiting] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._items)

    def push(self, camera: str, request: Request, now: float) -> None:
        heapq.heappush(
            self._items, _Waiting(self._key(request, now), next(self._order), request, camera, now)
        )

    def _key(self, request: Request, now: float) -> float:
        """Serving order: the class, less one per `aging_s` already waited (so no camera waits
        for good), then arrival. Waiting never lifts a request past `AGED_AT_MOST`: the frame
        rules' inferences and an alert's snapshot always go first."""
        if request.priority <= AGED_AT_MOST:
            return float(request.priority)
        aged = request.priority - (now - request.sent_mono) / self._aging_s
        return max(float(AGED_AT_MOST), aged)

    def has_work(self, allow: Callable[[Request], bool] | None = None) -> bool:
        return any(allow is None or allow(item.request) for item in self._items)

    def take(
        self,
        now: float,
        max_batch: int,
        batchable: Callable[[ModelSlot], bool],
        allow: Callable[[Request], bool] | None = None,
    ) -> tuple[list[tuple[str, Request]], list[tuple[str, Request]]]:
        """The next batch to run (the most needed request `allow` lets through and, when its
        model takes batches, the next most needed ones for the same model), and every request
        shed as expired."""
        shed = [(item.camera, item.request) for item in self._items if _expired(item, now)]
        if shed:
            self._items = [item for item in self._items if not _expired(item, now)]
        self._reorder(now)
        batch: list[tuple[str, Request]] = []
        keep: list[_Waiting] = []
        while self._items and len(batch) < max(1, max_batch):
            item = heapq.heappop(self._items)
            request = item.request
            if allow is not None and not allow(request):
                keep.append(item)
            elif not batch:
                batch.append((item.camera, request))
                if not batchable(request.slot):
                    break
            elif request.slot == batch[0][1].slot:
                batch.append((item.camera, request))
            else:
                keep.append(item)
        for item in keep:
            heapq.heappush(self._items, item)
        return batch, shed

    def work_ahead(self, request: Request, cost_s: Callable[[ModelSlot], float]) -> float:
        """Seconds of inference queued before `request` would start (what waits in its own
        class or a more urgent one: a new request is the youngest of its class)."""
        return sum(
            cost_s(item.request.slot)
            for item in self._items
            if item.request.priority <= request.priority
        )

    def drop_camera(self, camera: str) -> list[Request]:
        gone = [item.request for item in self._items if item.camera == camera]
        self._items = [item for item in self._items if item.camera != camera]
        heapq.heapify(self._items)
        return gone

    def _reorder(self, now: float) -> None:
        """Ageing keeps the order of requests of one class, but lets an old request pass a
        younger one of a more urgent class: keys are recomputed before each pick."""
        for item in self._items:
            item.key = self._key(item.request, now)
        heapq.heapify(self._items)


# ------------------------------------------------------------------------------ the service


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    threads: int = 1  # onnxruntime threads for one inference
    workers: int = 2  # inferences run at once (a core each, when the box has them free)
    max_batch: int = 4  # requests for one model run together (when the model takes batches)
    spinning: bool = False  # see OnnxDetector.load


class _Stats:
    def __init__(self) -> None:
        self.reset(time.monotonic())

    def reset(self, now: float) -> None:
        self.started = now
        self.runs = 0
        self.images = 0
        self.busy_s = 0.0
        self.shed = 0
        self.waits: list[float] = []
        self.per_camera: dict[str, list[float]] = {}
        self.by_need: dict[str, list[float]] = {}

    def answered(self, camera: str, request: Request, wait_s: float) -> None:
        self.waits.append(wait_s)
        self.per_camera.setdefault(camera, []).append(wait_s)
        self.by_need.setdefault(_need_name(request.priority), []).append(wait_s)

    def snapshot(self, now: float, queue: int, workers: int = 1) -> ServiceStats:
        window = max(1e-6, now - self.started)
        load = DetectorLoad(
            runs_per_s=self.runs / window,
            images_per_s=self.images / window,
            busy=min(1.0, self.busy_s / (window * max(1, workers))),
            queue=queue,
            wait_p95_ms=_p95(self.waits) * 1000.0,
            batch_mean=self.images / self.runs if self.runs else 0.0,
            shed=self.shed,
            wait_p95_ms_by_need={k: round(_p95(v) * 1000, 1) for k, v in self.by_need.items()},
            runs_by_need={k: len(v) for k, v in self.by_need.items()},
        )
        per_camera = {cam: (len(w), _p95(w)) for cam, w in self.per_camera.items()}
        return ServiceStats(load, window, per_camera)


def may_start(
    workers: int, routine: int, background: int, urgent_recent: bool
) -> Callable[[Request], bool] | None:
    """What a free worker of `workers` may start while `routine` of them run work that is not
    urgent (`background` of those a clip's faces): None for anything. One worker is kept for
    urgent work while some came recently (`urgent_recent`), and background work never holds
    every worker."""
    workers = max(1, workers)
    if routine >= (workers - 1 if workers > 1 and urgent_recent else workers):
        return lambda request: request.priority < URGENT
    if background >= max(1, workers - 1):
        return lambda request: request.priority < BACKGROUND
    return None


def _need_name(priority: int) -> str:
    try:
        return Priority(priority).name.lower()
    except ValueError:
        return str(priority)


def _p95(values: Sequence[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


ModelLoader = Callable[[ModelSlot, ModelSpec | None, Path | None, ServiceOptions], Any]


def load_slot_model(
    slot: ModelSlot, spec: ModelSpec | None, path: Path | None, options: ServiceOptions
) -> Any:
    """The `OnnxDetector` of a slot: the registry's model (or `spec` at `path`, a roll-out); a
    `faces` slot's `CenterFaceDetector`, whose `decode` gives the faces as detections."""
    from edge.analysis.detect.onnx import OnnxDetector
    from edge.runtime.models import load_registry

    spec = spec or load_registry()[slot.model]
    if slot.task == "pose" and spec.layout != "yolov8-pose":
        raise ValueError(f"model {spec.name} is not a pose model (layout {spec.layout})")
    from edge.analysis.detect.centerface import CenterFaceDetector

    model: type[OnnxDetector] | type[CenterFaceDetector] = (
        CenterFaceDetector if slot.task == "faces" else OnnxDetector
    )
    return model.load(
        spec,
        slot.min_score,
        slot.iou,
        slot.providers,
        intra_op_threads=options.threads,
        path=path,
        spinning=options.spinning,
    )


class DetectionService:
    """The service's loop (run in its own process by `serve_forever`)."""

    def __init__(
        self,
        slots: Iterable[ModelSlot],
        options: ServiceOptions = ServiceOptions(),
        loader: ModelLoader = load_slot_model,
    ) -> None:
        self.options = options
        self._loader = loader
        self._slots = list(dict.fromkeys(slots))
        self._models: dict[ModelSlot, Any] = {}
        self._previous: dict[ModelSlot, Any] = {}
        self._queue = RequestQueue()
        self._costs: dict[ModelSlot, float] = {}  # seconds per image, recent runs weighed most
        self._stats = _Stats()
        self._shm: dict[str, shared_memory.SharedMemory] = {}
        self._cameras: dict[Connection, str] = {}
        self._control: Connection | None = None
        self._lock = threading.Lock()  # the connections
        self._work = threading.Condition()  # the queue, the costs, the stats, the models
        self._send_locks: dict[Connection, threading.Lock] = {}
        self._background = 0  # workers running background work now
        self._routine = 0  # workers running anything not urgent now (background included)
        self._last_urgent = float("-inf")  # when urgent work last came (monotonic)
        self._wake_r, self._wake_w = _wake_pipe()

    def load(self) -> dict[str, ModelInfo]:
        """Load every slot's model (refusing a missing or corrupt file)."""
        for slot in self._slots:
            self._models[slot] = self._loader(slot, None, None, self.options)
        return {slot.model: model.info for slot, model in self._models.items()}

    # -- connections ------------------------------------------------------------------------

    def accept_forever(self, listener: Listener, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                conn = listener.accept()
                hello = conn.recv()
            except (OSError, EOFError, ValueError) as error:  # a caller that gave up
                if stop.is_set():
                    return
                logger.warning("detection service: a connection failed: %s", error)
                continue
            except Exception:  # multiprocessing.AuthenticationError and unpicklable garbage
                logger.exception("detection service: refused a connection")
                continue
            if not isinstance(hello, Hello):
                conn.close()
                continue
            with self._lock:
                if hello.client == "control":
                    self._control = conn
                else:
                    self._cameras[conn] = hello.client
            self._wake_w.send_bytes(b".")

    def serve(self, stop: threading.Event) -> None:
        """Answer requests until `stop` is set: this thread reads the connections into the
        queue, `options.workers` threads run what it holds (onnxruntime lets them run at once,
        a core each)."""
        workers = [
            threading.Thread(
                target=self._work_forever, args=(stop,), name=f"infer-{i}", daemon=True
            )
            for i in range(max(1, self.options.workers))
        ]
        for worker in workers:
            worker.start()
        last_stats = time.monotonic()
        try:
            while not stop.is_set():
                with self._lock:
                    conns = [*self._cameras, self._wake_r]
                    if self._control is not None:
                        conns.append(self._control)
                for conn in wait(conns, timeout=0.5):
                    self._drain(conn)  # type: ignore[arg-type]
                now = time.monotonic()
                if now - last_stats >= STATS_EVERY_S:
                    last_stats = now
                    self._send_stats(now)
        finally:
            stop.set()
            with self._work:
                self._work.notify_all()
            for worker in workers:
                worker.join(5)

    def _work_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            with self._work:
                self._work.wait_for(
                    lambda: self._queue.has_work(self._allowed()) or stop.is_set(), 0.5
                )
                if stop.is_set():
                    return
                now = time.monotonic()
                allow = self._allowed()
                batch, shed = self._queue.take(now, self.options.max_batch, self._batchable, allow)
                self._stats.shed += len(shed)  # expired while waiting
                background = bool(batch) and batch[0][1].priority >= BACKGROUND
                routine = bool(batch) and batch[0][1].priority >= URGENT
                self._background += int(background)
                self._routine += int(routine)
            for camera, request in shed:
                self._answer(
                    camera, Reply(request.request_id, "shed", wait_s=now - request.sent_mono)
                )
            if not batch:
                continue
            try:
                self._run(batch)
            finally:
                if routine:
                    with self._work:
                        self._background -= int(background)
                        self._routine -= 1
                        self._work.notify_all()

    def _allowed(self) -> Callable[[Request], bool] | None:
        """What a free worker may start. Background work (the faces of a clip that follows its
        alert) holds at most all workers but one; and while urgent work comes (a fall room's
        pose model on every analysed frame, an alert's snapshot), so does everything that is
        not urgent (the zone analyses): one worker is kept for it, so a frame rule's inference
        never waits for a lane's look to end. A worker left idle costs the lanes little on a
        box this busy: their looks and the urgent ones compete for the same cores anyway."""
        recent = time.monotonic() - self._last_urgent < URGENT_RECENT_S
        return may_start(self.options.workers, self._routine, self._background, recent)

    def _drain(self, conn: Connection) -> None:
        if conn is self._wake_r:
            while conn.poll():
                conn.recv_bytes()
            return
        try:
            while conn.poll():
                message = conn.recv()
                self._handle(conn, message)
        except (EOFError, OSError):
            self._forget(conn)

    def _handle(self, conn: Connection, message: object) -> None:
        if conn is self._control:
            if isinstance(message, Swap):
                self._reply_control(self._swap(message))
            elif isinstance(message, Rollback):
                self._reply_control(self._rollback(message))
            return
        camera = self._cameras.get(conn)
        if camera is None or not isinstance(message, Request):
            return
        now = time.monotonic()
        with self._work:
            waited = now - message.sent_mono
            # admission: a request that could not start before it expires is answered now,
            # so the queue stays short and the camera does not wait for a look it cannot have
            ahead = self._queue.work_ahead(message, self._cost) / max(1, self.options.workers)
            late = message.expires_s is not None and waited + ahead > message.expires_s
            if late:
                self._stats.shed += 1
            else:
                self._queue.push(camera, message, now)
                if message.priority < URGENT:
                    self._last_urgent = now
                self._work.notify()
        if late:
            self._answer(camera, Reply(message.request_id, "shed", wait_s=waited))

    def _forget(self, conn: Connection) -> None:
        with self._lock:
            camera = self._cameras.pop(conn, None)
            if conn is self._control:
                self._control = None
            self._send_locks.pop(conn, None)
        conn.close()
        if camera is not None:
            with self._work:
                gone = self._queue.drop_camera(camera)
            logger.info(
                "detection service: camera %s left (%d requests dropped)", camera, len(gone)
            )

    def _run(self, batch: list[tuple[str, Request]]) -> None:
        slot = batch[0][1].slot
        model = self._models.get(slot)
        if model is None:
            for camera, request in batch:
                self._answer(camera, Reply(request.request_id, "error", error=f"no model {slot}"))
            return
        try:
            images = np.stack([self._image(request) for _, request in batch])
        except (OSError, ValueError) as error:
            for camera, request in batch:
                self._answer(camera, Reply(request.request_id, "error", error=str(error)))
            return
        started = time.monotonic()
        try:
            outputs = model.run_letterboxed(images)
            replies = [
                self._decoded(model, slot, request, output, started)
                for (_, request), output in zip(batch, outputs, strict=True)
            ]
        except Exception as error:  # onnxruntime raises its own untyped errors
            logger.exception(
                "detection service: %s failed on a batch of %d", slot.model, len(batch)
            )
            replies = [Reply(r.request_id, "error", error=str(error)) for _, r in batch]
        run_s = time.monotonic() - started
        with self._work:
            self._stats.runs += 1
            self._stats.images += len(batch)
            self._stats.busy_s += run_s
            per_image = run_s / len(batch)
            self._costs[slot] = (
                per_image
                if slot not in self._costs
                else (COST_WEIGHT * per_image + (1 - COST_WEIGHT) * self._costs[slot])
            )
            for (camera, request), reply in zip(batch, replies, strict=True):
                self._stats.answered(camera, request, reply.wait_s)
        for (camera, _), reply in zip(batch, replies, strict=True):
            self._answer(camera, _with_run(reply, run_s))

    def _cost(self, slot: ModelSlot) -> float:
        """Seconds one image of this slot's model takes to infer, as measured (0 before the
        first run: an unmeasured model is never a reason to shed)."""
        return self._costs.get(slot, 0.0)

    def _decoded(
        self, model: Any, slot: ModelSlot, request: Request, output: Any, started: float
    ) -> Reply:
        wait_s = started - request.sent_mono
        spec = model.spec
        common: dict[str, Any] = {
            "model": model.info,
            "input_wh": spec.input_wh,
            "layout": spec.layout,
            "wait_s": wait_s,
        }
        if slot.task == "pose":
            return Reply(
                request.request_id,
                "ok",
                poses=tuple(model.decode_pose(output, request.box)),
                **common,
            )
        return Reply(
            request.request_id, "ok", detections=tuple(model.decode(output, request.box)), **common
        )

    def _image(self, request: Request) -> Image:
        with self._lock:
            shm = self._shm.get(request.shm)
            if shm is None:
                shm = self._shm[request.shm] = shared_memory.SharedMemory(name=request.shm)
        w, h = request.box.input_w, request.box.input_h
        if request.offset < 0 or request.offset + w * h * 3 > shm.size:
            raise ValueError(f"offset {request.offset} of {request.shm} lies beyond the segment")
        view: Image = np.ndarray((h, w, 3), np.uint8, shm.buf, request.offset)
        return view.copy()

    def _batchable(self, slot: ModelSlot) -> bool:
        model = self._models.get(slot)
        return bool(model is not None and getattr(model, "batchable", False))

    def _answer(self, camera: str, reply: Reply) -> None:
        with self._lock:
            conns = [conn for conn, name in self._cameras.items() if name == camera]
            if not conns:
                return
            conn = conns[-1]  # a camera that reconnected: its newest connection
            send_lock = self._send_locks.setdefault(conn, threading.Lock())
        try:
            with send_lock:
                conn.send(reply)
        except (OSError, ValueError):
            self._forget(conn)

    def _send_stats(self, now: float) -> None:
        with self._work:
            snapshot = self._stats.snapshot(now, len(self._queue), self.options.workers)
            self._stats.reset(now)
        self._reply_control(snapshot)

    def _reply_control(self, message: object) -> None:
        control = self._control
        if control is None:
            return
        try:
            control.send(message)
        except (OSError, ValueError):
            self._forget(control)

    # -- roll-outs ----------------------------------------------------------------------------

    def _swap(self, swap: Swap) -> SwapResult:
        targets = [slot for slot in self._models if slot.model == swap.model_name]
        if not targets:
            return SwapResult(
                swap.model_name, False, None, f"no camera here runs {swap.model_name}"
            )
        try:
            loaded = {
                slot: self._loader(slot, swap.spec, Path(swap.path), self.options)
                for slot in targets
            }
        except Exception as error:  # a file that does not load leaves the old model running
            logger.exception("detection service: roll-out of %s failed", swap.model_name)
            return SwapResult(swap.model_name, False, self._models[targets[0]].info, str(error))
        with self._work:
            for slot, model in loaded.items():
                self._previous[slot] = self._models[slot]
                self._models[slot] = model
        return SwapResult(swap.model_name, True, loaded[targets[0]].info)

    def _rollback(self, rollback: Rollback) -> SwapResult:
        targets = [slot for slot in self._previous if slot.model == rollback.model_name]
        if not targets:
            return SwapResult(rollback.model_name, False, None, "nothing to roll back to")
        with self._work:
            for slot in targets:
                self._models[slot] = self._previous.pop(slot)
        return SwapResult(rollback.model_name, True, self._models[targets[0]].info)

    def close(self) -> None:
        for shm in self._shm.values():
            shm.close()
        self._shm.clear()


def _with_run(reply: Reply, run_s: float) -> Reply:
    if reply.status != "ok":
        return reply
    return Reply(
        reply.request_id,
        reply.status,
        reply.detections,
        reply.poses,
        reply.model,
        reply.input_wh,
        reply.layout,
        reply.wait_s,
        run_s,
        reply.error,
    )


def _wake_pipe() -> tuple[Connection, Connection]:
    from multiprocessing import Pipe

    reader, writer = Pipe(duplex=False)
    return reader, writer


def serve_forever(
    address: str,
    authkey: bytes,
    slots: Sequence[ModelSlot],
    options: ServiceOptions,
    nice: int = 0,
) -> None:
    """The service process's entry point: load the models, listen, answer until the control
    connection asks to stop (or goes away: the supervisor is gone)."""
    from edge.runtime.process import prepare_child

    prepare_child(nice)
    service = DetectionService(slots, options)
    stop = threading.Event()
    with Listener(address, family="AF_UNIX", authkey=authkey) as listener:
        accept = threading.Thread(
            target=service.accept_forever, args=(listener, stop), name="accept", daemon=True
        )
        accept.start()
        try:
            models = service.load()
            ready = Ready(True, models)
        except Exception as error:  # reported to the supervisor, which refuses to start
            logger.exception("detection service: a model could not be loaded")
            ready = Ready(False, error=str(error))
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while service._control is None and time.monotonic() < deadline:
            time.sleep(0.01)
        service._reply_control(ready)
        if not ready.ok:
            return
        watchdog = threading.Thread(
            target=_stop_without_control, args=(service, stop), name="watchdog", daemon=True
        )
        watchdog.start()
        try:
            service.serve(stop)
        finally:
            stop.set()
            service.close()


def _stop_without_control(service: DetectionService, stop: threading.Event) -> None:
    """The supervisor holds the control connection for the service's whole life: once it is
    gone (the supervisor stopped or died), the service stops too."""
    had = False
    while not stop.wait(0.5):
        with service._lock:
            present = service._control is not None
        had = had or present
        if had and not present:
            stop.set()
        if os.getppid() == 1:  # orphaned
            stop.set()


# ------------------------------------------------------------------------------ the client


class DetectionClient:
    """A camera's end of the service: requests over its connection, images through its own
    shared-memory slots; several threads of the camera may ask at once."""

    def __init__(
        self,
        address: str,
        authkey: bytes,
        camera_id: str,
        specs: dict[str, ModelSpec],
        slots: int = 6,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        reply_timeout_s: float = REPLY_TIMEOUT_S,
    ) -> None:
        self.camera_id = camera_id
        self._address = address
        self._authkey = authkey
        self._specs = dict(specs)
        self._reply_timeout_s = reply_timeout_s
        self._slot_bytes = max(
            (s.input_wh[0] * s.input_wh[1] * 3 for s in specs.values()), default=1
        )
        self._shm = shared_memory.SharedMemory(create=True, size=self._slot_bytes * slots)
        self._free: deque[int] = deque(range(slots))
        self._free_cond = threading.Condition()
        self._pending: dict[int, ClientPending] = {}
        self._ids = itertools.count(1)
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._closed = False
        self._conn: Connection | None = None
        self.waits: deque[float] = deque(maxlen=512)  # seconds each answered request took
        self.unanswered = 0
        self._connect(connect_timeout_s)
        self._reader = threading.Thread(target=self._read, name="detector-replies", daemon=True)
        self._reader.start()

    @property
    def shm_name(self) -> str:
        return self._shm.name

    def _connect(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                conn = Client(self._address, family="AF_UNIX", authkey=self._authkey)
                conn.send(Hello(self.camera_id))
                self._conn = conn
                return
            except (OSError, EOFError) as error:
                if time.monotonic() >= deadline or self._closed:
                    raise InferenceUnavailable(
                        f"the detection service at {self._address} cannot be reached: {error}"
                    ) from error
                time.sleep(0.2)

    def infer(self, slot: ModelSlot, image: Image, need: Need) -> Reply:
        """Run `slot`'s model on `image` (BGR HxWx3); blocks until answered.

        Raises:
            InferenceUnavailable: shed, failed, or the service is out of reach.
        """
        pending = self.submit(slot, image, need)
        if not pending.wait(self._reply_timeout_s):
            raise InferenceUnavailable(
                f"{slot.model}: no answer from the detection service in "
                f"{self._reply_timeout_s:.0f} s"
            )
        reply = pending.reply
        assert reply is not None  # noqa: S101 - answered
        if reply.status != "ok":
            raise InferenceUnavailable(f"{slot.model}: {reply.status} {reply.error}".strip())
        return reply

    def submit(self, slot: ModelSlot, image: Image, need: Need) -> ClientPending:
        """Ask for `slot`'s model on `image` (BGR HxWx3) and return at once; the answer comes
        on the reader thread. A request that cannot be sent is answered `error` at once."""
        spec = self._spec(slot.model)
        padded, box = letterbox_image(image, spec.input_wh, spec.layout)
        pending = ClientPending(slot)
        if padded.nbytes > self._slot_bytes:
            pending.answer(Reply(0, "error", error="the input exceeds the shared-memory slot"))
            return pending
        try:
            index = self._take_slot()
        except InferenceUnavailable as error:
            pending.answer(Reply(0, "error", error=str(error)))
            return pending
        view: Image = np.ndarray(padded.shape, np.uint8, self._shm.buf, index * self._slot_bytes)
        view[...] = padded
        request_id = next(self._ids)
        pending.slot_index = index
        with self._lock:
            self._pending[request_id] = pending
        request = Request(
            request_id,
            slot,
            int(need.priority),
            need.expires_s,
            self._shm.name,
            index * self._slot_bytes,
            box,
            pending.sent_mono,
        )
        try:
            self._send(request)
        except InferenceUnavailable as error:
            self._answer(request_id, Reply(request_id, "error", error=str(error)))
        return pending

    def _answer(self, request_id: int, reply: Reply) -> None:
        with self._lock:
            pending = self._pending.pop(request_id, None)
        if pending is None:
            return
        if pending.slot_index is not None:
            self._give_slot(pending.slot_index)
            pending.slot_index = None
        if reply.status == "ok":
            self.waits.append(time.monotonic() - pending.sent_mono)
            spec = self._specs.get(pending.slot.model)
            if spec is not None and reply.input_wh is not None and reply.input_wh != spec.input_wh:
                # a roll-out changed the model's input size: later requests fit the new one
                self._specs[pending.slot.model] = spec.model_copy(
                    update={"input_wh": reply.input_wh, "layout": reply.layout or spec.layout}
                )
        pending.answer(reply)

    def _spec(self, model: str) -> ModelSpec:
        spec = self._specs.get(model)
        if spec is None:
            raise InferenceUnavailable(f"model {model} was not announced to this camera")
        return spec

    def _send(self, request: Request) -> None:
        with self._send_lock:
            if self._conn is None:
                raise InferenceUnavailable("not connected to the detection service")
            try:
                self._conn.send(request)
            except (OSError, ValueError) as error:
                raise InferenceUnavailable(f"the detection service went away: {error}") from error

    def _read(self) -> None:
        while not self._closed:
            conn = self._conn
            try:
                assert conn is not None  # noqa: S101
                reply = conn.recv()
            except (EOFError, OSError, AssertionError):
                if self._closed:
                    return
                self._fail_pending("the detection service went away")
                self._reconnect()
                continue
            if isinstance(reply, Reply):
                self._answer(reply.request_id, reply)

    def _reconnect(self) -> None:
        with self._send_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        while not self._closed:
            try:
                conn = Client(self._address, family="AF_UNIX", authkey=self._authkey)
                conn.send(Hello(self.camera_id))
            except (OSError, EOFError):
                time.sleep(0.5)
                continue
            with self._send_lock:
                self._conn = conn
            logger.info("camera %s: connected to the detection service again", self.camera_id)
            return

    def _fail_pending(self, why: str) -> None:
        with self._lock:
            ids = list(self._pending)
        for request_id in ids:
            self._answer(request_id, Reply(request_id, "error", error=why))

    def _take_slot(self) -> int:
        with self._free_cond:
            while not self._free:
                if not self._free_cond.wait(self._reply_timeout_s):
                    raise InferenceUnavailable("every shared-memory slot is in use")
            return self._free.popleft()

    def _give_slot(self, index: int) -> None:
        with self._free_cond:
            self._free.append(index)
            self._free_cond.notify()

    def close(self) -> None:
        self._closed = True
        self._fail_pending("closing")
        with self._send_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        self._shm.close()
        with contextlib.suppress(FileNotFoundError):
            self._shm.unlink()


class ClientPending:
    """A request of a camera to the service, answered on the client's reader thread."""

    def __init__(self, slot: ModelSlot) -> None:
        self.slot = slot
        self.sent_mono = time.monotonic()
        self.slot_index: int | None = None
        self.reply: Reply | None = None
        self._done = threading.Event()

    def answer(self, reply: Reply) -> None:
        self.reply = reply
        self._done.set()

    def wait(self, timeout_s: float) -> bool:
        return self._done.wait(max(0.0, timeout_s))
