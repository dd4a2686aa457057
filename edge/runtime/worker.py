"""`zhizhi edge run`: the production edge worker.

The box runs a process per camera and one detection service, started, watched and restarted by
the supervisor (edge.runtime.supervisor; docs/edge-runtime.md). Here, in the main process:
delivery (the durable outbox, MQTT at QoS 1 with server acks, evidence upload, a JSONL file),
model roll-outs, and the load report: the retained status message, `/metrics` for Prometheus
and one log line every report interval.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from common.config import SiteConfig
from common.events import BoxLoad, CameraLoad, Event
from common.mqtt_url import TlsFiles
from edge.analysis.pipeline import build_rules
from edge.capture.sources import SourceKind, check_file_source, classify_source
from edge.delivery.mqtt import EventSink, JsonlSink, MqttSink
from edge.delivery.outbox import GIB, Outbox
from edge.delivery.upload import EvidenceUploader
from edge.runtime.metrics import BoxMetrics
from edge.runtime.rollout import CommandListener, RolloutManager
from edge.runtime.supervisor import BoxOptions, Supervisor

logger = logging.getLogger(__name__)


def default_edge_id() -> str:
    name = socket.gethostname().lower()
    cleaned = "".join(c if c.isalnum() or c == "-" else "-" for c in name).strip("-")
    return cleaned or "edge"


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
    mqtt_tls: TlsFiles | None = None  # mqtts://: CA file, client certificate and key
    keep_evidence: bool = False  # keep local evidence files after upload
    model_dir: Path = Path("./zhizhi-models")  # models downloaded by roll-outs (with --mqtt)
    metrics_listen: str | None = "127.0.0.1:9464"  # /metrics for Prometheus (None: off)
    detector_threads: int = 1  # onnxruntime threads per inference in the detection service
    detector_workers: int = 2  # inferences the detection service runs at once
    max_batch: int = 4  # detection requests for one model run together (batchable models)
    report_every_s: float = 10.0  # the load report: status message, /metrics, log line
    loop_files: bool = True  # cameras whose source is a file play it in a loop


def run_edge(
    site: SiteConfig,
    camera_ids: Sequence[str],
    options: EdgeOptions,
    stop: threading.Event | None = None,
    install_signals: bool = True,
    on_load: Callable[[dict[str, CameraLoad], BoxLoad], None] | None = None,
) -> None:
    """Run the chosen cameras (all enabled ones when none is named) until stopped; `on_load`
    is given every load report too (the demo prints the last one)."""
    cameras = (
        [site.camera(i) for i in camera_ids]
        if camera_ids
        else [c for c in site.cameras if c.enabled]
    )
    for camera in cameras:
        build_rules(camera)  # refuse an unsupported rule before anything starts
        source = site.resolve_source(camera)
        if classify_source(source) is SourceKind.FILE:
            check_file_source(source)  # a file that is not there is a config error
    stop = stop or threading.Event()
    if install_signals:
        _stop_on_signals(stop)
    delivery = Delivery(site, options, on_load)
    supervisor = Supervisor(
        site,
        [c.id for c in cameras],
        BoxOptions(
            evidence_dir=options.evidence_dir,
            detector_threads=options.detector_threads,
            detector_workers=options.detector_workers,
            max_batch=options.max_batch,
            report_every_s=options.report_every_s,
            loop_files=options.loop_files,
            log_level=logging.getLogger().getEffectiveLevel(),  # the children log as we do
        ),
        on_event=delivery.deliver,
        on_status=delivery.camera_status,
        on_load=delivery.set_load,
    )
    try:
        supervisor.start()  # refuses a missing or corrupt model before any camera starts
        delivery.attach(supervisor)
        logger.info("edge running %d camera(s) of site %s", len(cameras), site.site.id)
        supervisor.run(stop)
    finally:
        stop.set()
        supervisor.close()
        delivery.close()


class Delivery:
    """The sinks, the durable outbox, the evidence uploader, roll-outs and the load report of
    one edge run."""

    def __init__(
        self,
        site: SiteConfig,
        options: EdgeOptions,
        on_load: Callable[[dict[str, CameraLoad], BoxLoad], None] | None = None,
    ) -> None:
        self.site = site
        self.options = options
        self._on_load = on_load
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
        self.mqtt: MqttSink | None = None
        if options.mqtt_url is not None and self.outbox is not None:
            self.mqtt = MqttSink(
                options.mqtt_url,
                site.site.id,
                options.edge_id or default_edge_id(),
                self.outbox,
                username=options.mqtt_username,
                password=options.mqtt_password,
                tls_files=options.mqtt_tls,
            )
            self.sinks.append(self.mqtt)
        self.rollout: RolloutManager | None = None
        self.commands: CommandListener | None = None
        self.metrics = BoxMetrics()
        self._serve_metrics(options.metrics_listen)

    def _serve_metrics(self, listen: str | None) -> None:
        if not listen:
            return
        host, _, port = listen.rpartition(":")
        try:
            served = self.metrics.serve(host or "127.0.0.1", int(port))
        except (OSError, ValueError) as error:  # the box runs on without its /metrics page
            logger.error("/metrics cannot be served on %s: %s", listen, error)
            return
        logger.info("/metrics for Prometheus on http://%s:%d/metrics", host, served)

    def attach(self, supervisor: Supervisor) -> None:
        """The box is up: roll-outs (with MQTT) swap models in its detection service."""
        if self.options.mqtt_url is None:
            return
        self.rollout = RolloutManager(
            self.options.model_dir,
            token=self.options.token or "",
            on_status=self.mqtt.set_models if self.mqtt is not None else None,
            service=supervisor,
        )
        self.rollout.adopt(supervisor.models)
        self.commands = CommandListener(
            self.options.mqtt_url,
            self.site.site.id,
            self.options.edge_id or default_edge_id(),
            self.rollout,
            username=self.options.mqtt_username,
            password=self.options.mqtt_password,
            tls_files=self.options.mqtt_tls,
        )

    def deliver(self, event: Event) -> None:
        """One event from a camera: evidence registered for upload, then every sink."""
        if self.uploader is not None:
            event = self.uploader.prepare(event)  # never raises
        logger.info(
            "event %s %s camera=%s rule=%s zone=%s onset=%.1fs",
            event.type,
            event.state,
            event.camera_id,
            event.rule_id,
            event.zone_id,
            event.onset_pts_s,
        )
        self.metrics.events.labels(event.camera_id, event.type, event.state).inc()
        for sink in self.sinks:
            try:
                sink.send(event)
            except Exception:
                logger.exception("sink %s failed for event %s", sink, event.event_id)

    def camera_status(self, camera_id: str, online: bool, reason: str, code: str) -> None:
        if online:
            logger.info("camera %s online", camera_id)
        else:
            logger.warning("camera %s offline: %s", camera_id, reason)
        if code == "worker_restarting":
            self.metrics.restarts.labels(camera_id).inc()
        for sink in self.sinks:
            try:
                sink.camera_status(camera_id, online, reason, code)
            except Exception:
                logger.exception("sink %s failed for a camera status", sink)

    def set_load(self, cameras: dict[str, CameraLoad], box: BoxLoad) -> None:
        self.metrics.update(cameras, box)
        if self._on_load is not None:
            self._on_load(cameras, box)
        for sink in self.sinks:
            try:
                sink.set_load(cameras, box)
            except Exception:
                logger.exception("sink %s failed for the load report", sink)

    def close(self) -> None:
        if self.commands is not None:
            self.commands.close()
        for sink in self.sinks:
            sink.close()
        if self.uploader is not None:
            self.uploader.close()
        if self.outbox is not None:
            self.outbox.close()
        self.metrics.close()


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        logger.info("signal %d: stopping", signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)
