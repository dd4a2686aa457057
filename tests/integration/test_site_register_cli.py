"""`zhizhi config register`: a site config's names reach the server (and nothing else of it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.dashboard import command_center

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "sites" / "example-garden-court.yaml"


def zhizhi(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CAM_PASSWORD": "secret-of-the-camera"}
    return subprocess.run(
        [sys.executable, "-m", "zhizhi.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        env=env,
        check=False,
    )


def test_register_sends_the_names_and_refuses_a_wrong_token(tmp_path: Path) -> None:
    with command_center(tmp_path) as center:
        refused = zhizhi("config", "register", str(CONFIG), "--server", center.url, "--token", "x")
        done = zhizhi(
            "config", "register", str(CONFIG), "--server", center.url, "--token", center.admin_token
        )
        sites = center.api("GET", "/api/v1/sites").json()["items"]
        stored = center.api("GET", "/api/v1/audit", params={"action": "register_site"}).json()

    assert refused.returncode != 0
    assert refused.stderr.startswith("zhizhi: error: config register: the server answered 401")
    assert "Traceback" not in refused.stderr
    assert done.returncode == 0, done.stderr
    garden = next(site for site in sites if site["site_id"] == "garden-court")
    assert garden["name"] == "Garden Court"
    assert garden["cameras"]["gate-east"]["zones"]["lane-east"] == "Fire lane, east gate to block 3"
    assert "secret-of-the-camera" not in str(sites)
    assert stored["total"] >= 2  # the support's own registration, and this one
