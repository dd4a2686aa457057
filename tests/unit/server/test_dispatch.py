"""Dispatch rules: validation listing every problem, matching by time of day in the site's
timezone, deadlines and escalation chains, and webhook signatures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from server.dispatch import (
    DEFAULT_DEADLINES_S,
    DispatchConfigError,
    assign,
    escalate,
    load_dispatch_config,
    parse_dispatch_config,
)
from server.notify import backoff_s, sign, signature_valid
from server.retention import RetentionPolicy, expired

REPO = Path(__file__).resolve().parents[3]
CONFIG = {
    "timezone": "Asia/Shanghai",
    "sites": {"harbour-view": {"timezone": "Europe/London"}},
    "deadlines_s": {"fire_lane": 600},
    "rules": [
        {
            "id": "night-lanes",
            "types": ["fire_lane"],
            "hours": {"from": "22:00", "to": "07:00"},
            "assign": "grid_officer",
            "escalation": ["community", "street_office"],
        },
        {"id": "lanes", "types": ["fire_lane"], "assign": "property_management"},
        {"id": "falls", "types": ["falling_object", "person_fall"], "assign": "community"},
    ],
}


def at_local_shanghai(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, 23, hour - 8 if hour >= 8 else hour + 16, minute, tzinfo=UTC)


def test_the_first_rule_matching_the_site_local_time_wins() -> None:
    config = parse_dispatch_config(CONFIG)

    night = assign(
        config, site_id="garden-court", type="fire_lane", zone_id="z", at=at_local_shanghai(23)
    )
    day = assign(
        config, site_id="garden-court", type="fire_lane", zone_id="z", at=at_local_shanghai(9)
    )
    early = assign(
        config, site_id="garden-court", type="fire_lane", zone_id="z", at=at_local_shanghai(6, 59)
    )

    assert (night.assignee, night.rule_id) == ("grid_officer", "night-lanes")
    assert (day.assignee, day.rule_id) == ("property_management", "lanes")
    assert early.rule_id == "night-lanes"
    assert day.deadline_at == at_local_shanghai(9) + timedelta(seconds=600)


def test_each_site_uses_its_own_timezone() -> None:
    config = parse_dispatch_config(CONFIG)
    # 23:00 in London is 07:00 the next morning in Shanghai.
    london_night = datetime(2026, 11, 23, 23, 0, tzinfo=UTC)

    assert (
        assign(
            config, site_id="harbour-view", type="fire_lane", zone_id="z", at=london_night
        ).rule_id
        == "night-lanes"
    )
    assert (
        assign(
            config, site_id="garden-court", type="fire_lane", zone_id="z", at=london_night
        ).rule_id
        == "lanes"
    )


def test_no_matching_rule_leaves_the_incident_unassigned_with_the_type_deadline() -> None:
    config = parse_dispatch_config({})
    now = datetime(2026, 11, 23, tzinfo=UTC)

    result = assign(config, site_id="s", type="garbage_pile", zone_id="z", at=now)

    assert result.assignee is None
    assert result.deadline_at == now + timedelta(seconds=DEFAULT_DEADLINES_S["garbage_pile"])


def test_escalation_walks_the_chain_then_stops() -> None:
    config = parse_dispatch_config(CONFIG)
    now = datetime(2026, 11, 23, tzinfo=UTC)

    first = escalate(
        config, rule_id="night-lanes", type="fire_lane", level=0, current="grid_officer", at=now
    )
    second = escalate(
        config, rule_id="night-lanes", type="fire_lane", level=1, current="community", at=now
    )

    assert (first.level, first.assignee, first.deadline_at) == (
        1,
        "community",
        now + timedelta(seconds=600),
    )
    assert (second.level, second.assignee, second.deadline_at) == (2, "street_office", None)


def test_every_problem_is_listed_with_its_key() -> None:
    bad = {
        "timezone": "Mars/Olympus",
        "deadlines_s": {"fire_lane": -1, "volcano": 5},
        "rules": [
            {"id": "a", "assign": "x", "hours": {"from": "25:00", "to": "07:00"}},
            {"id": "a", "assign": ""},
        ],
        "webhooks": [{"id": "w", "url": "not a url", "secret": "short"}],
        "surprise": 1,
    }

    with pytest.raises(DispatchConfigError) as caught:
        parse_dispatch_config(bad, "d.yaml")

    text = "\n".join(caught.value.problems)
    for fragment in (
        "timezone",
        "deadlines_s.fire_lane",
        "deadlines_s.volcano",
        "rules[0].hours.from",
        "rules[1].assign",
        "webhooks[0].url",
        "webhooks[0].secret",
        "surprise",
    ):
        assert fragment in text, fragment
    assert len(caught.value.problems) >= 8


def test_environment_references_expand_and_missing_ones_are_problems(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hook = {"id": "w", "url": "http://127.0.0.1:9/hook", "secret": "${ZHIZHI_TEST_HOOK_SECRET}"}
    monkeypatch.delenv("ZHIZHI_TEST_HOOK_SECRET", raising=False)
    with pytest.raises(DispatchConfigError, match="ZHIZHI_TEST_HOOK_SECRET is not set"):
        parse_dispatch_config({"webhooks": [hook]})

    monkeypatch.setenv("ZHIZHI_TEST_HOOK_SECRET", "s" * 32)
    assert parse_dispatch_config({"webhooks": [hook]}).webhooks[0].secret == "s" * 32


def test_the_example_file_in_the_repository_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZHIZHI_WEBHOOK_SECRET", "x" * 32)
    path = REPO / "configs" / "dispatch" / "example.yaml"

    config = load_dispatch_config(path)

    assert config.rules and config.webhooks
    assert yaml.safe_load(path.read_text(encoding="utf-8"))["rules"]


def test_an_unreadable_or_malformed_file_is_one_problem(tmp_path: Path) -> None:
    with pytest.raises(DispatchConfigError, match="cannot read"):
        load_dispatch_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules: [\n", encoding="utf-8")
    with pytest.raises(DispatchConfigError, match="not valid YAML"):
        load_dispatch_config(broken)


def test_signatures_cover_timestamp_and_body() -> None:
    body = b'{"kind":"incident.created"}'
    header = sign("k" * 32, "1700000000", body)

    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert signature_valid("k" * 32, "1700000000", body, header)
    assert not signature_valid("k" * 32, "1700000001", body, header)
    assert not signature_valid("k" * 32, "1700000000", body + b" ", header)
    assert not signature_valid("j" * 32, "1700000000", body, header)


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_s(n, 5.0, 30.0) for n in (1, 2, 3, 4, 5)] == [5.0, 10.0, 20.0, 30.0, 30.0]


def test_retention_keeps_held_files_and_uses_the_longest_type() -> None:
    policy = RetentionPolicy({"falling_object": 180.0, "fire_lane": 30.0}, default_days=10.0)
    created = datetime(2026, 1, 1, tzinfo=UTC)
    day_40 = created + timedelta(days=40)

    assert expired(created, {"fire_lane"}, False, policy, day_40)
    assert not expired(created, {"fire_lane", "falling_object"}, False, policy, day_40)
    assert not expired(created, {"fire_lane"}, True, policy, day_40)
    assert expired(created, set(), False, policy, created + timedelta(days=10))
