"""`zhizhi edge run` as a process against the real Mosquitto on 127.0.0.1:1883."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.offline.synthetic import LANE, LaneScene, write_video
from zhizhi.embedded_broker import free_port

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
BROKER = ("127.0.0.1", 1883)


@pytest.fixture
def broker() -> Iterator[tuple[mqtt.Client, queue.Queue[tuple[str, dict[str, object]]]]]:
    messages: queue.Queue[tuple[str, dict[str, object]]] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        if message.payload:  # an empty retained message clears a topic
            messages.put((message.topic, json.loads(message.payload)))

    client.on_message = on_message
    try:
        client.connect(*BROKER)
    except OSError as error:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"no MQTT broker at {BROKER}: {error}")
        pytest.skip(f"no MQTT broker at {BROKER}: {error}")
    client.subscribe("zhizhi/v1/it-site/#", qos=1)
    client.loop_start()
    yield client, messages
    client.loop_stop()
    client.disconnect()


def site_yaml(tmp_path: Path, source: str) -> Path:
    polygon = ", ".join(f"[{x}, {y}]" for x, y in LANE)
    path = tmp_path / "site.yaml"
    path.write_text(
        f"""
site: {{id: it-site}}
cameras:
  - id: lane-cam
    source: "{source}"
    zones: [{{id: lane, polygon: [{polygon}]}}]
    rules: [{{id: lane-blocked, type: fire_lane, zone: lane, dwell_s: 2, clear_s: 3}}]
"""
    )
    return path


def start_edge(tmp_path: Path, config: Path, edge_id: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zhizhi.cli",
            "edge",
            "run",
            "--config",
            str(config),
            "--mqtt",
            "mqtt://127.0.0.1:1883",
            "--edge-id",
            edge_id,
            "--events-out",
            str(tmp_path / "events.jsonl"),
            "--evidence-dir",
            str(tmp_path / "ev"),
            "--outbox",
            str(tmp_path / "outbox.sqlite"),
            "--metrics-listen",
            "",
            *extra,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(
    messages: queue.Queue[tuple[str, dict[str, object]]],
    topic_end: str,
    predicate: object,
    timeout_s: float,
) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            topic, payload = messages.get(timeout=0.5)
        except queue.Empty:
            continue
        if topic.endswith(topic_end) and predicate(payload):  # type: ignore[operator]
            return payload
    raise AssertionError(f"no message on *{topic_end} within {timeout_s} s")


def clear_retained(client: mqtt.Client, edge_id: str) -> None:
    """Leave the shared broker as we found it: no retained status of a test edge."""
    client.publish(f"zhizhi/v1/it-site/{edge_id}/status", b"", qos=1, retain=True).wait_for_publish(
        5
    )


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    return output


def test_edge_publishes_events_and_status(
    tmp_path: Path,
    models_dir: Path,
    broker: tuple[mqtt.Client, queue.Queue[tuple[str, dict[str, object]]]],
) -> None:
    _, messages = broker
    video = tmp_path / "lane.mp4"
    write_video(LaneScene(seconds=12, drop_s=2.0, clear_s=None, fps=10), str(video))
    edge_id = f"edge-{uuid.uuid4().hex[:6]}"
    process = start_edge(tmp_path, site_yaml(tmp_path, video.name), edge_id)
    try:
        status = wait_for(messages, f"{edge_id}/status", lambda p: p["state"] == "online", 30)
        assert status["edge_id"] == edge_id
        event = wait_for(messages, "lane-cam/events", lambda p: p["state"] == "new", 40)
    finally:
        output = stop(process)
    assert event["schema"] == "zhizhi.event/1" and event["site_id"] == "it-site"
    assert event["type"] == "fire_lane" and event["seq"] == 0
    assert 1.0 <= float(event["onset_pts_s"]) <= 3.5  # type: ignore[arg-type]
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert any(json.loads(line)["event_id"] == event["event_id"] for line in lines)
    offline = wait_for(messages, f"{edge_id}/status", lambda p: p["state"] == "offline", 10)
    assert offline["edge_id"] == edge_id, output
    clear_retained(broker[0], edge_id)


def test_camera_that_never_answers_is_reported_offline_and_retried(
    tmp_path: Path,
    models_dir: Path,
    broker: tuple[mqtt.Client, queue.Queue[tuple[str, dict[str, object]]]],
) -> None:
    _, messages = broker
    edge_id = f"edge-{uuid.uuid4().hex[:6]}"
    process = start_edge(tmp_path, site_yaml(tmp_path, "rtsp://127.0.0.1:9/none"), edge_id)
    try:
        status = wait_for(
            messages,
            f"{edge_id}/status",
            lambda p: (
                p["state"] == "online" and p["cameras"].get("lane-cam", {}).get("online") is False
            ),
            60,
        )
        time.sleep(3)
        assert process.poll() is None  # still running: retrying, not crashed
    except AssertionError as error:
        raise AssertionError(f"{error}; edge output:\n{stop(process)[-4000:]}") from None
    output = stop(process)
    clear_retained(broker[0], edge_id)
    assert "lane-cam" in str(status["cameras"])
    assert "offline" in output and "Traceback" not in output


def test_the_box_reports_each_cameras_coverage_in_its_status_and_on_metrics(
    tmp_path: Path,
    models_dir: Path,
    broker: tuple[mqtt.Client, queue.Queue[tuple[str, dict[str, object]]]],
) -> None:
    _, messages = broker
    video = tmp_path / "lane.mp4"
    write_video(LaneScene(seconds=20, drop_s=None, clear_s=None, fps=10), str(video))
    edge_id = f"edge-{uuid.uuid4().hex[:6]}"
    port = free_port()
    process = start_edge(
        tmp_path,
        site_yaml(tmp_path, video.name),
        edge_id,
        "--metrics-listen",
        f"127.0.0.1:{port}",
        "--report-every-s",
        "2",
    )
    try:
        status = wait_for(
            messages,
            f"{edge_id}/status",
            lambda p: (
                p["state"] == "online"
                and p.get("box") is not None
                and (p["cameras"].get("lane-cam") or {}).get("load", {}).get("state") == "ok"
            ),
            60,
        )
        page = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except AssertionError as error:
        raise AssertionError(f"{error}; edge output:\n{stop(process)[-4000:]}") from None
    finally:
        if process.poll() is None:
            stop(process)
    clear_retained(broker[0], edge_id)
    load = status["cameras"]["lane-cam"]["load"]  # type: ignore[index]
    assert load["camera_fps"] == pytest.approx(10, abs=1.5)
    assert load["analysis_fps"] == pytest.approx(5, abs=1.0) and load["target_analysis_fps"] == 5
    assert load["coverage"]["lane-blocked"]["coverage"] >= 0.9
    box = status["box"]
    assert box["cores"] >= 1 and 0 <= box["cpu"] <= 1 and box["memory_mb"] > 50  # type: ignore[index]
    assert 'zhizhi_edge_camera_camera_fps{camera="lane-cam"}' in page
    assert 'zhizhi_edge_rule_coverage{camera="lane-cam",rule="lane-blocked"}' in page
    assert "zhizhi_edge_detector_busy" in page
