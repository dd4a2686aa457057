"""A command center for browser tests and for looking at the dashboard by hand: a real server
(SQLite, a private Mosquitto) with its people, a site directory with names, and the edge side
played over the same wire an edge uses (evidence uploads, event messages, status messages with
the analysis load of issue 13).

`python -m tests.support.dashboard` starts one with a day of incidents and prints its URL and
logins (Ctrl-C stops it and removes everything).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import paho.mqtt.publish as mqtt_publish
import uvicorn

from common.events import Event, status_topic
from edge.evidence.clips import encode_mp4
from server.auth import create_token
from server.db.session import make_session_factory
from server.ingest import IngestService
from server.main import ServerRuntime, build_server
from server.settings import ServerSettings
from server.users import create_user
from tests.support.mosquitto import PrivateBroker, free_port

SITE, EDGE = "garden-court", "box-1"
FACADE, LANE, BINS, COURT = "facade-3", "gate-east", "bins-west", "courtyard-1"
OPERATOR = ("duty", "duty-desk-pass", "王值班")
ADMIN = ("chief", "chief-secret-pass", "李主任")
FIELD = ("zhao", "field-worker-pass", "赵师傅")
FIELD_TEAM = "property_management"
DIRECTORY: dict[str, Any] = {
    "name": "锦绣花园",
    "cameras": {
        FACADE: {
            "name": "3号楼东立面",
            "zones": {"facade": "3号楼外墙"},
            "rules": {
                f"{FACADE}-throw": {
                    "name": "3号楼高空抛物",
                    "type": "falling_object",
                    "zone": "facade",
                }
            },
        },
        LANE: {
            "name": "东门消防通道",
            "zones": {"lane-north": "北段通道", "lane-south": "南段通道"},
            "rules": {
                "lane-north-blocked": {"name": None, "type": "fire_lane", "zone": "lane-north"},
                "lane-south-blocked": {"name": None, "type": "fire_lane", "zone": "lane-south"},
            },
        },
        BINS: {
            "name": "西侧垃圾站",
            "zones": {"bins": "垃圾桶区域"},
            "rules": {"bins-pile": {"name": "垃圾满溢", "type": "garbage_pile", "zone": "bins"}},
        },
        COURT: {
            "name": "中心花园",
            "zones": {"lawn": "草坪步道"},
            "rules": {"lawn-fall": {"name": "老人跌倒", "type": "person_fall", "zone": "lawn"}},
        },
    },
}
ZONE_OF = {FACADE: "facade", LANE: "lane-north", BINS: "bins", COURT: "lawn"}
RULE_OF = {
    FACADE: f"{FACADE}-throw",
    LANE: "lane-north-blocked",
    BINS: "bins-pile",
    COURT: "lawn-fall",
}
TYPE_OF = {
    FACADE: "falling_object",
    LANE: "fire_lane",
    BINS: "garbage_pile",
    COURT: "person_fall",
}


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# Pictures the edge would send -----------------------------------------------------------------


def facade_snapshot(seed: int = 0) -> bytes:
    """A synthetic high-rise facade (rows of windows) as the edge's JPEG snapshot."""
    image = np.full((360, 640, 3), (170, 180, 190), np.uint8)
    for floor in range(12):
        for column in range(10):
            x, y = 40 + column * 58, 12 + floor * 29
            shade = 60 + (seed * 7 + floor * 3 + column) % 40
            cv2.rectangle(image, (x, y), (x + 34, y + 18), (90, 70, shade), -1)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return bytes(data)


def lane_snapshot(seed: int = 0) -> bytes:
    """A lane seen from above with a parked van in it."""
    image = np.full((360, 640, 3), (95, 100, 98), np.uint8)
    cv2.rectangle(image, (220, 0), (420, 360), (120, 125, 122), -1)
    for y in range(0, 360, 40):
        cv2.line(image, (320, y), (320, y + 20), (40, 200, 230), 3)
    cv2.rectangle(image, (250, 120 + seed % 40), (390, 260 + seed % 40), (200, 200, 205), -1)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return bytes(data)


def facade_clip() -> bytes:
    """A short H.264 clip of a small object falling past the facade."""
    frames = []
    for i in range(20):
        image = np.full((240, 320, 3), (170, 180, 190), np.uint8)
        cv2.circle(image, (200, 20 + i * 10), 5, (20, 20, 220), -1)
        frames.append((i / 10, image))
    return encode_mp4(frames)


def phone_photo() -> bytes:
    """What a field worker's phone takes: a cleared lane (JPEG)."""
    image = np.full((1200, 1600, 3), (110, 140, 120), np.uint8)
    cv2.rectangle(image, (500, 0), (1100, 1200), (150, 150, 150), -1)
    cv2.putText(image, "OK", (700, 650), cv2.FONT_HERSHEY_SIMPLEX, 6, (40, 180, 40), 12)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return bytes(data)


def plan_png() -> bytes:
    image = np.full((500, 800, 3), 235, np.uint8)
    for x, y in ((100, 80), (420, 80), (100, 300), (420, 300)):
        cv2.rectangle(image, (x, y), (x + 220, y + 140), (120, 120, 120), 3)
    cv2.rectangle(image, (0, 240), (800, 270), (200, 200, 200), -1)
    ok, data = cv2.imencode(".png", image)
    assert ok
    return bytes(data)


# The server -----------------------------------------------------------------------------------


class _Uvicorn(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the caller's thread, not the main one
        pass


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class CommandCenter:
    url: str
    edge_token: str
    admin_token: str
    viewer_token: str
    broker: PrivateBroker
    runtime: ServerRuntime
    sent: list[str] = field(default_factory=list)

    def _headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.edge_token}"}

    def upload(self, data: bytes, content_type: str, role: str = "onset") -> dict[str, Any]:
        """PUT an evidence file as the edge does; the evidence entry naming it."""
        sha256 = hashlib.sha256(data).hexdigest()
        response = httpx.put(
            f"{self.url}/api/v1/evidence/{sha256}",
            content=data,
            headers={**self._headers(), "Content-Type": content_type},
        )
        assert response.status_code in (200, 201), response.text
        return self.named(sha256, content_type, role)

    @staticmethod
    def named(sha256: str, content_type: str, role: str = "onset") -> dict[str, Any]:
        """An evidence entry as the event names it (uploaded or not)."""
        kind = "clip" if content_type == "video/mp4" else "snapshot"
        url = f"/api/v1/evidence/{sha256}"
        return {
            "kind": kind,
            "sha256": sha256,
            "content_type": content_type,
            "url": url,
            "role": role,
        }

    def send(self, message: dict[str, Any]) -> None:
        """POST an event message as an edge over HTTP."""
        response = httpx.post(f"{self.url}/api/v1/events", json=message, headers=self._headers())
        assert response.status_code in (200, 201), response.text
        self.sent.append(message["event_id"])

    def send_received(self, message: dict[str, Any], received: datetime) -> None:
        """Store an event message as if the server had received it at `received` (a day of
        history seeded at once; nothing is pushed live)."""
        service = IngestService(
            make_session_factory(self.runtime.engine),
            clock=lambda: received,
            policy=self.runtime.ingest.policy,
        )
        service.ingest(Event.model_validate(message), source="http")
        self.sent.append(message["event_id"])

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A call as the admin token (set-up the page does not do itself)."""
        headers = {**self._headers(self.admin_token), **kwargs.pop("headers", {})}
        return httpx.request(method, f"{self.url}{path}", headers=headers, **kwargs)

    def register_directory(self) -> None:
        response = self.api("PUT", f"/api/v1/sites/{SITE}/directory", json=DIRECTORY)
        assert response.status_code == 204, response.text

    def status(self, payload: dict[str, Any]) -> None:
        """The edge's retained status message on MQTT (what the devices view shows)."""
        mqtt_publish.single(
            status_topic(SITE, EDGE),
            json.dumps(payload),
            qos=1,
            retain=True,
            hostname="127.0.0.1",
            port=self.broker.port,
        )

    def incident_of(self, event_id: str) -> dict[str, Any]:
        response = self.api("GET", "/api/v1/incidents", params={"limit": 500})
        for item in response.json()["items"]:
            if event_id in item["event_ids"]:
                found: dict[str, Any] = item
                return found
        raise AssertionError(f"no incident holds {event_id}")


def event_message(
    event_id: str, camera: str, *, observed: datetime | None = None, **fields: Any
) -> dict[str, Any]:
    """An event message of `camera`'s rule (its type, zone and rule from the directory)."""
    message: dict[str, Any] = {
        "schema": "zhizhi.event/1",
        "event_id": event_id,
        "seq": 0,
        "state": "new",
        "type": TYPE_OF[camera],
        "site_id": SITE,
        "camera_id": camera,
        "zone_id": ZONE_OF[camera],
        "rule_id": RULE_OF[camera],
        "observed_at": rfc3339(observed or datetime.now(UTC)),
        "pts_s": 40.0,
        "onset_pts_s": 38.8,
        "bbox": [0.55, 0.3, 0.65, 0.9],
        "score": 0.91,
        "details": {},
        "model": None,
        "evidence": [],
    }
    message.update(fields)
    return message


def trajectory(floor_y: float = 0.22) -> list[list[float]]:
    return [[38.8 + i * 0.1, 0.60, floor_y + 0.0085 * i * i] for i in range(9)]


def camera_load(state: str, share: float, **extra: Any) -> dict[str, Any]:
    """A camera's load as issue 13's edge reports it."""
    load: dict[str, Any] = {
        "window_s": 10.0,
        "state": state,
        "camera_fps": 25.0,
        "analysis_fps": round(5.0 * share, 2),
        "target_analysis_fps": 5.0,
        "detection_fps": round(5.0 * share, 2),
        "dropped_fps": round(25.0 * (1 - share), 2),
        "lag_s": 0.2 if state == "ok" else 4.5,
        "detector_wait_ms": 35.0 if state == "ok" else 820.0,
        "cpu": 0.42,
        "restarts": 0,
        "coverage": {},
        "problems": [],
    }
    load.update(extra)
    return load


def status_message(
    cameras: dict[str, dict[str, Any]], *, box: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "state": "online",
        "edge_id": EDGE,
        "site_id": SITE,
        "ts": time.time(),
        "cameras": cameras,
        "outbox": {"pending": 0, "pending_evidence": 2, "failed_evidence": 0, "shed_events": 0},
        "box": box,
    }


def busy_status() -> dict[str, Any]:
    """Four cameras: the facade overloaded, the lane degraded, the bins fine, the courtyard
    offline; the box near its limit."""
    facade = camera_load(
        "overloaded",
        0.31,
        frame_rule_fps=14.0,
        coverage={
            f"{FACADE}-throw": {
                "need_fps": 25.0,
                "got_fps": 14.0,
                "coverage": 0.56,
                "max_gap_s": 0.9,
            }
        },
        problems=[
            {
                "code": "frame_rules_behind",
                "params": {"rule": f"{FACADE}-throw", "fps": 14.0},
                "detail": "the falling-object rule saw 14 of 25 frames a second",
            },
            {"code": "detector_slow", "params": {"wait_ms": 820}, "detail": "p95 wait 820 ms"},
        ],
    )
    lane = camera_load(
        "degraded",
        0.7,
        coverage={
            "lane-north-blocked": {
                "need_fps": 2.0,
                "got_fps": 1.4,
                "coverage": 0.7,
                "max_gap_s": 2.1,
            },
            "lane-south-blocked": {
                "need_fps": 2.0,
                "got_fps": 2.0,
                "coverage": 1.0,
                "max_gap_s": 0.6,
                "holding": True,
            },
        },
        problems=[
            {
                "code": "analysis_starved",
                "params": {"lane": "zones", "analyses": 3, "rules": "lane-north-blocked"},
                "detail": "lane-north-blocked got 1.4 of 2 looks a second",
            }
        ],
    )
    bins = camera_load(
        "ok",
        1.0,
        coverage={
            "bins-pile": {"need_fps": 0.5, "got_fps": 0.5, "coverage": 1.0, "max_gap_s": 2.0}
        },
    )
    cameras = {
        FACADE: {
            "online": True,
            "reason": "frames arriving",
            "reason_code": "frames_arriving",
            "load": facade,
        },
        LANE: {
            "online": True,
            "reason": "frames arriving",
            "reason_code": "frames_arriving",
            "load": lane,
        },
        BINS: {
            "online": True,
            "reason": "frames arriving",
            "reason_code": "frames_arriving",
            "load": bins,
        },
        COURT: {
            "online": False,
            "reason": "cannot open rtsp://10.0.0.9/stream1: connect timeout",
            "reason_code": "cannot_open",
        },
    }
    box = {
        "window_s": 10.0,
        "cores": 4,
        "cpu": 0.93,
        "process_cpu": 3.6,
        "memory_mb": 1830.0,
        "memory_available_mb": 410.0,
        "load1": 4.2,
        "detector": {
            "runs_per_s": 11.5,
            "images_per_s": 19.0,
            "busy": 0.96,
            "queue": 6,
            "wait_p95_ms": 820.0,
            "batch_mean": 1.7,
            "shed": 3,
        },
        "overloaded": True,
    }
    return status_message(cameras, box=box)


@contextmanager
def command_center(folder: Path, *, escalation_check_s: float = 10.0) -> Iterator[CommandCenter]:
    """A running server with its people (operator, admin, field worker, viewer and edge
    tokens) and the site's names registered."""
    broker = PrivateBroker(folder / "broker")
    broker.start()
    port = free_port()
    settings = ServerSettings(
        db_url=f"sqlite:///{folder / 'zhizhi.db'}",
        mqtt_url=broker.url,
        port=port,
        media_dir=folder / "media",
        mqtt_client_id="dashboard-test-server",
        escalation_check_s=escalation_check_s,
    )
    runtime = build_server(settings, shared=False)
    with make_session_factory(runtime.engine)() as session:
        create_user(
            session,
            username=OPERATOR[0],
            password=OPERATOR[1],
            role="operator",
            sites=[SITE],
            display_name=OPERATOR[2],
        )
        create_user(
            session,
            username=ADMIN[0],
            password=ADMIN[1],
            role="admin",
            sites=["*"],
            display_name=ADMIN[2],
        )
        create_user(
            session,
            username=FIELD[0],
            password=FIELD[1],
            role="field",
            sites=[SITE],
            display_name=FIELD[2],
            team=FIELD_TEAM,
        )
        edge_token = create_token(session, "edge", "dashboard test edge", sites=[SITE])
        admin_token = create_token(session, "admin", "dashboard test set-up")
        viewer_token = create_token(session, "viewer", "大屏")
    web = _Uvicorn(uvicorn.Config(runtime.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=web.run, name="dashboard-http", daemon=True)
    thread.start()
    runtime.start_consumer()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url), 20, "the server's /healthz")
        center = CommandCenter(url, edge_token, admin_token, viewer_token, broker, runtime)
        center.register_directory()
        yield center
    finally:
        web.should_exit = True
        thread.join(timeout=10)
        runtime.stop()
        broker.stop()


def seed_a_day(center: CommandCenter) -> None:
    """A day at the site: thrown objects (one with six alerts), blocked lanes that come back,
    piles whose snapshots never arrived, a fall, an alert sent late from the edge's outbox."""
    now = datetime.now(UTC)

    def send(message: dict[str, Any]) -> None:
        observed = datetime.fromisoformat(message["observed_at"].replace("Z", "+00:00"))
        center.send_received(message, observed + timedelta(seconds=2))

    facade = [center.upload(facade_snapshot(i), "image/jpeg") for i in range(3)]
    clip = center.upload(facade_clip(), "video/mp4")
    lanes = [
        center.upload(lane_snapshot(i), "image/jpeg", role)
        for i, role in enumerate(("onset", "latest"))
    ]
    for i in range(6):  # one thrown-object incident, six alerts within the group window
        send(
            event_message(
                f"throw-a{i}",
                FACADE,
                observed=now - timedelta(hours=3, seconds=-40 * i),
                details={"trajectory": trajectory(0.2 + 0.03 * i), "origin_floor": 9},
                evidence=[facade[i % 3], clip],
            )
        )
    for hour in range(8, 0, -2):
        lane_id = f"lane-{hour}"
        send(
            event_message(
                lane_id,
                LANE,
                observed=now - timedelta(hours=hour),
                pts_s=260.0,
                onset_pts_s=20.0,
                details={"blocked_s": 240.0, "dwell_s": 120},
                evidence=lanes,
            )
        )
    for i in range(5):
        send(
            event_message(
                f"pile-{i}",
                BINS,
                observed=now - timedelta(hours=10 - i),
                pts_s=900.0,
                onset_pts_s=300.0,
                details={"present_s": 600.0},
                evidence=[
                    center.named(hashlib.sha256(f"gone {i}".encode()).hexdigest(), "image/jpeg")
                ],
            )
        )
    send(
        event_message(
            "fall-1",
            COURT,
            observed=now - timedelta(minutes=50),
            details={"lying_s": 65.0, "people_beside": 0},
        )
    )
    late = now - timedelta(minutes=42)  # held in the edge's outbox during an outage
    center.send(
        event_message(
            "lane-late",
            LANE,
            zone_id="lane-south",
            rule_id="lane-south-blocked",
            observed=late,
            pts_s=80.0,
            onset_pts_s=10.0,
            details={"blocked_s": 70.0},
        )
    )


def main() -> None:  # pragma: no cover - a tool for people
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="zhizhi-dashboard-"))
    with command_center(folder) as center:
        seed_a_day(center)
        center.status(busy_status())
        plan = center.api(
            "PUT",
            f"/api/v1/sites/{SITE}/plan",
            content=plan_png(),
            headers={"Content-Type": "image/png"},
        )
        assert plan.status_code == 204, plan.text
        for camera, (x, y) in {
            FACADE: (0.3, 0.25),
            LANE: (0.7, 0.5),
            BINS: (0.15, 0.8),
            COURT: (0.6, 0.8),
        }.items():
            center.api(
                "PUT", f"/api/v1/sites/{SITE}/cameras/{camera}/plan-position", json={"x": x, "y": y}
            )
        print(f"dashboard: {center.url}/")  # noqa: T201
        for who in (OPERATOR, ADMIN, FIELD):
            print(f"  {who[0]} / {who[1]}  ({who[2]})")  # noqa: T201
        print(f"  viewer token: {center.viewer_token}", flush=True)  # noqa: T201
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
