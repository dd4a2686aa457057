"""Model roll-out on the edge (issue 7): commands on `zhizhi/v1/{site}/{edge}/cmd`.

A `model.rollout` command is handled off the analysis threads: download the file over HTTP,
check its sha256, load it with `OnnxDetector.load` (which verifies shapes and class names and
warms it up), and only then swap it into every `SwappableDetector` running that model name, or,
on a box run by `zhizhi edge run`, into the box's detection service (`ModelService`: it loads
the file the same way and swaps it between two inferences).
The swap is one reference assignment under a lock, taken between two `detect()` calls: no
frame waits for a download or a load, and none is dropped. A model that fails to download,
verify or load is never swapped in (the old one keeps running; status `failed`), and a
`model.rollback` command swaps the previous detector back. The result is in the edge's
retained status message (`models`).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import httpx
import numpy as np
import numpy.typing as npt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from common.commands import ModelFile, RollbackCommand, RolloutCommand, parse_command
from common.config import DetectorConfig
from common.events import ModelInfo, ModelStatus, cmd_topic
from common.logs import paho_logger
from common.mqtt_url import TlsFiles, parse_mqtt_url, tls_context
from edge.analysis.detect.base import Detector
from edge.analysis.detect.onnx import OnnxDetector
from edge.errors import EdgeError
from edge.runtime.detection import SwapResult
from edge.runtime.models import ModelSpec, file_sha256
from edge.types import Detection

logger = logging.getLogger(__name__)

Loader = Callable[[ModelSpec, DetectorConfig, Path], Detector]


def load_onnx(spec: ModelSpec, config: DetectorConfig, path: Path) -> Detector:
    """What `edge.offline.replay.load_detector` does, for a downloaded file."""
    from edge.analysis.pipeline import WEAK_DETECTION_SCORE

    min_score = min(config.min_score, WEAK_DETECTION_SCORE)
    return OnnxDetector.load(spec, min_score, config.iou, config.providers, path=path)


class SwappableDetector:
    """A `Detector` whose model can be replaced between two frames by another thread."""

    def __init__(self, detector: Detector, config: DetectorConfig) -> None:
        self.config = config
        self._current = detector
        self._previous: Detector | None = None
        self._lock = threading.Lock()

    @property
    def current(self) -> Detector:
        return self._current

    @property
    def info(self) -> ModelInfo:
        return self._current.info

    @property
    def names(self) -> Any:
        return self._current.names

    def detect(self, image_bgr: npt.NDArray[np.uint8]) -> list[Detection]:
        with self._lock:
            detector = self._current
        return detector.detect(image_bgr)

    def swap(self, detector: Detector) -> None:
        with self._lock:
            self._previous, self._current = self._current, detector

    def rollback(self) -> bool:
        """Back to the detector before the last swap; False when there is none."""
        with self._lock:
            if self._previous is None:
                return False
            self._current, self._previous = self._previous, None
            return True


class ModelService(Protocol):
    """Where models run when they are not in this process (the box's detection service)."""

    def swap(self, model_name: str, spec: ModelSpec, path: Path) -> SwapResult: ...

    def rollback(self, model_name: str) -> SwapResult: ...


def spec_of(model: ModelFile) -> ModelSpec:
    """The registry entry a roll-out command describes (the inverse of `model_file`)."""
    return ModelSpec.model_validate(model.model_dump())


class RolloutManager:
    """Keeps the swappable detectors of one edge and carries out roll-out commands."""

    def __init__(
        self,
        model_dir: Path,
        *,
        token: str = "",
        loader: Loader = load_onnx,
        on_status: Callable[[dict[str, ModelStatus]], None] | None = None,
        http_timeout_s: float = 60.0,
        service: ModelService | None = None,
    ) -> None:
        self.model_dir = model_dir
        self.service = service
        self.token = token
        self.loader = loader
        self.on_status = on_status
        self.http_timeout_s = http_timeout_s
        self._slots: dict[DetectorConfig, SwappableDetector] = {}
        self._status: dict[str, ModelStatus] = {}
        self._lock = threading.Lock()

    def detector_for(self, config: DetectorConfig, load: Callable[[], Detector]) -> Detector:
        """The camera's detector: one swappable slot per detector config, loaded once."""
        with self._lock:
            slot = self._slots.get(config)
            if slot is None:
                slot = self._slots[config] = SwappableDetector(load(), config)
                info = slot.info
                self._status[config.model] = ModelStatus(
                    name=info.name, version=info.version, sha256=info.sha256
                )
        return slot

    def adopt(self, models: dict[str, ModelInfo]) -> None:
        """The models the service runs, by configured name (a service-backed manager)."""
        with self._lock:
            for name, info in models.items():
                self._status[name] = ModelStatus(
                    name=info.name, version=info.version, sha256=info.sha256
                )
        if self.on_status is not None:
            self.on_status(self.status())

    def status(self) -> dict[str, ModelStatus]:
        with self._lock:
            return dict(self._status)

    def handle(self, command: RolloutCommand | RollbackCommand) -> ModelStatus | None:
        """Carry out one command (blocking: download and load); the new status of the model."""
        if isinstance(command, RollbackCommand):
            return self._rollback(command.name, "rollback command")
        return self._rollout(command)

    def _targets(self, name: str) -> list[SwappableDetector]:
        with self._lock:
            return [slot for config, slot in self._slots.items() if config.model == name]

    def _rollout(self, command: RolloutCommand) -> ModelStatus | None:
        if self.service is not None:
            return self._rollout_service(command, self.service)
        key = command.replaces or command.model.name
        slots = self._targets(key)
        if not slots:
            logger.warning("roll-out of %s: no camera here runs %s", command.model.name, key)
            return None
        spec = spec_of(command.model)
        try:
            path = self.download(command.url, spec)
            loaded = [self.loader(spec, slot.config, path) for slot in slots]
        except (EdgeError, OSError, httpx.HTTPError, ValueError) as error:
            logger.error(
                "roll-out of %s %s failed, old model kept: %s", spec.name, spec.version, error
            )
            current = slots[0].info
            return self._set(key, current, "failed", f"{spec.name} {spec.version}: {error}")
        for slot, detector in zip(slots, loaded, strict=True):
            slot.swap(detector)
        logger.info("model %s now runs %s %s", key, spec.name, spec.version)
        return self._set(key, slots[0].info, "running", f"command {command.command_id}")

    def _rollout_service(
        self, command: RolloutCommand, service: ModelService
    ) -> ModelStatus | None:
        key = command.replaces or command.model.name
        with self._lock:
            current = self._status.get(key)
        if current is None:
            logger.warning("roll-out of %s: no camera here runs %s", command.model.name, key)
            return None
        spec = spec_of(command.model)
        try:
            path = self.download(command.url, spec)
        except (EdgeError, OSError, httpx.HTTPError, ValueError) as error:
            logger.error(
                "roll-out of %s %s failed, old model kept: %s", spec.name, spec.version, error
            )
            return self._set(key, _info(current), "failed", f"{spec.name} {spec.version}: {error}")
        outcome = service.swap(key, spec, path)
        if not outcome.ok or outcome.info is None:
            logger.error(
                "roll-out of %s %s failed, old model kept: %s",
                spec.name,
                spec.version,
                outcome.error,
            )
            info = outcome.info or _info(current)
            return self._set(key, info, "failed", f"{spec.name} {spec.version}: {outcome.error}")
        logger.info("model %s now runs %s %s", key, spec.name, spec.version)
        return self._set(key, outcome.info, "running", f"command {command.command_id}")

    def _rollback(self, key: str, why: str) -> ModelStatus | None:
        if self.service is not None:
            outcome = self.service.rollback(key)
            if not outcome.ok or outcome.info is None:
                logger.warning("rollback of %s: %s", key, outcome.error)
                return None
            return self._set(key, outcome.info, "rolled_back", why)
        slots = self._targets(key)
        if not slots or not all(slot.rollback() for slot in slots):
            logger.warning("rollback of %s: nothing to roll back to", key)
            return None
        logger.info("model %s rolled back to %s %s", key, slots[0].info.name, slots[0].info.version)
        return self._set(key, slots[0].info, "rolled_back", why)

    def _set(self, key: str, info: ModelInfo, state: str, detail: str) -> ModelStatus:
        status = ModelStatus(
            name=info.name, version=info.version, sha256=info.sha256, rollout=state, detail=detail
        )
        with self._lock:
            self._status[key] = status
        if self.on_status is not None:
            self.on_status(self.status())
        return status

    def download(self, url: str, spec: ModelSpec) -> Path:
        """GET the file into `model_dir` and check its sha256 (a wrong file is deleted)."""
        self.model_dir.mkdir(parents=True, exist_ok=True)
        target = self.model_dir / f"{spec.name}-{spec.version}.onnx"
        if target.is_file() and file_sha256(target) == spec.sha256:
            return target
        partial = target.with_suffix(".part")
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        with (
            httpx.stream("GET", url, headers=headers, timeout=self.http_timeout_s) as response,
            partial.open("wb") as out,
        ):
            response.raise_for_status()
            for chunk in response.iter_bytes():
                out.write(chunk)
        actual = file_sha256(partial)
        if actual != spec.sha256:
            partial.unlink(missing_ok=True)
            raise ValueError(f"downloaded {url} has sha256 {actual}, expected {spec.sha256}")
        partial.replace(target)
        return target


def _info(status: ModelStatus) -> ModelInfo:
    return ModelInfo(name=status.name, version=status.version, sha256=status.sha256)


class CommandListener:
    """Subscribes to this edge's cmd topic and hands commands to a `RolloutManager`, one at a
    time on its own thread (downloads and loads never block paho's network thread)."""

    def __init__(
        self,
        url: str,
        site_id: str,
        edge_id: str,
        manager: RolloutManager,
        *,
        username: str | None = None,
        password: str | None = None,
        tls_files: TlsFiles | None = None,
    ) -> None:
        self.manager = manager
        self.topic = cmd_topic(site_id, edge_id)
        self._queue: queue.SimpleQueue[RolloutCommand | RollbackCommand | None] = (
            queue.SimpleQueue()
        )
        self._subscribed = threading.Event()
        broker = parse_mqtt_url(url)
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"zhizhi-edge-{site_id}-{edge_id}-cmd",
            clean_session=False,  # commands sent while the edge is away wait at the broker
            protocol=mqtt.MQTTv311,
        )
        self._client.enable_logger(paho_logger("edge.cmd"))
        user = username if username is not None else broker.username
        if user is not None:
            self._client.username_pw_set(
                user, password if password is not None else broker.password
            )
        if broker.tls:
            self._client.tls_set_context(tls_context(tls_files))
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._worker = threading.Thread(target=self._run, name="rollout", daemon=True)
        self._worker.start()
        self._client.connect_async(broker.host, broker.port, keepalive=30)
        self._client.loop_start()

    def wait_subscribed(self, timeout_s: float) -> bool:
        return self._subscribed.wait(timeout_s)

    def _on_connect(self, client: mqtt.Client, *_args: object) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, *_args: object) -> None:
        self._subscribed.set()

    def _on_message(
        self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        if message.topic != self.topic:
            # some brokers (amqtt, embedded in the demo) hand a new subscriber retained messages
            # of other topics: only this edge's cmd topic carries commands
            logger.debug("ignored a message on %s", message.topic)
            return
        try:
            command = parse_command(message.payload)
        except ValidationError as error:
            logger.warning("ignored a command on %s: %s", message.topic, error.errors()[0]["msg"])
            return
        self._queue.put(command)

    def _run(self) -> None:
        while (command := self._queue.get()) is not None:
            try:
                self.manager.handle(command)
            except Exception:  # the boundary of a background thread
                logger.exception("command %s failed", command.command_id)

    def close(self) -> None:
        self._queue.put(None)
        self._client.disconnect()
        self._client.loop_stop()
        self._worker.join(timeout=5)
