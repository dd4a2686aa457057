"""Dispatch rules (`zhizhi server --dispatch FILE`): who gets an incident, by when, who next.

A YAML file, validated strictly (unknown keys are errors; `DispatchConfigError` lists every
problem with its key path). Rules are tried in order, first match wins: by site, rule type,
zone and time of day in the site's timezone, to a team or duty role, with an escalation chain.
Each rule type has an acknowledgement deadline; webhooks receive the notifications. The
matching functions are pure (time passed in). See docs/command-center.md for the format.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from common.events import EventType

DutyRole = Literal[
    "property_management", "grid_officer", "community", "street_office", "fire_brigade"
]
DUTY_ROLE_NAMES_ZH: dict[str, str] = {
    "property_management": "物业",
    "grid_officer": "网格员",
    "community": "社区",
    "street_office": "街道",
    "fire_brigade": "消防",
}
# Acknowledgement deadlines when the file sets none: a thrown object or a fallen person needs
# someone within minutes, a blocked fire lane within the quarter hour, a pile within the hour.
DEFAULT_DEADLINES_S: dict[str, float] = {
    "falling_object": 300.0,
    "person_fall": 180.0,
    "fire_lane": 900.0,
    "garbage_pile": 3600.0,
}
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone {name!r} (use an IANA name like Asia/Shanghai)"
        ) from None
    return name


TimezoneName = Annotated[str, AfterValidator(_zone)]


class SiteSettings(_Strict):
    timezone: TimezoneName = Field(description="IANA timezone of the site, for the rules' hours")


class Hours(_Strict):
    """A daily window in the site's local time; `from` after `to` wraps past midnight."""

    from_: str = Field(alias="from", description="HH:MM, inclusive")
    to: str = Field(description="HH:MM, exclusive")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("from_", "to")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not _CLOCK.match(value):
            raise ValueError(f"time of day must be HH:MM (00:00 to 23:59), got {value!r}")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if self.from_ == self.to:
            raise ValueError("from and to are equal: an empty window (leave hours out for all day)")
        return self

    def contains(self, local: time) -> bool:
        start, end = _parse_clock(self.from_), _parse_clock(self.to)
        if start < end:
            return start <= local < end
        return local >= start or local < end


class DispatchRule(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    sites: list[str] = Field(default_factory=list, description="Empty: every site")
    types: list[EventType] = Field(default_factory=list, description="Empty: every type")
    zones: list[str] = Field(default_factory=list, description="Empty: every zone")
    hours: Hours | None = Field(default=None, description="Absent: all day")
    assign: str = Field(min_length=1, max_length=128, description="A duty role or team name")
    escalation: list[str] = Field(
        default_factory=list, description="Who gets it next, level by level, when not acked"
    )

    @field_validator("escalation")
    @classmethod
    def _names(cls, values: list[str]) -> list[str]:
        for value in values:
            if not value.strip() or len(value) > 128:
                raise ValueError("escalation entries are non-empty names of at most 128 chars")
        return values

    def matches(self, *, site_id: str, type: str, zone_id: str, local: time) -> bool:
        return (
            (not self.sites or site_id in self.sites)
            and (not self.types or type in self.types)
            and (not self.zones or zone_id in self.zones)
            and (self.hours is None or self.hours.contains(local))
        )


class Webhook(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    url: AnyHttpUrl
    secret: str = Field(min_length=16, description="HMAC-SHA256 key; ${ENV} references expand")
    sites: list[str] = Field(default_factory=list, description="Empty: every site")
    types: list[EventType] = Field(default_factory=list, description="Empty: every type")

    def wants(self, *, site_id: str, type: str) -> bool:
        return (not self.sites or site_id in self.sites) and (not self.types or type in self.types)


class DispatchConfig(_Strict):
    timezone: TimezoneName = Field(
        default="Asia/Shanghai", description="Timezone of sites not listed"
    )
    sites: dict[str, SiteSettings] = Field(default_factory=dict)
    deadlines_s: dict[EventType, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict, description="Seconds to acknowledge, per rule type"
    )
    rules: list[DispatchRule] = Field(default_factory=list)
    webhooks: list[Webhook] = Field(default_factory=list)
    webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    webhook_backoff_s: float = Field(default=5.0, gt=0, description="First retry delay; doubles")
    webhook_backoff_max_s: float = Field(default=3600.0, gt=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        for kind, ids in (
            ("rule", [r.id for r in self.rules]),
            ("webhook", [w.id for w in self.webhooks]),
        ):
            repeated = sorted({i for i in ids if ids.count(i) > 1})
            if repeated:
                raise ValueError(f"{kind} ids must be unique: {', '.join(repeated)} repeated")
        return self

    def timezone_of(self, site_id: str) -> ZoneInfo:
        site = self.sites.get(site_id)
        return ZoneInfo(site.timezone if site else self.timezone)

    def deadline_s(self, event_type: str) -> float:
        configured = {str(key): value for key, value in self.deadlines_s.items()}
        return configured.get(event_type, DEFAULT_DEADLINES_S.get(event_type, 900.0))

    def rule(self, rule_id: str | None) -> DispatchRule | None:
        return next((rule for rule in self.rules if rule.id == rule_id), None)


@dataclass(frozen=True, slots=True)
class Assignment:
    """Who an incident goes to first, by when it must be acknowledged, and by which rule."""

    assignee: str | None
    rule_id: str | None
    deadline_at: datetime


def assign(
    config: DispatchConfig, *, site_id: str, type: str, zone_id: str, at: datetime
) -> Assignment:
    """The first matching rule's assignee (None when no rule matches) and the ack deadline."""
    local = at.astimezone(config.timezone_of(site_id)).time()
    deadline = at + timedelta(seconds=config.deadline_s(type))
    for rule in config.rules:
        if rule.matches(site_id=site_id, type=type, zone_id=zone_id, local=local):
            return Assignment(rule.assign, rule.id, deadline)
    return Assignment(None, None, deadline)


@dataclass(frozen=True, slots=True)
class Escalation:
    level: int
    assignee: str | None
    deadline_at: datetime | None  # None at the last level: nobody further to go to


def escalate(
    config: DispatchConfig,
    *,
    rule_id: str | None,
    type: str,
    level: int,
    current: str | None,
    at: datetime,
) -> Escalation:
    """The next level for an incident not acknowledged by its deadline."""
    rule = config.rule(rule_id)
    chain = rule.escalation if rule else []
    new_level = level + 1
    assignee = chain[new_level - 1] if new_level <= len(chain) else current
    more = new_level < len(chain)
    deadline = at + timedelta(seconds=config.deadline_s(type)) if more else None
    return Escalation(new_level, assignee, deadline)


class DispatchConfigError(Exception):
    """An invalid dispatch file; `problems` lists every one, each with its key path."""

    def __init__(self, file: str, problems: list[str]) -> None:
        self.file = file
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"{file}: invalid dispatch file, {len(problems)} problem(s):\n{lines}")


def _expand(value: Any, missing: list[str]) -> Any:
    if isinstance(value, str):
        missing.extend(name for name in _ENV_REF.findall(value) if name not in os.environ)
        return _ENV_REF.sub(lambda m: os.environ.get(m.group(1), ""), value)
    if isinstance(value, list):
        return [_expand(item, missing) for item in value]
    if isinstance(value, dict):
        return {key: _expand(item, missing) for key, item in value.items()}
    return value


def _location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + ("from" if item == "from_" else str(item)))
    return "".join(parts)


def parse_dispatch_config(raw: Any, file: str = "<dispatch>") -> DispatchConfig:
    """Validate a parsed YAML document; DispatchConfigError lists every problem."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise DispatchConfigError(file, ["the file must be a mapping of keys"])
    missing: list[str] = []
    expanded = _expand(dict(raw), missing)
    problems = [f"environment variable {name} is not set" for name in sorted(set(missing))]
    try:
        config = DispatchConfig.model_validate(expanded)
    except ValidationError as error:
        problems += [
            f"{_location(tuple(item['loc'])) or '(top level)'}: {item['msg']}"
            for item in error.errors()
        ]
        raise DispatchConfigError(file, problems) from None
    if problems:
        raise DispatchConfigError(file, problems)
    return config


def load_dispatch_config(path: str | Path) -> DispatchConfig:
    """Read and validate a dispatch YAML file."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise DispatchConfigError(name, [f"cannot read: {error.strerror}"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise DispatchConfigError(name, [f"not valid YAML: {error}"]) from None
    return parse_dispatch_config(raw, name)


def _parse_clock(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))
