"""`zhizhi server` as a process for integration tests: started with its own client id, port,
media folder and environment (ZHIZHI_* as a container would set them), killed or stopped.
The same `ServerProcess` the ingest bench starts (zhizhi.local_services)."""

from __future__ import annotations

from pathlib import Path

from zhizhi.local_services import ServerProcess, http_get, zhizhi_binary

__all__ = ["REPO", "ServerProcess", "http_get", "zhizhi_binary"]

REPO = Path(__file__).resolve().parents[2]
