"""A private Mosquitto for tests: its own folder, a free port on 127.0.0.1, persistence on.

`PrivateBroker(folder)` skips the test when /usr/sbin/mosquitto is missing, and fails it when
CI=true (see `require_mosquitto`). Nothing runs until `start()`; `stop()` sends SIGTERM, so
Mosquitto saves its sessions and queues, `stop(kill=True)` SIGKILL, which loses what arrived
since its last save.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

MOSQUITTO = Path("/usr/sbin/mosquitto")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def unavailable(message: str) -> None:
    """Skip the test for a missing tool or service; with CI=true nothing may skip: fail."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_mosquitto() -> Path:
    if not MOSQUITTO.exists():
        unavailable(f"{MOSQUITTO} is not installed")
    return MOSQUITTO


class PrivateBroker:
    """A private Mosquitto with persistence in `folder`; stopped, killed and started again by
    the test, always on the same port. `extra` lines go into mosquitto.conf as they are."""

    def __init__(
        self, folder: Path, extra: Iterable[str] = (), *, start_timeout_s: float = 10.0
    ) -> None:
        self.binary = require_mosquitto()
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.port = free_port()
        self.config = folder / "mosquitto.conf"
        self.log_path = folder / "mosquitto.log"
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self.write_config(["allow_anonymous true", "persistence true", *extra])

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def write_config(self, settings: Iterable[str]) -> None:
        """mosquitto.conf: this broker's listener, then `settings`, then its persistence folder
        and log file (takes effect at the next start)."""
        lines = [
            f"listener {self.port} 127.0.0.1",
            *settings,
            f"persistence_location {self.folder}/",
            f"log_dest file {self.log_path}",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to 'mosquitto' and cannot write folder
        self.config.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        """Start Mosquitto and wait until it accepts connections."""
        with (self.folder / "mosquitto.stderr").open("ab") as stderr:
            self.process = subprocess.Popen(
                [str(self.binary), "-c", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        deadline = time.monotonic() + self.start_timeout_s
        while not self._accepts():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {self.start_timeout_s} s waiting for mosquitto on port "
                    f"{self.port}\n{self.log()}"
                )
            time.sleep(0.02)

    def _accepts(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"mosquitto exited with {self.process.returncode}\n{self.log()}")
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (Mosquitto writes its persistence file) or, with `kill`, SIGKILL (whatever
        arrived since the last save, autosave_interval, is lost); then wait until it is gone."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        if kill:
            process.kill()
        else:
            process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self, kill: bool = False) -> None:
        self.stop(kill=kill)
        self.start()

    def log(self, chars: int = 4000) -> str:
        """The end of Mosquitto's stderr and log file, for failure messages."""
        parts = []
        for path in (self.folder / "mosquitto.stderr", self.log_path):
            text = path.read_text(errors="replace")[-chars:] if path.exists() else ""
            if text:
                parts.append(f"--- {path.name}:\n{text}")
        return "\n".join(parts)
