"""The live stream fanned out through PostgreSQL LISTEN/NOTIFY (issue 16).

With several server processes the shared subscription hands each event to one of them, so a
dashboard connected to another process would miss it if the stream were fed only by the
process's own work. `PgFanout` makes every process's `StreamHub.publish` a `NOTIFY` on one
channel, and every process `LISTEN`s on its own connection and hands what arrives to its local
subscribers: each dashboard sees every change, whichever process made it, in commit order as
PostgreSQL sends notifications. An incident change's `NOTIFY` runs in the transaction that made
the change (`send_within`, from `Notifier.write_outbox`): sent at its commit, never without it.

A notification carries at most 8000 bytes. A larger message (an incident with a long
trajectory) travels as a reference (`{"ref": incident_id}`) that the receiving process turns
back into the message with `resolve` (the notifier re-reads the incident). While the listening
connection is down (a database restart) notifications are lost; the listener reconnects with
backoff and the dashboards re-read their lists on reconnect and every minute, as they do after
any gap. SQLite deployments are one process and keep the in-process hub.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url

from server.notify import StreamMessage

log = logging.getLogger(__name__)

CHANNEL = "zhizhi_live"
MAX_NOTIFY_BYTES = 7900  # PostgreSQL refuses payloads of 8000 bytes and more
Resolver = Callable[[str, int], StreamMessage | None]


def encode(message: StreamMessage) -> str:
    """The NOTIFY payload: the message, or a reference when it is too long for one."""
    body = json.dumps(
        {"event": message.event, "site": message.site_id, "data": message.data},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    if len(body.encode("utf-8")) <= MAX_NOTIFY_BYTES:
        return body
    ref = message.data.get("id")
    if not isinstance(ref, int):
        raise ValueError(f"a {message.event} message too long to notify has no id to refer to")
    return json.dumps({"event": message.event, "site": message.site_id, "ref": ref})


def decode(payload: str, resolve: Resolver | None) -> StreamMessage | None:
    """The message a notification carries (None: unreadable, or its reference is gone)."""
    try:
        body: dict[str, Any] = json.loads(payload)
        event, site = str(body["event"]), str(body["site"])
    except (ValueError, KeyError, TypeError):
        log.warning("unreadable live notification ignored (%d bytes)", len(payload))
        return None
    if "data" in body:
        return StreamMessage(event, body["data"], site)
    if resolve is None:
        return None
    return resolve(event, int(body["ref"]))


def _libpq_url(engine: Engine) -> str:
    """The engine's URL as psycopg takes it (without SQLAlchemy's driver name)."""
    url = make_url(engine.url.render_as_string(hide_password=False)).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class PgFanout:
    """NOTIFY on publish; a listener thread delivers every notification to `deliver`."""

    def __init__(
        self,
        engine: Engine,
        *,
        channel: str = CHANNEL,
        reconnect_max_s: float = 10.0,
    ) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("LISTEN/NOTIFY needs PostgreSQL")
        self._engine = engine
        self._channel = channel
        self._reconnect_max_s = reconnect_max_s
        self._deliver: Callable[[StreamMessage], None] | None = None
        self._resolve: Resolver | None = None
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    def send(self, messages: Sequence[StreamMessage]) -> None:
        """NOTIFY every process (this one too), the messages in order, in one transaction on
        one connection (psycopg pipelines the statements: about one round trip for a batch);
        raises when the database is away."""
        if not messages:
            return
        with self._engine.connect() as connection:
            self.send_within(connection, messages)
            connection.commit()

    def send_within(self, connection: Connection, messages: Sequence[StreamMessage]) -> None:
        """NOTIFY in the caller's transaction: PostgreSQL sends the notifications when, and
        only when, it commits (a process killed between its commit and a later NOTIFY would
        otherwise leave the other processes' dashboards without the change)."""
        if messages:
            connection.execute(
                text("SELECT pg_notify(:channel, :payload)"),
                [{"channel": self._channel, "payload": encode(m)} for m in messages],
            )

    def start(
        self, deliver: Callable[[StreamMessage], None], resolve: Resolver | None = None
    ) -> None:
        if self._thread is not None:
            return
        self._deliver, self._resolve = deliver, resolve
        self._thread = threading.Thread(target=self._run, name="live-listen", daemon=True)
        self._thread.start()

    def wait_listening(self, timeout_s: float) -> bool:
        return self._listening.wait(timeout_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(_libpq_url(self._engine), autocommit=True) as connection:
                    connection.execute(f'LISTEN "{self._channel}"')
                    self._listening.set()
                    backoff = 0.5
                    log.info("live stream: listening on %s", self._channel)
                    while not self._stop.is_set():
                        for notify in connection.notifies(timeout=0.5):
                            self._hand_over(notify.payload)
            except psycopg.Error as error:
                self._listening.clear()
                if self._stop.is_set():
                    return
                log.warning(
                    "live stream: listening connection lost (%s); again in %.1f s",
                    str(error).partition("\n")[0],
                    backoff,
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._reconnect_max_s)
        self._listening.clear()

    def _hand_over(self, payload: str) -> None:
        try:
            message = decode(payload, self._resolve)
            if message is not None and self._deliver is not None:
                self._deliver(message)
        except Exception:  # one bad notification must not end the listener
            log.exception("live stream: a notification could not be delivered")
