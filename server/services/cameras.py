"""What the dashboard shows of each camera: health from its edge's status message (the stable
reason code, the analysis load the edge reports), its place on the site plan and its newest
snapshot (the site plan's pop-up shows it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from common.events import CameraStatus
from server.db.models import (
    CameraPositionRow,
    CameraStatusRow,
    EdgeRow,
    EvidenceRow,
    IncidentRow,
)
from server.repositories import EDGE_OFFLINE_REASON
from server.schemas import CameraItem, EvidenceRef

EVIDENCE_URL = "/api/v1/evidence/{sha256}"
# How many of the newest incidents are searched for each camera's latest snapshot.
SNAPSHOT_LOOKBACK = 400
Key = tuple[str, str]


def _camera_statuses(edge: EdgeRow) -> dict[str, CameraStatus]:
    """The cameras of an edge's stored status message, each read on its own (one that this
    server cannot read is left out rather than hiding the others)."""
    raw = edge.status.get("cameras") if isinstance(edge.status, dict) else None
    if not isinstance(raw, dict):
        return {}
    statuses: dict[str, CameraStatus] = {}
    for camera_id, value in raw.items():
        try:
            statuses[str(camera_id)] = CameraStatus.model_validate(value)
        except ValidationError:
            continue
    return statuses


def latest_snapshots(
    session: Session, *, site_id: str | None = None, camera_id: str | None = None
) -> dict[Key, EvidenceRef]:
    """The newest stored snapshot of each camera, from its newest incidents."""
    query = select(IncidentRow.site_id, IncidentRow.camera_id, IncidentRow.evidence).order_by(
        IncidentRow.last_observed_at.desc(), IncidentRow.id.desc()
    )
    if site_id is not None:
        query = query.where(IncidentRow.site_id == site_id)
    if camera_id is not None:
        query = query.where(IncidentRow.camera_id == camera_id)
    candidates: dict[Key, list[dict[str, Any]]] = {}
    for site, camera, evidence in session.execute(query.limit(SNAPSHOT_LOOKBACK)):
        snapshots = [item for item in evidence or [] if item.get("kind") == "snapshot"]
        candidates.setdefault((str(site), str(camera)), []).extend(reversed(snapshots))
    wanted = sorted({str(item["sha256"]) for items in candidates.values() for item in items})
    stored = {
        str(sha)
        for sha in session.scalars(select(EvidenceRow.sha256).where(EvidenceRow.sha256.in_(wanted)))
    }
    found: dict[Key, EvidenceRef] = {}
    for key, items in candidates.items():
        item = next((i for i in items if i["sha256"] in stored), None)
        if item is not None:
            found[key] = EvidenceRef(
                kind="snapshot",
                sha256=str(item["sha256"]),
                content_type=str(item.get("content_type", "image/jpeg")),
                role=item.get("role"),
                url=EVIDENCE_URL.format(sha256=item["sha256"]),
                event_id=item.get("event_id"),
                observed_at=_time(item.get("observed_at")),
            )
    return found


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def camera_items(
    session: Session, *, site_id: str | None = None, edge_id: str | None = None
) -> list[CameraItem]:
    """Every camera's health, load, plan position and newest snapshot (of one site or edge)."""
    query = select(CameraStatusRow).order_by(
        CameraStatusRow.site_id, CameraStatusRow.edge_id, CameraStatusRow.camera_id
    )
    edges = select(EdgeRow)
    if site_id is not None:
        query = query.where(CameraStatusRow.site_id == site_id)
        edges = edges.where(EdgeRow.site_id == site_id)
    if edge_id is not None:
        query = query.where(CameraStatusRow.edge_id == edge_id)
        edges = edges.where(EdgeRow.edge_id == edge_id)
    reported = {
        (edge.site_id, edge.edge_id): _camera_statuses(edge) for edge in session.scalars(edges)
    }
    positions = {
        (p.site_id, p.camera_id): (p.x, p.y) for p in session.scalars(select(CameraPositionRow))
    }
    snapshots = latest_snapshots(session, site_id=site_id)
    items = []
    for row in session.scalars(query):
        status = reported.get((row.site_id, row.edge_id), {}).get(row.camera_id)
        edge_down = row.reason == EDGE_OFFLINE_REASON and not row.online
        items.append(
            CameraItem(
                site_id=row.site_id,
                edge_id=row.edge_id,
                camera_id=row.camera_id,
                online=row.online,
                reason=row.reason,
                reason_code="edge_offline" if edge_down else _code(status),
                last_seen=row.last_seen,
                plan_xy=positions.get((row.site_id, row.camera_id)),
                load=None if status is None or not row.online else status.load,
                latest_snapshot=snapshots.get((row.site_id, row.camera_id)),
            )
        )
    return items


# Codes of the reasons an older edge sends as words only (newer ones send `reason_code`).
REASON_CODES = {
    "frames arriving": "frames_arriving",
    "end of file": "end_of_file",
    "read failed": "read_failed",
    "reader crashed": "reader_crashed",
    "stopped": "stopped",
    "edge offline": "edge_offline",
}


def _code(status: CameraStatus | None) -> str | None:
    """The stable code of a camera's reason, for the dashboard to translate."""
    if status is None:
        return None
    if status.reason_code:
        return status.reason_code
    if status.reason.startswith("cannot open"):
        return "cannot_open"
    return REASON_CODES.get(status.reason, "other" if status.reason else None)
