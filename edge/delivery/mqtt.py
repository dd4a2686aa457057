"""Where the edge sends its events: a JSONL file, the MQTT broker (contract section 4).

`MqttSink` never loses an event it was given (issue 5):

- `send(event)` writes the message to the durable `Outbox` (SQLite, fsynced) and returns; it
  never blocks on the network and never raises into the analysis thread.
- A sender thread publishes what is due, oldest first, at QoS 1 whenever the client is
  connected. A message stays in the outbox until the server's `AckMessage` for its
  `(event_id, seq)` arrives on ``zhizhi/v1/{site}/{edge}/ack``; one not acked within
  `resend_after_s` is published again, and after every (re)connect and every restart all
  unacknowledged messages are published again in order. The server stores each
  `(event_id, seq)` once, so the duplicates this makes are harmless.
- MQTT 3.1.1 with a fixed client id (``zhizhi-edge-{site}-{edge}``) and ``clean_session=False``:
  the broker keeps the ack subscription and queues the acks sent while the edge is away
  (Mosquitto keeps such sessions until ``persistent_client_expiration``, by default forever).
  MQTT 5 would add nothing the outbox does not already give.
- A retained `StatusMessage` on ``zhizhi/v1/{site}/{edge}/status``: ``online`` (with the
  cameras and the outbox counters) on every connect, on every camera change and every
  `status_every_s`; ``offline`` on `close()`, and as the last will when the edge dies.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from pathlib import Path
from typing import Literal, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from common.events import (
    AckMessage,
    BoxLoad,
    CameraLoad,
    CameraStatus,
    Event,
    ModelStatus,
    StatusMessage,
    ack_topic,
    events_topic,
    status_topic,
)
from common.logs import paho_logger
from common.mqtt_url import TlsFiles, parse_mqtt_url, tls_context
from edge.delivery.outbox import EventKey, Outbox, OutboxItem

logger = logging.getLogger(__name__)

SEND_BATCH = 100


class EventSink(Protocol):
    def send(self, event: Event) -> None: ...

    def camera_status(
        self, camera_id: str, online: bool, reason: str, reason_code: str | None = None
    ) -> None: ...

    def set_load(self, cameras: dict[str, CameraLoad], box: BoxLoad) -> None:
        """How the box keeps up (edge.runtime.load), for the status message."""
        ...

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

    def camera_status(
        self, camera_id: str, online: bool, reason: str, reason_code: str | None = None
    ) -> None:
        """Camera health is logged by the worker; the file holds events only."""

    def set_load(self, cameras: dict[str, CameraLoad], box: BoxLoad) -> None:
        """The box's load is logged by the supervisor; the file holds events only."""

    def close(self) -> None:
        with self._lock:
            self._stream.close()


class MqttSink:
    """Durable QoS 1 publisher of events under zhizhi/v1/{site}/{edge}/{camera}/events."""

    def __init__(
        self,
        url: str,
        site_id: str,
        edge_id: str,
        outbox: Outbox,
        *,
        resend_after_s: float = 10.0,
        username: str | None = None,
        password: str | None = None,
        max_unacked: int = 1000,
        flush_timeout_s: float = 5.0,
        status_every_s: float = 60.0,
        keepalive_s: int = 30,
        reconnect_max_s: int = 30,
        tls_files: TlsFiles | None = None,
    ) -> None:
        self.site_id = site_id
        self.edge_id = edge_id
        self.outbox = outbox
        self.resend_after_s = resend_after_s
        self.max_unacked = max_unacked
        self.flush_timeout_s = flush_timeout_s
        self.status_every_s = status_every_s
        broker = parse_mqtt_url(url)  # mqtt:// or mqtts:// (TLS), common/mqtt_url.py
        self._host, self._port = broker.host, broker.port
        if username is None:
            username, password = broker.username, broker.password
        self._status_topic = status_topic(site_id, edge_id)
        self._ack_topic = ack_topic(site_id, edge_id)
        self._cameras: dict[str, CameraStatus] = {}
        self._models: dict[str, ModelStatus] = {}  # guarded by _cameras_lock too
        self._box: BoxLoad | None = None  # guarded by _cameras_lock too
        self._cameras_lock = threading.Lock()
        self._acks: queue.SimpleQueue[EventKey] = queue.SimpleQueue()
        self._connected = threading.Event()
        self._connected_at: float | None = None  # time.time() of the latest connect
        self._lost_at: float | None = None  # time.monotonic() when the connection was lost
        self._closing = False
        self._warned_unreachable = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._last_info: mqtt.MQTTMessageInfo | None = None
        self._client = self._make_client(reconnect_max_s, username, password)
        if broker.tls:  # the broker's certificate verified (CA file, or the system's)
            self._client.tls_set_context(tls_context(tls_files))
        self._sender = threading.Thread(target=self._run, name="mqtt-outbox", daemon=True)
        self._sender.start()
        self._client.connect_async(self._host, self._port, keepalive=keepalive_s)
        self._client.loop_start()  # paho's thread connects, and reconnects with backoff

    def __repr__(self) -> str:
        return f"MqttSink({self._host}:{self._port}, {self.site_id}/{self.edge_id})"

    def _make_client(
        self, reconnect_max_s: int, username: str | None, password: str | None
    ) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"zhizhi-edge-{self.site_id}-{self.edge_id}",
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        client.enable_logger(paho_logger("edge.mqtt"))
        if username is not None:
            client.username_pw_set(username, password)
        client.will_set(self._status_topic, self._status_json("offline"), qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=max(1, reconnect_max_s))
        client.max_inflight_messages_set(100)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_connect_fail = self._on_connect_fail
        return client

    # -- the EventSink protocol ------------------------------------------------------------

    def send(self, event: Event) -> None:
        """Store the event durably and return; the sender thread publishes it."""
        if event.site_id != self.site_id:  # the broker's ACL and the server would refuse it
            logger.error(
                "event %s/%d is for site %s, this edge is in site %s; queued all the same",
                event.event_id,
                event.seq,
                event.site_id,
                self.site_id,
            )
        topic = events_topic(event.site_id, self.edge_id, event.camera_id)
        try:
            self.outbox.add(event, topic)
        except Exception:  # the analysis thread must go on; this is loud and rare (disk)
            logger.exception(
                "event %s/%d could not be stored in the outbox", event.event_id, event.seq
            )
            return
        self._wake.set()

    def camera_status(
        self, camera_id: str, online: bool, reason: str, reason_code: str | None = None
    ) -> None:
        with self._cameras_lock:
            load = self._cameras[camera_id].load if camera_id in self._cameras else None
            self._cameras[camera_id] = CameraStatus(
                online=online, reason=reason, ts=time.time(), reason_code=reason_code, load=load
            )
        if self._connected.is_set():
            self._publish_status("online")

    def set_load(self, cameras: dict[str, CameraLoad], box: BoxLoad) -> None:
        """Each camera's coverage and the box's load, in the next status messages; published
        now (the supervisor calls this every report interval)."""
        with self._cameras_lock:
            for camera_id, load in cameras.items():
                current = self._cameras.get(camera_id) or CameraStatus(online=False)
                self._cameras[camera_id] = current.model_copy(update={"load": load})
            self._box = box
        if self._connected.is_set():
            self._publish_status("online")

    def set_models(self, models: dict[str, ModelStatus]) -> None:
        """The models this edge runs (roll-outs change them); republishes the status."""
        with self._cameras_lock:
            self._models = dict(models)
        if self._connected.is_set():
            self._publish_status("online")

    def close(self) -> None:
        """Publish what can be published within `flush_timeout_s`, go offline, stop."""
        if self._closing:
            return
        deadline = time.monotonic() + self.flush_timeout_s
        self._flush(deadline)
        self._closing = True
        self._stop.set()
        self._wake.set()
        self._sender.join(timeout=max(1.0, deadline - time.monotonic()))
        if self._connected.is_set():
            info = self._publish_status("offline")
            self._wait_published(info, max(0.5, deadline - time.monotonic()))
        self._client.disconnect()
        self._client.loop_stop()
        self._drain_acks()

    # -- status ----------------------------------------------------------------------------

    def _status_json(self, state: Literal["online", "offline"]) -> str:
        with self._cameras_lock:
            cameras = dict(self._cameras)
            models = dict(self._models)
            box = self._box
        try:
            outbox = self.outbox.stats().as_status()
        except Exception:
            logger.exception("outbox stats unavailable")
            outbox = {}
        message = StatusMessage(
            state=state,
            edge_id=self.edge_id,
            site_id=self.site_id,
            ts=time.time(),
            cameras=cameras,
            outbox=outbox,
            models=models,
            box=box,
        )
        return message.model_dump_json()

    def _publish_status(self, state: Literal["online", "offline"]) -> mqtt.MQTTMessageInfo | None:
        try:
            return self._client.publish(
                self._status_topic, self._status_json(state), qos=1, retain=True
            )
        except Exception:
            logger.exception("status %s could not be published", state)
            return None

    @staticmethod
    def _wait_published(info: mqtt.MQTTMessageInfo | None, timeout_s: float) -> bool:
        if info is None:
            return False
        try:
            info.wait_for_publish(timeout=timeout_s)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    # -- paho callbacks (paho's network thread) ---------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        _properties: object,
    ) -> None:
        if reason_code.is_failure:
            logger.error(
                "MQTT broker %s:%d refused the connection: %s", self._host, self._port, reason_code
            )
            return
        client.subscribe(self._ack_topic, qos=1)  # here, so it survives reconnects
        if self._lost_at is None:
            logger.info("MQTT connected to %s:%d", self._host, self._port)
        else:
            logger.info("MQTT connection back after %.1f s", time.monotonic() - self._lost_at)
        self._connected_at = time.time()
        self._lost_at = None
        # connected first, status second: a camera change racing with this connect is then
        # either in this status or published by camera_status() itself
        self._connected.set()
        self._publish_status("online")
        self._wake.set()

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: object) -> None:
        if self._lost_at is None and self._connected_at is None and not self._warned_unreachable:
            self._warned_unreachable = True
            logger.warning(
                "MQTT broker %s:%d not reachable; events wait in the outbox until it is",
                self._host,
                self._port,
            )

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        _properties: object,
    ) -> None:
        if not self._connected.is_set():
            return  # a failed reconnect attempt: the loss was logged already
        self._connected.clear()
        self._lost_at = time.monotonic()
        if not self._closing:
            logger.warning(
                "MQTT connection lost (%s); events wait in the outbox until it is back",
                reason_code,
            )

    def _on_message(
        self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        if message.topic != self._ack_topic:
            return
        try:
            ack = AckMessage.model_validate_json(message.payload)
        except ValidationError as error:
            logger.warning(
                "invalid ack on %s (%d errors), ignored", message.topic, error.error_count()
            )
            return
        if ack.rejected is not None:
            logger.error(
                "server rejected event %s/%d for good (%s): removed from the outbox",
                ack.event_id,
                ack.seq,
                ack.rejected,
            )
        self._acks.put((ack.event_id, ack.seq))
        self._wake.set()

    # -- sender thread ---------------------------------------------------------------------

    def _run(self) -> None:
        tick_s = min(1.0, max(0.05, self.resend_after_s / 4))
        next_status = time.monotonic() + self.status_every_s
        while not self._stop.is_set():
            self._wake.wait(tick_s)
            self._wake.clear()
            try:
                self._drain_acks()
                self._publish_due()
            except Exception:  # boundary of a background thread: log, pause, go on
                logger.exception("outbox sender failed; retrying in 5 s")
                self._stop.wait(5.0)
            if time.monotonic() >= next_status:
                next_status = time.monotonic() + self.status_every_s
                if self._connected.is_set():
                    self._publish_status("online")

    def _drain_acks(self) -> int:
        keys: list[EventKey] = []
        while True:
            try:
                keys.append(self._acks.get_nowait())
            except queue.Empty:
                break
        return self.outbox.ack_many(keys) if keys else 0

    def _publish_due(self) -> None:
        while self._connected.is_set() and not self._stop.is_set():
            now = time.time()
            items = self.outbox.due(
                now,
                self.resend_after_s,
                SEND_BATCH,
                sent_before=self._connected_at,
                window=self.max_unacked,
            )
            if not items:
                return
            sent: list[EventKey] = []
            late = 0
            for item in items:
                info = self._client.publish(item.topic, item.payload, qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    break  # connection gone; paho keeps this one and sends it on reconnect
                sent.append(item.key)
                late += self._late(item, now)
                self._last_info = info
            self.outbox.mark_sent(sent, now, late=late)
            self._drain_acks()
            if len(sent) < len(items):
                return

    def _late(self, item: OutboxItem, now: float) -> bool:
        """A re-send because the ack did not come within `resend_after_s` of a send on this
        connection (not a re-send after a reconnect): the end-to-end latency guard (issue 18).
        A server group that loses turns (a member gone with its session kept) shows up here,
        in the status's `outbox.late_acks` and the server's metrics, before alerts go missing."""
        sent_at = item.last_sent_at
        connected_at = self._connected_at
        return (
            sent_at is not None
            and connected_at is not None
            and connected_at <= sent_at <= now - self.resend_after_s
        )

    def _handed_over(self) -> bool:
        """Everything in the outbox was published on this connection and reached the broker."""
        unsent = self.outbox.due(time.time(), math.inf, 1, sent_before=self._connected_at)
        return not unsent and (self._last_info is None or self._last_info.is_published())

    def _flush(self, deadline: float, ack_grace_s: float = 1.0) -> None:
        """Until `deadline`: wait for the outbox to empty, or for everything to be at the
        broker with no ack arriving for `ack_grace_s` (the server may be away)."""
        pending_before = -1
        progress_at = time.monotonic()
        while time.monotonic() < deadline and self._connected.is_set():
            self._wake.set()
            pending = self.outbox.stats().pending_events
            if pending == 0:
                return
            if pending != pending_before:
                pending_before, progress_at = pending, time.monotonic()
            if self._handed_over() and time.monotonic() - progress_at > ack_grace_s:
                return
            time.sleep(0.05)
