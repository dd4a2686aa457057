"""Evidence files (snapshots, clips), content-addressed by sha256 under the media folder.

A file is stored at media_dir/ab/cd/<sha256>: written to a temporary name, flushed to disk,
then renamed, so a crash never leaves a half file under the final name. Uploads are
idempotent: the same bytes sent twice are stored once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session

from server.errors import EvidenceMismatch, EvidenceNotFound, PayloadTooLarge
from server.repositories import EvidenceRepository, evidence_info
from server.schemas import EvidenceInfo, EvidenceStored

log = logging.getLogger(__name__)

SHA256_PATTERN = r"^[0-9a-f]{64}$"
_SHA256 = re.compile(SHA256_PATTERN)
_CONTENT_TYPE = re.compile(r"^[\w.+-]+/[\w.+-]+$")
DEFAULT_CONTENT_TYPE = "application/octet-stream"


def relative_path(sha256: str) -> Path:
    """ab/cd/abcd...: two levels of 256 folders keep every folder small."""
    if not _SHA256.match(sha256):
        raise ValueError(f"not a lowercase hex sha256: {sha256!r}")
    return Path(sha256[:2]) / sha256[2:4] / sha256


def clean_content_type(value: str | None) -> str:
    """The media type without parameters, or application/octet-stream when unusable."""
    media_type = (value or "").split(";", 1)[0].strip().lower()
    return media_type if _CONTENT_TYPE.match(media_type) else DEFAULT_CONTENT_TYPE


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.part")
    try:
        with temporary.open("wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


class EvidenceService:
    """Store and find evidence files; the database keeps type, size and location."""

    def __init__(
        self, session_factory: Callable[[], Session], media_dir: Path, *, max_bytes: int
    ) -> None:
        self._session_factory = session_factory
        self._media_dir = media_dir
        self.max_bytes = max_bytes

    def path_of(self, sha256: str) -> Path:
        return self._media_dir / relative_path(sha256)

    def store(
        self, sha256: str, data: bytes, *, content_type: str | None, event_id: str | None = None
    ) -> EvidenceStored:
        """Keep `data` under `sha256`; `stored` is False when it was there already."""
        if len(data) > self.max_bytes:
            raise PayloadTooLarge(f"evidence larger than {self.max_bytes} bytes")
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise EvidenceMismatch(f"body hashes to {actual}, not to {sha256}")
        path = self.path_of(sha256)
        rewritten = False
        if not (path.is_file() and path.stat().st_size == len(data)):
            _write_atomically(path, data)
            rewritten = True
        media_type = clean_content_type(content_type)
        with self._session_factory() as session, session.begin():
            inserted = EvidenceRepository(session).add_if_new(
                sha256=sha256,
                content_type=media_type,
                size=len(data),
                path=relative_path(sha256).as_posix(),
                created_at=datetime.now(UTC),
                event_id=event_id,
            )
        if inserted or rewritten:
            log.info("stored evidence %s (%s, %d bytes)", sha256, media_type, len(data))
        return EvidenceStored(
            sha256=sha256,
            content_type=media_type,
            size=len(data),
            event_id=event_id,
            stored=inserted or rewritten,
        )

    def find(self, sha256: str) -> tuple[EvidenceInfo, Path]:
        """The file's record and path; EvidenceNotFound when unknown or missing on disk."""
        with self._session_factory() as session:
            row = EvidenceRepository(session).get(sha256)
            info = None if row is None else evidence_info(row)
            relative = None if row is None else row.path
        if info is None or relative is None:
            raise EvidenceNotFound(sha256)
        path = self._media_dir / relative
        if not path.is_file():
            log.error("evidence %s is recorded but its file %s is missing", sha256, path)
            raise EvidenceNotFound(sha256)
        return info, path
