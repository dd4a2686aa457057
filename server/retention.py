"""Evidence retention: files older than their type's retention are deleted, unless an incident
they belong to is on legal hold. `sweep_evidence` is called periodically by the server."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, select, tuple_
from sqlalchemy.orm import Session

from server.db.models import EvidenceRow, IncidentEvidenceRow, IncidentRow
from server.storage import BlobStore, LocalStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Days to keep evidence, per incident type; `default_days` for files of no incident."""

    days_by_type: dict[str, float]
    default_days: float

    def days_for(self, types: set[str]) -> float:
        """The longest retention among the incident types a file belongs to."""
        if not types:
            return self.default_days
        return max(self.days_by_type.get(t, self.default_days) for t in types)


def expired(
    created_at: datetime, types: set[str], held: bool, policy: RetentionPolicy, now: datetime
) -> bool:
    """Whether a file created at `created_at` may be deleted now (pure)."""
    if held:
        return False
    return now - created_at >= timedelta(days=policy.days_for(types))


def sweep_evidence(
    session: Session,
    store: BlobStore | Path,
    policy: RetentionPolicy,
    now: datetime,
    *,
    batch: int = 500,
) -> int:
    """Delete expired evidence files and their records (committed); how many were deleted.

    Candidates are read `batch` at a time, oldest first, until none are left: files kept
    (on hold, or of a type kept longer) never stop the sweep from reaching later ones.
    """
    blobs = LocalStore(store) if isinstance(store, Path) else store
    oldest_kept = now - timedelta(days=min([policy.default_days, *policy.days_by_type.values()]))
    deleted = 0
    after: tuple[datetime, str] | None = None
    while True:
        query = select(EvidenceRow).where(EvidenceRow.created_at <= oldest_kept)
        if after is not None:
            query = query.where(tuple_(EvidenceRow.created_at, EvidenceRow.sha256) > after)
        candidates = session.scalars(
            query.order_by(EvidenceRow.created_at, EvidenceRow.sha256).limit(batch)
        ).all()
        if candidates:  # read before the commit expires (or the delete removes) the row
            after = (candidates[-1].created_at, candidates[-1].sha256)
        for row in candidates:
            links = session.execute(
                select(IncidentRow.type, IncidentRow.legal_hold)
                .join(IncidentEvidenceRow, IncidentEvidenceRow.incident_id == IncidentRow.id)
                .where(IncidentEvidenceRow.sha256 == row.sha256)
            ).all()
            types = {str(kind) for kind, _ in links}
            held = any(bool(hold) for _, hold in links)
            if not expired(row.created_at, types, held, policy, now):
                continue
            blobs.delete(row.path)
            session.execute(delete(EvidenceRow).where(EvidenceRow.sha256 == row.sha256))
            deleted += 1
        session.commit()
        if len(candidates) < batch:
            break
    if deleted:
        log.info("retention: deleted %d evidence file(s)", deleted)
    return deleted
