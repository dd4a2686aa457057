"""The dashboard as its people use it, in a real headless browser (Debian's Chromium driven by
Playwright) at a desk (1440x900) and on a phone (390x844).

A real server (SQLite, a private Mosquitto) runs in this process with a day of incidents; the
edge side is played over the same wire an edge uses (evidence uploads, event messages, status
messages with the analysis load). Every page is checked as it is shown: no console error (the
few a step provokes on purpose are named by that step), no element wider than the screen, and
no text left untranslated (Latin words in the Chinese page, Chinese in the English one; names
and ids are data, marked translate="no"). A screenshot of each step goes to
$ZHIZHI_ARTIFACTS/dashboard (default test-artifacts/dashboard).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.dashboard import (
    ADMIN,
    BINS,
    COURT,
    FACADE,
    FIELD,
    FIELD_TEAM,
    LANE,
    OPERATOR,
    SITE,
    CommandCenter,
    busy_status,
    command_center,
    event_message,
    facade_clip,
    facade_snapshot,
    phone_photo,
    plan_png,
    seed_a_day,
    trajectory,
    wait_until,
)
from tests.support.mosquitto import unavailable

try:
    from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright
except ImportError:  # the `browser` fixture says so (and fails in CI, where nothing may skip)
    sync_playwright = None

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("ZHIZHI_CHROMIUM", "/usr/bin/chromium"))
TIMEOUT_MS = 15_000
DESK = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
ALARM_REPEAT_S = 1.0

# Elements wider than the screen, or reaching past its edge (unless a scrolling or clipping
# box that itself fits holds them), and short labels squeezed into a column.
OVERFLOW_JS = """() => {
  const width = document.documentElement.clientWidth;
  const wide = [];
  for (const el of document.querySelectorAll("body *")) {
    const box = el.getBoundingClientRect();
    if (!box.width || !box.height) continue;
    if (box.right <= width + 1 && box.left >= -1) continue;
    let held = false;
    for (let up = el.parentElement; up; up = up.parentElement) {
      const style = getComputedStyle(up);
      if (["hidden", "auto", "scroll", "clip"].includes(style.overflowX)
          && up.getBoundingClientRect().right <= width + 1) { held = true; break; }
    }
    const where = `${Math.round(box.left)}..${Math.round(box.right)}`;
    if (!held) wide.push(`${el.tagName.toLowerCase()}.${el.className} ${where}`);
  }
  // short labels squeezed into a column, a character a line
  const squeezed = [];
  for (const el of document.querySelectorAll("button, a, label, th, .badge, .counter")) {
    const text = el.textContent.trim();
    if (!text || text.length > 12 || !el.checkVisibility()) continue;
    const line = parseFloat(getComputedStyle(el).lineHeight) || 20;
    if (el.getBoundingClientRect().height > 2.5 * line) squeezed.push(text);
  }
  return {
    scroll: document.documentElement.scrollWidth, width, wide: wide.slice(0, 10), squeezed,
  };
}"""

# Visible interface text (text nodes, placeholders, aria-labels, tooltips of controls) that is
# not data: data (names, ids, notes, numbers with their units) is marked translate="no".
TEXT_JS = """() => {
  const found = [];
  const skip = (el) => !el || el.closest('[translate="no"], script, style, noscript')
    || !el.checkVisibility({visibilityProperty: true});
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent.trim();
    if (text && !skip(node.parentElement)) found.push(text);
  }
  for (const el of document.querySelectorAll("[placeholder], [aria-label]")) {
    if (skip(el)) continue;
    for (const name of ["placeholder", "aria-label"]) {
      const value = el.getAttribute(name);
      if (value) found.push(value);
    }
  }
  return found;
}"""
LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
ALLOWED_LATIN = {"EN", "MB", "CPU", "p95", "API"}  # the language switch, units, "API 令牌"
HAN = re.compile(r"[\u4e00-\u9fff]")
ALLOWED_HAN = {"中文"}  # the language switch names itself


class Console:
    """Errors in the page's console and uncaught exceptions; a step that provokes one on
    purpose says which with `expect_error`."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        self.expected: list[str] = []
        page.on("console", self._message)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def _message(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        for index, pattern in enumerate(self.expected):
            if pattern in message.text:
                del self.expected[index]
                return
        self.errors.append(message.text)

    def expect_error(self, pattern: str) -> None:
        self.expected.append(pattern)

    def check(self) -> None:
        assert self.errors == [], f"console errors: {self.errors}"


class Screen:
    """One browser tab at one size: it checks every step it is shown and keeps a screenshot."""

    def __init__(self, browser: Browser, size: dict[str, int], folder: Path, tag: str) -> None:
        self.context = browser.new_context(
            viewport=size,
            locale="zh-CN",
            device_scale_factor=1,
            is_mobile=size["width"] < 600,
            has_touch=size["width"] < 600,
        )
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.console = Console(self.page)
        self.folder = folder
        self.tag = tag
        self.width = size["width"]

    def shot(self, name: str, *, language: str = "zh-CN") -> None:
        """Screenshot, then: nothing wider than the screen, no untranslated text, no errors."""
        page = self.page
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(self.folder / f"{name}-{self.tag}.png"), full_page=True)
        fit = page.evaluate(OVERFLOW_JS)
        assert fit["scroll"] <= fit["width"] and not fit["wide"], f"{name} is too wide: {fit}"
        assert fit["squeezed"] == [], f"{name}: labels squeezed a character a line: {fit}"
        texts: list[str] = page.evaluate(TEXT_JS)
        if language == "zh-CN":
            latin = sorted({w for text in texts for w in LATIN_WORD.findall(text)} - ALLOWED_LATIN)
            assert latin == [], f"{name}: untranslated words {latin} in {texts}"
        else:
            chinese = sorted(
                {text for text in texts if HAN.search(text) and text not in ALLOWED_HAN}
            )
            assert chinese == [], f"{name}: Chinese left in the English page: {chinese}"
        self.console.check()

    def sign_in(self, url: str, who: tuple[str, str, str]) -> None:
        page = self.page
        page.goto(url)
        page.evaluate(f"localStorage.setItem('zhizhi.alarm_repeat_s', '{ALARM_REPEAT_S}')")
        page.fill("#login-username", who[0])
        page.fill("#login-password", who[1])
        page.click("#login-submit")
        expect(page.locator("#current-user")).to_contain_text(who[2])
        expect(page.locator("#live-state")).to_have_class("live live-open")

    def listen_for_sounds(self) -> None:
        self.page.evaluate(
            "window.sounds = []; window.addEventListener('zhizhi:alert-sound',"
            " (e) => window.sounds.push(e.detail))"
        )

    def sounds(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.page.evaluate("window.sounds")
        return found

    def close(self) -> None:
        try:
            self.page.screenshot(path=str(self.folder / f"last-{self.tag}.png"), full_page=True)
        finally:
            self.context.close()


@pytest.fixture(scope="module")
def center(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CommandCenter]:
    with command_center(tmp_path_factory.mktemp("dashboard")) as running:
        seed_a_day(running)
        running.status(busy_status())
        yield running


@pytest.fixture(scope="module")
def artifacts() -> Path:
    base = Path(os.environ.get("ZHIZHI_ARTIFACTS", REPO / "test-artifacts"))
    folder = base / "dashboard"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if sync_playwright is None:
        unavailable("playwright is not installed (pip install -e '.[dev]')")
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is not installed (apt-get install chromium)")
    with sync_playwright() as driver:
        launched = driver.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--autoplay-policy=no-user-gesture-required"],
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def screens(browser: Browser, artifacts: Path) -> Iterator[dict[str, Screen]]:
    opened: dict[str, Screen] = {}

    class Screens(dict[str, Screen]):
        def __missing__(self, tag: str) -> Screen:
            size = PHONE if tag.startswith("phone") else DESK
            screen = Screen(browser, size, artifacts, tag)
            opened[tag] = screen
            self[tag] = screen
            return screen

    yield Screens()
    for screen in opened.values():
        screen.close()


def row(page: Page, incident_id: int) -> Any:
    return page.locator(f"#queue-body tr.incident-row[data-id='{incident_id}']")


def act(page: Page, action: str, status: str) -> None:
    page.click(f"#action-{action}")
    expect(page.locator("#incident-status")).to_have_attribute("data-status", status)


def throw(center: CommandCenter, event_id: str) -> dict[str, Any]:
    evidence = [
        center.upload(facade_snapshot(7), "image/jpeg"),
        center.upload(facade_clip(), "video/mp4"),
    ]
    return event_message(
        event_id,
        FACADE,
        details={"trajectory": trajectory(), "origin_floor": 9},
        evidence=evidence,
    )


# At the desk ----------------------------------------------------------------------------------


def test_an_operator_works_the_urgency_queue_and_the_alarm_at_a_desk(
    center: CommandCenter, screens: dict[str, Screen]
) -> None:
    desk = screens["desk"]
    page = desk.page
    page.goto(center.url)
    expect(page.locator("#login-submit")).to_have_text("登录")  # Chinese first
    page.fill("#login-username", OPERATOR[0])
    page.fill("#login-password", "wrong password")
    desk.console.expect_error("401")  # the refused login's response
    page.click("#login-submit")
    expect(page.locator("#login-error")).to_have_text("用户名或密码错误")
    desk.shot("01-login-refused")

    desk.sign_in(center.url, OPERATOR)
    desk.listen_for_sounds()
    rows = page.locator("#queue-body tr.incident-row")
    expect(rows.first).to_have_class(re.compile(r"\bsev-critical\b.*\bunacked\b"))
    expect(page.locator("#count-unacked strong")).not_to_have_text("0")
    expect(page.locator("#alarm-banner")).to_be_visible()
    expect(page.locator("#alarm-banner")).to_contain_text("紧急报警未确认")
    wait_until(lambda: len(desk.sounds()) >= 2, 10, "the alarm to repeat")
    assert {sound["reason"] for sound in desk.sounds()} == {"repeat"}
    six = center.incident_of("throw-a0")
    throw_row = row(page, six["id"])
    expect(throw_row).to_contain_text("6 次")  # the six alerts of one thrown object
    expect(throw_row).to_contain_text("3号楼东立面")  # names, not ids
    expect(throw_row).to_contain_text("锦绣花园 · 3号楼外墙")
    assert throw_row.get_attribute("data-id") in [
        rows.nth(i).get_attribute("data-id") for i in range(2)
    ]  # urgent first, above the newer lanes and piles
    desk.shot("02-urgency-queue")

    # a thrown object arrives live: at the top, flashing, sounded, counted
    before = int(page.locator("#count-urgent strong").inner_text())
    center.send(throw(center, "throw-live"))
    live = center.incident_of("throw-live")
    live_row = row(page, live["id"])
    expect(live_row).to_have_class(re.compile(r"\bunseen\b"))
    order = page.eval_on_selector_all(
        "#queue-body tr.incident-row", "rows => rows.map(r => [r.dataset.id, r.className])"
    )
    position = [entry[0] for entry in order].index(str(live["id"]))
    # among the unacknowledged critical ones (the overdue before it), above all the rest
    assert all("sev-critical" in entry[1] for entry in order[: position + 1])
    expect(page.locator("#count-urgent strong")).to_have_text(str(before + 1))
    wait_until(lambda: {"reason": "falling_object", "played": True} in desk.sounds(), 5, "the beep")
    desk.shot("03-live-thrown-object")

    # a reload keeps what is unacknowledged marked and the alarm on
    page.reload()
    desk.listen_for_sounds()
    expect(row(page, live["id"])).to_have_class(re.compile(r"\bunacked\b"))
    expect(page.locator("#alarm-banner")).to_be_visible()
    expect(page.locator("#count-urgent strong")).to_have_text(str(before + 1))
    wait_until(lambda: len(desk.sounds()) >= 1, 5, "the alarm to go on after the reload")

    # the detail: the latest alert's snapshot with its trajectory, the floor, a playable clip
    row(page, live["id"]).click()
    expect(page.locator("#incident-status")).to_have_attribute("data-status", "reported")
    expect(page.locator("#incident-floor")).to_have_text("9 层")
    expect(page.locator("#latest-evidence .snapshot svg.trajectory polyline")).to_have_count(1)
    page.wait_for_function(
        "() => [...document.images].some((img) => img.complete && img.naturalWidth === 640)"
    )
    page.wait_for_function(
        "() => { const v = document.querySelector('.clip video');"
        " return v && v.duration > 1 && v.poster; }"
    )
    desk.shot("04-incident-thrown-object")
    act(page, "ack", "filed")
    expect(page.locator("#incident-history")).to_contain_text("王值班")
    page.select_option("#dispatch-team", "property_management")
    page.fill("#action-note", "请物业到 3 号楼核实")
    act(page, "dispatch", "dispatched")
    history = page.locator("#incident-history tbody tr")
    expect(history.last).to_contain_text("派遣 → 物业")
    expect(history.last).to_contain_text("请物业到 3 号楼核实")
    expect(history.first).to_contain_text("系统")
    desk.shot("05-dispatched")

    # the thrown object with six alerts: one page, the latest alert first, the rest folded
    page.goto(f"{center.url}/#/incidents/{six['id']}")
    expect(page.locator("#older-summary")).to_have_text("更早的 5 次报警")
    expect(page.locator("#latest-evidence figure")).not_to_have_count(0)
    assert page.locator("#latest-evidence figure").count() <= 3
    desk.shot("06-grouped-thrown-object")

    # bulk acknowledgement of what is still reported
    page.goto(f"{center.url}/#/incidents?quick=unacked")
    expect(page.locator("#quick-unacked")).to_have_class(re.compile(r"\bactive\b"))
    expect(rows.first).to_be_visible()
    page.check("#pick-all")
    expect(page.locator("#bulk-bar")).to_be_visible()
    desk.shot("07-bulk-selected")
    page.click("#bulk-ack")
    expect(page.locator("#queue-body")).to_contain_text("暂无事件")
    expect(page.locator("#count-unacked strong")).to_have_text("0")
    expect(page.locator("#alarm-banner")).to_be_hidden()
    heard = len(desk.sounds())
    page.wait_for_timeout(int(ALARM_REPEAT_S * 2500))
    assert len(desk.sounds()) == heard  # acknowledged: the alarm stopped

    # a new alert grouped into an incident far down the list says so, and shows its row
    page.goto(f"{center.url}/#/incidents")
    expect(rows.first).to_be_visible()
    page.set_viewport_size({"width": DESK["width"], "height": 600})  # the last rows out of view
    page.evaluate("window.scrollTo(0, 0)")
    last_id = int(rows.last.get_attribute("data-id") or 0)
    assert not rows.last.evaluate("r => r.getBoundingClientRect().bottom <= innerHeight")
    old = center.api("GET", f"/api/v1/incidents/{last_id}").json()
    again = datetime.fromisoformat(old["last_alert_at"].replace("Z", "+00:00"))
    center.send(
        event_message(
            "grouped-late",
            old["camera_id"],
            observed=again + timedelta(seconds=60),
            zone_id=old["zone_id"],
            rule_id=old["rule_id"],
        )
    )
    expect(page.locator("#new-alert")).to_be_visible()
    expect(page.locator("#new-alert")).to_contain_text(f"#{last_id} 有新报警")
    desk.shot("08-new-alert-out-of-view")
    page.click("#new-alert-show")
    expect(row(page, last_id)).to_be_in_viewport()
    expect(row(page, last_id)).to_contain_text("2 次")
    page.set_viewport_size(DESK)

    # search, a camera, a date range and a sorted column
    page.goto(f"{center.url}/#/incidents")
    page.fill("#filter-q", "垃圾站")
    expect(rows).to_have_count(5)
    page.fill("#filter-q", "")
    page.select_option("#filter-camera", LANE)
    expect(rows).to_have_count(5)  # four blockages and the late one
    page.click("#sort-alerts")
    expect(page.locator("#sort-alerts")).to_contain_text("↓")
    # the day the late blockage happened, in the browser's zone (just after midnight it is not
    # today: it was held 42 minutes in the edge's outbox)
    late = center.incident_of("lane-late")
    seen = datetime.fromisoformat(late["first_observed_at"].replace("Z", "+00:00"))
    day = seen.astimezone().strftime("%Y-%m-%d")
    page.fill("#filter-from", day)
    page.fill("#filter-to", day)
    expect(row(page, late["id"])).to_contain_text("延迟")  # sent late from the outbox
    desk.shot("09-filtered-sorted")

    # a false alarm needs a reason, and does not count as filed
    pile = center.incident_of("pile-0")
    page.goto(f"{center.url}/#/incidents/{pile['id']}")
    expect(page.locator("#latest-evidence .evidence-missing")).to_contain_text("证据缺失")
    page.click("#action-false-alarm")
    page.click("#false-alarm-confirm")
    expect(page.locator("#false-alarm-error")).to_have_text("请选择误报原因")
    page.check("#false-alarm-dialog input[value='authorised_activity']")
    page.fill("#false-alarm-note", "环卫车正在清运")
    desk.shot("10-false-alarm-dialog")
    page.click("#false-alarm-confirm")
    expect(page.locator("#incident-status")).to_have_attribute("data-status", "false_alarm")
    expect(page.locator("#incident-history tbody tr").last).to_contain_text("正常作业")
    desk.shot("11-false-alarm")

    # English, remembered over a reload, with nothing Chinese left but the data
    page.click("#lang-en")
    expect(page.locator("#nav-incidents")).to_have_text("Incidents")
    expect(page.locator("#incident-status")).to_have_text("False alarm")
    page.reload()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    desk.shot("12-english-incident", language="en")
    page.goto(f"{center.url}/#/incidents")
    expect(rows.first).to_be_visible()
    desk.shot("13-english-queue", language="en")
    page.click("#lang-zh-CN")
    expect(page.locator("#nav-incidents")).to_have_text("事件队列")


# On the phone ---------------------------------------------------------------------------------


def test_a_field_worker_takes_an_order_on_the_phone_and_reports_back_with_a_photo(
    center: CommandCenter, screens: dict[str, Screen], tmp_path: Path
) -> None:
    center.send(
        event_message(
            "lane-order", LANE, pts_s=140.0, onset_pts_s=20.0, details={"blocked_s": 120.0}
        )
    )
    order = center.incident_of("lane-order")
    dispatched = center.api(
        "POST",
        f"/api/v1/incidents/{order['id']}/dispatch",
        json={"team": FIELD_TEAM, "note": "请物业挪车"},
    )
    assert dispatched.status_code == 200, dispatched.text
    phone = screens["phone"]
    page = phone.page
    phone.sign_in(center.url, FIELD)
    card = page.locator(f".order-card[data-id='{order['id']}']")
    expect(card).to_contain_text("东门消防通道")
    team = center.api("GET", "/api/v1/incidents", params={"team": FIELD_TEAM, "open": "true"})
    to_work = [i for i in team.json()["items"] if i["status"] in ("dispatched", "handling")]
    expect(page.locator("#count-orders strong")).to_have_text(str(len(to_work)))
    expect(page.locator(".order-card")).to_have_count(len(to_work))
    phone.shot("20-my-orders")

    page.click(f"#start-{order['id']}")
    expect(card).to_have_attribute("data-status", "handling")
    card.locator("a.order-main").click()
    expect(page.locator("#incident-status")).to_have_attribute("data-status", "handling")
    phone.shot("21-order-on-the-phone")

    page.click("#action-feedback")  # no note yet: said next to the button, on the screen
    message = page.locator("#action-message")
    expect(message).to_have_text("反馈需要填写备注")
    box = message.bounding_box()
    assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= PHONE["height"]
    photo = tmp_path / "cleared-lane.jpg"
    photo.write_bytes(phone_photo())
    page.set_input_files("#photo-input", str(photo))
    expect(page.locator("#photo-previews img")).to_have_count(1)
    page.fill("#action-note", "车已挪走，通道畅通")
    phone.shot("22-feedback-with-photo")
    page.click("#action-feedback")
    expect(page.locator("#incident-status")).to_have_attribute("data-status", "feedback")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#incident-photos img')]"
        ".some((img) => img.complete && img.naturalWidth > 0)"
    )
    expect(page.locator("#incident-photos")).to_contain_text("赵师傅")
    phone.shot("23-reported-back")

    # stored as evidence: under its sha256, of the type its bytes say, linked, audited
    detail = center.api("GET", f"/api/v1/incidents/{order['id']}").json()
    (stored,) = [e for e in detail["evidence"] if e["kind"] == "photo"]
    data = center.api("GET", stored["url"]).content
    assert hashlib.sha256(data).hexdigest() == stored["sha256"]
    assert stored["content_type"] == "image/jpeg" and stored["by"] == FIELD[0]
    assert max(_jpeg_size(data)) <= 1920  # scaled on the phone before the upload
    audit = center.api("GET", "/api/v1/audit", params={"action": "upload_photo"}).json()
    assert audit["items"][0]["details"]["sha256"] == stored["sha256"]

    # the center checks the work against the photo, then closes
    desk = screens["desk-verify"]
    desk.sign_in(center.url, OPERATOR)
    desk.page.goto(f"{center.url}/#/incidents/{order['id']}")
    expect(desk.page.locator("#incident-photos figure")).to_have_count(1)
    expect(desk.page.locator("#incident-history tbody tr").last).to_contain_text("附照片 1 张")
    expect(desk.page.locator("#incident-history tbody tr").last).to_contain_text("赵师傅")
    desk.shot("24-verify-against-the-photo")
    check = tmp_path / "checked.png"
    check.write_bytes(plan_png())  # the center's own picture of the result, a PNG
    desk.page.set_input_files("#photo-input", str(check))
    expect(desk.page.locator("#photo-previews img")).to_have_count(1)
    act(desk.page, "verify", "verified")
    expect(desk.page.locator("#incident-photos figure")).to_have_count(2)
    expect(desk.page.locator("#incident-photos")).to_contain_text("核查照片")
    act(desk.page, "resolve", "closed")
    page.goto(f"{center.url}/#/orders")
    expect(page.locator("#orders-done")).to_contain_text("东门消防通道")
    phone.shot("25-order-done")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's start-of-frame marker."""
    index = 2
    while index < len(data):
        marker, length = data[index + 1], int.from_bytes(data[index + 2 : index + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            height = int.from_bytes(data[index + 5 : index + 7], "big")
            width = int.from_bytes(data[index + 7 : index + 9], "big")
            return width, height
        index += 2 + length
    raise AssertionError("no start-of-frame marker")


# Every view, at both sizes, in both languages -------------------------------------------------


@pytest.mark.parametrize("tag", ["desk-admin", "phone-admin"])
def test_every_view_fits_the_screen_and_speaks_both_languages(
    center: CommandCenter, screens: dict[str, Screen], tag: str
) -> None:
    screen = screens[tag]
    page = screen.page
    size = "desk" if tag.startswith("desk") else "phone"
    if size == "desk":  # the plan is uploaded once, by the admin at the desk
        plan = center.api(
            "PUT",
            f"/api/v1/sites/{SITE}/plan",
            content=plan_png(),
            headers={"Content-Type": "image/png"},
        )
        assert plan.status_code == 204
    screen.sign_in(center.url, ADMIN)
    if size == "phone":
        page.click("#menu-toggle")
        expect(page.locator("#nav-audit")).to_be_visible()
        expect(page.locator("#logout")).to_be_visible()
        screen.shot("30-menu")
        page.click("#menu-toggle")

    # the plan: an admin places the cameras, then the pins show the open incidents live
    page.goto(f"{center.url}/#/plan")
    if size == "desk":
        page.click("#plan-edit")
        for camera, (x, y) in {
            FACADE: (0.3, 0.3),
            LANE: (0.7, 0.52),
            BINS: (0.18, 0.8),
            COURT: (0.62, 0.8),
        }.items():
            page.check(f"#plan-cameras input[value='{camera}']")
            frame = page.locator("#plan-frame").bounding_box()
            assert frame is not None
            page.locator("#plan-frame").click(
                position={"x": frame["width"] * x, "y": frame["height"] * y}
            )
            expect(page.locator(f"#plan-frame .marker[data-camera='{camera}']")).to_be_visible()
        page.click("#plan-edit")
    pin = page.locator(f"#plan-frame .marker[data-camera='{FACADE}']")
    expect(pin).to_have_class(re.compile(r"\balarm-critical\b"))
    pin.click()
    page.wait_for_function(
        "() => { const img = document.querySelector('#plan-snapshot img');"
        " return img && img.complete && img.naturalWidth > 0; }"
    )
    screen.shot("31-plan")

    page.goto(f"{center.url}/#/review")
    page.select_option("#review-camera", LANE)
    expect(page.locator("#review-timeline .mark")).not_to_have_count(0)
    screen.shot("32-review")

    page.goto(f"{center.url}/#/cameras")
    facade = page.locator(f".camera-card[data-camera='{FACADE}']")
    expect(facade).to_have_attribute("data-state", "overloaded")
    expect(facade).to_contain_text("逐帧规则跟不上或丢帧")
    expect(facade).to_contain_text("3号楼高空抛物")
    expect(page.locator(f".camera-card[data-camera='{LANE}']")).to_have_attribute(
        "data-state", "degraded"
    )
    expect(page.locator(f".camera-card[data-camera='{COURT}']")).to_contain_text("无法连接摄像头")
    expect(page.locator(".box-load")).to_contain_text("设备过载")
    screen.shot("33-devices")

    page.goto(f"{center.url}/#/stats")
    expect(page.locator("#stats-per-day .seg.type-fire_lane")).not_to_have_count(0)
    screen.shot("34-statistics")

    page.goto(f"{center.url}/#/silences")
    page.select_option("#silence-camera", BINS)
    page.fill("#silence-comment", "清运车检修")
    page.click("#silence-submit")
    expect(page.locator("#silences")).to_contain_text("西侧垃圾站")
    screen.shot("35-silences")

    page.goto(f"{center.url}/#/audit")
    expect(page.locator("#audit")).to_contain_text("设置静默")
    screen.shot("36-audit")

    page.goto(f"{center.url}/#/incidents")
    expect(page.locator("#queue-body tr.incident-row").first).to_be_visible()
    screen.shot("37-queue")
    page.locator("#queue-body tr.incident-row").first.click()
    expect(page.locator("#incident-status")).to_be_visible()
    screen.shot("38-incident")

    page.click("#lang-en") if size == "desk" else _language_on_phone(page, "en")
    for route, name in (
        ("incidents", "queue"),
        ("plan", "plan"),
        ("review", "review"),
        ("cameras", "devices"),
        ("stats", "statistics"),
        ("silences", "silences"),
        ("audit", "audit"),
    ):
        page.goto(f"{center.url}/#/{route}")
        page.wait_for_timeout(300)
        screen.shot(f"39-en-{name}", language="en")
    if size == "desk":
        page.click("#lang-zh-CN")
    else:
        _language_on_phone(page, "zh-CN")


def _language_on_phone(page: Page, code: str) -> None:
    page.click("#menu-toggle")
    page.click(f"#lang-{code}")


def test_devices_change_live_and_a_viewer_token_may_only_look(
    center: CommandCenter, screens: dict[str, Screen]
) -> None:
    phone = screens["phone-viewer"]
    page = phone.page
    page.goto(center.url)
    page.click(".token-card summary")
    page.fill("#login-token", "not-a-token")
    phone.console.expect_error("401")
    page.click("#token-submit")
    expect(page.locator("#token-error")).to_have_text("令牌无效或已吊销")
    page.fill("#login-token", center.viewer_token)
    page.click("#token-submit")
    expect(page.locator("#current-user")).to_contain_text("大屏")
    page.locator("#queue-body tr.incident-row").first.click()
    expect(page.locator(".actions button")).to_have_count(0)
    expect(page.locator("#incident-view")).to_contain_text("仅可查看")
    expect(page.locator("#pick-all")).to_have_count(0)
    phone.shot("40-viewer-read-only")

    page.goto(f"{center.url}/#/cameras")
    court = page.locator(f".camera-card[data-camera='{COURT}']")
    expect(court).to_contain_text("离线")
    status = busy_status()
    status["cameras"][COURT] = {
        "online": True,
        "reason": "frames arriving",
        "reason_code": "frames_arriving",
    }
    center.status(status)  # back online: pushed, no reload
    expect(court).to_contain_text("在线")
    expect(court).to_contain_text("未上报分析负载")
    phone.shot("41-device-back-online")
    center.status(busy_status())


def test_the_page_asks_for_nothing_that_is_not_there(
    center: CommandCenter, screens: dict[str, Screen]
) -> None:
    """The favicon is served, and a site without a plan is never asked for one: no 404 in
    the console (the screen fails on any console error)."""
    named = center.api("PUT", "/api/v1/sites/north-park/directory", json={"name": "北园"})
    assert named.status_code == 204
    icon = httpx.get(f"{center.url}/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg")

    desk = screens["desk-no-plan"]
    desk.sign_in(center.url, ADMIN)
    desk.page.goto(f"{center.url}/#/plan?site=north-park")
    expect(desk.page.locator("#plan-site")).to_have_value("north-park")
    expect(desk.page.locator("#plan-stage")).to_contain_text("尚未上传平面图")
    desk.shot("42-site-without-a-plan")


def test_an_admin_reads_and_replays_a_dead_letter(
    center: CommandCenter, screens: dict[str, Screen]
) -> None:
    """Issue 14: refused MQTT messages are kept; an admin reads one, replays what a fixed
    cause lets through, and sees the one still refused stay, with the reason."""
    from server.services.dead_letters import DeadLetter

    topic = f"zhizhi/v1/{SITE}/box-9/{LANE}/events"
    late = event_message("ev-dead-letter", LANE)
    center.runtime.ingest.keep_dead_letters(
        [
            DeadLetter(topic, json.dumps(late).encode(), "internal_error", "a bug, fixed", now()),
            DeadLetter(topic, b'{"event_id": "x", "seq": 1e400}', "not_finite", "1e400", now()),
        ]
    )
    desk = screens["desk-dead-letters"]
    page = desk.page
    desk.sign_in(center.url, ADMIN)
    page.click("#nav-dead_letters")
    rows = page.locator("#dead-letters tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#dead-letters-held")).to_have_text("待处理 2 条")
    poison = page.locator("#dead-letters tr[data-reason='not_finite']")
    poison.get_by_role("button", name="查看原文").click()
    expect(poison.locator("pre.payload")).to_contain_text("1e400")
    desk.shot("50-dead-letters")
    desk.console.expect_error("409")
    poison.get_by_role("button", name="重放").click()
    expect(page.locator("#toasts")).to_contain_text("仍被拒收")
    page.locator("#dead-letters tr[data-reason='internal_error']").get_by_role(
        "button", name="重放"
    ).click()
    expect(page.locator("#toasts")).to_contain_text("已重放并存储")
    expect(rows).to_have_count(1)
    stored = center.api("GET", "/api/v1/events", params={"camera_id": LANE, "limit": 500})
    assert "ev-dead-letter" in {item["event_id"] for item in stored.json()["items"]}


def now() -> datetime:
    return datetime.now(UTC)
