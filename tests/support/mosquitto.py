"""A private Mosquitto for tests: its own folder, a free port on 127.0.0.1, persistence on.

The broker itself is `zhizhi.local_services.PrivateBroker` (the ingest bench starts the same
one); here `PrivateBroker(folder)` skips the test when /usr/sbin/mosquitto is missing, and
fails it when CI=true (see `require_mosquitto`). Nothing runs until `start()`; `stop()` sends
SIGTERM, so Mosquitto saves its sessions and queues, `stop(kill=True)` SIGKILL, which loses
what arrived since its last save.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pytest

from zhizhi import local_services
from zhizhi.local_services import MOSQUITTO, free_port

__all__ = ["MOSQUITTO", "PrivateBroker", "free_port", "require_mosquitto", "unavailable"]


def unavailable(message: str) -> None:
    """Skip the test for a missing tool or service; with CI=true nothing may skip: fail."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_mosquitto() -> Path:
    if not MOSQUITTO.exists():
        unavailable(f"{MOSQUITTO} is not installed")
    return MOSQUITTO


class PrivateBroker(local_services.PrivateBroker):
    """`zhizhi.local_services.PrivateBroker`, skipped (or failed in CI) without Mosquitto."""

    def __init__(
        self, folder: Path, extra: Iterable[str] = (), *, start_timeout_s: float = 10.0
    ) -> None:
        require_mosquitto()
        super().__init__(folder, extra, start_timeout_s=start_timeout_s)
