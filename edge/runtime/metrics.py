"""The box's figures for Prometheus: `GET /metrics` on the edge (`zhizhi edge run --metrics`).

A collector renders the supervisor's latest load report (edge.runtime.load) at each scrape, so
the page always shows the last complete window; counters of events sent and of worker restarts
are cumulative.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from common.events import BoxLoad, CameraLoad

STATES = ("ok", "degraded", "overloaded", "starting", "restarting")


class BoxMetrics(Collector):
    """The registry behind the edge's /metrics page."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()
        self._cameras: dict[str, CameraLoad] = {}
        self._box: BoxLoad | None = None
        self.events = Counter(
            "zhizhi_edge_events_total",
            "Event messages the box's cameras produced, by camera, type and state",
            ["camera", "type", "state"],
            registry=self.registry,
        )
        self.restarts = Counter(
            "zhizhi_edge_worker_restarts_total",
            "Camera workers restarted after a crash",
            ["camera"],
            registry=self.registry,
        )
        self.registry.register(self)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def update(self, cameras: dict[str, CameraLoad], box: BoxLoad) -> None:
        with self._lock:
            self._cameras = dict(cameras)
            self._box = box

    def serve(self, address: str, port: int) -> int:
        """Serve /metrics on `address:port` (0: any free port); the port served."""
        self._server, self._thread = start_http_server(port, address, registry=self.registry)
        return int(self._server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            cameras = dict(self._cameras)
            box = self._box
        yield from _camera_families(cameras)
        if box is not None:
            yield from _box_families(box)


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


def _camera_families(cameras: dict[str, CameraLoad]) -> Iterator[GaugeMetricFamily]:
    per_camera = {
        "camera_fps": "Frames a second read from the camera",
        "analysis_fps": "Zone analyses a second",
        "frame_rule_fps": "Frames a second the every-frame rules saw",
        "target_analysis_fps": "Zone analyses a second the config asks for",
        "detection_fps": "Detector and pose runs a second for the camera",
        "dropped_fps": "Frames a second dropped before analysis",
        "lag_s": "Seconds the analysis runs behind live",
        "detector_wait_ms": "p95 milliseconds a detection waited in the box's queue",
        "cpu": "Cores the camera's process used",
    }
    for field, doc in per_camera.items():
        family = _gauge(f"zhizhi_edge_camera_{field}", doc, ["camera"])
        for camera_id, load in sorted(cameras.items()):
            value = getattr(load, field)
            if value is not None:
                family.add_metric([camera_id], float(value))
        yield family
    state = _gauge(
        "zhizhi_edge_camera_state", "1 for the camera's current load state", ["camera", "state"]
    )
    for camera_id, load in sorted(cameras.items()):
        for name in STATES:
            state.add_metric([camera_id, name], 1.0 if load.state == name else 0.0)
    yield state
    coverage = _gauge(
        "zhizhi_edge_rule_coverage",
        "Share of the looks a rule needs that it got (1: all)",
        ["camera", "rule"],
    )
    holding = _gauge(
        "zhizhi_edge_rule_holding",
        "1 while the rule holds its judgement for want of looks",
        ["camera", "rule"],
    )
    for camera_id, load in sorted(cameras.items()):
        for rule_id, cover in sorted(load.coverage.items()):
            coverage.add_metric([camera_id, rule_id], cover.coverage)
            holding.add_metric([camera_id, rule_id], 1.0 if cover.holding else 0.0)
    yield coverage
    yield holding
    problems = _gauge("zhizhi_edge_camera_problems", "Problems by code", ["camera", "code"])
    for camera_id, load in sorted(cameras.items()):
        for problem in load.problems:
            problems.add_metric([camera_id, problem.code], 1.0)
    yield problems


def _box_families(box: BoxLoad) -> Iterator[GaugeMetricFamily]:
    values = {
        "zhizhi_edge_box_cpu": ("Share of all the box's cores in use", box.cpu),
        "zhizhi_edge_box_process_cpu": ("Cores used by the edge's processes", box.process_cpu),
        "zhizhi_edge_box_memory_mb": ("Resident memory of the edge's processes", box.memory_mb),
        "zhizhi_edge_box_overloaded": ("1 when a camera is overloaded", float(box.overloaded)),
        "zhizhi_edge_detector_busy": ("Share of time the detector inferred", box.detector.busy),
        "zhizhi_edge_detector_queue": ("Detections waiting", float(box.detector.queue)),
        "zhizhi_edge_detector_wait_p95_ms": ("p95 wait for the detector", box.detector.wait_p95_ms),
        "zhizhi_edge_detector_runs_per_s": ("Inferences a second", box.detector.runs_per_s),
        "zhizhi_edge_detector_batch_mean": ("Images per inference", box.detector.batch_mean),
        "zhizhi_edge_detector_shed": ("Requests shed in the last window", float(box.detector.shed)),
    }
    for name, (doc, value) in values.items():
        family = _gauge(name, doc, [])
        family.add_metric([], float(value))
        yield family
