"""`zhizhi server`: the REST API and the MQTT consumer in one process, sharing one database.

`build_server` wires the parts (migrated engine, ingest service, consumer, FastAPI app) without
starting anything, so the demo and tests can run them in threads; `run_server` runs uvicorn in
the foreground with the consumer started and stopped around it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine

from server.api import create_app
from server.consumers.mqtt import MqttConsumer
from server.consumers.sessions import end_session
from server.db.session import make_engine, make_session_factory, migrate
from server.dispatch import DispatchConfig, load_dispatch_config
from server.incidents import IncidentPolicy
from server.ingest import IngestService
from server.live.pg import PgFanout
from server.notify import Notifier, StreamHub, WebhookSender
from server.retention import RetentionPolicy
from server.scheduler import Scheduler, build_scheduler
from server.services.membership import Counts, MemberIdentity, Membership
from server.settings import ServerSettings

logger = logging.getLogger(__name__)


@dataclass
class ServerRuntime:
    settings: ServerSettings
    engine: Engine
    ingest: IngestService
    consumer: MqttConsumer
    app: FastAPI
    scheduler: Scheduler
    webhooks: WebhookSender
    membership: Membership | None = None

    def start_consumer(self) -> None:
        """Start MQTT ingestion, the periodic work (escalation, webhooks, retention) and the
        membership heartbeat (issue 18)."""
        self.app.state.notifier.hub.start(resolve=self.app.state.notifier.resolve)
        self.consumer.start()
        self.scheduler.start()
        if self.membership is not None:
            self.membership.start()

    def stop(self) -> None:
        """Stop; leave the shared group at once (session ended) when other live members take
        this process's turn, else keep the session for a restart under the same client id."""
        leave = self.membership is not None and self.membership.should_end_session()
        self.scheduler.stop()
        self.consumer.stop(end_session=leave)
        if self.membership is not None:
            self.membership.stop(session_ended=leave)
        self.webhooks.close()
        self.app.state.notifier.hub.stop()
        self.engine.dispose()


def build_server(
    settings: ServerSettings,
    *,
    shared: bool = True,
    mqtt_version: Literal["5", "3.1.1"] = "5",
    mqtt_username: str | None = None,
    mqtt_password: str | None = None,
    member: bool = True,
) -> ServerRuntime:
    """Migrate the database and assemble the server; nothing runs until started.

    `member`: record this process in server_members and remove gone members (issue 18);
    benchmarks and tools pass False (and a group and session of their own).
    DispatchConfigError when the dispatch file is invalid (every problem listed).
    """
    dispatch = (
        load_dispatch_config(settings.dispatch_file)
        if settings.dispatch_file is not None
        else DispatchConfig()
    )
    engine = make_engine(settings.db_url)
    migrate(engine)
    session_factory = make_session_factory(engine)
    policy = IncidentPolicy(group_window_s=settings.group_window_s, dispatch=dispatch)
    ingest = IngestService(session_factory, policy=policy)
    # Several processes share a PostgreSQL: the live stream goes through LISTEN/NOTIFY, so
    # every dashboard sees every change whichever process made it (issue 16).
    hub = StreamHub(None if settings.is_sqlite else PgFanout(engine))
    notifier = Notifier(session_factory, hub, dispatch)
    ingest.add_listener(notifier)
    ingest.add_outbox(notifier.write_outbox)  # webhooks and live push commit with the ingest
    ingest.refresh_edges_online()
    consumer = MqttConsumer(
        settings.mqtt_url,
        ingest,
        client_id=settings.mqtt_client_id,
        group=settings.mqtt_group if shared else None,
        max_payload_bytes=settings.max_payload_bytes,
        mqtt_version=mqtt_version,
        username=mqtt_username,
        password=mqtt_password,
        session_expiry_s=settings.mqtt_session_expiry_s,
        tls_files=settings.tls_files,
    )
    blobs = settings.blob_store()  # evidence: the media folder or a bucket (issue 16)
    app = create_app(
        settings,
        engine,
        blobs=blobs,
        ingest=ingest,
        broker_connected=lambda: consumer.connected,
        notifier=notifier,
        ingest_healthy=lambda: consumer.healthy,
    )
    sender = WebhookSender(session_factory, dispatch)
    scheduler = build_scheduler(
        session_factory,
        dispatch,
        notifier,
        sender,
        media_dir=blobs,
        retention=RetentionPolicy(settings.retention_days, settings.retention_default_days),
        escalation_check_s=settings.escalation_check_s,
        retention_sweep_s=settings.retention_sweep_s,
    )
    membership = None
    if member:
        ender = partial(
            end_session,
            settings.broker,
            username=mqtt_username,
            password=mqtt_password,
            tls_files=settings.tls_files,
            mqtt_version=mqtt_version,
        )
        membership = Membership(
            session_factory,
            MemberIdentity.of_this_process(
                settings.mqtt_client_id, settings.mqtt_group if shared else None
            ),
            grace_s=settings.member_grace_s,
            heartbeat_s=settings.member_heartbeat_s,
            counts=lambda: Counts(
                consumer.stats.get("events_received"), consumer.stats.get("stored")
            ),
            end_session=ender,
        )
        app.state.membership = membership
    return ServerRuntime(settings, engine, ingest, consumer, app, scheduler, sender, membership)


def uvicorn_options(settings: ServerSettings) -> dict[str, Any]:
    """How uvicorn serves the app: X-Forwarded-For/-Proto believed only from the proxies named
    in `forwarded_allow_ips` (uvicorn's own default believes 127.0.0.1, so anything on the
    host, or a proxy that passes the header through, could pick the client address the login
    limiter counts: issue 14), and no Server header."""
    trusted = settings.forwarded_allow_ips.strip()
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": "info",
        "access_log": False,
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted or "",
        "server_header": False,
    }


def run_server(runtime: ServerRuntime) -> None:
    """Serve until interrupted; the consumer runs beside uvicorn and stops after it."""
    runtime.start_consumer()
    try:
        uvicorn.run(runtime.app, **uvicorn_options(runtime.settings))
    finally:
        runtime.stop()
