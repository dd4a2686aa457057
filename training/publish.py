"""`zhizhi models publish`: upload a registered model to the server, then send the roll-out
command to the chosen edges over MQTT, the canary first; the others only once the canary's
status reports the new version running."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from common.commands import ModelFile, RollbackCommand, RolloutCommand
from common.events import StatusMessage, cmd_topic, status_topic
from common.mqtt_url import parse_mqtt_url, tls_context
from edge.runtime.models import ModelSpec

logger = logging.getLogger(__name__)


class RolloutFailed(Exception):
    """The canary did not report the new model running."""


def upload_model(server: str, token: str, spec: ModelSpec, path: Path) -> str:
    """PUT the file to the server (admin token); returns the URL edges download it from."""
    url = f"{server.rstrip('/')}/api/v1/models/{spec.name}/{spec.version}"
    response = httpx.put(
        url,
        params={"sha256": spec.sha256},
        content=path.read_bytes(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"},
        timeout=120.0,
    )
    response.raise_for_status()
    return url


def model_file(spec: ModelSpec) -> ModelFile:
    """What an edge needs of a registry entry to fetch and run it (the docs fields left out)."""
    return ModelFile.model_validate(spec.model_dump(include=set(ModelFile.model_fields)))


class EdgeCommander:
    """An MQTT client that sends commands to edges and watches their retained status."""

    def __init__(
        self, url: str, site: str, username: str | None = None, password: str | None = None
    ) -> None:
        self.site = site
        self._statuses: dict[str, StatusMessage] = {}
        self._changed = threading.Condition()
        broker = parse_mqtt_url(url)
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"zhizhi-publish-{uuid.uuid4().hex[:8]}"
        )
        user = username if username is not None else broker.username
        if user is not None:
            self._client.username_pw_set(
                user, password if password is not None else broker.password
            )
        if broker.tls:
            self._client.tls_set_context(tls_context())
        self._client.on_message = self._on_message
        self._client.connect(broker.host, broker.port, keepalive=30)
        self._client.subscribe(status_topic(site, "+"), qos=1)
        self._client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        try:
            status = StatusMessage.model_validate_json(message.payload)
        except ValidationError:
            return
        edge = message.topic.split("/")[3]
        with self._changed:
            self._statuses[edge] = status
            self._changed.notify_all()

    def send(self, edge: str, command: RolloutCommand | RollbackCommand) -> None:
        info = self._client.publish(cmd_topic(self.site, edge), command.model_dump_json(), qos=1)
        info.wait_for_publish(timeout=10)

    def wait_for(self, edge: str, key: str, spec: ModelSpec, timeout_s: float) -> tuple[bool, str]:
        """Until `edge` reports model `key` running `spec` (True), or failing to load it."""
        deadline = time.monotonic() + timeout_s
        failed_prefix = f"{spec.name} {spec.version}:"
        with self._changed:
            while True:
                status = self._statuses.get(edge)
                model = status.models.get(key) if status is not None else None
                if model is not None and model.sha256 == spec.sha256 and model.rollout == "running":
                    return True, f"{edge}: runs {model.name} {model.version}"
                if (
                    model is not None
                    and model.rollout == "failed"
                    and model.detail.startswith(failed_prefix)
                ):
                    reason = model.detail.removeprefix(failed_prefix).strip()
                    return False, f"{edge}: failed, kept {model.name} {model.version}: {reason}"
                left = deadline - time.monotonic()
                if left <= 0:
                    return False, f"{edge}: no status with the new model within {timeout_s:.0f} s"
                self._changed.wait(left)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def publish(
    commander: EdgeCommander,
    spec: ModelSpec,
    url: str,
    edges: Sequence[str],
    canary: str | None,
    *,
    replaces: str | None = None,
    timeout_s: float = 300.0,
) -> list[str]:
    """Roll out to `canary` first and wait for it; then to the other edges. Lines of results.

    Raises:
        RolloutFailed: the canary failed or did not report in time (nothing else was sent).
    """
    key = replaces or spec.name

    def command() -> RolloutCommand:
        return RolloutCommand(
            command_id=uuid.uuid4().hex, model=model_file(spec), url=url, replaces=replaces
        )

    lines = []
    rest = [edge for edge in edges if edge != canary]
    if canary is not None:
        commander.send(canary, command())
        ok, line = commander.wait_for(canary, key, spec, timeout_s)
        if not ok:
            raise RolloutFailed(f"canary {line}; not sent to {', '.join(rest) or 'any other edge'}")
        lines.append(f"canary {line}")
    for edge in rest:
        commander.send(edge, command())
    for edge in rest:
        ok, line = commander.wait_for(edge, key, spec, timeout_s)
        lines.append(("ok " if ok else "FAILED ") + line)
    return lines
