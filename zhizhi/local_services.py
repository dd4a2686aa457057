"""Throwaway services on this machine, for `zhizhi bench ingest` and the integration tests
(tests/support wraps these with pytest's skip/fail): a private Mosquitto, moto's standalone S3
server, a temporary PostgreSQL database, and `zhizhi server` processes.

Everything listens on 127.0.0.1 on a free port and is gone after `stop()`/`close()`: the
machine's own broker (1883) and databases are never touched; a temporary database is dropped
(WITH FORCE) however the run ended.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

MOSQUITTO = Path("/usr/sbin/mosquitto")
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class ServiceUnavailable(RuntimeError):
    """A tool or service the caller needs is not installed or not reachable."""


class ServiceFailed(RuntimeError):
    """A service that was started did not come up, or exited."""


def _die_with_parent() -> Callable[[], None] | None:
    """For Popen's preexec_fn (Linux): the child gets SIGTERM when the process that started it
    dies, so a bench killed with SIGKILL leaves no broker or server running behind it. prctl
    is looked up here, in the parent; the child only makes the system call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def in_child() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return in_child


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def accepts(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def http_get(url: str, token: str | None = None, timeout_s: float = 5.0) -> tuple[int, bytes]:
    """Status and body; (0, b"") when nothing answers."""
    request = urllib.request.Request(url)  # noqa: S310 (http://127.0.0.1 only)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def stop_process(process: subprocess.Popen[bytes] | None, kill: bool = False) -> None:
    """SIGTERM and reap, SIGKILL if it is not gone within 10 s; with `kill`, SIGKILL at once
    (also a stopped process) and reap what ends within 10 s. Nothing if it has exited."""
    if process is None or process.poll() is not None:
        return
    if kill:
        process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def zhizhi_binary() -> Path:
    """The `zhizhi` entry point of this interpreter's environment."""
    beside = Path(sys.executable).parent / "zhizhi"
    if beside.exists():
        return beside
    found = shutil.which("zhizhi")
    if found is None:
        raise ServiceUnavailable("the zhizhi command is not installed (pip install -e .)")
    return Path(found)


class PrivateBroker:
    """A private Mosquitto with persistence in `folder`, always on the same port (stopped,
    killed and started again at will). `extra` lines go into mosquitto.conf as they are."""

    def __init__(
        self, folder: Path, extra: Iterable[str] = (), *, start_timeout_s: float = 10.0
    ) -> None:
        if not MOSQUITTO.exists():
            raise ServiceUnavailable(f"{MOSQUITTO} is not installed")
        self.binary = MOSQUITTO
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
            self.process = subprocess.Popen(  # noqa: S603 (our own command line)
                [str(self.binary), "-c", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                preexec_fn=_die_with_parent(),
            )
        deadline = time.monotonic() + self.start_timeout_s
        while not self._accepts():
            if time.monotonic() > deadline:
                raise ServiceFailed(
                    f"timed out after {self.start_timeout_s} s waiting for mosquitto on port "
                    f"{self.port}\n{self.log()}"
                )
            time.sleep(0.02)

    def _accepts(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            code = None if self.process is None else self.process.returncode
            raise ServiceFailed(f"mosquitto exited with {code}\n{self.log()}")
        return accepts(self.port)

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (Mosquitto writes its persistence file) or, with `kill`, SIGKILL (whatever
        arrived since the last save, autosave_interval, is lost); then wait until it is gone."""
        process, self.process = self.process, None
        stop_process(process, kill=kill)

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


class MotoS3:
    """moto's standalone S3 API server (`python -m moto.server`) on a free loopback port: a real
    S3 HTTP API that boto3 speaks to as to MinIO, OSS or COS. It keeps objects in memory; they
    are gone when it stops. It takes any access key."""

    ACCESS_KEY = "bench-key"
    SECRET_KEY = "bench-secret"  # noqa: S105 (moto takes any)

    def __init__(self, start_timeout_s: float = 30.0) -> None:
        if importlib.util.find_spec("moto") is None:
            raise ServiceUnavailable("moto[server] is not installed (the dev extra)")
        self.port = free_port()
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 (our own command line)
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent(),
        )
        deadline = time.monotonic() + self.start_timeout_s
        while http_get(self.url, timeout_s=1)[0] == 0:
            if self.process.poll() is not None:
                raise ServiceFailed(f"moto.server exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise ServiceFailed(f"moto.server did not answer in {self.start_timeout_s} s")
            time.sleep(0.1)

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_process(process)


@contextlib.contextmanager
def temporary_postgres_database(server_url: str, prefix: str = "zhizhi_tmp") -> Iterator[str]:
    """Create a new database on the PostgreSQL server of `server_url` (its database part is
    only used to connect), migrate it, yield its URL; drop it WITH (FORCE) afterwards.
    ServiceUnavailable when the server cannot be reached."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    from server.db.session import migrate

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin_url = make_url(server_url).set(drivername="postgresql+psycopg", database="postgres")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as error:
        admin.dispose()
        raise ServiceUnavailable(f"PostgreSQL not reachable: {str(error.orig).strip()}") from None
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    try:
        migrate(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class ServerProcess:
    """One `zhizhi server` on 127.0.0.1; configured by ZHIZHI_* variables (`env`), its client
    id and port given as options. Its output goes to folder/server.log."""

    def __init__(self, folder: Path, client_id: str, env: Mapping[str, str], *extra: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.client_id = client_id
        self.env = {**os.environ, **env}
        self.extra = list(extra)
        self.port = free_port()
        self.log = folder / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start it; `wait_healthy` waits for /healthz."""
        with self.log.open("a") as log:
            self.process = subprocess.Popen(  # noqa: S603 (our own command line)
                [
                    str(zhizhi_binary()),
                    "server",
                    "--client-id",
                    self.client_id,
                    "--port",
                    str(self.port),
                    "--media-dir",
                    str(self.folder / "media"),
                    "--metrics-public",
                    *self.extra,
                ],
                cwd=self.folder,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent(),
            )

    def healthy(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            code = None if self.process is None else self.process.returncode
            raise ServiceFailed(f"{self.client_id} exited with {code}\n{self.tail()}")
        return http_get(f"{self.base}/healthz", timeout_s=2)[0] == 200

    def wait_healthy(self, timeout_s: float = 40.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.healthy():
            if time.monotonic() > deadline:
                raise ServiceFailed(f"{self.client_id} not healthy in {timeout_s} s\n{self.tail()}")
            time.sleep(0.1)

    def metrics(self) -> str:
        code, body = http_get(f"{self.base}/metrics")
        if code != 200:
            raise ServiceFailed(f"{self.client_id} /metrics answered {code}")
        return body.decode()

    def get_json(self, path: str, token: str) -> Any:
        code, body = http_get(f"{self.base}{path}", token)
        if code != 200:
            raise ServiceFailed(f"GET {path} answered {code}: {body[:300]!r}")
        return json.loads(body)

    def kill(self) -> None:
        """SIGKILL: gone for good, no goodbye to the broker or the database."""
        process = self._started()
        process.kill()
        process.wait(timeout=15)

    def terminate(self) -> int:
        """SIGTERM: a clean stop; its exit code."""
        process = self._started()
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout=30)

    def _started(self) -> subprocess.Popen[bytes]:
        if self.process is None:
            raise ServiceFailed(f"{self.client_id} was never started")
        return self.process

    def stop(self) -> None:
        stop_process(self.process, kill=True)

    def tail(self, chars: int = 3000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.client_id} server.log:\n{text[-chars:]}"
