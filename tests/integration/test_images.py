"""The Docker images, proven without a Docker daemon (issue 16).

The Dockerfile is read as the build would read it: for the edge and server images, exactly the
files their builder stage copies go into an empty folder, a clean virtual environment gets the
stage's lock file with every sha256 checked, then the project without dependencies (as the
builder does), and the image's entry point runs from there: the server's default command
answers /healthz on SQLite and a private Mosquitto; the edge's finds its model registry and
replays a synthetic lane with the real models. A folder the image lacks (as training/ was,
which `zhizhi` imported at start-up) fails here. The runtime stages are checked for what a
deployment relies on: a non-root user, a HEALTHCHECK, the server starting by default, the base
pinned by digest. The training image is checked statically (its install is torch, gigabytes).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge.offline.synthetic import LANE, LaneScene, write_video
from tests.support.mosquitto import PrivateBroker, free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
INSTALL_TIMEOUT_S = 900


@dataclass
class Stage:
    name: str
    base: str
    copies: list[tuple[list[str], str]] = field(default_factory=list)  # (sources, destination)
    copied_from: list[str] = field(default_factory=list)  # COPY --from=<stage>
    instructions: list[str] = field(default_factory=list)


def parse_dockerfile(path: Path = DOCKERFILE) -> tuple[dict[str, str], dict[str, Stage]]:
    """Build arguments (with defaults) and stages by name, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and current is None:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
        elif keyword == "FROM":
            match = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", rest, re.IGNORECASE)
            assert match, f"every stage is named: FROM {rest}"
            current = Stage(match.group(2), match.group(1))
            stages[current.name] = current
        elif current is not None:
            current.instructions.append(line)
            if keyword == "COPY":
                parts = rest.split()
                options = [p for p in parts if p.startswith("--")]
                paths = [p for p in parts if not p.startswith("--")]
                source = next((o.split("=", 1)[1] for o in options if o.startswith("--from=")), "")
                if source:
                    current.copied_from.append(source)
                else:
                    current.copies.append((paths[:-1], paths[-1]))
    return args, stages


def builder_files(stages: dict[str, Stage], name: str) -> list[str]:
    """The repository paths a builder stage (and the stages it is built on) copies."""
    stage = stages[name]
    files = [src for sources, _ in stage.copies for src in sources]
    if stage.base in stages:
        files = builder_files(stages, stage.base) + files
    return files


def install_like_the_builder(stages: dict[str, Stage], builder: str, folder: Path) -> Path:
    """Copy what `builder` copies into folder/src, install it as the builder does into a clean
    venv folder/venv; the venv's bin folder."""
    source = folder / "src"
    for relative in builder_files(stages, builder):
        origin = REPO / relative
        target = source / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, target)
    locks = [path for path in builder_files(stages, builder) if path.endswith(".lock")]
    assert len(locks) == 1, f"{builder} installs from one lock file, not {locks}"
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    for command in (
        [*pip, "install", "--require-hashes", "--no-deps", "-r", str(source / locks[0])],
        [*pip, "install", "--no-deps", str(source)],
        [*pip, "check"],  # the lock holds every dependency the project declares
    ):
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
        )
        tail = f"{done.stdout[-1500:]}{done.stderr[-3000:]}"
        assert done.returncode == 0, f"{' '.join(command[3:6])}: {tail}"
    return venv / "bin"


def run(bin_dir: Path, *args: str, env: dict[str, str] | None = None, timeout: int = 300) -> str:
    done = subprocess.run(
        [str(bin_dir / "zhizhi"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=bin_dir.parent.parent,  # not the checkout: nothing of it on the path
        env={**clean_env(), **(env or {})},
    )
    assert done.returncode == 0, (
        f"zhizhi {' '.join(args)}: {done.stdout[-1500:]}{done.stderr[-3000:]}"
    )
    return done.stdout


def clean_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "ZHIZHI_MODEL_DIR", "CI")
    return {key: os.environ[key] for key in keep if key in os.environ}


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], dict[str, Stage]]:
    return parse_dockerfile()


def test_each_image_is_a_target_built_in_a_builder_stage_and_runs_as_a_user(
    dockerfile: tuple[dict[str, str], dict[str, Stage]],
) -> None:
    args, stages = dockerfile
    assert re.fullmatch(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", args["PYTHON_IMAGE"])
    assert list(stages)[-1] == "server"  # `docker build .` gives the server
    for image in ("edge", "server", "training"):
        stage = stages[image]
        assert stage.copied_from == [f"{image}-builder"]
        assert not stage.copies, f"{image} copies only the builder's venv"
        assert any(i.startswith("USER 10001") for i in stage.instructions), image
        lock = next(
            src for src in builder_files(stages, f"{image}-builder") if src.endswith(".lock")
        )
        assert (REPO / lock).is_file()
    for image in ("edge", "server"):
        assert any(i.startswith("HEALTHCHECK") for i in stages[image].instructions), image
    assert 'CMD ["server"]' in stages["server"].instructions
    training = builder_files(stages, "training-builder")
    assert {"training", "edge", "common", "zhizhi"} <= set(training)
    assert "torch==2.14.1 \\" in (REPO / "requirements" / "training.lock").read_text()


def test_the_server_image_starts_by_default_and_answers_healthz(
    dockerfile: tuple[dict[str, str], dict[str, Stage]], tmp_path: Path
) -> None:
    _, stages = dockerfile
    bin_dir = install_like_the_builder(stages, "server-builder", tmp_path / "image")
    assert "train" not in run(bin_dir, "--help")  # no training package in this image
    broker = PrivateBroker(tmp_path / "broker")
    broker.start()
    port = free_port()
    env = {
        **clean_env(),
        # what the image sets, with this test's places
        "ZHIZHI_HOST": "127.0.0.1",
        "ZHIZHI_PORT": str(port),
        "ZHIZHI_DB_URL": f"sqlite:///{tmp_path / 'data' / 'zhizhi.db'}",
        "ZHIZHI_MEDIA_DIR": str(tmp_path / "data" / "media"),
        "ZHIZHI_MQTT_URL": broker.url,
        "ZHIZHI_MQTT_CLIENT_ID": "image-test-1",
    }
    server = subprocess.Popen(
        [str(bin_dir / "zhizhi"), "server"],  # the image's CMD
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()[0].decode()[-3000:]
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/healthz", timeout=2
                ) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            assert time.monotonic() < deadline, "the server image never answered /healthz"
            time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
            assert b"<html" in page.read().lower()  # the dashboard's files are in the image
    finally:
        server.terminate()
        server.wait(timeout=30)
        broker.stop()


def test_the_edge_image_finds_its_registry_and_replays_with_the_real_models(
    dockerfile: tuple[dict[str, str], dict[str, Stage]], tmp_path: Path, models_dir: Path
) -> None:
    _, stages = dockerfile
    bin_dir = install_like_the_builder(stages, "edge-builder", tmp_path / "image")
    registry = {
        "ZHIZHI_MODEL_REGISTRY": str(tmp_path / "image" / "src" / "models" / "registry.yaml")
    }
    assert "yolov8n-640" in run(bin_dir, "models", "list", env=registry)
    video = tmp_path / "lane.mp4"
    write_video(LaneScene(seconds=12, drop_s=2.0, clear_s=None, fps=10), str(video))
    polygon = ", ".join(f"[{x}, {y}]" for x, y in LANE)
    config = tmp_path / "site.yaml"
    config.write_text(
        "site: {id: image-site}\ncameras:\n  - id: lane-cam\n"
        f'    source: "{video}"\n    zones: [{{id: lane, polygon: [{polygon}]}}]\n'
        "    rules: [{id: lane-blocked, type: fire_lane, zone: lane, dwell_s: 2}]\n"
    )
    out = tmp_path / "events.jsonl"
    summary = run(
        bin_dir,
        "edge",
        "replay",
        "--config",
        str(config),
        "--camera",
        "lane-cam",
        "--source",
        str(video),
        "--out",
        str(out),
        "--no-progress",
        env=registry,
    )
    assert "frames" in summary
    assert '"type":"fire_lane"' in out.read_text().replace(" ", "")
