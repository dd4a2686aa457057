"""Real models and clips: from ZHIZHI_MODEL_DIR / ZHIZHI_CLIPS_DIR, else ../shared beside the
checkout. Missing data skips locally with the reason, and fails in CI (CI=true)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _data_dir(env: str, default: Path, what: str) -> Path:
    path = Path(os.environ.get(env, default))
    if not path.is_dir():
        message = f"{what} not found at {path} (set {env})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def models_dir() -> Path:
    path = _data_dir("ZHIZHI_MODEL_DIR", REPO.parent / "shared" / "models", "model folder")
    os.environ["ZHIZHI_MODEL_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def clips_dir() -> Path:
    return _data_dir("ZHIZHI_CLIPS_DIR", REPO.parent / "shared" / "clips", "clip folder")
