"""The work-order lifecycle and the other decisions of the command center, as pure functions.

Grid-management centres run each case through 上报 reported → 立案 filed → 派遣 dispatched →
处置 handling → 反馈 feedback → 核查 verified → 结案 closed, or 误报 false_alarm. The contract's
operator actions map onto it: `ack` files a reported incident, `resolve` closes from any open
status, `false-alarm` ends it as a false alarm from any open status. Nothing here touches the
database or the clock: times are passed in.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, get_args

Status = Literal[
    "reported", "filed", "dispatched", "handling", "feedback", "verified", "closed", "false_alarm"
]
STATUSES: tuple[Status, ...] = get_args(Status)
CLOSED_STATUSES: frozenset[str] = frozenset({"closed", "false_alarm"})
OPEN_STATUSES: frozenset[str] = frozenset(STATUSES) - CLOSED_STATUSES
STATUS_NAMES_ZH: dict[str, str] = {
    "reported": "上报",
    "filed": "立案",
    "dispatched": "派遣",
    "handling": "处置",
    "feedback": "反馈",
    "verified": "核查",
    "closed": "结案",
    "false_alarm": "误报",
}

Action = Literal[
    "ack", "dispatch", "handle", "feedback", "verify", "resolve", "false_alarm", "reopen"
]
ACTIONS: tuple[Action, ...] = get_args(Action)
# Actions only an admin may take; the rest need an operator.
ADMIN_ACTIONS: frozenset[str] = frozenset({"reopen"})
# Actions whose body must carry a note (feedback is the handler's report).
NOTE_REQUIRED: frozenset[str] = frozenset({"feedback"})

_OPEN = tuple(sorted(OPEN_STATUSES))
# action → (statuses it is allowed from, status it leads to)
TRANSITIONS: dict[str, tuple[tuple[str, ...], Status]] = {
    "ack": (("reported",), "filed"),
    "dispatch": (("reported", "filed", "dispatched"), "dispatched"),
    "handle": (("dispatched",), "handling"),
    "feedback": (("handling",), "feedback"),
    "verify": (("feedback",), "verified"),
    "resolve": (_OPEN, "closed"),
    "false_alarm": (_OPEN, "false_alarm"),
    "reopen": (("closed", "false_alarm"), "filed"),
}

Severity = Literal["critical", "high", "normal"]
SEVERITY: dict[str, Severity] = {
    "falling_object": "critical",
    "person_fall": "critical",
    "fire_lane": "high",
    "garbage_pile": "normal",
}
# Types whose incidents show a dwell: how long the situation has lasted.
DWELL_TYPES: frozenset[str] = frozenset({"fire_lane", "garbage_pile"})


class TransitionNotAllowed(ValueError):
    """The action cannot be taken from the incident's current status (HTTP 409)."""


def next_status(action: str, current: str) -> Status:
    """The status `action` leads to from `current`; TransitionNotAllowed when it may not.

    >>> next_status("ack", "reported")
    'filed'
    """
    if action not in TRANSITIONS:
        raise TransitionNotAllowed(f"unknown action {action!r}")
    allowed, target = TRANSITIONS[action]
    if current not in allowed:
        raise TransitionNotAllowed(
            f"cannot {action} an incident that is {current} (allowed from: {', '.join(allowed)})"
        )
    return target


def allowed_actions(current: str) -> list[str]:
    """The actions that may be taken from `current`, in lifecycle order."""
    return [action for action, (allowed, _) in TRANSITIONS.items() if current in allowed]


def severity_of(event_type: str) -> Severity:
    return SEVERITY.get(event_type, "normal")


def dwell_seconds(event_type: str, onset_pts_s: float, last_pts_s: float) -> float | None:
    """For lanes and piles: seconds from the onset to the latest message, else None."""
    if event_type not in DWELL_TYPES:
        return None
    return max(0.0, last_pts_s - onset_pts_s)


# Situations whose span an incident keeps by event_id; older ones are summed under EARLIER.
SPANS_KEPT = 100
EARLIER = ""  # never an event_id (those have at least one character)


def situation_span(
    event_type: str, state: str, pts_s: float, onset_pts_s: float, details: dict[str, object]
) -> float | None:
    """How long one situation of a lane or pile has lasted by this message, else None.

    An `end` of a fire lane says when the lane was last seen blocked (`last_blocked_pts_s`):
    the blockage lasted until then, not until the clearing was confirmed.

    >>> situation_span("fire_lane", "end", 60.0, 20.0, {"last_blocked_pts_s": 54.0})
    34.0
    """
    if event_type not in DWELL_TYPES:
        return None
    until = pts_s
    last_blocked = details.get("last_blocked_pts_s")
    if state == "end" and isinstance(last_blocked, int | float) and last_blocked >= onset_pts_s:
        until = float(last_blocked)
    return max(0.0, until - onset_pts_s)


def fold_span(spans: dict[str, float], event_id: str, seconds: float) -> dict[str, float]:
    """`spans` with `event_id`'s span at least `seconds` (messages may arrive out of order);
    past SPANS_KEPT situations the shortest are summed under EARLIER."""
    folded = dict(spans)
    folded[event_id] = max(folded.get(event_id, 0.0), round(seconds, 3))
    kept = sorted((key for key in folded if key != EARLIER), key=lambda key: folded[key])
    while len(kept) > SPANS_KEPT:
        dropped = kept.pop(0)
        folded[EARLIER] = round(folded.get(EARLIER, 0.0) + folded.pop(dropped), 3)
    return folded


def total_span(spans: dict[str, float] | None) -> float:
    """The time the incident's situations lasted, together (they follow each other)."""
    return round(sum((spans or {}).values()), 3)


def is_overdue(
    status: str, deadline_at: datetime | None, escalation_level: int, now: datetime
) -> bool:
    """Not acknowledged in time: still reported past its deadline, or escalated already (the
    last level of a chain has no deadline left, but it is no less late)."""
    if status != "reported":
        return False
    return escalation_level > 0 or (deadline_at is not None and deadline_at <= now)


SEVERITY_RANK: dict[str, int] = {"critical": 0, "high": 1, "normal": 2}


@dataclass(frozen=True, slots=True)
class Urgency:
    """What orders the queue: open first, then unacknowledged, severity, overdue, escalation
    level, and the latest alert (newest first)."""

    open: bool
    unacknowledged: bool
    severity: str
    overdue: bool
    escalation_level: int
    last_alert_at: datetime

    def key(self) -> tuple[int, int, int, int, int, float]:
        """Sorts the most urgent first."""
        return (
            0 if self.open else 1,
            0 if self.unacknowledged else 1,
            SEVERITY_RANK.get(self.severity, len(SEVERITY_RANK)),
            0 if self.overdue else 1,
            -self.escalation_level,
            -self.last_alert_at.timestamp(),
        )


# Why an operator ends an incident as a false alarm (误报原因), for the per-camera statistics.
FalseAlarmCategory = Literal[
    "lighting", "wrong_object", "authorised_activity", "test", "duplicate", "other"
]
FALSE_ALARM_CATEGORIES: tuple[FalseAlarmCategory, ...] = get_args(FalseAlarmCategory)


@dataclass(frozen=True, slots=True)
class GroupCandidate:
    """An open incident of the same site, camera, rule and zone as a new situation."""

    incident_id: int
    status: str
    last_alert_at: datetime


def choose_group(
    candidates: Iterable[GroupCandidate], observed_at: datetime, window_s: float
) -> int | None:
    """The open incident a new situation joins (Alertmanager-style grouping), or None.

    It joins the open candidate whose latest alert is closest before (or after) `observed_at`
    within `window_s` seconds; a window of 0 never groups.
    """
    if window_s <= 0:
        return None
    window = timedelta(seconds=window_s)
    best: tuple[timedelta, int] | None = None
    for candidate in candidates:
        if candidate.status in CLOSED_STATUSES:
            continue
        gap = abs(observed_at - candidate.last_alert_at)
        if gap <= window and (best is None or gap < best[0]):
            best = (gap, candidate.incident_id)
    return None if best is None else best[1]


@dataclass(frozen=True, slots=True)
class Matchers:
    """What a silence applies to: None matches anything."""

    site_id: str | None = None
    camera_id: str | None = None
    rule_id: str | None = None
    type: str | None = None


@dataclass(frozen=True, slots=True)
class SilenceWindow:
    matchers: Matchers
    starts_at: datetime
    ends_at: datetime


def silence_applies(
    silence: SilenceWindow, *, site_id: str, camera_id: str, rule_id: str, type: str, at: datetime
) -> bool:
    """Whether the silence covers an incident of these labels at time `at`."""
    if not silence.starts_at <= at < silence.ends_at:
        return False
    wanted = silence.matchers
    return all(
        expected is None or expected == actual
        for expected, actual in (
            (wanted.site_id, site_id),
            (wanted.camera_id, camera_id),
            (wanted.rule_id, rule_id),
            (wanted.type, type),
        )
    )


def p50_p90(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Median and 90th percentile (linear interpolation, numpy's default); None when empty.

    >>> p50_p90([10.0, 20.0, 30.0, 40.0])
    (25.0, 37.0)
    """
    if not values:
        return None, None
    if len(values) == 1:
        return values[0], values[0]
    deciles = statistics.quantiles(values, n=10, method="inclusive")
    return round(deciles[4], 3), round(deciles[8], 3)
