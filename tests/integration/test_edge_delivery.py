"""Evidence upload and the whole edge delivery chain (issue 5).

A tiny local HTTP server stands in for the server's ``PUT /api/v1/evidence/{sha256}`` (stores
the body if its sha256 matches, 400 otherwise, idempotent) and fails on demand: a 500, a
connection dropped halfway through the body, a 400. The chain test adds a private Mosquitto
and an acking "server" client, kills the edge with -9 while everything is down, and checks
that every event and every file arrives after the restart.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from common.events import Event, Evidence, ack_topic, parse_topic
from edge.capture.sources import Backoff
from edge.delivery.mqtt import MqttSink
from edge.delivery.outbox import Outbox
from edge.delivery.upload import EvidenceUploader, Outcome, classify, evidence_url
from edge.evidence.store import DirectoryStore
from tests.support.mosquitto import PrivateBroker

TOKEN = "edge-token-1"  # noqa: S105 - a test token


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


# A stand-in for the server's evidence endpoint ----------------------------------------------


class EvidenceServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), EvidenceHandler)
        self.files: dict[str, tuple[bytes, str]] = {}
        self.faults: list[str] = []  # one per request, first come first served: 500, drop, 400
        self.fail_all: int | None = None  # answer every request with this status
        self.requests = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def next_fault(self) -> str | None:
        with self.lock:
            self.requests += 1
            return self.faults.pop(0) if self.faults else None


class EvidenceHandler(BaseHTTPRequestHandler):
    server: EvidenceServer

    def do_PUT(self) -> None:
        fault = self.server.next_fault()
        length = int(self.headers["Content-Length"])
        if fault == "drop":  # read half the body, then hang up without an answer
            self.rfile.read(length // 2)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        body = self.rfile.read(length)
        sha = self.path.rsplit("/", 1)[-1]
        if self.headers["Authorization"] != f"Bearer {TOKEN}":
            self._answer(401)
        elif self.server.fail_all is not None:
            self._answer(self.server.fail_all)
        elif fault is not None:
            self._answer(int(fault))
        elif hashlib.sha256(body).hexdigest() != sha:
            self._answer(400, "sha256 mismatch")
        else:
            with self.server.lock:
                known = sha in self.server.files
                self.server.files[sha] = (body, self.headers["Content-Type"])
            self._answer(200 if known else 201)

    def _answer(self, status: int, text: str = "") -> None:
        data = json.dumps({"detail": text}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def http_server() -> Iterator[EvidenceServer]:
    server = EvidenceServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def uploader_for(server: EvidenceServer, outbox: Outbox, **options: Any) -> EvidenceUploader:
    return EvidenceUploader(
        server.url,
        TOKEN,
        outbox,
        backoff=Backoff(initial_s=0.05, max_s=0.2),
        poll_s=0.1,
        timeout_s=5.0,
        **options,
    )


def register(outbox: Outbox, folder: Path, name: str, data: bytes) -> str:
    path = folder / name
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    outbox.add_evidence(sha, path, len(data), "image/jpeg")
    return sha


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "outbox.sqlite")


def make_event(i: int, evidence: list[Evidence] | None = None, site: str = "site-d") -> Event:
    return Event.model_validate(
        {
            "event_id": f"ev-{i:04d}",
            "seq": 0,
            "state": "new",
            "type": "garbage_pile",
            "site_id": site,
            "camera_id": "cam-1",
            "zone_id": "bins",
            "rule_id": "bins-overflow",
            "observed_at": "2026-11-23T02:12:35.120Z",
            "pts_s": float(i),
            "onset_pts_s": 0.0,
            "bbox": [0.1, 0.2, 0.3, 0.4],
            "score": 0.9,
            "evidence": [item.model_dump() for item in evidence or []],
        }
    )


# prepare(event) ----------------------------------------------------------------------------


def test_prepare_points_urls_at_the_server_and_queues_the_files(
    http_server: EvidenceServer, outbox: Outbox, tmp_path: Path
) -> None:
    store = DirectoryStore(tmp_path / "evidence")
    snapshot = store.put("a.jpg", b"jpeg bytes", "snapshot", "image/jpeg", "onset")
    remote = Evidence(
        kind="clip", sha256="c" * 64, content_type="video/mp4", url="https://cdn.example/c.mp4"
    )
    uploader = uploader_for(http_server, outbox, autostart=False)

    prepared = uploader.prepare(make_event(1, [snapshot, remote]))
    uploader.close()

    assert prepared.evidence[0].url == f"{http_server.url}/api/v1/evidence/{snapshot.sha256}"
    assert prepared.evidence[0].sha256 == snapshot.sha256
    assert prepared.evidence[1] == remote
    pending = outbox.pending_evidence(10)
    assert [(item.sha256, item.path, item.size) for item in pending] == [
        (snapshot.sha256, Path(snapshot.url), len(b"jpeg bytes"))
    ]


def test_prepare_never_raises_for_a_missing_file(
    http_server: EvidenceServer, outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    gone = Evidence(kind="snapshot", sha256="d" * 64, content_type="image/jpeg", url="/no/such")
    uploader = uploader_for(http_server, outbox, autostart=False)

    prepared = uploader.prepare(make_event(1, [gone]))
    uploader.close()

    assert prepared.evidence[0].url == evidence_url(http_server.url, "d" * 64)
    assert outbox.pending_evidence(10) == []
    assert "could not be queued for upload" in caplog.text


def test_statuses_are_classified() -> None:
    assert [classify(s) for s in (200, 201)] == [Outcome.DONE] * 2
    assert [classify(s) for s in (400, 413, 422)] == [Outcome.FAILED] * 3
    assert [classify(s) for s in (401, 403, 404, 408, 429, 500, 503)] == [Outcome.RETRY] * 7


# Uploading ---------------------------------------------------------------------------------


def test_pending_files_are_uploaded_with_their_type_and_token(
    http_server: EvidenceServer, outbox: Outbox, tmp_path: Path
) -> None:
    data = [os.urandom(1000 + k) for k in range(3)]
    shas = [register(outbox, tmp_path, f"{k}.jpg", blob) for k, blob in enumerate(data)]
    uploader = uploader_for(http_server, outbox, delete_after_upload=True)

    wait_for(lambda: outbox.stats().pending_evidence == 0, 5, "the uploads")
    uploader.close()

    assert http_server.files == {
        sha: (blob, "image/jpeg") for sha, blob in zip(shas, data, strict=True)
    }
    assert not any((tmp_path / f"{k}.jpg").exists() for k in range(3))


def test_files_are_kept_unless_delete_after_upload(
    http_server: EvidenceServer, outbox: Outbox, tmp_path: Path
) -> None:
    register(outbox, tmp_path, "a.jpg", b"abc")
    uploader = uploader_for(http_server, outbox, autostart=False)

    result = uploader.upload_pending()
    uploader.close()

    assert (result.uploaded, result.failed, result.retry) == (1, 0, False)
    assert (tmp_path / "a.jpg").read_bytes() == b"abc"


def test_a_server_error_is_retried_with_backoff(
    http_server: EvidenceServer, outbox: Outbox, tmp_path: Path
) -> None:
    sha = register(outbox, tmp_path, "a.jpg", os.urandom(5000))
    http_server.faults = ["500", "503"]
    uploader = uploader_for(http_server, outbox)

    wait_for(lambda: sha in http_server.files, 5, "the upload after two 5xx")
    uploader.close()

    assert http_server.requests == 3
    attempts = outbox.evidence_attempts(sha)
    assert attempts is not None and attempts[0] == 2


def test_an_upload_cut_off_halfway_is_redone(
    http_server: EvidenceServer, outbox: Outbox, tmp_path: Path
) -> None:
    blob = os.urandom(4 * 1024 * 1024)  # bigger than the socket buffers
    sha = register(outbox, tmp_path, "clip.mp4", blob)
    http_server.faults = ["drop"]
    uploader = uploader_for(http_server, outbox)

    wait_for(lambda: sha in http_server.files, 10, "the second upload")
    uploader.close()

    assert http_server.requests == 2
    assert http_server.files[sha][0] == blob
    assert outbox.stats().pending_evidence == 0


def test_a_refused_file_is_kept_and_not_retried(
    http_server: EvidenceServer, outbox: Outbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = register(outbox, tmp_path, "bad.jpg", b"original")
    (tmp_path / "bad.jpg").write_bytes(b"changed on disk")  # no longer matches its sha256
    good = register(outbox, tmp_path, "good.jpg", b"fine")
    uploader = uploader_for(http_server, outbox, autostart=False, delete_after_upload=True)

    first = uploader.upload_pending()
    second = uploader.upload_pending()
    uploader.close()

    assert (first.uploaded, first.failed, second.uploaded, second.failed) == (1, 1, 0, 0)
    assert set(http_server.files) == {good}
    assert outbox.evidence_attempts(bad) == (1, 'HTTP 400: {"detail": "sha256 mismatch"}', True)
    assert (tmp_path / "bad.jpg").exists()
    assert outbox.stats().failed_evidence == 1
    assert "refused by the server" in caplog.text


def test_a_wrong_token_is_retried_not_failed(
    http_server: EvidenceServer, outbox: Outbox, tmp_path: Path
) -> None:
    sha = register(outbox, tmp_path, "a.jpg", b"abc")
    uploader = EvidenceUploader(http_server.url, "wrong", outbox, autostart=False)

    result = uploader.upload_pending()
    uploader.close()

    assert result.retry is True
    assert outbox.evidence_attempts(sha) == (1, "HTTP 401", False)
    assert outbox.stats().pending_evidence == 1


def test_a_server_that_is_down_is_retried(outbox: Outbox, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sha = register(outbox, tmp_path, "a.jpg", b"abc")
    uploader = EvidenceUploader(f"http://127.0.0.1:{port}", TOKEN, outbox, autostart=False)

    result = uploader.upload_pending()
    uploader.close()

    attempts = outbox.evidence_attempts(sha)
    assert result.retry is True
    assert attempts is not None and attempts[0] == 1 and "ConnectError" in str(attempts[1])


def test_a_vanished_file_is_reported_failed(
    http_server: EvidenceServer, outbox: Outbox, tmp_path: Path
) -> None:
    sha = register(outbox, tmp_path, "a.jpg", b"abc")
    (tmp_path / "a.jpg").unlink()
    uploader = uploader_for(http_server, outbox, autostart=False)

    result = uploader.upload_pending()
    uploader.close()

    assert (result.failed, result.retry) == (1, False)
    assert outbox.evidence_attempts(sha) == (1, "file missing", True)


# The whole chain, with the edge killed -9 while broker and server are away -------------------


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    """Not started: the test starts it once the edge is gone."""
    running = PrivateBroker(tmp_path / "broker")
    yield running
    running.stop()


class AckingServer:
    """Stores every event once per (event_id, seq), then acks it, like the real server."""

    def __init__(self, port: int) -> None:
        self.stored: dict[tuple[str, int], Event] = {}
        self.first: list[tuple[str, int]] = []
        self.subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"srv-{uuid.uuid4().hex[:6]}",
            clean_session=False,
        )
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()

    def _on_connect(self, c: mqtt.Client, *_args: Any) -> None:
        c.subscribe("zhizhi/v1/+/+/+/events", qos=1)
        self.subscribed.set()

    def _on_message(self, c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        event = Event.model_validate_json(message.payload)
        key = (event.event_id, event.seq)
        if key not in self.stored:
            self.stored[key] = event
            self.first.append(key)
        parsed = parse_topic(message.topic)
        assert parsed is not None
        ack = json.dumps({"event_id": event.event_id, "seq": event.seq})
        c.publish(ack_topic(parsed[0], parsed[1]), ack, qos=1)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


EDGE = """
import sys, time
from pathlib import Path
from common.events import Event
from edge.capture.sources import Backoff
from edge.evidence.store import DirectoryStore
from edge.delivery.outbox import Outbox
from edge.delivery.mqtt import MqttSink
from edge.delivery.upload import EvidenceUploader

mqtt_url, http_url, token, folder = sys.argv[1:5]
outbox = Outbox(Path(folder) / "outbox.sqlite")
store = DirectoryStore(Path(folder) / "evidence")
uploader = EvidenceUploader(http_url, token, outbox, backoff=Backoff(0.05, 0.2), poll_s=0.1)
sink = MqttSink(mqtt_url, "site-d", "edge-d", outbox, resend_after_s=1.0, reconnect_max_s=1)
base = {"seq": 0, "state": "new", "type": "garbage_pile", "site_id": "site-d",
        "camera_id": "cam-1", "zone_id": "bins", "rule_id": "bins-overflow",
        "observed_at": "2026-11-23T02:12:35.120Z", "onset_pts_s": 0.0,
        "bbox": [0.1, 0.2, 0.3, 0.4], "score": 0.9}
for i in range(20):
    data = f"snapshot {i}".encode() * 100
    snapshot = store.put(f"{i}.jpg", data, "snapshot", "image/jpeg", "onset")
    event = Event.model_validate({**base, "event_id": f"ev-{i:04d}", "pts_s": float(i),
                                  "evidence": [snapshot.model_dump()]})
    sink.send(uploader.prepare(event))
print("queued", flush=True)
time.sleep(60)
"""


@pytest.mark.integration
def test_nothing_is_lost_when_the_edge_dies_while_broker_and_server_are_away(
    broker: PrivateBroker, http_server: EvidenceServer, tmp_path: Path
) -> None:
    http_server.fail_all = 503
    script = tmp_path / "edge_process.py"
    script.write_text(EDGE)
    edge = subprocess.Popen(
        [
            sys.executable,
            str(script),
            f"mqtt://127.0.0.1:{broker.port}",
            http_server.url,
            TOKEN,
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert edge.stdout is not None
    assert edge.stdout.readline().strip() == "queued"
    time.sleep(0.5)  # a few refused uploads
    edge.send_signal(signal.SIGKILL)
    edge.wait(timeout=10)
    assert http_server.files == {}

    broker.start()
    server = AckingServer(broker.port)
    assert server.subscribed.wait(5)
    http_server.fail_all = None
    http_server.faults = ["drop", "500"]
    outbox = Outbox(tmp_path / "outbox.sqlite")
    sink = MqttSink(
        f"mqtt://127.0.0.1:{broker.port}", "site-d", "edge-d", outbox, resend_after_s=1.0
    )
    uploader = uploader_for(http_server, outbox, delete_after_upload=True)

    wait_for(lambda: outbox.stats().pending_events == 0, 15, "every event acked")
    wait_for(lambda: outbox.stats().pending_evidence == 0, 15, "every file uploaded")
    sink.close()
    uploader.close()
    server.close()

    assert server.first == [(f"ev-{i:04d}", 0) for i in range(20)]
    for event in server.stored.values():
        (evidence,) = event.evidence
        assert evidence.url == evidence_url(http_server.url, evidence.sha256)
        body, content_type = http_server.files[evidence.sha256]
        assert hashlib.sha256(body).hexdigest() == evidence.sha256
        assert content_type == "image/jpeg"
    assert len(http_server.files) == 20
    assert list((tmp_path / "evidence").iterdir()) == []
