"""MQTT ingestion on the server (contract section 4): edge events in, acks out, nothing lost.

Flow of one message::

    broker ──PUBLISH(QoS 1)──▶ paho network thread ──bounded queue──▶ worker thread
        worker: validate ─▶ store.ingest_many (one transaction per batch)
                ─▶ publish {"event_id", "seq"} on zhizhi/v1/{site}/{edge}/ack (QoS 1)
                ─▶ PUBACK to the broker

The client uses MQTT 5 with ``clean_start=False``, a long Session Expiry Interval and a stable
client id, so whatever the broker queued while the server was down arrives when it comes back.
paho runs with ``manual_ack=True``: the broker's PUBACK is sent only once the message is stored
(or rejected for good), so a crash between receipt and commit makes the broker deliver it again.
The Receive Maximum sent in CONNECT bounds how many unacknowledged messages the broker hands us,
and the queue between the threads is larger than that, so the network thread never blocks.

A message that can never be stored (oversized, not JSON, not a contract event, a topic that lies
about its site or camera) is logged, counted, PUBACKed so the broker does not redeliver it
forever, and never acked to the edge. A store that raises (database away) is retried with
backoff without PUBACKing anything; the consumer keeps running and reports itself unhealthy.

Events go to ``$share/{group}/zhizhi/v1/+/+/+/events`` (MQTT 5 shared subscription) so several
server processes split the load; status messages are retained, and the broker never sends
retained messages to shared subscriptions, so every process subscribes to them directly.
For brokers without MQTT 5 (the amqtt broker of `zhizhi demo`) use mqtt_version="3.1.1" and
group=None. See docs/mqtt.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from collections import Counter as TallyCounter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import ValidationError

from common.events import (
    MAX_SEQ,
    TOPIC_PREFIX,
    AckMessage,
    Event,
    StatusMessage,
    ack_topic,
    parse_topic,
)
from common.limits import (
    DEFAULT_MAX_DEPTH,
    InputLimits,
    InputRefused,
    clean_text,
    nesting_depth,
    parse_json,
)
from common.logs import paho_logger
from common.mqtt_url import MqttUrl, TlsFiles, parse_mqtt_url, tls_context
from server.errors import ForeignIds, UnstorableInput
from server.ingest import utc_representable
from server.metrics import EVENTS_INGESTED, MESSAGES_REJECTED
from server.services.dead_letters import DeadLetter

logger = logging.getLogger(__name__)

DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024
DEFAULT_GROUP = "zhizhi-server"
MAX_EVENT_ID = 128  # Event.event_id max_length
EVENTS_FILTER = f"{TOPIC_PREFIX}/+/+/+/events"
STATUS_FILTER = f"{TOPIC_PREFIX}/+/+/status"
# How long the broker keeps a server's session (and queues its share) while it is away: long
# enough for a restart under the same client id, bounded for a process that never comes back
# (the live members remove such a one after their grace anyway: server/services/membership.py).
SESSION_EXPIRY_S = 3600
MqttVersion = Literal["5", "3.1.1"]
CONNECT_WARNING_S = 10

RejectReason = Literal[
    "oversized",
    "empty",
    "bad_topic",
    "not_utf8",
    "bad_json",
    "too_deep",
    "not_finite",
    "number_range",
    "bad_text",
    "invalid_event",
    "invalid_status",
    "site_mismatch",
    "camera_mismatch",
    "edge_mismatch",
    "foreign_id",  # its event_id belongs to another site or camera
    "unstorable",  # the database refused this message's values (and only this message's)
    "store_error",  # the store kept failing on this message alone while it answered
    "internal_error",  # checking the message raised: a bug, kept so it can be replayed
]
REJECT_REASONS: tuple[RejectReason, ...] = get_args(RejectReason)
# Reasons that point at the server or its store rather than at the sender: logged at ERROR.
SERVER_SIDE_REASONS = frozenset({"store_error", "internal_error"})

for _reason in REJECT_REASONS:  # every reason shows in /metrics, at 0 until it happens
    MESSAGES_REJECTED.labels(reason=_reason)


class EventStore(Protocol):
    """What the consumer needs from the storage (server/ingest.py IngestService provides it)."""

    def ingest_many(self, items: Sequence[tuple[Event, str | None]], *, source: str) -> list[bool]:
        """Store (event, edge_id) pairs in one transaction; per item True if newly stored,
        False if that (event_id, seq) was already there. Raises if nothing was committed.
        It counts zhizhi_events_ingested_total{source, result} for the items it is given.
        UnstorableInput when the values themselves are refused (bad input, not a fault)."""
        ...

    def available(self) -> bool:
        """Whether the store answers at all (after a failure: down, or this message's fault)."""
        ...

    def keep_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Keep refused messages for an admin (one transaction); raises if nothing was kept."""
        ...

    def record_status(
        self, site_id: str, edge_id: str, status: StatusMessage, received_at: datetime
    ) -> None: ...


# ---------------------------------------------------------------------------------------------
# Validation: pure functions, no broker needed.


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: RejectReason
    detail: str  # short, safe to log: never the payload


@dataclass(frozen=True, slots=True)
class EventDelivery:
    site_id: str
    edge_id: str
    camera_id: str
    event: Event


@dataclass(frozen=True, slots=True)
class StatusDelivery:
    site_id: str
    edge_id: str
    status: StatusMessage


def validate_message(
    topic: str, payload: bytes, *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
) -> EventDelivery | StatusDelivery | Rejected:
    """Classify one MQTT message from an edge: a valid event, a valid status, or why not."""
    if len(payload) > max_payload_bytes:
        return Rejected("oversized", f"{len(payload)} bytes > limit {max_payload_bytes}")
    parsed = parse_topic(topic)
    if parsed is None or parsed[3] not in ("events", "status") or "" in parsed[:3]:
        return Rejected("bad_topic", "not a contract events or status topic")
    if not payload:
        return Rejected("empty", "empty payload")
    try:  # the limits every input path shares (common/limits.py): depth, numbers, text
        parse_json(payload, InputLimits(max_bytes=max_payload_bytes))
    except InputRefused as refused:
        return Rejected(refused.reason, refused.detail)
    text = payload.decode("utf-8")
    site_id, edge_id, camera_id, kind = parsed
    if kind == "status":
        return validate_status(site_id, edge_id, text)
    if camera_id is None:
        return Rejected("bad_topic", "events topic without a camera")
    return validate_event(site_id, edge_id, camera_id, text)


def validate_event(
    site_id: str, edge_id: str, camera_id: str, text: str
) -> EventDelivery | Rejected:
    """An event message received on zhizhi/v1/{site_id}/{edge_id}/{camera_id}/events."""
    try:
        event = Event.model_validate_json(text)
    except ValidationError as error:
        return Rejected(_json_or(error, "invalid_event"), _describe(error))
    if not utc_representable(event.observed_at):
        return Rejected("invalid_event", "observed_at is out of range once in UTC")
    if event.site_id != site_id:
        return Rejected(
            "site_mismatch", f"topic site {site_id!r} but payload site {event.site_id!r}"
        )
    if event.camera_id != camera_id:
        return Rejected(
            "camera_mismatch", f"topic camera {camera_id!r} but payload camera {event.camera_id!r}"
        )
    return EventDelivery(site_id, edge_id, camera_id, event)


def validate_status(site_id: str, edge_id: str, text: str) -> StatusDelivery | Rejected:
    """A status message received on zhizhi/v1/{site_id}/{edge_id}/status."""
    try:
        status = StatusMessage.model_validate_json(text)
    except ValidationError as error:
        return Rejected(_json_or(error, "invalid_status"), _describe(error))
    if status.site_id is not None and status.site_id != site_id:
        return Rejected(
            "site_mismatch", f"topic site {site_id!r} but payload site {status.site_id!r}"
        )
    if status.edge_id is not None and status.edge_id != edge_id:
        return Rejected(
            "edge_mismatch", f"topic edge {edge_id!r} but payload edge {status.edge_id!r}"
        )
    return StatusDelivery(site_id, edge_id, status)


def _event_key(payload: bytes) -> tuple[str, int] | None:
    """(event_id, seq) of a refused payload, when it says them in a form an ack can carry
    (within the shared input limits, seq within 0..MAX_SEQ, an event id of 1..128 chars)."""
    if len(payload) > 1 << 20:
        return None  # not worth parsing: far beyond any real event
    try:
        text = payload.decode("utf-8")
        if nesting_depth(text, DEFAULT_MAX_DEPTH) > DEFAULT_MAX_DEPTH:
            return None  # json.loads would raise RecursionError
        data = json.loads(text)  # other fields may break the limits: only these two matter
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    event_id, seq = data.get("event_id"), data.get("seq")
    if (
        isinstance(event_id, str)
        and 0 < len(event_id) <= MAX_EVENT_ID
        and clean_text(event_id, MAX_EVENT_ID) == event_id
        and isinstance(seq, int)
        and not isinstance(seq, bool)
        and 0 <= seq <= MAX_SEQ
    ):
        return event_id, seq
    return None


def _sha(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def _json_or(error: ValidationError, otherwise: RejectReason) -> RejectReason:
    """bad_json when the text is not JSON at all (garbage, truncated), else `otherwise`."""
    if any(item["type"] == "json_invalid" for item in error.errors(include_url=False)):
        return "bad_json"
    return otherwise


def _describe(error: ValidationError, limit: int = 3) -> str:
    """The first few validation problems as `field: message`, without the input values."""
    errors = error.errors(include_url=False, include_input=False, include_context=False)
    parts = [f"{'.'.join(str(p) for p in item['loc']) or '$'}: {item['msg']}" for item in errors]
    text = "; ".join(parts[:limit])
    if len(parts) > limit:
        text += f"; +{len(parts) - limit} more"
    return text[:300]


# ---------------------------------------------------------------------------------------------
# Broker address: the one parser of the tree (common/mqtt_url.py)

BrokerAddress = MqttUrl


def parse_broker_url(url: str) -> MqttUrl:
    """mqtt://[user:pass@]host[:port] (also tcp://), or mqtts:// / ssl:// for TLS (port 8883)."""
    return parse_mqtt_url(url)


# ---------------------------------------------------------------------------------------------
# The consumer


@dataclass(slots=True)
class _Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int  # which connection it came on: a PUBACK only makes sense on that one
    received_at: datetime


@dataclass(slots=True)
class _PendingEvent:
    inbound: _Inbound
    delivery: EventDelivery
    failures: int = 0  # store attempts that failed while the store took other events


@dataclass(slots=True)
class _PendingReject:
    inbound: _Inbound
    rejected: Rejected
    failures: int = 0  # attempts to keep it as a dead letter that failed while the store answered


@dataclass(slots=True)
class _PendingStatus:
    inbound: _Inbound
    delivery: StatusDelivery
    failures: int = 0


class ConsumerStats:
    """In-process tallies (thread-safe), for /healthz details and tests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: TallyCounter[str] = TallyCounter()
        self._rejected: TallyCounter[str] = TallyCounter()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def reject(self, reason: str) -> None:
        with self._lock:
            self._rejected[reason] += 1

    def get(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    @property
    def rejected(self) -> dict[str, int]:
        with self._lock:
            return dict(self._rejected)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {**self._counts, "rejected": dict(self._rejected)}


class MqttConsumer:
    """Consumes edge events and status from the broker into an EventStore; acks stored events.

    `start()` returns at once; paho's thread connects and reconnects with backoff on its own.
    `stop()` lets the worker store and acknowledge what it already holds (up to a timeout),
    then disconnects while keeping the broker session, so nothing published meanwhile is lost.
    """

    def __init__(
        self,
        url: str,
        store: EventStore,
        *,
        client_id: str,
        group: str | None = DEFAULT_GROUP,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        batch_max: int = 200,
        batch_wait_s: float = 0.02,
        username: str | None = None,
        password: str | None = None,
        on_connected_change: Callable[[bool], None] | None = None,
        session_expiry_s: int = SESSION_EXPIRY_S,
        mqtt_version: MqttVersion = "5",
        receive_maximum: int = 1000,
        keepalive_s: int = 30,
        ca_file: str | None = None,
        tls_files: TlsFiles | None = None,
        retry_initial_s: float = 0.1,
        retry_max_s: float = 5.0,
        max_store_attempts: int = 5,
    ) -> None:
        if not client_id:
            raise ValueError("client_id must be set and stable: the broker keeps the session by it")
        if batch_max < 1:
            raise ValueError("batch_max must be at least 1")
        if not 0 <= session_expiry_s <= 0xFFFFFFFF:
            raise ValueError("session_expiry_s must be within 0..4294967295")
        if not 1 <= receive_maximum <= 65535:
            raise ValueError("receive_maximum must be within 1..65535")
        if group is not None and (not group or any(c in group for c in "/+#")):
            raise ValueError(f"shared subscription group must be a plain name: {group!r}")
        self.address = parse_broker_url(url)
        self.client_id = client_id
        self.group = group
        self.events_filter = f"$share/{group}/{EVENTS_FILTER}" if group else EVENTS_FILTER
        self.status_filter = STATUS_FILTER
        self.stats = ConsumerStats()
        self._store = store
        self._max_payload_bytes = max_payload_bytes
        self._batch_max = batch_max
        self._batch_wait_s = batch_wait_s
        self._on_connected_change = on_connected_change
        self._session_expiry_s = session_expiry_s
        self.mqtt_version = mqtt_version
        self._receive_maximum = receive_maximum
        self._keepalive_s = keepalive_s
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._max_store_attempts = max_store_attempts

        # More room than the broker may have in flight to us, so on_message never blocks.
        self._queue: queue.Queue[_Inbound] = queue.Queue(maxsize=2 * receive_maximum + 100)
        self._events: list[_PendingEvent] = []  # the batch being stored (worker thread only)
        self._statuses: list[_PendingStatus] = []
        self._rejects: list[_PendingReject] = []  # refused, to be kept as dead letters
        self._lock = threading.Lock()
        self._generation = 0
        self._connected = False
        self._subscribed = False
        self._store_ok = True
        self._last_error: str | None = None
        self._started = False
        self._stop_requested = threading.Event()
        self._drain_deadline = float("inf")
        self._worker: threading.Thread | None = None
        self._last_ack: mqtt.MQTTMessageInfo | None = None

        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if mqtt_version == "5" else mqtt.MQTTv311,
            # session_expiry_s 0: a session that ends with the connection (benchmarks, tools)
            clean_session=None if mqtt_version == "5" else session_expiry_s == 0,
            manual_ack=True,
        )
        client.enable_logger(paho_logger(f"{__name__}.paho"))
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        user = username if username is not None else self.address.username
        secret = password if password is not None else self.address.password
        if user is not None:
            client.username_pw_set(user, secret)
        if self.address.tls:
            files = tls_files or TlsFiles(ca_file=Path(ca_file) if ca_file else None)
            client.tls_set_context(tls_context(files))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client

    # -- state for /healthz ------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Connected to the broker (CONNACK accepted)."""
        return self._connected

    @property
    def healthy(self) -> bool:
        """Connected and subscribed, the worker is running and the store accepts writes."""
        worker = self._worker
        return (
            self._connected
            and self._subscribed
            and self._store_ok
            and worker is not None
            and worker.is_alive()
        )

    def health(self) -> dict[str, Any]:
        worker = self._worker
        return {
            "connected": self._connected,
            "subscribed": self._subscribed,
            "store_ok": self._store_ok,
            "worker_alive": worker is not None and worker.is_alive(),
            "queued": self._queue.qsize(),
            "pending": self._pending_count(),
            "last_error": self._last_error,
        }

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            raise RuntimeError("MqttConsumer.start() called twice")
        self._started = True
        self._worker = threading.Thread(target=self._run, name="mqtt-consumer", daemon=True)
        self._worker.start()
        if self.mqtt_version == "5":
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self._session_expiry_s
            properties.ReceiveMaximum = self._receive_maximum
            self._client.connect_async(
                self.address.host,
                self.address.port,
                keepalive=self._keepalive_s,
                clean_start=self._session_expiry_s == 0,
                properties=properties,
            )
        else:  # clean_session=False was set on the client; the broker's inflight limit applies
            self._client.connect_async(
                self.address.host, self.address.port, keepalive=self._keepalive_s
            )
        self._client.loop_start()
        watchdog = threading.Timer(CONNECT_WARNING_S, self._warn_if_not_connected)
        watchdog.daemon = True
        watchdog.start()
        logger.info(
            "MQTT consumer %s connecting to %s:%s (events: %s)",
            self.client_id,
            self.address.host,
            self.address.port,
            self.events_filter,
        )

    def stop(self, timeout_s: float = 10.0, *, end_session: bool = False) -> None:
        """Store and acknowledge what was received (up to timeout_s), then disconnect.

        The broker session is kept: messages published from now on, and any received but not
        yet stored, are delivered again when a consumer with the same client id connects.
        With `end_session` (MQTT 5) the DISCONNECT sets the session's expiry to 0: the broker
        drops the session and this process leaves the shared group at once, so its turn goes
        to the other members (issue 18); what it held unstored comes back by the edges'
        re-sends.
        """
        if not self._started or self._stop_requested.is_set():
            return
        deadline = time.monotonic() + timeout_s
        self._drain_deadline = deadline
        self._stop_requested.set()
        if self._worker is not None:
            self._worker.join(max(0.0, deadline - time.monotonic()))
            if self._worker.is_alive():
                logger.warning("MQTT consumer worker did not finish within %.1f s", timeout_s)
        while not self._acks_sent() and time.monotonic() < deadline:
            time.sleep(0.01)  # let the acks to the edges go out before the DISCONNECT
        if end_session and self.mqtt_version == "5" and self._session_expiry_s:
            properties = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 0
            self._client.disconnect(properties=properties)
        else:
            self._client.disconnect()
        self._client.loop_stop()
        self._set_connected(False)
        logger.info(
            "MQTT consumer %s stopped (%s)",
            self.client_id,
            "session ended" if end_session else "session kept",
        )

    def _warn_if_not_connected(self) -> None:
        if not self._connected and not self._stop_requested.is_set():
            logger.warning(
                "MQTT consumer %s not connected to %s:%s after %s s (%s); MQTT %s broker?",
                self.client_id,
                self.address.host,
                self.address.port,
                CONNECT_WARNING_S,
                self._last_error or "no answer",
                self.mqtt_version,
            )

    def _acks_sent(self) -> bool:
        last = self._last_ack
        try:
            return last is None or last.is_published()
        except (RuntimeError, ValueError):  # published while disconnected: paho resends it
            return True

    def __enter__(self) -> MqttConsumer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- paho network thread -------------------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self._last_error = f"broker refused the connection: {reason_code}"
            logger.error("MQTT broker refused the connection: %s", reason_code)
            self._set_connected(False)
            return
        with self._lock:
            self._generation += 1
        logger.info(
            "MQTT consumer %s connected (session present: %s)",
            self.client_id,
            flags.session_present,
        )
        # Subscribing on every connect: harmless when the session already holds the subscriptions.
        if self.mqtt_version == "5":
            client.subscribe(
                [
                    (self.events_filter, SubscribeOptions(qos=1)),
                    (self.status_filter, SubscribeOptions(qos=1)),
                ]
            )
        else:
            client.subscribe([(self.events_filter, 1), (self.status_filter, 1)])
        self._set_connected(True)

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        self._subscribed = False
        if not self._stop_requested.is_set():
            self._last_error = f"disconnected: {reason_code}"
            logger.warning("MQTT consumer disconnected (%s); reconnecting", reason_code)
        self._set_connected(False)

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _mid: int,
        reason_codes: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            self._last_error = f"subscription refused: {', '.join(refused)}"
            logger.error(
                "MQTT broker refused the subscriptions %s / %s: %s (check the ACL)",
                self.events_filter,
                self.status_filter,
                ", ".join(refused),
            )
            self._subscribed = False
        else:
            self._subscribed = True

    def _on_message(
        self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = "<topic not UTF-8>"
        self.stats.add("received")
        if topic.endswith("/events"):
            self.stats.add("events_received")  # this process's share (membership, issue 18)
        item = _Inbound(
            topic=topic,
            payload=bytes(message.payload),
            mid=message.mid,
            qos=message.qos,
            generation=self._generation,
            received_at=datetime.now(UTC),
        )
        while True:
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                if self._stop_requested.is_set():
                    # Not PUBACKed: the broker delivers it again in the next session.
                    return
                logger.warning("MQTT consumer queue full; holding the network thread")

    def _set_connected(self, value: bool) -> None:
        changed = value != self._connected
        self._connected = value
        if changed and self._on_connected_change is not None:
            try:
                self._on_connected_change(value)
            except Exception:
                logger.exception("on_connected_change callback failed")

    # -- worker thread -------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = self._retry_initial_s
        retry_at = 0.0
        while True:
            pending = self._pending_count()
            if self._stop_requested.is_set() and (
                (not pending and self._queue.empty()) or time.monotonic() >= self._drain_deadline
            ):
                break
            try:
                if not pending:
                    try:
                        first = self._queue.get(timeout=0.1)
                    except queue.Empty:
                        continue
                    self._accept(first)
                    if not self._pending_count():
                        continue  # it was rejected: nothing to store
                    self._fill(time.monotonic() + self._batch_wait_s)
                else:
                    # Retrying after a store failure: take in more while the backoff runs out.
                    self._fill(retry_at)
                    self._sleep_until(retry_at)
                if self._attempt():
                    backoff = self._retry_initial_s
                else:
                    retry_at = time.monotonic() + backoff
                    backoff = min(backoff * 2, self._retry_max_s)
            except Exception:  # a bug here must not end ingestion
                logger.exception("MQTT consumer worker error; continuing")
                retry_at = time.monotonic() + backoff
        left = self._pending_count() + self._queue.qsize()
        if left:
            logger.warning(
                "MQTT consumer stopping with %d messages not stored; the broker delivers them "
                "again in the next session",
                left,
            )

    def _pending_count(self) -> int:
        return len(self._events) + len(self._statuses) + len(self._rejects)

    def _fill(self, until: float) -> None:
        """Move messages from the queue into the batch until `until` or the batch is full."""
        while self._pending_count() < self._batch_max:
            remaining = until - time.monotonic()
            if self._stop_requested.is_set():
                remaining = min(remaining, self._drain_deadline - time.monotonic())
            try:
                if remaining <= 0:
                    item = self._queue.get_nowait()
                else:
                    item = self._queue.get(timeout=min(remaining, 0.1))
            except queue.Empty:
                if remaining <= 0:
                    return
                continue
            self._accept(item)

    def _sleep_until(self, when: float) -> None:
        if self._stop_requested.is_set():
            when = min(when, self._drain_deadline)
            time.sleep(max(0.0, when - time.monotonic()))
        else:
            self._stop_requested.wait(max(0.0, when - time.monotonic()))

    def _accept(self, inbound: _Inbound) -> None:
        try:
            verdict = validate_message(
                inbound.topic, inbound.payload, max_payload_bytes=self._max_payload_bytes
            )
        except Exception as error:  # a bug in the checks: the message still gets its PUBACK
            logger.exception("Checking an MQTT message on %s raised", inbound.topic)
            verdict = Rejected("internal_error", f"{type(error).__name__} while checking it")
        if isinstance(verdict, Rejected):
            self._reject(inbound, verdict)
        elif isinstance(verdict, EventDelivery):
            self._events.append(_PendingEvent(inbound, verdict))
        else:
            self._statuses.append(_PendingStatus(inbound, verdict))

    def _attempt(self) -> bool:
        """Store everything pending; True when nothing is left over.

        Every failure is sorted: the store is down (`available()` says so: everything waits,
        in order, and health goes red) or this message is bad (refused as data at once, or
        failing alone `max_store_attempts` times while the store answers: rejected). So no
        message can hold the others back, whatever it holds.
        """
        up = self._keep_rejects() if self._rejects else True
        if up and self._events:
            up = self._store_events()
        if up and self._statuses:
            up = self._store_statuses()
        if up:
            self._store_ok = True
        return not self._pending_count()

    def _keep_rejects(self) -> bool:
        """Keep the refused messages as dead letters (one transaction), then ack and PUBACK
        them. False when the store is down: they wait, unacknowledged, like everything else."""
        letters = [
            DeadLetter(
                topic=p.inbound.topic,
                payload=p.inbound.payload,
                reason=p.rejected.reason,
                detail=p.rejected.detail,
                received_at=p.inbound.received_at,
                event_id=key[0] if key else None,
                seq=key[1] if key else None,
            )
            for p in self._rejects
            for key in [_event_key(p.inbound.payload)]
        ]
        try:
            self._store.keep_dead_letters(letters)
        except Exception as error:
            if not self._store_answers():
                self._store_failed(error, len(letters))
                return False
            for pending in self._rejects:
                pending.failures += 1
            if self._rejects[0].failures < self._max_store_attempts:
                logger.warning("Keeping %d dead letters failed (%s); retrying", len(letters), error)
                return False
            logger.error(  # never silent: what could not be kept is logged, then let go
                "Dead letters could not be kept (%s: %s); dropping %s",
                type(error).__name__,
                error,
                ", ".join(f"{x.topic} {x.reason} sha256={_sha(x.payload)}" for x in letters),
            )
            self.stats.add("dead_letters_lost", len(letters))
        else:
            self.stats.add("dead_letters_kept", len(letters))
        rejects, self._rejects = self._rejects, []
        for pending in rejects:
            self._finish_reject(pending)
        return True

    def _finish_reject(self, pending: _PendingReject) -> None:
        try:
            if pending.rejected.reason != "store_error":  # that one may go through later
                self._ack_rejected(pending.inbound, pending.rejected.reason)
        except Exception:
            logger.exception("Acking a refused MQTT message on %s raised", pending.inbound.topic)
        finally:
            self._puback(pending.inbound)

    def _store_statuses(self) -> bool:
        left: list[_PendingStatus] = []
        for index, pending in enumerate(self._statuses):
            delivery = pending.delivery
            try:
                self._store.record_status(
                    delivery.site_id, delivery.edge_id, delivery.status, pending.inbound.received_at
                )
            except Exception as error:
                verdict = self._judge(error, [pending])
                if verdict == "down":
                    self._statuses = left + self._statuses[index:]
                    return False
                if verdict == "retry":
                    left.append(pending)
                continue
            self.stats.add("status_recorded")
            self._puback(pending.inbound)
        self._statuses = left
        return True

    def _store_events(self) -> bool:
        """Store the pending events, in one transaction when they all go through; else one by
        one, sorting each failure. False when the store is down (everything left waits)."""
        groups: dict[tuple[str, int, str, str], list[_PendingEvent]] = {}
        for pending in self._events:  # the same message twice in one batch: store it once
            event = pending.delivery.event
            # (the site and camera are part of it: the same event_id from another site is no
            # copy but a foreign id, refused by the store; found by tests/integration/
            # test_fuzz_mqtt.py)
            key = (event.event_id, event.seq, event.site_id, event.camera_id)
            groups.setdefault(key, []).append(pending)
        batch = list(groups.values())
        while len(batch) > 1:
            try:
                results = self._ingest([group[0] for group in batch])
            except ForeignIds as foreign:  # refused before anything was written: the rest go on
                for index in sorted(foreign.refused):
                    for pending in batch[index]:
                        self._reject(
                            pending.inbound, Rejected("foreign_id", foreign.refused[index])
                        )
                batch = [g for i, g in enumerate(batch) if i not in foreign.refused]
                continue
            except Exception as error:  # sorted out one by one below
                logger.info("A batch of %d failed (%s); trying one by one", len(batch), error)
                break
            for group, stored in zip(batch, results, strict=True):
                self._finish_group(group, stored)
            self._events = []
            return True
        left: list[_PendingEvent] = []
        for index, group in enumerate(batch):
            try:
                (stored,) = self._ingest([group[0]])
            except Exception as error:
                verdict = self._judge(error, group)
                if verdict == "down":
                    self._events = left + [p for g in batch[index:] for p in g]
                    return False
                if verdict == "retry":
                    left.extend(group)
                continue
            self._finish_group(group, stored)
        self._events = left
        return True

    def _judge(
        self, error: Exception, group: Sequence[_PendingEvent | _PendingStatus]
    ) -> Literal["down", "retry", "rejected"]:
        """Sort the failure of one message (and its copies in the batch): its own fault
        (rejected now or after max_store_attempts) or the store's (down: it waits)."""
        if isinstance(error, UnstorableInput):
            for pending in group:
                self._reject(pending.inbound, Rejected("unstorable", error.detail))
            return "rejected"
        if isinstance(error, ForeignIds):
            for pending in group:
                self._reject(pending.inbound, Rejected("foreign_id", str(error)))
            return "rejected"
        if not self._store_answers():
            self._store_failed(error, len(group))
            return "down"
        self._store_ok = True  # the store answers: the message is the problem
        for pending in group:
            pending.failures += 1
        failures = group[0].failures
        if failures < self._max_store_attempts:
            logger.warning(
                "Storing one MQTT message on %s failed while the store answers (%s: %s); "
                "attempt %d of %d",
                group[0].inbound.topic,
                type(error).__name__,
                str(error)[:200],
                failures,
                self._max_store_attempts,
            )
            return "retry"
        detail = f"failed {failures} times while the store answered: {type(error).__name__}"
        for pending in group:
            self._reject(pending.inbound, Rejected("store_error", detail))
        return "rejected"

    def _store_answers(self) -> bool:
        try:
            return bool(self._store.available())
        except Exception:
            logger.exception("Asking whether the store answers raised")
            return False

    def _ingest(self, items: list[_PendingEvent]) -> list[bool]:
        pairs: list[tuple[Event, str | None]] = [
            (p.delivery.event, p.delivery.edge_id) for p in items
        ]
        results = self._store.ingest_many(pairs, source="mqtt")
        if len(results) != len(pairs):
            raise RuntimeError(f"store returned {len(results)} results for {len(pairs)} events")
        return results

    def _finish_group(self, group: list[_PendingEvent], stored: bool) -> None:
        self._finish_event(group[0], stored)
        for duplicate in group[1:]:
            # Never handed to the store, which counts what it is given: count it here.
            EVENTS_INGESTED.labels(source="mqtt", result="duplicate").inc()
            self._finish_event(duplicate, False)

    def _finish_event(self, pending: _PendingEvent, stored: bool) -> None:
        delivery = pending.delivery
        self.stats.add("stored" if stored else "duplicate")
        try:
            ack = AckMessage(event_id=delivery.event.event_id, seq=delivery.event.seq)
            self._last_ack = self._client.publish(
                ack_topic(delivery.site_id, delivery.edge_id),
                ack.model_dump_json(exclude_none=True),
                qos=1,
            )
            self.stats.add("acks_sent")
        except Exception:  # the edge resends and gets the ack as a duplicate
            logger.exception("Publishing the ack for a stored message failed")
        finally:
            self._puback(pending.inbound)

    def _store_failed(self, error: Exception, count: int) -> None:
        self._store_ok = False
        self._last_error = f"store: {type(error).__name__}: {error}"[:300]
        self.stats.add("store_failures")
        logger.warning(
            "Storing %d MQTT messages failed and the store does not answer (%s: %s); will "
            "retry, not acknowledged",
            count,
            type(error).__name__,
            error,
        )

    def _reject(self, inbound: _Inbound, rejected: Rejected) -> None:
        """Log and count a message refused for good, and queue it to be kept as a dead letter;
        once kept it is acked to the edge and PUBACKed (whatever else fails, so a refused
        message can never use up the broker's Receive Maximum)."""
        try:
            log = logger.error if rejected.reason in SERVER_SIDE_REASONS else logger.warning
            log(
                "Rejected MQTT message on %s: %s (%s)",
                inbound.topic,
                rejected.reason,
                rejected.detail,
            )
            MESSAGES_REJECTED.labels(reason=rejected.reason).inc()
            self.stats.reject(rejected.reason)
        except Exception:
            logger.exception("Counting a refused MQTT message on %s raised", inbound.topic)
        self._rejects.append(_PendingReject(inbound, rejected))

    def _ack_rejected(self, inbound: _Inbound, reason: str) -> None:
        """Tell the edge to stop re-sending a message that can never be stored, when the topic
        names the edge and the payload still names the event."""
        parsed = parse_topic(inbound.topic)
        if parsed is None or parsed[3] != "events" or not parsed[0] or not parsed[1]:
            return  # no edge to tell
        key = _event_key(inbound.payload)
        if key is None:
            return
        ack = AckMessage(event_id=key[0], seq=key[1], rejected=reason)
        self._client.publish(
            ack_topic(parsed[0], parsed[1]), ack.model_dump_json(exclude_none=True), qos=1
        )
        self.stats.add("rejections_acked")

    def _puback(self, inbound: _Inbound) -> None:
        if inbound.qos == 0:
            return
        if inbound.generation != self._generation:
            # Received on an earlier connection: the broker sends it again on this one (MQTT 5
            # section 4.4), and that copy gets its own PUBACK once stored (as a duplicate).
            self.stats.add("puback_skipped")
            return
        self._client.ack(inbound.mid, inbound.qos)
        self.stats.add("pubacks")
