"""Where the edge sends its events: a JSONL file, the MQTT broker (contract section 4).

The MQTT sink publishes at QoS 1 with a stable client id and a persistent session, and keeps a
retained status message that is also the last will. It relies on paho's in-memory queue while
the broker is away; the durable on-disk outbox is the next step (see docs/architecture.md).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from common.events import Event, events_topic, status_topic

logger = logging.getLogger(__name__)


class EventSink(Protocol):
    def send(self, event: Event) -> None: ...

    def camera_status(self, camera_id: str, online: bool, reason: str) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    """Appends every event as one JSON line; safe to share between camera threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._stream = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def send(self, event: Event) -> None:
        with self._lock:
            self._stream.write(event.to_json() + "\n")
            self._stream.flush()

    def camera_status(self, camera_id: str, online: bool, reason: str) -> None:
        """Camera health is logged by the worker; the file holds events only."""

    def close(self) -> None:
        with self._lock:
            self._stream.close()


def parse_mqtt_url(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise ValueError(f"MQTT URL must look like mqtt://host:port, got {url!r}")
    return parts.hostname, parts.port or 1883


class MqttSink:
    """Publishes events at QoS 1 under zhizhi/v1/{site}/{edge}/{camera}/events."""

    def __init__(self, url: str, site_id: str, edge_id: str) -> None:
        self.site_id = site_id
        self.edge_id = edge_id
        host, port = parse_mqtt_url(url)
        self._cameras: dict[str, dict[str, object]] = {}
        self._status_topic = status_topic(site_id, edge_id)
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"zhizhi-edge-{site_id}-{edge_id}",
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        self._client.enable_logger(logging.getLogger("edge.mqtt"))
        self._client.will_set(self._status_topic, self._status("offline"), qos=1, retain=True)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.connect_async(host, port, keepalive=30)
        self._client.loop_start()

    def _status(self, state: str) -> str:
        return json.dumps(
            {
                "state": state,
                "edge_id": self.edge_id,
                "site_id": self.site_id,
                "ts": time.time(),
                "cameras": self._cameras,
            }
        )

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        _flags: object,
        reason: object,
        _properties: object,
    ) -> None:
        logger.info("MQTT connected (%s)", reason)
        client.publish(self._status_topic, self._status("online"), qos=1, retain=True)

    def send(self, event: Event) -> None:
        topic = events_topic(event.site_id, self.edge_id, event.camera_id)
        info = self._client.publish(topic, event.to_json(), qos=1)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            logger.warning(
                "MQTT publish of %s/%d queued with rc=%s", event.event_id, event.seq, info.rc
            )

    def camera_status(self, camera_id: str, online: bool, reason: str) -> None:
        self._cameras[camera_id] = {"online": online, "reason": reason, "ts": time.time()}
        self._client.publish(self._status_topic, self._status("online"), qos=1, retain=True)

    def close(self) -> None:
        self._client.publish(self._status_topic, self._status("offline"), qos=1, retain=True)
        self._client.loop_stop()
        self._client.disconnect()
