"""`zhizhi server` as a process for integration tests: started with its own client id, port,
media folder and environment (ZHIZHI_* as a container would set them), killed or stopped."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.support.mosquitto import free_port

REPO = Path(__file__).resolve().parents[2]


def zhizhi_binary() -> Path:
    beside = Path(sys.executable).parent / "zhizhi"
    return beside if beside.exists() else REPO / ".venv" / "bin" / "zhizhi"


def http_get(url: str, token: str | None = None, timeout_s: float = 5.0) -> tuple[int, bytes]:
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
            self.process = subprocess.Popen(
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
            )

    def healthy(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            code = None if self.process is None else self.process.returncode
            raise AssertionError(f"{self.client_id} exited with {code}\n{self.tail()}")
        return http_get(f"{self.base}/healthz", timeout_s=2)[0] == 200

    def wait_healthy(self, timeout_s: float = 40.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.healthy():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.client_id} not healthy in {timeout_s} s\n{self.tail()}"
                )
            time.sleep(0.1)

    def metrics(self) -> str:
        code, body = http_get(f"{self.base}/metrics")
        assert code == 200, f"{self.client_id} /metrics answered {code}"
        return body.decode()

    def get_json(self, path: str, token: str) -> Any:
        code, body = http_get(f"{self.base}{path}", token)
        assert code == 200, f"GET {path} answered {code}: {body[:300]!r}"
        return json.loads(body)

    def kill(self) -> None:
        """SIGKILL: gone for good, no goodbye to the broker or the database."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=15)

    def terminate(self) -> int:
        """SIGTERM: a clean stop; its exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)

    def tail(self, chars: int = 3000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.client_id} server.log:\n{text[-chars:]}"
