"""Model roll-out over the real Mosquitto, with two edges and the server's model router:
the canary gets the new model first, then the other edge; frames keep flowing through the
swap; a model that fails to load on the canary is never swapped in and nothing else is sent;
a rollback command restores the previous model. Each edge reports in its retained status."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI

from common.commands import RollbackCommand
from common.config import DetectorConfig
from common.events import ModelInfo
from edge.delivery.mqtt import MqttSink
from edge.delivery.outbox import Outbox
from edge.runtime.models import ModelSpec, file_sha256
from edge.runtime.rollout import CommandListener, RolloutManager, SwappableDetector
from edge.types import Detection
from server.auth import create_token
from server.db.session import make_engine, make_session_factory, migrate
from server.models_api import router
from server.settings import ServerSettings
from tests.support.mosquitto import PrivateBroker, free_port
from training.publish import EdgeCommander, RolloutFailed, publish, upload_model

pytestmark = pytest.mark.integration
SITE = "rollout-site"
CONFIG = DetectorConfig(model="det")


class FakeDetector:
    """The model the edges start with (version 1)."""

    info = ModelInfo(name="det", version="1", sha256="0" * 64)
    names = ("car",)

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        return []


class _Uvicorn(uvicorn.Server):
    def install_signal_handlers(self) -> None:
        pass


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Edge:
    """One edge: swappable detector, status over MQTT, cmd listener, a frame feeder."""

    name: str
    detector: SwappableDetector
    manager: RolloutManager
    sink: MqttSink
    listener: CommandListener
    versions: list[str] = field(default_factory=list)  # model version per frame, in order
    errors: list[BaseException] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def feed(self) -> None:
        image = np.full((120, 160, 3), 100, np.uint8)
        while not self.stop.is_set():
            try:
                version = self.detector.info.version
                self.detector.detect(image)
                self.versions.append(version)
            except Exception as error:  # recorded for the assertion
                self.errors.append(error)
            time.sleep(0.005)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[str, str, str, list[Edge]]]:
    broker = PrivateBroker(tmp_path / "broker")
    broker.start()
    engine = make_engine(f"sqlite:///{tmp_path / 'server.db'}")
    migrate(engine)
    app = FastAPI()
    app.state.settings = ServerSettings(media_dir=tmp_path / "media")
    app.state.session_factory = make_session_factory(engine)
    app.include_router(router)
    with app.state.session_factory() as session:
        admin = create_token(session, "admin", "ml engineer")
        edge_token = create_token(session, "edge", "edges")
    port = free_port()
    web = _Uvicorn(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    wait_until(lambda: web.started, 20, "the HTTP server")
    edges = []
    for name in ("edge-1", "edge-2"):
        sink = MqttSink(broker.url, SITE, name, Outbox(tmp_path / f"{name}.sqlite"))
        manager = RolloutManager(
            tmp_path / name / "models", token=edge_token, on_status=sink.set_models
        )
        detector = manager.detector_for(CONFIG, FakeDetector)
        assert isinstance(detector, SwappableDetector)
        sink.set_models(manager.status())
        listener = CommandListener(broker.url, SITE, name, manager)
        assert listener.wait_subscribed(10)
        edge = Edge(name, detector, manager, sink, listener)
        threading.Thread(target=edge.feed, daemon=True).start()
        edges.append(edge)
    try:
        yield f"http://127.0.0.1:{port}", admin, broker.url, edges
    finally:
        for edge in edges:
            edge.stop.set()
            edge.listener.close()
            edge.sink.close()
        web.should_exit = True
        thread.join(timeout=10)
        broker.stop()
        engine.dispose()


def spec_for(path: Path, version: str) -> ModelSpec:
    return ModelSpec(
        name="det-320",
        version=version,
        file=path.name,
        sha256=file_sha256(path),
        layout="yolov8",
        input_wh=(320, 320),
    )


def test_canary_then_fleet_then_failed_canary_then_rollback(
    world: tuple[str, str, str, list[Edge]], models_dir: Path, tmp_path: Path
) -> None:
    server, admin, mqtt_url, (edge1, edge2) = world
    good = models_dir / "yolov8n_320.onnx"
    spec = spec_for(good, "2")
    url = upload_model(server, admin, spec, good)
    commander = EdgeCommander(mqtt_url, SITE)
    try:
        lines = publish(commander, spec, url, ["edge-1", "edge-2"], "edge-1", replaces="det")
        assert lines[0] == "canary edge-1: runs det-320 2"
        assert lines[1] == "ok edge-2: runs det-320 2"
        for edge in (edge1, edge2):
            wait_until(lambda e=edge: e.versions[-1:] == ["2"], 10, f"{edge.name} on v2")
            # every frame got its detections, the old model's up to the swap, then the new
            assert edge.errors == []
            assert [k for k, _ in itertools.groupby(edge.versions)] == ["1", "2"]

        broken = tmp_path / "broken.onnx"
        broken.write_bytes(b"not an onnx file" * 100)
        bad = spec_for(broken, "3")
        bad_url = upload_model(server, admin, bad, broken)
        with pytest.raises(RolloutFailed, match="edge-2: failed, kept det-320 2"):
            publish(commander, bad, bad_url, ["edge-1", "edge-2"], "edge-2", replaces="det")
        assert edge2.detector.info.version == "2"  # never swapped in
        assert edge1.manager.status()["det"].version == "2"  # nothing was sent to edge-1

        commander.send("edge-1", RollbackCommand(command_id="rb-1", name="det"))
        wait_until(lambda: edge1.detector.info.version == "1", 10, "edge-1 rolled back")
        wait_until(
            lambda: commander._statuses["edge-1"].models["det"].rollout == "rolled_back",
            10,
            "edge-1's status to say rolled_back",
        )
        assert edge1.errors == [] and edge2.errors == []
    finally:
        commander.close()
