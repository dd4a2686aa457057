"""The edge and the server never import torch or ultralytics (training does, lazily)."""

from __future__ import annotations

import subprocess
import sys

MODULES = [
    "edge.runtime.worker",
    "edge.offline.replay",
    "edge.runtime.rollout",
    "edge.analysis.detect.onnx",
    "edge.runtime.models",
    "server.api",
    "server.main",
    "server.models_api",
    "common.commands",
    "zhizhi.cli",
    "training.cli",
]


def test_edge_and_server_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {name}\n" for name in MODULES)
        + "heavy = sorted(m for m in ('torch', 'ultralytics') if m in sys.modules)\n"
        + "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
