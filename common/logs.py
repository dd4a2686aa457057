"""Logging helpers shared by the edge and the server."""

from __future__ import annotations

import logging


class PahoNoiseFilter(logging.Filter):
    """Drops paho's "Client is not connected" ERROR: its network thread logs it when it polls
    in the instant between a (re)connect attempt and the socket being made. Connection loss and
    return are reported by our own callbacks, once each."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Client is not connected")


def paho_logger(name: str) -> logging.Logger:
    """The logger to give `paho.mqtt.client.Client.enable_logger`, with the noise filtered."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, PahoNoiseFilter) for f in logger.filters):
        logger.addFilter(PahoNoiseFilter())
    return logger
