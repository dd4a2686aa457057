"""`zhizhi edge run`: the production edge worker.

One analysis thread per camera (`camera:{id}`) owns that camera's pipeline; a reader thread per
camera (`reader:{id}`) keeps only the newest frame. A camera thread that fails is restarted with
capped backoff, never in a tight loop. Events go to the configured sinks: a JSONL file and/or
the MQTT broker at QoS 1 (contract section 4).
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from common.config import CameraConfig, DetectorConfig, SiteConfig
from common.events import Event
from edge.analysis.detect.base import Detector
from edge.analysis.pipeline import CameraPipeline, build_frame_rules, build_rules, load_redactor
from edge.capture.sources import Backoff, open_source
from edge.delivery.mqtt import EventSink, JsonlSink, MqttSink
from edge.delivery.outbox import GIB, Outbox
from edge.delivery.upload import EvidenceUploader
from edge.evidence.store import DirectoryStore
from edge.offline.replay import load_detector
from edge.runtime.rollout import CommandListener, RolloutManager

logger = logging.getLogger(__name__)

STATS_EVERY_S = 60.0


def default_edge_id() -> str:
    name = socket.gethostname().lower()
    cleaned = "".join(c if c.isalnum() or c == "-" else "-" for c in name).strip("-")
    return cleaned or "edge"


class CameraWorker:
    """Runs one camera until `stop` is set; restarts its analysis after a failure."""

    def __init__(
        self,
        site: SiteConfig,
        camera: CameraConfig,
        sinks: Sequence[EventSink],
        evidence_dir: Path,
        stop: threading.Event,
        prepare: Callable[[Event], Event] | None = None,
        detectors: Callable[[DetectorConfig], Detector] = load_detector,
    ) -> None:
        self.site = site
        self.camera = camera
        self.sinks = sinks
        self.evidence = DirectoryStore(evidence_dir / camera.id)
        self.stop = stop
        self.prepare = prepare
        self.detectors = detectors  # swappable ones when roll-outs are on (edge.runtime.rollout)
        self._detector: Detector | None = None
        self.thread = threading.Thread(target=self._supervise, name=f"camera:{camera.id}")
        self._log = logging.getLogger(f"edge.camera.{camera.id}")

    def start(self) -> None:
        self.thread.start()

    def _supervise(self) -> None:
        backoff = Backoff(initial_s=2.0, max_s=60.0)
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                self._run()
            except Exception:
                self._log.exception("analysis failed; restarting")
            if time.monotonic() - started > 300:
                backoff.reset()
            if not self.stop.is_set():
                self.stop.wait(backoff.next_s())

    def _run(self) -> None:
        detector = self._detector = self.detectors(self.camera.detector)
        pipeline = CameraPipeline(self.site, self.camera, detector, self.evidence)
        source = open_source(
            self.site.resolve_source(self.camera),
            self.camera.id,
            on_status=self._on_status,
            stop_event=self.stop,
        )
        last_stats = time.monotonic()
        try:
            while not self.stop.is_set() and not source.finished:
                frame = source.take(timeout_s=1.0)
                if frame is None:
                    continue
                for event in pipeline.process(frame):
                    self._emit(event)
                if time.monotonic() - last_stats >= STATS_EVERY_S:
                    last_stats = time.monotonic()
                    self._log.info("stats: %s source=%s", pipeline.stats, source.stats())
        finally:
            source.close()
            for event in pipeline.finish():  # messages waiting for their clip's post-roll
                self._emit(event)

    def _emit(self, event: Event) -> None:
        if self.prepare is not None:
            event = self.prepare(event)  # never raises
        if self._detector is not None and event.model != self._detector.info:
            event = event.model_copy(update={"model": self._detector.info})  # after a roll-out
        self._log.info(
            "event %s %s rule=%s zone=%s onset=%.1fs",
            event.type,
            event.state,
            event.rule_id,
            event.zone_id,
            event.onset_pts_s,
        )
        for sink in self.sinks:
            try:
                sink.send(event)
            except Exception:
                self._log.exception("sink %s failed for event %s", sink, event.event_id)

    def _on_status(self, camera_id: str, online: bool, reason: str) -> None:
        if online:
            self._log.info("camera %s online", camera_id)
        else:
            self._log.warning("camera %s offline: %s", camera_id, reason)
        for sink in self.sinks:
            sink.camera_status(camera_id, online, reason)


@dataclass(frozen=True, slots=True)
class EdgeOptions:
    """How `zhizhi edge run` delivers what it finds."""

    evidence_dir: Path = Path("./zhizhi-evidence")
    events_out: Path | None = None  # also append every event to this JSONL file
    mqtt_url: str | None = None  # publish to this broker (contract topics, QoS 1)
    edge_id: str | None = None  # default: the host name
    outbox_path: Path = Path("./zhizhi-outbox.sqlite")  # events not yet acked by the server
    outbox_quota_gib: float = 2.0
    server_url: str | None = None  # upload evidence files to this server
    token: str | None = None  # bearer token (role edge) for the uploads
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    keep_evidence: bool = False  # keep local evidence files after upload
    model_dir: Path = Path("./zhizhi-models")  # models downloaded by roll-outs (with --mqtt)


def run_edge(
    site: SiteConfig,
    camera_ids: Sequence[str],
    options: EdgeOptions,
    stop: threading.Event | None = None,
    install_signals: bool = True,
) -> None:
    """Run the chosen cameras (all enabled ones when none is named) until stopped."""
    cameras = (
        [site.camera(i) for i in camera_ids]
        if camera_ids
        else [c for c in site.cameras if c.enabled]
    )
    for camera in cameras:
        build_rules(camera)  # refuse an unsupported rule before anything starts
        build_frame_rules(camera)  # and a model a frame rule needs that is missing
        if options.evidence_dir is not None:
            load_redactor(camera)  # and evidence that would show faces it should hide
        load_detector(camera.detector)  # refuse a missing or corrupt model at start-up
    stop = stop or threading.Event()
    if install_signals:
        _stop_on_signals(stop)
    delivery = Delivery(site, options)
    workers = [
        CameraWorker(
            site,
            camera,
            delivery.sinks,
            options.evidence_dir,
            stop,
            delivery.prepare,
            delivery.detector_for,
        )
        for camera in cameras
    ]
    for worker in workers:
        worker.start()
    logger.info("edge running %d camera(s) of site %s", len(workers), site.site.id)
    try:
        while not stop.wait(1.0):
            if not any(worker.thread.is_alive() for worker in workers):
                break
    finally:
        stop.set()
        for worker in workers:
            worker.thread.join(timeout=10)
        delivery.close()


class Delivery:
    """The sinks, the durable outbox and the evidence uploader of one edge run."""

    def __init__(self, site: SiteConfig, options: EdgeOptions) -> None:
        self.sinks: list[EventSink] = []
        self.outbox: Outbox | None = None
        self.uploader: EvidenceUploader | None = None
        if options.mqtt_url is not None or options.server_url is not None:
            quota = int(options.outbox_quota_gib * GIB)
            self.outbox = Outbox(options.outbox_path, quota_bytes=quota)
        if options.server_url is not None and self.outbox is not None:
            self.uploader = EvidenceUploader(
                options.server_url,
                options.token or "",
                self.outbox,
                delete_after_upload=not options.keep_evidence,
            )
        if options.events_out is not None:
            self.sinks.append(JsonlSink(options.events_out))
        if options.mqtt_url is not None and self.outbox is not None:
            self.sinks.append(
                MqttSink(
                    options.mqtt_url,
                    site.site.id,
                    options.edge_id or default_edge_id(),
                    self.outbox,
                    username=options.mqtt_username,
                    password=options.mqtt_password,
                )
            )
        self.rollout: RolloutManager | None = None
        self.commands: CommandListener | None = None
        if options.mqtt_url is not None:
            mqtt_sinks = [sink for sink in self.sinks if isinstance(sink, MqttSink)]
            self.rollout = RolloutManager(
                options.model_dir,
                token=options.token or "",
                on_status=mqtt_sinks[0].set_models if mqtt_sinks else None,
            )
            self.commands = CommandListener(
                options.mqtt_url,
                site.site.id,
                options.edge_id or default_edge_id(),
                self.rollout,
                username=options.mqtt_username,
                password=options.mqtt_password,
            )

    def detector_for(self, config: DetectorConfig) -> Detector:
        """The camera's detector; swappable by roll-out commands when MQTT is on."""
        if self.rollout is None:
            return load_detector(config)
        detector = self.rollout.detector_for(config, lambda: load_detector(config))
        if self.rollout.on_status is not None:
            self.rollout.on_status(self.rollout.status())
        return detector

    def prepare(self, event: Event) -> Event:
        """Register the event's evidence for upload and point its urls at the server."""
        return self.uploader.prepare(event) if self.uploader is not None else event

    def close(self) -> None:
        if self.commands is not None:
            self.commands.close()
        for sink in self.sinks:
            sink.close()
        if self.uploader is not None:
            self.uploader.close()
        if self.outbox is not None:
            self.outbox.close()


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        logger.info("signal %d: stopping", signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)
