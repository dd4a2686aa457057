"""The dashboard in a real headless browser (Debian's Chromium driven by Playwright).

A real server (SQLite, a private Mosquitto) runs in this process; the edge side is played over
the same wire an edge uses: evidence uploaded with an edge token, events POSTed to
/api/v1/events, the camera status published on MQTT. The operator signs in through the page,
sees the live alert arrive without a reload (and hears it), works it through acknowledge,
dispatch and resolve, marks a second one as a false alarm, and switches the language. A
screenshot of each step goes to $ZHIZHI_ARTIFACTS/dashboard (default test-artifacts/dashboard).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import paho.mqtt.publish as mqtt_publish
import pytest
import uvicorn

from common.events import status_topic
from edge.evidence.clips import encode_mp4
from server.auth import create_token
from server.db.session import make_session_factory
from server.main import ServerRuntime, build_server
from server.settings import ServerSettings
from server.users import create_user
from tests.support.mosquitto import PrivateBroker, free_port, unavailable

try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError:  # the `page` fixture says so (and fails in CI, where nothing may skip)
    sync_playwright = None

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("ZHIZHI_CHROMIUM", "/usr/bin/chromium"))
SITE, EDGE, FACADE, LANE = "garden-court", "box-1", "facade-3", "gate-east"
OPERATOR = ("duty", "duty-desk-pass", "王值班")
ADMIN = ("chief", "chief-secret-pass", "李主任")
TIMEOUT_MS = 15_000


@dataclass
class Server:
    url: str
    edge_token: str
    broker: PrivateBroker
    runtime: ServerRuntime

    def upload(self, data: bytes, content_type: str) -> dict[str, str]:
        """PUT an evidence file as the edge does; the evidence entry naming it."""
        sha256 = hashlib.sha256(data).hexdigest()
        response = httpx.put(
            f"{self.url}/api/v1/evidence/{sha256}",
            content=data,
            headers={"Authorization": f"Bearer {self.edge_token}", "Content-Type": content_type},
        )
        assert response.status_code in (200, 201), response.text
        kind = "clip" if content_type == "video/mp4" else "snapshot"
        return {
            "kind": kind,
            "sha256": sha256,
            "content_type": content_type,
            "url": f"/api/v1/evidence/{sha256}",
            "role": "onset",
        }

    def send(self, message: dict[str, Any]) -> None:
        """POST an event message as an edge over HTTP."""
        response = httpx.post(
            f"{self.url}/api/v1/events",
            json=message,
            headers={"Authorization": f"Bearer {self.edge_token}"},
        )
        assert response.status_code == 201, response.text

    def camera_status(self, cameras: dict[str, bool]) -> None:
        """The edge's retained status message on MQTT (what the health view shows)."""
        payload = {
            "state": "online",
            "edge_id": EDGE,
            "site_id": SITE,
            "ts": time.time(),
            "cameras": {
                camera: {"online": online, "reason": "" if online else "rtsp timeout"}
                for camera, online in cameras.items()
            },
        }
        mqtt_publish.single(
            status_topic(SITE, EDGE),
            json.dumps(payload),
            qos=1,
            retain=True,
            hostname="127.0.0.1",
            port=self.broker.port,
        )


class _Uvicorn(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test's thread, not the main one
        pass


def _wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
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


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("dashboard")
    broker = PrivateBroker(folder / "broker")
    broker.start()
    port = free_port()
    settings = ServerSettings(
        db_url=f"sqlite:///{folder / 'zhizhi.db'}",
        mqtt_url=broker.url,
        port=port,
        media_dir=folder / "media",
        mqtt_client_id="dashboard-test-server",
    )
    runtime = build_server(settings, shared=False)
    with make_session_factory(runtime.engine)() as session:
        for (username, password, name), role, sites in (
            (OPERATOR, "operator", [SITE]),
            (ADMIN, "admin", ["*"]),
        ):
            create_user(
                session,
                username=username,
                password=password,
                role=role,
                sites=sites,
                display_name=name,
            )
        edge_token = create_token(session, "edge", "dashboard test edge")
    web = _Uvicorn(uvicorn.Config(runtime.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=web.run, name="dashboard-http", daemon=True)
    thread.start()
    runtime.start_consumer()
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until(lambda: _answers(url), 20, "the server's /healthz")
        yield Server(url=url, edge_token=edge_token, broker=broker, runtime=runtime)
    finally:
        web.should_exit = True
        thread.join(timeout=10)
        runtime.stop()
        broker.stop()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    base = Path(os.environ.get("ZHIZHI_ARTIFACTS", REPO / "test-artifacts"))
    folder = base / "dashboard"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def page(artifacts: Path) -> Iterator[Page]:
    if sync_playwright is None:
        unavailable("playwright is not installed (pip install -e '.[dev]')")
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is not installed (apt-get install chromium)")
    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--autoplay-policy=no-user-gesture-required"],
        )
        context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN")
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        try:
            yield page
        finally:
            page.screenshot(path=str(artifacts / "last.png"), full_page=True)
            browser.close()
        assert not errors, f"JavaScript errors in the page: {errors}"


# What the edge sends -----------------------------------------------------------------------


def facade_snapshot() -> bytes:
    """A synthetic high-rise facade (rows of windows) as the edge's JPEG snapshot."""
    image = np.full((360, 640, 3), (170, 180, 190), np.uint8)
    for floor in range(12):
        for column in range(10):
            x, y = 40 + column * 58, 12 + floor * 29
            cv2.rectangle(image, (x, y), (x + 34, y + 18), (90, 70, 60), -1)
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


def event_message(event_id: str, event_type: str, camera: str, **fields: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "schema": "zhizhi.event/1",
        "event_id": event_id,
        "seq": 0,
        "state": "new",
        "type": event_type,
        "site_id": SITE,
        "camera_id": camera,
        "zone_id": "facade" if event_type == "falling_object" else "lane-north",
        "rule_id": f"{camera}-{event_type}",
        "observed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
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


def throw_event(server: Server) -> dict[str, Any]:
    trajectory = [[38.8 + i * 0.1, 0.60, 0.22 + 0.0085 * i * i] for i in range(9)]
    evidence = [
        server.upload(facade_snapshot(), "image/jpeg"),
        server.upload(facade_clip(), "video/mp4"),
    ]
    return event_message(
        "throw-0001",
        "falling_object",
        FACADE,
        details={"trajectory": trajectory, "origin_floor": 9},
        evidence=evidence,
    )


def lane_event(event_id: str, zone: str) -> dict[str, Any]:
    return event_message(
        event_id,
        "fire_lane",
        LANE,
        zone_id=zone,
        rule_id=f"{zone}-blocked",
        pts_s=260.0,
        onset_pts_s=20.0,
        details={"blocked_s": 240.0, "dwell_s": 120},
    )


# The story -------------------------------------------------------------------------------


def sign_in(page: Page, url: str, who: tuple[str, str, str]) -> None:
    page.goto(url)
    page.fill("#login-username", who[0])
    page.fill("#login-password", who[1])
    page.click("#login-submit")
    expect(page.locator("#current-user")).to_contain_text(who[2])


def row(page: Page, text: str) -> Any:
    """The queue's row of the one incident whose row shows `text` (a camera or zone id)."""
    return page.locator(f"#queue-body tr.incident-row:has-text('{text}')")


def act(page: Page, action: str, status: str) -> None:
    page.click(f"#action-{action}")
    expect(page.locator("#incident-status")).to_have_attribute("data-status", status)


def test_operator_works_live_alerts_through_their_lifecycle(
    server: Server, page: Page, artifacts: Path
) -> None:
    shot = Screenshots(page, artifacts)
    page.goto(server.url)
    expect(page.locator("#login-submit")).to_have_text("登录")  # Chinese first
    page.fill("#login-username", OPERATOR[0])
    page.fill("#login-password", "wrong password")
    page.click("#login-submit")
    expect(page.locator("#login-error")).to_have_text("用户名或密码错误")
    shot("01-login-refused")

    sign_in(page, server.url, OPERATOR)
    expect(page.locator("#live-state")).to_have_class("live live-open")
    expect(page.locator("#queue-body")).to_contain_text("暂无事件")
    page.evaluate(
        "window.sounds = []; window.addEventListener('zhizhi:alert-sound',"
        " (e) => window.sounds.push(e.detail))"
    )
    shot("02-queue-empty")

    # a thrown object: pushed over the live feed, shown and sounded without a reload
    server.send(throw_event(server))
    throw_row = row(page, FACADE)
    expect(throw_row).to_have_class(re.compile(r"\bsev-critical\b.*\bunseen\b"))
    expect(throw_row).to_contain_text("高空抛物")
    expect(throw_row).to_contain_text("9 层")
    assert page.evaluate("window.sounds") == [{"reason": "falling_object", "played": True}]
    shot("03-live-alert-thrown-object")

    # the detail: snapshot with the trajectory drawn over it, the floor, the clip
    throw_row.click()
    expect(page.locator("#incident-status")).to_have_attribute("data-status", "reported")
    expect(page.locator("#incident-floor")).to_have_text("9 层")
    expect(page.locator(".snapshot svg.trajectory polyline")).to_have_count(1)
    points = page.locator(".snapshot svg.trajectory polyline").get_attribute("points") or ""
    assert len(points.split()) == 9
    page.wait_for_function(
        "() => [...document.images].some((img) => img.complete && img.naturalWidth === 640)"
    )
    page.wait_for_function(
        "() => { const v = document.querySelector('.clip video'); return v && v.duration > 1; }"
    )
    shot("04-incident-detail-thrown-object")

    act(page, "ack", "filed")
    expect(page.locator("#incident-history")).to_contain_text("确认立案")
    shot("05-acknowledged")
    page.select_option("#dispatch-team", "property_management")
    page.fill("#action-note", "请物业到 3 号楼核实")
    act(page, "dispatch", "dispatched")
    expect(page.locator("#incident-history")).to_contain_text("请物业到 3 号楼核实")
    shot("06-dispatched")
    page.fill("#action-note", "已找到抛物住户并劝导")
    act(page, "resolve", "closed")
    history = page.locator("#incident-history tbody tr")
    expect(history).to_have_count(4)  # reported by the system, then the operator's three
    expect(history.first).to_contain_text("上报")
    expect(history.last).to_contain_text(OPERATOR[0])
    shot("07-resolved")

    # a blocked fire lane: no sound (not critical); marked as a false alarm with a note
    page.click("#nav-incidents")
    server.send(lane_event("lane-0001", "lane-north"))
    lane_row = row(page, "lane-north")
    expect(lane_row).to_contain_text("消防通道占用")
    expect(lane_row).to_contain_text("持续 4 分 0 秒")
    expect(row(page, FACADE)).to_contain_text("结案")
    assert len(page.evaluate("window.sounds")) == 1
    shot("08-second-alert-fire-lane")
    page.select_option("#filter-status", "closed")
    expect(page.locator("#queue-body tr.incident-row")).to_have_count(1)
    expect(row(page, FACADE)).to_be_visible()
    page.select_option("#filter-status", "")
    expect(page.locator("#queue-body tr.incident-row")).to_have_count(2)
    lane_row.click()
    expect(page.locator("#incident-dwell")).to_have_text("4 分 0 秒")
    page.fill("#action-note", "是物业的保洁车，正在作业")
    act(page, "false-alarm", "false_alarm")
    expect(page.locator("#action-resolve")).to_have_count(0)
    shot("09-false-alarm")

    # the language switch, remembered over a reload
    page.click("#lang-en")
    expect(page.locator("#nav-incidents")).to_have_text("Incidents")
    expect(page.locator("#incident-status")).to_have_text("False alarm")
    page.reload()
    expect(page.locator("#nav-incidents")).to_have_text("Incidents")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    shot("10-english")
    page.click("#lang-zh-CN")
    expect(page.locator("#nav-incidents")).to_have_text("事件队列")


def test_admin_sees_health_statistics_and_places_cameras_on_the_plan(
    server: Server, page: Page, artifacts: Path, tmp_path: Path
) -> None:
    shot = Screenshots(page, artifacts)
    server.camera_status({FACADE: True, LANE: False})
    server.send(lane_event("lane-0002", "lane-south"))
    sign_in(page, server.url, ADMIN)

    page.click("#nav-cameras")
    expect(page.locator(f"#camera-health tr[data-camera='{LANE}']")).to_contain_text("离线")
    expect(page.locator(f"#camera-health tr[data-camera='{FACADE}']")).to_contain_text("在线")
    shot("11-camera-health")
    server.camera_status({FACADE: True, LANE: True})  # back online: pushed, no reload
    expect(page.locator(f"#camera-health tr[data-camera='{LANE}']")).to_contain_text("在线")

    page.click("#nav-stats")
    expect(page.locator("#stats-per-day .seg.type-fire_lane")).not_to_have_count(0)
    expect(page.locator("#stats-false-alarms")).to_contain_text("lane-south-blocked")
    shot("12-statistics")

    plan = tmp_path / "plan.png"
    image = np.full((500, 800, 3), 235, np.uint8)
    for x, y in ((100, 80), (420, 80), (100, 300), (420, 300)):
        cv2.rectangle(image, (x, y), (x + 220, y + 140), (120, 120, 120), 3)
    assert cv2.imwrite(str(plan), image)
    page.click("#nav-plan")
    page.select_option("#plan-site", SITE)
    page.set_input_files("#plan-upload", str(plan))
    expect(page.locator("#plan-frame img")).to_be_visible()
    page.check(f"#plan-cameras input[value='{LANE}']")
    page.locator("#plan-frame").click(position={"x": 200, "y": 100})
    expect(page.locator(f"#plan-frame .marker[data-camera='{LANE}']")).to_be_visible()
    shot("13-site-plan")

    # muted: a person fall still arrives live, silently
    page.click("#nav-incidents")
    page.click("#mute-toggle")
    expect(page.locator("#mute-toggle")).to_have_attribute("aria-pressed", "true")
    page.evaluate(
        "window.sounds = []; window.addEventListener('zhizhi:alert-sound',"
        " (e) => window.sounds.push(e.detail))"
    )
    server.send(event_message("fall-0001", "person_fall", FACADE, zone_id="courtyard"))
    expect(row(page, "courtyard")).to_contain_text("人员跌倒")
    assert page.evaluate("window.sounds") == [{"reason": "person_fall", "played": False}]

    row(page, "lane-south").click()
    expect(page.locator(f".plan-frame .marker.highlight[data-camera='{LANE}']")).to_be_visible()
    act(page, "resolve", "closed")
    expect(page.locator("#action-reopen")).to_be_visible()  # an admin may reopen
    shot("14-incident-on-plan")


def test_a_viewer_signs_in_with_an_api_token_and_may_only_look(
    server: Server, page: Page, artifacts: Path
) -> None:
    with make_session_factory(server.runtime.engine)() as session:
        token = create_token(session, "viewer", "wall screen")
    server.send(event_message("pile-0001", "garbage_pile", LANE, zone_id="bins-west"))
    page.goto(server.url)
    page.click(".token-card summary")
    page.fill("#login-token", "not-a-token")
    page.click("#token-submit")
    expect(page.locator("#token-error")).to_have_text("令牌无效或已吊销")
    page.fill("#login-token", token)
    page.click("#token-submit")
    expect(page.locator("#current-user")).to_contain_text("wall screen")
    row(page, "bins-west").click()
    expect(page.locator("#incident-status")).to_have_attribute("data-status", "reported")
    expect(page.locator(".actions button")).to_have_count(0)
    expect(page.locator("#incident-view")).to_contain_text("仅可查看")
    Screenshots(page, artifacts)("15-viewer-read-only")


class Screenshots:
    """`shot(name)` saves a full-page screenshot of the current step as NAME.png."""

    def __init__(self, page: Page, folder: Path) -> None:
        self.page = page
        self.folder = folder

    def __call__(self, name: str) -> None:
        self.page.screenshot(path=str(self.folder / f"{name}.png"), full_page=True)
