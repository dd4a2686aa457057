"""Photos a field worker takes on the phone (反馈) or the center attaches (核查): stored as
evidence like the edge's files (content-addressed by sha256, size-limited, audited), their
type decided from the bytes, and attached to the incident (retention and holds follow it)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db.models import IncidentEvidenceRow, IncidentRow
from server.evidence import EvidenceService, sniff_media_type
from server.repositories import upsert_insert
from server.schemas import EvidenceStored

PhotoStage = Literal["handling", "feedback", "verify"]
# The picture formats a photo may have (the dashboard re-encodes a phone's pictures to JPEG).
PHOTO_TYPES = frozenset({"image/jpeg", "image/png"})
MIN_PHOTO_BYTES = 32  # a header and nothing after it is no picture


class NotAPhoto(ValueError):
    """The bytes are neither a JPEG nor a PNG image (HTTP 415)."""


def photo_type(data: bytes) -> str:
    """`image/jpeg` or `image/png`, from the file's first bytes (never from what the client
    says); NotAPhoto otherwise."""
    content_type = sniff_media_type(data)
    if content_type not in PHOTO_TYPES or len(data) < MIN_PHOTO_BYTES:
        raise NotAPhoto("a photo must be a JPEG or PNG image")
    return content_type


def attach_photo(
    session: Session,
    evidence: EvidenceService,
    incident: IncidentRow,
    data: bytes,
    *,
    stage: PhotoStage,
    by: str,
    at: datetime,
) -> tuple[EvidenceStored, dict[str, str]]:
    """Store the photo (idempotent on its sha256) and attach it to the incident; the stored
    file and the incident's evidence entry. The caller commits (and audits)."""
    content_type = photo_type(data)
    sha256 = hashlib.sha256(data).hexdigest()
    stored = evidence.store(sha256, data, content_type=content_type)
    entry = {
        "kind": "photo",
        "sha256": sha256,
        "content_type": stored.content_type,
        "role": stage,
        "by": by,
        "observed_at": at.isoformat(),
    }
    locked = session.scalars(
        select(IncidentRow).where(IncidentRow.id == incident.id).with_for_update()
    ).one()
    if all(item.get("sha256") != sha256 for item in locked.evidence):
        locked.evidence = [*locked.evidence, entry]
        session.execute(
            upsert_insert(session, IncidentEvidenceRow)
            .values(incident_id=locked.id, sha256=sha256)
            .on_conflict_do_nothing(index_elements=["incident_id", "sha256"])
        )
        locked.updated_at = at
    return stored, entry
