"""The `zhizhi` command run as a user runs it, in a subprocess from the checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ZHIZHI = [sys.executable, "-m", "zhizhi.cli"]


def run(
    args: list[str], env: dict[str, str] | None = None, *, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """`zhizhi ARGS` from the checkout, this environment plus `env`; never raises on failure."""
    return subprocess.run(
        [*ZHIZHI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        check=False,
    )


def replay_args(
    config: object, camera: str, source: object, out: object, evidence_dir: object = None
) -> list[str]:
    """The arguments of `zhizhi edge replay`."""
    args = ["edge", "replay", "--config", str(config), "--camera", camera]
    args += ["--source", str(source), "--out", str(out)]
    return args if evidence_dir is None else [*args, "--evidence-dir", str(evidence_dir)]


def read_events(path: Path) -> list[dict[str, Any]]:
    """The event messages of a JSON-lines file `edge replay --out` wrote."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
