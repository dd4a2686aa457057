"""The one door to Ultralytics: offline, never pip-installing, settings in a writable folder.

The edge and the server never import this module (nor torch): only `training` does, lazily.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from pathlib import Path
from typing import Any


def offline_env() -> None:
    """Set before ultralytics is imported: no downloads, no on-the-fly installs."""
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "0"
    os.environ.setdefault("YOLO_VERBOSE", "True")
    if "YOLO_CONFIG_DIR" not in os.environ:
        folder = Path(tempfile.gettempdir()) / "zhizhi-ultralytics"
        folder.mkdir(parents=True, exist_ok=True)
        os.environ["YOLO_CONFIG_DIR"] = str(folder)


def yolo(weights: Path, task: str = "detect") -> Any:
    """`ultralytics.YOLO` on a local file (a real path, so nothing is downloaded).

    Raises:
        FileNotFoundError: the file does not exist.
    """
    if not weights.is_file():
        raise FileNotFoundError(f"model weights {weights} do not exist")
    offline_env()
    ultralytics = importlib.import_module("ultralytics")
    return ultralytics.YOLO(str(weights), task=task)


def auto_device() -> str:
    """`0` (the first GPU) when CUDA is there, else `cpu`."""
    offline_env()
    import torch

    return "0" if torch.cuda.is_available() else "cpu"
