"""The statistics view: incidents per type and day, time to acknowledge and to close, and the
false-alarm rate per camera and rule (which cameras cry wolf)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db.models import IncidentRow
from server.schemas import FalseAlarmRate, Percentiles, Stats, TypeDayCount
from server.workflow import p50_p90


def incident_stats(
    session: Session,
    *,
    days: int,
    now: datetime,
    site_id: str | None,
    sites: frozenset[str] | None,
) -> Stats:
    """Statistics over the incidents first observed in the last `days` days (UTC days): an
    alert sent late from an edge's outbox counts on the day it happened, not when it came.
    Times to acknowledge and to close run from when the server had the alert."""
    query = select(
        IncidentRow.type,
        IncidentRow.site_id,
        IncidentRow.camera_id,
        IncidentRow.rule_id,
        IncidentRow.status,
        IncidentRow.first_observed_at,
        IncidentRow.opened_at,
        IncidentRow.acked_at,
        IncidentRow.closed_at,
    ).where(IncidentRow.first_observed_at >= now - timedelta(days=days))
    if site_id is not None:
        query = query.where(IncidentRow.site_id == site_id)
    if sites is not None:
        query = query.where(IncidentRow.site_id.in_(sorted(sites)))
    per_day: Counter[tuple[str, str]] = Counter()
    to_ack: list[float] = []
    to_close: list[float] = []
    totals: Counter[tuple[str, str, str]] = Counter()
    false_alarms: Counter[tuple[str, str, str]] = Counter()
    rows = session.execute(query)
    for kind, site, camera, rule, status, observed, opened, acked, closed in rows:
        per_day[(observed.astimezone(UTC).date().isoformat(), kind)] += 1
        if acked is not None:
            to_ack.append((acked - opened).total_seconds())
        if closed is not None and status == "closed":
            to_close.append((closed - opened).total_seconds())
        totals[(site, camera, rule)] += 1
        if status == "false_alarm":
            false_alarms[(site, camera, rule)] += 1
    ack50, ack90 = p50_p90(to_ack)
    close50, close90 = p50_p90(to_close)
    return Stats(
        per_type_day=[
            TypeDayCount(day=day, type=kind, count=count)
            for (day, kind), count in sorted(per_day.items())
        ],
        time_to_ack_s=Percentiles(p50=ack50, p90=ack90),
        time_to_close_s=Percentiles(p50=close50, p90=close90),
        false_alarm_rate=[
            FalseAlarmRate(
                site_id=site,
                camera_id=camera,
                rule_id=rule,
                incidents=count,
                false_alarms=false_alarms[(site, camera, rule)],
                rate=round(false_alarms[(site, camera, rule)] / count, 4),
            )
            for (site, camera, rule), count in sorted(
                totals.items(), key=lambda item: (-false_alarms[item[0]] / item[1], item[0])
            )
        ],
    )
