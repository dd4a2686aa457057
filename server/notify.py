"""Notifications: the live push to dashboards (server-sent events) and outgoing webhooks.

`StreamHub` fans each change out to the connected dashboards, each seeing only its user's
sites; publishing is thread-safe (the MQTT worker and the API's threads both publish).
`Notifier` is the ingest service's outbox writer and listener, and the actions' too: in the
transaction that changes incidents it queues one delivery per matching webhook for those that
are neither silenced nor inhibited and, with several processes, the live push (a NOTIFY sent at
the commit); after the commit it pushes what is left to push. `WebhookSender` posts the queued
deliveries, signed with HMAC-SHA256 over "{timestamp}.{body}", retries with exponential
backoff and gives up into a dead-letter record after the configured number of attempts.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from server.db.models import IncidentRow, WebhookDeliveryRow
from server.dispatch import DispatchConfig, Webhook
from server.incidents import IncidentChange, views_of
from server.schemas import CameraItem
from server.services.cameras import camera_items

log = logging.getLogger(__name__)

SessionFactory = Callable[[], Session]
HEARTBEAT_S = 15.0
QUEUE_SIZE = 1000
RESYNC_RETRY_MS = 1000  # how soon a client whose stream was ended for lagging comes back
SIGNATURE_HEADER = "X-Zhizhi-Signature"
TIMESTAMP_HEADER = "X-Zhizhi-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Which incident changes go out to webhooks (updates of a running situation do not).
WEBHOOK_KINDS = frozenset({"created", "transition", "escalated"})


@dataclass(frozen=True, slots=True)
class StreamMessage:
    event: str  # incident | camera
    data: dict[str, Any]
    site_id: str

    def encode(self) -> str:
        """The SSE frame: `event:` line, one `data:` line of JSON, blank line."""
        body = json.dumps(self.data, ensure_ascii=False, separators=(",", ":"))
        return f"event: {self.event}\ndata: {body}\n\n"


@dataclass(eq=False)
class Subscriber:
    sites: frozenset[str] | None
    loop: asyncio.AbstractEventLoop
    team: str | None = None  # a field worker: only incidents dispatched to this team
    queue: asyncio.Queue[StreamMessage] = field(
        default_factory=lambda: asyncio.Queue(maxsize=QUEUE_SIZE)
    )

    dropped: int = 0  # messages lost because the client lagged

    def offer(self, message: StreamMessage) -> None:
        """Runs on the subscriber's loop: enqueue, dropping the oldest when the client lags
        (counted: the stream then ends, so that the client re-reads what it missed)."""
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(message)


class Fanout(Protocol):
    """Carries every published message to every server process (server/live/pg.py)."""

    def send(self, messages: Sequence[StreamMessage]) -> None: ...

    def send_within(self, connection: Connection, messages: Sequence[StreamMessage]) -> None: ...

    def start(
        self,
        deliver: Callable[[StreamMessage], None],
        resolve: Callable[[str, int], StreamMessage | None] | None = None,
    ) -> None: ...

    def stop(self) -> None: ...


class StreamHub:
    """The connected dashboards; `publish` may be called from any thread.

    With a `fanout` (PostgreSQL LISTEN/NOTIFY, several server processes) a message published
    here goes to the dashboards of every process, this one's through the fanout too; without
    one (SQLite: one process) straight to this process's dashboards."""

    def __init__(self, fanout: Fanout | None = None) -> None:
        self._lock = threading.Lock()
        self._subscribers: set[Subscriber] = set()
        self.fanout = fanout

    def start(self, resolve: Callable[[str, int], StreamMessage | None] | None = None) -> None:
        """Start listening to the other processes (with a fanout)."""
        if self.fanout is not None:
            self.fanout.start(self.deliver, resolve)

    def stop(self) -> None:
        if self.fanout is not None:
            self.fanout.stop()

    def subscribe(self, sites: frozenset[str] | None, *, team: str | None = None) -> Subscriber:
        subscriber = Subscriber(sites=sites, loop=asyncio.get_running_loop(), team=team)
        with self._lock:
            self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(subscriber)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def publish(self, message: StreamMessage) -> None:
        """To every process's dashboards (fanout), or this process's."""
        self.publish_many([message])

    def publish_many(self, messages: Sequence[StreamMessage]) -> None:
        """`publish` for several messages, in order; through the fanout in one go (an ingest
        batch that changed 50 incidents notifies once, not 50 times)."""
        if not messages:
            return
        if self.fanout is not None:
            try:
                self.fanout.send(messages)
                return
            except Exception:  # the database is away: this process's dashboards at least
                log.exception("live stream: could not notify the other processes")
        for message in messages:
            self.deliver(message)

    def publish_within(self, session: Session, messages: Sequence[StreamMessage]) -> bool:
        """`publish_many` with the caller's transaction: True when the messages go out at its
        commit and not without it (a fanout: NOTIFY is transactional); False when the caller
        publishes them after the commit (no fanout: this process's dashboards only)."""
        if self.fanout is None:
            return False
        self.fanout.send_within(session.connection(), messages)
        return True

    def deliver(self, message: StreamMessage) -> None:
        """To this process's dashboards that may see it (from any thread)."""
        with self._lock:
            targets = [s for s in self._subscribers if _wants(s, message)]
        for subscriber in targets:
            try:
                subscriber.loop.call_soon_threadsafe(subscriber.offer, message)
            except RuntimeError:  # its loop has closed: the client is gone
                self.unsubscribe(subscriber)

    def publish_camera(self, item: CameraItem) -> None:
        self.publish(StreamMessage("camera", item.model_dump(mode="json"), item.site_id))

    async def frames(
        self,
        subscriber: Subscriber,
        disconnected: Callable[[], Any],
        heartbeat_s: float = HEARTBEAT_S,
    ) -> AsyncIterator[str]:
        """SSE frames for one client until it disconnects; a comment every `heartbeat_s`.

        A client that lagged so far behind that messages were dropped is not left with a
        silent gap: its stream ends (with a short `retry:`), the browser reconnects by itself
        and the dashboard re-reads its lists on every reconnect."""
        try:
            yield ": connected\n\n"
            while not await disconnected():
                if subscriber.dropped:
                    log.warning(
                        "live stream: a client lagged %d messages behind; its stream is ended "
                        "so that it reconnects and re-reads",
                        subscriber.dropped,
                    )
                    yield f"retry: {RESYNC_RETRY_MS}\n\n"
                    return
                try:
                    message = await asyncio.wait_for(subscriber.queue.get(), heartbeat_s)
                except TimeoutError:
                    yield ": heartbeat\n\n"
                    continue
                yield message.encode()
        finally:
            self.unsubscribe(subscriber)


def _wants(subscriber: Subscriber, message: StreamMessage) -> bool:
    if subscriber.sites is not None and message.site_id not in subscriber.sites:
        return False
    if subscriber.team is not None and message.event == "incident":
        return message.data.get("assignee") == subscriber.team
    return True


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Zhizhi-Signature value: sha256=hex(HMAC-SHA256(secret, timestamp + "." + body))."""
    digest = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, "sha256")
    return f"sha256={digest.hexdigest()}"


def signature_valid(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    """What a receiver checks (constant-time); it should also refuse old timestamps."""
    return hmac.compare_digest(sign(secret, timestamp, body), header)


def idempotency_key(delivery_id: int) -> str:
    """The Idempotency-Key of a webhook delivery: stable across its retries and processes."""
    return f"zhizhi-delivery-{delivery_id}"


def backoff_s(attempts: int, base_s: float, max_s: float) -> float:
    """Delay before the next try after `attempts` failures: base, 2·base, 4·base, ... capped."""
    return float(min(max_s, base_s * 2 ** max(0, attempts - 1)))


class Notifier:
    """Pushes committed changes to the stream and queues webhook deliveries."""

    def __init__(
        self,
        session_factory: SessionFactory,
        hub: StreamHub,
        dispatch: DispatchConfig,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._session_factory = session_factory
        self.hub = hub
        self._dispatch = dispatch
        self._clock = clock

    def incidents_changed(self, changes: Sequence[IncidentChange]) -> None:
        try:
            self._incidents_changed(changes)
        except Exception:  # the change is committed; a failed push must not undo the caller
            log.exception("could not notify about incidents %s", [c.incident_id for c in changes])

    def _incidents_changed(self, changes: Sequence[IncidentChange]) -> None:
        by_id = {change.incident_id: change for change in changes if not change.pushed}
        if not by_id:  # everything went out with its transaction
            return
        messages = []
        with self._session_factory() as session, session.begin():
            rows = session.scalars(select(IncidentRow).where(IncidentRow.id.in_(list(by_id))))
            views = views_of(rows, session=session)
            now = self._clock()
            for view in views:
                change = by_id[view.id]
                payload = view.model_dump(mode="json")
                messages.append(StreamMessage("incident", payload, view.site_id))
                if not change.webhooks_queued:  # a caller without the outbox (late, not lost)
                    self._add_deliveries(session, change, view.site_id, view.type, payload, now)
        self.hub.publish_many(messages)  # after the deliveries are committed

    def write_outbox(
        self, session: Session, changes: Sequence[IncidentChange]
    ) -> list[IncidentChange]:
        """In the caller's transaction, what must go out with the change or not at all (the
        transactional outbox, issue 16): the webhook deliveries, and with several processes
        (a fanout) the live push, as NOTIFYs that PostgreSQL sends at the commit. A crash
        after the commit then loses neither a webhook nor a dashboard's update. Returns the
        changes marked accordingly, for `incidents_changed` after the commit (which pushes
        what was not pushed here: without a fanout, to this process's dashboards)."""
        wanted = (
            {c.incident_id for c in changes if c.notify and c.kind in WEBHOOK_KINDS}
            if self._dispatch.webhooks
            else set()
        )
        live = self.hub.fanout is not None
        ids = {c.incident_id for c in changes} if live else wanted
        pushed = False
        if ids:
            by_id = {change.incident_id: change for change in changes}
            session.flush()
            rows = session.scalars(select(IncidentRow).where(IncidentRow.id.in_(list(ids))))
            now = self._clock()
            messages = []
            for view in views_of(rows, session=session):
                payload = view.model_dump(mode="json")
                if view.id in wanted:
                    self._add_deliveries(
                        session, by_id[view.id], view.site_id, view.type, payload, now
                    )
                messages.append(StreamMessage("incident", payload, view.site_id))
            pushed = self.hub.publish_within(session, messages)  # False without a fanout
        return [replace(change, webhooks_queued=True, pushed=pushed) for change in changes]

    def _add_deliveries(
        self,
        session: Session,
        change: IncidentChange,
        site_id: str,
        incident_type: str,
        payload: dict[str, Any],
        now: datetime,
    ) -> None:
        if not change.notify or change.kind not in WEBHOOK_KINDS:
            return
        for hook in self._dispatch.webhooks:
            if hook.wants(site_id=site_id, type=incident_type):
                session.add(_delivery(hook, change.incident_id, change.kind, payload, now))

    def resolve(self, event: str, ref: int) -> StreamMessage | None:
        """A message that travelled between processes as a reference (too long to notify):
        the incident as it is now."""
        if event != "incident":
            return None
        with self._session_factory() as session:
            rows = session.scalars(select(IncidentRow).where(IncidentRow.id == ref))
            views = views_of(rows, session=session)
        if not views:
            return None
        return StreamMessage("incident", views[0].model_dump(mode="json"), views[0].site_id)

    def cameras_changed(self, site_id: str, edge_id: str) -> None:
        try:
            with self._session_factory() as session:
                items = camera_items(session, site_id=site_id, edge_id=edge_id)
            for item in items:
                self.hub.publish_camera(item)
        except Exception:
            log.exception("could not push the cameras of %s/%s", site_id, edge_id)


def _delivery(
    hook: Webhook, incident_id: int, kind: str, incident: dict[str, Any], now: datetime
) -> WebhookDeliveryRow:
    return WebhookDeliveryRow(
        webhook=hook.id,
        url=str(hook.url),
        incident_id=incident_id,
        kind=kind,
        payload={"kind": f"incident.{kind}", "incident": incident},
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )


class WebhookSender:
    """Posts due deliveries; called periodically (and from tests with a fixed clock)."""

    def __init__(
        self,
        session_factory: SessionFactory,
        dispatch: DispatchConfig,
        *,
        client: httpx.Client | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        batch: int = 50,
    ) -> None:
        self._session_factory = session_factory
        self._dispatch = dispatch
        self._client = client or httpx.Client(timeout=dispatch.webhook_timeout_s)
        self._clock = clock
        self._batch = batch

    def close(self) -> None:
        self._client.close()

    def deliver_due(self) -> int:
        """Try every delivery whose time has come; the number delivered."""
        now = self._clock()
        with self._session_factory() as session:
            due = session.scalars(
                select(WebhookDeliveryRow.id)
                .where(
                    WebhookDeliveryRow.status == "pending",
                    WebhookDeliveryRow.next_attempt_at <= now,
                )
                .order_by(WebhookDeliveryRow.next_attempt_at, WebhookDeliveryRow.id)
                .limit(self._batch)
            ).all()
        return sum(self._deliver(int(delivery_id)) for delivery_id in due)

    def _deliver(self, delivery_id: int) -> bool:
        with self._session_factory() as session, session.begin():
            row = session.scalars(
                select(WebhookDeliveryRow)
                .where(WebhookDeliveryRow.id == delivery_id, WebhookDeliveryRow.status == "pending")
                .with_for_update(skip_locked=True)
            ).one_or_none()
            if row is None:
                return False  # another process took it
            hook = next((h for h in self._dispatch.webhooks if h.id == row.webhook), None)
            error = "webhook no longer configured" if hook is None else self._post(hook, row)
            now = self._clock()
            row.attempts += 1
            if error is None:
                row.status, row.finished_at, row.last_error = "delivered", now, None
                return True
            row.last_error = error[:1000]
            if hook is None or row.attempts >= self._dispatch.webhook_max_attempts:
                row.status, row.finished_at = "dead", now
                log.warning(
                    "webhook %s gave up on delivery %s after %d attempts: %s",
                    row.webhook,
                    row.id,
                    row.attempts,
                    error,
                )
            else:
                delay = backoff_s(
                    row.attempts,
                    self._dispatch.webhook_backoff_s,
                    self._dispatch.webhook_backoff_max_s,
                )
                row.next_attempt_at = now + timedelta(seconds=delay)
            return False

    def _post(self, hook: Webhook, row: WebhookDeliveryRow) -> str | None:
        """None when the receiver answered 2xx, else why not."""
        body = json.dumps(row.payload, ensure_ascii=False, separators=(",", ":")).encode()
        timestamp = str(int(self._clock().timestamp()))
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(hook.secret, timestamp, body),
            TIMESTAMP_HEADER: timestamp,
            "X-Zhizhi-Delivery": str(row.id),
            # The same on every attempt of this delivery, from any server process: a receiver
            # that keeps the keys it has seen acts on each notification once (at least once
            # is what the sender promises).
            IDEMPOTENCY_HEADER: idempotency_key(row.id),
            "X-Zhizhi-Event": row.payload.get("kind", row.kind),
        }
        try:
            response = self._client.post(str(hook.url), content=body, headers=headers)
        except httpx.HTTPError as error:
            return f"{type(error).__name__}: {error}"
        if response.is_success:
            return None
        return f"HTTP {response.status_code}"
