"""The box's supervisor: a process per camera, one detection service, restarts, and the load.

`zhizhi edge run` starts the box's processes from here (forked from a clean fork server,
never from this threaded process):

* the detection service (edge.runtime.detection): every model of every camera, one queue in
  order of need; it loads every model before any camera starts, so a missing or corrupt model
  refuses the start;
* a process per camera (edge.runtime.camera): decoding, the camera's lanes and recorder. Cameras
  with every-frame rules (falls) run at normal priority, cameras with zone rules only at a lower
  one, so that when the box is short of CPU the falls keep their frames;
* here, in the main process: delivery (outbox, MQTT, uploads, JSONL), the load report.

A camera process that dies (a decoder that crashes, a bug) is restarted alone, with capped
backoff; the others go on. Every `report_every_s` the supervisor turns the counters the cameras
and the service report into each camera's load and coverage (edge.runtime.load): into the
retained status message, the edge's /metrics, and one log line.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Client, Connection, wait
from multiprocessing.context import ForkServerProcess
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

from pydantic import ValidationError

from common.config import SiteConfig
from common.events import BoxLoad, CameraLoad, DetectorLoad, Event, LoadState, ModelInfo
from edge.capture.sources import Backoff
from edge.errors import EdgeError
from edge.runtime import procfs
from edge.runtime.camera import (
    STOP,
    CameraEvent,
    CameraFailed,
    CameraJob,
    CameraOnline,
    CameraReport,
    CameraStarted,
    camera_slots,
    run_camera,
)
from edge.runtime.detection import (
    Hello,
    ModelSlot,
    Ready,
    Rollback,
    ServiceOptions,
    ServiceStats,
    Swap,
    SwapResult,
    serve_forever,
)
from edge.runtime.load import CameraCounters, box_load, camera_load, summary_line
from edge.runtime.models import ModelSpec
from edge.runtime.process import child_environment

logger = logging.getLogger(__name__)

# cameras without every-frame rules yield the CPU to those with them and to the detection
# service (whose most urgent work is the frame rules'): on a box short of CPU the zone rules,
# which wait minutes before an alert, are the ones that hold their judgement
ZONE_CAMERA_NICE = 10
READY_TIMEOUT_S = 180.0  # the detection service loads every model within this
STOP_TIMEOUT_S = 10.0
RESET_BACKOFF_AFTER_S = 300.0
PRELOAD = ["edge.runtime.camera", "edge.runtime.detection", "edge.analysis.detect.onnx"]


class BoxStartError(EdgeError):
    """The box cannot start (the detection service could not load a model)."""


@dataclass(frozen=True, slots=True)
class BoxOptions:
    evidence_dir: Path | None = Path("./zhizhi-evidence")
    detector_threads: int = 1  # onnxruntime threads per inference in the detection service
    detector_workers: int = 2  # inferences the detection service runs at once
    max_batch: int = 4  # requests for one model run together (when the model takes batches)
    report_every_s: float = 10.0  # status, /metrics and the log line
    loop_files: bool = True  # a camera whose source is a file plays it in a loop
    restart_initial_s: float = 2.0
    restart_max_s: float = 60.0
    log_level: int = logging.INFO


@dataclass
class _Camera:
    """The supervisor's view of one camera process."""

    camera_id: str
    job: CameraJob
    target_fps: float | None
    backoff: Backoff
    process: ForkServerProcess | None = None
    conn: Connection | None = None
    state: str = "starting"  # starting, running, restarting, failed, finished
    restarts: int = 0
    started_mono: float = 0.0
    next_start_mono: float = 0.0
    shm_name: str | None = None
    pid: int | None = None
    latest: CameraCounters | None = None
    window_start: CameraCounters | None = None
    window_waits: list[float] = field(default_factory=list)  # detections answered, this window
    window_gaps: dict[str, float] = field(default_factory=dict)  # longest gap per lane
    problems: frozenset[str] = frozenset()  # the problem codes of the last report
    online: bool = False
    last_error: str = ""


@dataclass
class _ServiceLink:
    """The supervisor's control connection to the detection service."""

    conn: Connection
    results: queue.SimpleQueue[SwapResult] = field(default_factory=queue.SimpleQueue)
    stats: list[ServiceStats] = field(default_factory=list)  # since the last load report


EventHandler = Callable[[Event], None]
StatusHandler = Callable[[str, bool, str, str], None]  # camera id, online, reason, reason code
LoadHandler = Callable[[dict[str, CameraLoad], BoxLoad], None]


class Supervisor:
    """Starts, watches and restarts the box's processes (see the module docstring)."""

    def __init__(
        self,
        site: SiteConfig,
        camera_ids: Sequence[str],
        options: BoxOptions,
        on_event: EventHandler,
        on_status: StatusHandler,
        on_load: LoadHandler,
    ) -> None:
        self.site = site
        self.options = options
        self._on_event = on_event
        self._on_status = on_status
        self._on_load = on_load
        # children are forked from a fork server that loaded the runtime's modules once (never
        # from this process, whose threads a fork would copy in whatever state): they start in
        # a fraction of a second and share those modules' memory
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(PRELOAD)
        self._stopping = False
        self._folder = Path(tempfile.mkdtemp(prefix="zhizhi-box-"))
        self._address = str(self._folder / "detector.sock")
        self._authkey = secrets.token_bytes(32)
        self._service: ForkServerProcess | None = None
        self._link: _ServiceLink | None = None
        self._link_lock = threading.Lock()
        self._service_backoff = Backoff(initial_s=1.0, max_s=30.0)
        self._service_next_mono = 0.0
        self.models: dict[str, ModelInfo] = {}
        self.cameras: dict[str, _Camera] = {}
        for camera_id in camera_ids:
            camera = site.camera(camera_id)
            frame_rules = any(
                r.enabled and r.type in ("falling_object", "person_fall") for r in camera.rules
            )
            zone_rules = any(
                r.enabled and r.type in ("fire_lane", "garbage_pile") for r in camera.rules
            )
            job = CameraJob(
                site,
                camera_id,
                options.evidence_dir,
                self._address,
                self._authkey,
                nice=0 if frame_rules else ZONE_CAMERA_NICE,
                loop_files=options.loop_files,
                log_level=options.log_level,
            )
            self.cameras[camera_id] = _Camera(
                camera_id,
                job,
                camera.detect_fps if zone_rules else None,
                Backoff(initial_s=options.restart_initial_s, max_s=options.restart_max_s),
            )
        self.slots = list(
            dict.fromkeys(slot for cid in camera_ids for slot in camera_slots(site, cid))
        )
        self._last_report = time.monotonic()
        self._box_cpu = procfs.box_cpu_times()
        self._process_cpu: dict[int, float] = {}
        self.loads: dict[str, CameraLoad] = {}
        self.box: BoxLoad | None = None

    # -- start and stop ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the detection service (every model loaded) and then every camera.

        Raises:
            BoxStartError: the service could not load a model, or did not answer.
        """
        for name, value in child_environment().items():
            os.environ.setdefault(name, value)  # spawned children read it at import
        self._start_service(wait_ready=True)
        for camera in self.cameras.values():
            self._start_camera(camera)

    def _start_service(self, wait_ready: bool) -> None:
        options = ServiceOptions(
            threads=self.options.detector_threads,
            workers=self.options.detector_workers,
            max_batch=self.options.max_batch,
        )
        process = self._ctx.Process(
            target=serve_forever,
            args=(self._address, self._authkey, self.slots, options),
            name="detector",
            daemon=True,
        )
        process.start()
        self._service = process
        conn = self._connect_control(process)
        ready = self._await_ready(conn, process)
        if not ready.ok:
            process.join(5)
            message = f"the detection service could not load its models: {ready.error}"
            if wait_ready:
                raise BoxStartError(message)
            logger.error(message)
            return
        self.models = dict(ready.models)
        link = _ServiceLink(conn)
        with self._link_lock:
            self._link = link
        threading.Thread(
            target=self._read_service, args=(link,), name="service", daemon=True
        ).start()
        logger.info(
            "detection service ready (pid %s): %s",
            process.pid,
            ", ".join(f"{s.model}/{s.task}" for s in self.slots) or "no model",
        )

    def _connect_control(self, process: ForkServerProcess) -> Connection:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                conn = Client(self._address, family="AF_UNIX", authkey=self._authkey)
                conn.send(Hello("control"))
                return conn
            except (OSError, EOFError) as error:
                if not process.is_alive() or time.monotonic() > deadline:
                    raise BoxStartError(
                        f"the detection service did not start (exit code {process.exitcode}): "
                        f"{error}"
                    ) from error
                time.sleep(0.1)

    def _await_ready(self, conn: Connection, process: ForkServerProcess) -> Ready:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if conn.poll(0.2):
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    break
                if isinstance(message, Ready):
                    return message
            elif not process.is_alive():
                break
        return Ready(False, error=f"no answer (exit code {process.exitcode})")

    def _read_service(self, link: _ServiceLink) -> None:
        while True:
            try:
                message = link.conn.recv()
            except (EOFError, OSError, TypeError):  # TypeError: closed by `close()` meanwhile
                return
            if isinstance(message, ServiceStats):
                link.stats.append(message)
            elif isinstance(message, SwapResult):
                link.results.put(message)

    def _start_camera(self, camera: _Camera) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=run_camera,
            args=(camera.job, child),
            name=f"camera:{camera.camera_id}",
            daemon=True,
        )
        process.start()
        child.close()  # the parent keeps only its end: EOF once the camera is gone
        camera.process, camera.conn = process, parent
        camera.state = "starting"
        camera.started_mono = time.monotonic()
        camera.latest = camera.window_start = None
        camera.pid = process.pid

    def close(self) -> None:
        """Stop every camera (they send what they hold), then the service."""
        self._stopping = True
        for camera in self.cameras.values():
            if camera.conn is not None:
                with contextlib.suppress(OSError, ValueError):
                    camera.conn.send(STOP)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline and any(
            c.process is not None and c.process.is_alive() for c in self.cameras.values()
        ):
            self.step(0.2)  # keep reading: the last events come while the cameras stop
        for camera in self.cameras.values():
            self.step(0.0)
            if camera.process is not None and camera.process.is_alive():
                logger.warning("camera %s did not stop in time; terminated", camera.camera_id)
                camera.process.terminate()
                camera.process.join(2)
            self._forget_shm(camera)
        with self._link_lock:
            link, self._link = self._link, None
        if link is not None:
            link.conn.close()  # the service stops once its control connection is gone
        if self._service is not None:
            self._service.join(5)
            if self._service.is_alive():
                self._service.terminate()
        shutil.rmtree(self._folder, ignore_errors=True)

    # -- the loop -----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Supervise until `stop` is set (or every camera's file source has ended)."""
        while not stop.is_set():
            self.step(0.5)
            if all(c.state in ("finished", "failed") for c in self.cameras.values()):
                break

    def step(self, timeout_s: float) -> None:
        """One round: read what the cameras sent, restart the dead, report the load."""
        conns = {c.conn: c for c in self.cameras.values() if c.conn is not None}
        for conn in wait(list(conns), timeout=timeout_s) if conns else []:
            self._read(conns[conn])  # type: ignore[index]
        if not conns and timeout_s:
            time.sleep(timeout_s)
        now = time.monotonic()
        if not self._stopping:
            for camera in self.cameras.values():
                self._watch(camera, now)
            self._watch_service(now)
        if now - self._last_report >= self.options.report_every_s:
            self.report(now)

    def _read(self, camera: _Camera) -> None:
        assert camera.conn is not None  # noqa: S101
        try:
            while camera.conn.poll():
                self._handle(camera, camera.conn.recv())
        except (EOFError, OSError):
            camera.conn.close()
            camera.conn = None

    def _handle(self, camera: _Camera, message: object) -> None:
        if isinstance(message, CameraEvent):
            try:
                event = Event.model_validate_json(message.event_json)
            except ValidationError:
                logger.exception("camera %s sent an invalid event", camera.camera_id)
                return
            self._on_event(event)
        elif isinstance(message, CameraReport):
            counters = message.counters
            camera.latest = counters
            if camera.window_start is None:
                camera.window_start = counters
            camera.window_waits.extend(counters.detector_waits_s)
            for name, lane in counters.lanes.items():
                camera.window_gaps[name] = max(camera.window_gaps.get(name, 0.0), lane.max_gap_s)
            if camera.state == "starting":
                camera.state = "running"
        elif isinstance(message, CameraOnline):
            camera.online = message.online
            self._on_status(message.camera_id, message.online, message.reason, message.reason_code)
        elif isinstance(message, CameraStarted):
            camera.shm_name = message.shm_name
            camera.pid = message.pid
        elif isinstance(message, CameraFailed):
            camera.last_error = message.error

    def _watch(self, camera: _Camera, now: float) -> None:
        process = camera.process
        if camera.state in ("finished", "failed"):
            return
        if camera.state == "restarting":
            if now >= camera.next_start_mono:
                self._start_camera(camera)
            return
        if process is None or process.is_alive():
            return
        if camera.conn is not None:
            self._read(camera)  # what it sent before it went
        self._forget_shm(camera)
        if now - camera.started_mono > RESET_BACKOFF_AFTER_S:
            camera.backoff.reset()  # it ran a good while: a new trouble, not a crash loop
        code = process.exitcode
        if code == 0 and not camera.last_error:
            camera.state = "finished"  # a file played to its end (no loop)
            logger.info("camera %s: its source ended", camera.camera_id)
            return
        camera.restarts += 1
        delay = camera.backoff.next_s()
        camera.state = "restarting"
        camera.next_start_mono = now + delay
        why = camera.last_error or f"exit code {code}"
        camera.last_error = ""
        logger.error(
            "camera %s: its worker stopped (%s); restarting it alone in %.0f s (restart %d)",
            camera.camera_id,
            why,
            delay,
            camera.restarts,
        )
        self._on_status(
            camera.camera_id, False, f"worker stopped ({why}); restarting", "worker_restarting"
        )

    def _watch_service(self, now: float) -> None:
        service = self._service
        if service is None or service.is_alive() or now < self._service_next_mono:
            return
        logger.error(
            "the detection service stopped (exit code %s); starting it again", service.exitcode
        )
        with self._link_lock:
            if self._link is not None:
                self._link.conn.close()
                self._link = None
        try:
            self._start_service(wait_ready=False)
            self._service_backoff.reset()
        except BoxStartError:
            logger.exception("the detection service could not be started again")
        self._service_next_mono = time.monotonic() + self._service_backoff.next_s()

    def _forget_shm(self, camera: _Camera) -> None:
        """A camera process that died cannot unlink its shared memory: the supervisor does."""
        if camera.shm_name is None:
            return
        with contextlib.suppress(FileNotFoundError, OSError):
            shm = SharedMemory(name=camera.shm_name)
            shm.close()
            shm.unlink()
        camera.shm_name = None

    # -- the load ------------------------------------------------------------------------------

    def report(self, now: float | None = None) -> None:
        """Turn the window's counters into each camera's load and the box's; hand them on."""
        now = time.monotonic() if now is None else now
        window = max(1e-6, now - self._last_report)
        self._last_report = now
        loads: dict[str, CameraLoad] = {}
        for camera in self.cameras.values():
            override: LoadState | None = (
                "starting"
                if camera.state == "starting"
                else "restarting"
                if camera.state == "restarting"
                else None
            )
            if camera.latest is None:
                loads[camera.camera_id] = CameraLoad(
                    window_s=round(window, 2),
                    state=override or "starting",
                    restarts=camera.restarts,
                    target_analysis_fps=camera.target_fps,
                )
                continue
            latest = replace(
                camera.latest,
                detector_waits_s=tuple(camera.window_waits),
                lanes={
                    name: replace(lane, max_gap_s=camera.window_gaps.get(name, lane.max_gap_s))
                    for name, lane in camera.latest.lanes.items()
                },
            )
            camera.window_waits, camera.window_gaps = [], {}
            loads[camera.camera_id] = camera_load(
                latest,
                camera.window_start if camera.window_start is not camera.latest else None,
                target_analysis_fps=camera.target_fps,
                restarts=camera.restarts,
                state_override=override,
            )
            camera.window_start = camera.latest
        for camera_id, camera_load_ in loads.items():
            self._tell_problems(self.cameras[camera_id], camera_load_)
        with self._link_lock:
            stats = self._link.stats[:] if self._link is not None else []
            if self._link is not None:
                self._link.stats.clear()
        detector = _merge(stats)
        self.loads = loads
        self.box = self._box_load(window, detector, loads)
        logger.info("%s", summary_line(loads, self.box))
        try:
            self._on_load(loads, self.box)
        except Exception:  # a sink's trouble is its own; the supervisor carries on
            logger.exception("the load report could not be handed on")

    def _tell_problems(self, camera: _Camera, load: CameraLoad) -> None:
        """Log a camera's problems once per change, with their reasons (not every report)."""
        codes = frozenset(problem.code for problem in load.problems)
        if codes == camera.problems:
            return
        gone, came = camera.problems - codes, codes - camera.problems
        camera.problems = codes
        for problem in load.problems:
            if problem.code in came:
                logger.warning("camera %s: %s (%s)", camera.camera_id, problem.code, problem.detail)
        if gone:
            logger.info("camera %s: no longer %s", camera.camera_id, ", ".join(sorted(gone)))

    def _box_load(
        self, window: float, detector: DetectorLoad | None, loads: dict[str, CameraLoad]
    ) -> BoxLoad:
        cpu_now = procfs.box_cpu_times()
        share = 0.0
        if cpu_now is not None and self._box_cpu is not None:
            total = cpu_now.total_s - self._box_cpu.total_s
            share = (cpu_now.busy_s - self._box_cpu.busy_s) / total if total > 0 else 0.0
        self._box_cpu = cpu_now
        pids = [os.getpid()]
        pids += [c.pid for c in self.cameras.values() if c.pid is not None]
        pids += [self._service.pid] if self._service is not None and self._service.pid else []
        used = 0.0
        memory = 0.0
        for pid in pids:
            cpu = procfs.process_cpu_s(pid)
            if cpu is not None:
                used += max(0.0, cpu - self._process_cpu.get(pid, cpu))
                self._process_cpu[pid] = cpu
            memory += procfs.process_pss_mb(pid) or 0.0
        return box_load(
            window,
            procfs.cores(),
            share,
            used / window,
            memory,
            procfs.memory_available_mb(),
            procfs.load1(),
            detector,
            loads,
        )

    # -- roll-outs -----------------------------------------------------------------------------

    def swap(
        self, model_name: str, spec: ModelSpec, path: Path, timeout_s: float = 120.0
    ) -> SwapResult:
        """Run the model file at `path` for every camera configured with `model_name`."""
        return self._control(Swap(model_name, spec, str(path)), model_name, timeout_s)

    def rollback(self, model_name: str, timeout_s: float = 60.0) -> SwapResult:
        return self._control(Rollback(model_name), model_name, timeout_s)

    def _control(self, message: Swap | Rollback, model_name: str, timeout_s: float) -> SwapResult:
        with self._link_lock:
            link = self._link
        if link is None:
            return SwapResult(model_name, False, None, "the detection service is not running")
        link.conn.send(message)
        try:
            return link.results.get(timeout=timeout_s)
        except queue.Empty:
            return SwapResult(model_name, False, None, "the detection service did not answer")


def _merge(stats: Sequence[ServiceStats]) -> DetectorLoad | None:
    """The detection service's windows since the last report, as one."""
    if not stats:
        return None
    total = sum(s.window_s for s in stats)
    if total <= 0:
        return stats[-1].load
    runs = sum(s.load.runs_per_s * s.window_s for s in stats)
    images = sum(s.load.images_per_s * s.window_s for s in stats)
    return DetectorLoad(
        runs_per_s=round(runs / total, 2),
        images_per_s=round(images / total, 2),
        busy=round(min(1.0, sum(s.load.busy * s.window_s for s in stats) / total), 3),
        queue=stats[-1].load.queue,
        wait_p95_ms=round(max(s.load.wait_p95_ms for s in stats), 1),
        batch_mean=round(images / runs, 2) if runs else 0.0,
        shed=sum(s.load.shed for s in stats),
        wait_p95_ms_by_need={
            need: max(s.load.wait_p95_ms_by_need.get(need, 0.0) for s in stats)
            for need in {n for s in stats for n in s.load.wait_p95_ms_by_need}
        },
        runs_by_need={
            need: sum(s.load.runs_by_need.get(need, 0) for s in stats)
            for need in {n for s in stats for n in s.load.runs_by_need}
        },
    )


__all__ = ["BoxOptions", "BoxStartError", "ModelSlot", "Supervisor"]
