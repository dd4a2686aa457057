"""`zhizhi server` and `zhizhi edge run` refuse settings that cannot work, in one line, before
anything starts: environment variables are read (and checked) like options (issue 16)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.servers import REPO, zhizhi_binary

MINIMAL = REPO / "configs" / "examples" / "minimal.yaml"


def zhizhi(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(zhizhi_binary()), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "CAM_PASSWORD": "x", **(env or {})},
    )


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"ZHIZHI_PORT": "abc"}, "server: port:"),
        ({"ZHIZHI_MQTT_URL": "http://user:s3cret@broker:1883"}, "server: mqtt_url:"),
        ({"ZHIZHI_MEMBER_GRACE_S": "1"}, "member_grace_s"),
        ({"ZHIZHI_EVIDENCE_STORE": "s3"}, "s3_bucket"),
        ({"ZHIZHI_MQTT_CLIENT_ID": "two words"}, "mqtt_client_id"),
    ],
)
def test_a_server_variable_that_cannot_work_stops_it_with_one_line(
    env: dict[str, str], reason: str, tmp_path: Path
) -> None:
    done = zhizhi("server", "--db", f"sqlite:///{tmp_path / 'z.db'}", env=env)
    assert done.returncode != 0
    assert reason in done.stderr
    assert "Traceback" not in done.stderr and "s3cret" not in done.stderr
    assert not (tmp_path / "z.db").exists()  # refused before anything was made


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--mqtt", "mqtt://127.0.0.1:1", "--mqtt-ca-file", str(MINIMAL)], "need an mqtts://"),
        (["--mqtt", "mqtts://127.0.0.1:1", "--mqtt-ca-file", "/no/ca.pem"], "no such file"),
        (["--mqtt", "smtp://127.0.0.1:1"], "MQTT URL"),
    ],
)
def test_edge_run_refuses_tls_options_that_cannot_work(args: list[str], reason: str) -> None:
    done = zhizhi("edge", "run", "--config", str(MINIMAL), *args)
    assert done.returncode != 0
    assert reason in done.stderr and "Traceback" not in done.stderr
