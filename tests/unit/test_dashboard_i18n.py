"""The dashboard's message catalogues: the same keys and placeholders in both languages, every
key the code asks for present, and a label for every value the API can send."""

from __future__ import annotations

import json
import re
from typing import get_args

import pytest

from common.events import LoadProblem, LoadState
from server.auth import ROLES
from server.dashboard import WEB_DIR
from server.dispatch import DutyRole
from server.schemas import FalseAlarmCategory
from server.services.cameras import REASON_CODES
from server.services.photos import PhotoStage
from server.workflow import ACTIONS, SEVERITY, STATUSES

CATALOGUES = {path.stem: path for path in sorted((WEB_DIR / "i18n").glob("*.json"))}
SOURCES = sorted([*WEB_DIR.glob("*.js"), *WEB_DIR.glob("views/*.js")])
# A message key is a dotted lowercase literal; "zhizhi.*" literals are storage keys.
KEY_LITERAL = re.compile(r"""["']([a-z][a-z_]*(?:\.[a-z0-9_-]+)+)["']""")
PLACEHOLDER = re.compile(r"\{(\w+)\}")
# Values the API and the page produce, shown through label(group, value) or t(`group.${v}`).
DYNAMIC: dict[str, tuple[str, ...]] = {
    "status": tuple(STATUSES),
    "type": tuple(SEVERITY),
    "severity": tuple(set(SEVERITY.values())),
    "action": (*ACTIONS, "false-alarm"),
    "team": get_args(DutyRole),
    "state": ("new", "update", "end"),
    "role": ROLES,
    "evidence_role": ("onset", "latest", "closing", "before", "after", "appeared"),
    "nav": (
        "incidents",
        "orders",
        "plan",
        "review",
        "cameras",
        "stats",
        "silences",
        "audit",
        "dead_letters",
    ),
    "live": ("open", "connecting", "closed"),
    "lang": tuple(CATALOGUES),
    "false_alarm": get_args(FalseAlarmCategory),
    "photo_stage": get_args(PhotoStage),
    "load_state": get_args(LoadState),
    "problem": get_args(LoadProblem.model_fields["code"].annotation),
    # the edge's codes (edge/capture/sources.py), the server's for older edges, and ours
    "camera_reason": (
        "frames_arriving",
        "cannot_open",
        "read_failed",
        "end_of_file",
        "reader_crashed",
        "stopped",
        "other",
        "unknown",
        *REASON_CODES.values(),
    ),
    "outbox": (
        "pending",
        "pending_evidence",
        "failed_evidence",
        "shed_events",
        "shed_evidence",
        "late_acks",
    ),
    "member_state": ("live", "late", "stopped", "left", "removed"),
    "counter": ("unacked", "urgent", "overdue", "my_orders"),
    "history": ("quiet_inhibited", "quiet_silenced"),
    "audit_action": (
        "login",
        "login_failed",
        "logout",
        "view_evidence",
        "download_evidence",
        *(action for action in ACTIONS if action != "reopen"),
        "reopen",
        "hold",
        "release_hold",
        "upload_photo",
        "create_silence",
        "end_silence",
        "upload_plan",
        "place_camera",
        "register_site",
        "replay_dead_letter",
        "discard_dead_letter",
        "remove_server_member",
    ),
    "dead_letters.status": ("held", "replayed", "discarded"),
}
# Unit symbols a Chinese interface writes in Latin letters.
UNIT_SYMBOLS = re.compile(r"\b(MB|CPU|p95|fps)\b")


def load(locale: str) -> dict[str, str]:
    messages: dict[str, str] = json.loads(CATALOGUES[locale].read_text(encoding="utf-8"))
    return messages


def keys_in_code() -> set[str]:
    found: set[str] = set()
    for path in SOURCES:
        found |= set(KEY_LITERAL.findall(path.read_text(encoding="utf-8")))
    return {key for key in found if not key.startswith("zhizhi.")}


def test_chinese_comes_first_and_english_is_available() -> None:
    assert set(CATALOGUES) == {"zh-CN", "en"}
    assert '"zh-CN", "en"' in (WEB_DIR / "i18n.js").read_text(encoding="utf-8")


def test_both_catalogues_have_the_same_keys() -> None:
    chinese, english = load("zh-CN"), load("en")
    assert sorted(set(chinese) - set(english)) == []
    assert sorted(set(english) - set(chinese)) == []


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_no_message_is_empty(locale: str) -> None:
    assert [key for key, text in load(locale).items() if not text.strip()] == []


def test_placeholders_match_between_languages() -> None:
    chinese, english = load("zh-CN"), load("en")
    mismatched = {
        key: (PLACEHOLDER.findall(chinese[key]), PLACEHOLDER.findall(english[key]))
        for key in chinese
        if set(PLACEHOLDER.findall(chinese[key])) != set(PLACEHOLDER.findall(english[key]))
    }
    assert mismatched == {}


def test_every_key_the_code_uses_is_in_the_catalogue() -> None:
    used = keys_in_code()
    assert len(used) > 100  # the scan found the views' keys, not nothing
    assert sorted(used - set(load("zh-CN"))) == []


def test_every_value_the_api_sends_has_a_label() -> None:
    chinese = load("zh-CN")
    missing = [
        f"{group}.{value}"
        for group, values in DYNAMIC.items()
        for value in values
        if f"{group}.{value}" not in chinese
    ]
    assert missing == []


def test_the_chinese_catalogue_is_chinese() -> None:
    chinese = load("zh-CN")
    han = re.compile(r"[\u4e00-\u9fff]")
    # every message but the language names, units and punctuation carries Chinese text
    latin = re.compile(r"[A-Za-z]")
    latin_only = [
        key
        for key, text in chinese.items()
        if not han.search(text)
        and not key.startswith("lang.")
        and latin.search(UNIT_SYMBOLS.sub("", PLACEHOLDER.sub("", text)))
    ]
    assert latin_only == []


def test_the_audit_actions_the_server_records_are_the_ones_the_page_offers() -> None:
    offered = re.search(
        r"AUDIT_ACTIONS = \[(.*?)\];",
        (WEB_DIR / "views" / "audit.js").read_text(encoding="utf-8"),
        re.S,
    )
    assert offered is not None
    listed = set(re.findall(r'"([a-z_]+)"', offered.group(1)))
    assert listed == set(DYNAMIC["audit_action"])
