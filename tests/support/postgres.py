"""A private PostgreSQL for tests that stop and start the database (chaos tests): its own data
folder and a free port on 127.0.0.1, the shared server left alone.

Debian's binaries under /usr/lib/postgresql/<version>/bin; run as the `postgres` user when the
tests run as root (initdb refuses root). Missing binaries: skip locally, fail in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.mosquitto import free_port, unavailable


def _bin_dir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


class PrivatePostgres:
    """initdb in a folder of its own (under the system's temporary folder: the `postgres` user
    must reach it), then start/stop at will on one port (trust auth, loopback only);
    `close()` stops it and removes the folder."""

    def __init__(self) -> None:
        bin_dir = _bin_dir()
        if bin_dir is None:
            unavailable("PostgreSQL server binaries not found under /usr/lib/postgresql")
        assert bin_dir is not None
        self.bin = bin_dir
        self.folder = Path(tempfile.mkdtemp(prefix="zhizhi-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.log = self.folder / "postgres.log"
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise AssertionError(f"{tool} failed: {result.stderr[-2000:]}\n{self.tail()}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """`fast`: clients are disconnected, a clean shutdown; `immediate`: like a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def tail(self, chars: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def close(self) -> None:
        try:
            if self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
