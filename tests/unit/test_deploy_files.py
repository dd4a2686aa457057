"""Every file under deploy/ is what it says (issue 16): the compose file parses and names only
images pinned to a release, Dockerfile targets that exist, ZHIZHI_* variables the server
reads, options `zhizhi edge run` takes and files that are in the tree; its broker config loads
the access rules; its list of edges makes a rules file."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from server.settings import ENV_NAMES

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CLI = (REPO / "zhizhi" / "cli.py").read_text(encoding="utf-8")
# Read by `zhizhi server` / `edge run` themselves (typer envvar=), not by ServerSettings.
CLI_VARIABLES = {"ZHIZHI_MQTT_USERNAME", "ZHIZHI_MQTT_PASSWORD", "ZHIZHI_TOKEN"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def dockerfile_stages() -> set[str]:
    text = (REPO / "Dockerfile").read_text()
    return set(re.findall(r"^FROM \S+ AS (\S+)$", text, re.MULTILINE))


def test_every_service_has_an_image_pinned_to_a_release_or_a_target_of_the_dockerfile(
    compose: dict[str, Any],
) -> None:
    stages = dockerfile_stages()
    for name, service in compose["services"].items():
        if "build" in service:
            assert service["build"]["target"] in stages, name
            assert (DEPLOY / service["build"]["context"] / "Dockerfile").is_file()
        else:
            image = service["image"]
            assert ":" in image and not image.endswith(":latest"), f"{name}: {image}"


def test_the_server_is_configured_only_by_variables_it_reads(compose: dict[str, Any]) -> None:
    known = set(ENV_NAMES.values()) | CLI_VARIABLES
    env = compose["services"]["server"]["environment"]
    assert {key for key in env if key.startswith("ZHIZHI_")} <= known
    assert env["ZHIZHI_MQTT_CLIENT_ID"]  # stable per replica (docs/mqtt.md, membership)
    assert env["ZHIZHI_EVIDENCE_STORE"] == "s3"
    assert env["ZHIZHI_DB_URL"].startswith("postgresql://")


def test_the_edge_gets_options_and_variables_edge_run_takes(compose: dict[str, Any]) -> None:
    edge = compose["services"]["edge"]
    command = edge["command"]
    assert command[:2] == ["edge", "run"]
    for option in (part for part in command if part.startswith("--")):
        name = option[2:].replace("-", "_")
        assert f"    {name}: Annotated[" in CLI, f"edge run has no {option}"
    for key in edge["environment"]:
        if key.startswith("ZHIZHI_"):
            assert f'envvar="{key}"' in CLI, key
    config = command[command.index("--config") + 1]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in edge["volumes"] if m.startswith(".")}
    folder, file = config.rsplit("/", 1)
    assert (DEPLOY / mounts[folder] / file).is_file()
    assert command[command.index("--mqtt") + 1].startswith("mqtts://")  # edges over TLS


def test_every_file_the_services_mount_is_in_the_tree(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts {source}"


def test_the_brokers_config_loads_the_access_rules_and_listens_for_edges_over_tls() -> None:
    lines = (DEPLOY / "compose" / "mosquitto.conf").read_text().splitlines()
    settings = [line for line in lines if line and not line.startswith("#")]
    assert "allow_anonymous false" in settings
    assert "listener 8883" in settings and "listener 1883" in settings
    assert any(line.startswith("plugin ") and "dynamic_security" in line for line in settings)
    assert "plugin_opt_config_file /mosquitto/data/dynamic-security.json" in settings


def test_the_list_of_edges_makes_a_rules_file(tmp_path: Path) -> None:
    out = tmp_path / "dynamic-security.json"
    passwords = tmp_path / "passwords.txt"
    passwords.write_text("zhizhi-server s1\nedge-garden-court-box1 s2\n")
    made = subprocess.run(
        [
            sys.executable,
            str(DEPLOY / "mosquitto" / "zhizhi_dynsec.py"),
            "--edges",
            str(DEPLOY / "compose" / "edges.txt"),
            "--passwords",
            str(passwords),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert "edge-garden-court-box1" in out.read_text()
