"""The audit log: who saw or did what, when, from where (evidence shows residents: personal
data, so every view and download is recorded, as is every action and login)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.db.models import AuditRow, UserRow
from server.schemas import AuditEntry


def record(
    session: Session,
    *,
    actor: str,
    role: str,
    action: str,
    target: str,
    client_ip: str,
    at: datetime,
    details: dict[str, Any] | None = None,
) -> None:
    """Add one entry to the session's transaction (the caller commits)."""
    session.add(
        AuditRow(
            at=at,
            actor=actor[:128],
            role=role[:16],
            action=action[:64],
            target=target[:256],
            client_ip=client_ip[:64],
            details=details or {},
        )
    )


def list_entries(
    session: Session,
    *,
    actor: str | None,
    action: str | None,
    limit: int,
    offset: int,
) -> tuple[list[AuditEntry], int]:
    """Newest first, optionally of one actor or action, with each user's display name."""
    query = select(AuditRow, UserRow.display_name).outerjoin(
        UserRow, UserRow.username == AuditRow.actor
    )
    count = select(func.count(AuditRow.id))
    for column, value in ((AuditRow.actor, actor), (AuditRow.action, action)):
        if value is not None:
            query, count = query.where(column == value), count.where(column == value)
    rows = session.execute(
        query.order_by(AuditRow.at.desc(), AuditRow.id.desc()).limit(limit).offset(offset)
    )
    items = [
        AuditEntry(
            id=row.id,
            at=row.at,
            actor=row.actor,
            actor_name=display_name,
            role=row.role,
            action=row.action,
            target=row.target,
            client_ip=row.client_ip,
            details=row.details,
        )
        for row, display_name in rows
    ]
    return items, int(session.scalar(count) or 0)
