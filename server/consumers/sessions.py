"""Ending another client's broker session (issue 18: a server process gone for good).

A server process's persistent session stays a member of the shared subscription while it is
away: the broker keeps handing it its turn and queues those events for it. To end such a
session, connect under its client id with a clean start and a Session Expiry Interval of 0,
then disconnect: the broker discards the old session, its subscriptions and its queue (MQTT 5
section 3.1.2.4; in 3.1.1, clean session 1 does the same). Were that process still alive, it
would lose its connection once, reconnect with a new session and subscribe again.
"""

from __future__ import annotations

import logging
import threading
from typing import Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from common.logs import paho_logger
from common.mqtt_url import MqttUrl, TlsFiles, tls_context

logger = logging.getLogger(__name__)


class SessionNotEnded(RuntimeError):
    """The broker could not be reached, or refused the connection under that client id."""


def end_session(
    broker: MqttUrl,
    client_id: str,
    *,
    username: str | None = None,
    password: str | None = None,
    tls_files: TlsFiles | None = None,
    mqtt_version: Literal["5", "3.1.1"] = "5",
    timeout_s: float = 10.0,
) -> None:
    """End the broker session of `client_id`; SessionNotEnded when that did not happen."""
    done = threading.Event()
    outcome: list[str] = []
    v5 = mqtt_version == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else True,
    )
    client.enable_logger(paho_logger(f"{__name__}.paho"))
    user = username if username is not None else broker.username
    secret = password if password is not None else broker.password
    if user is not None:
        client.username_pw_set(user, secret)
    if broker.tls:
        client.tls_set_context(tls_context(tls_files))

    def on_connect(
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        outcome.append("ok" if not reason_code.is_failure else f"refused: {reason_code}")
        done.set()

    client.on_connect = on_connect
    properties = None
    if v5:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 0
    try:
        if v5:
            client.connect(broker.host, broker.port, clean_start=True, properties=properties)
        else:
            client.connect(broker.host, broker.port)
    except OSError as error:
        raise SessionNotEnded(f"broker {broker} not reachable: {error}") from error
    client.loop_start()
    try:
        if not done.wait(timeout_s):
            raise SessionNotEnded(f"no answer from {broker} within {timeout_s} s")
        if outcome[0] != "ok":
            raise SessionNotEnded(f"broker {broker} {outcome[0]}")
    finally:
        client.disconnect()
        client.loop_stop()
    logger.info("ended the broker session of %s at %s", client_id, broker)
