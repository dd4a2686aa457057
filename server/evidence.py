"""Evidence files (snapshots, clips), content-addressed by sha256 under the media folder.

A file is stored at media_dir/ab/cd/<sha256>: written to a temporary name, flushed to disk,
then renamed, so a crash never leaves a half file under the final name. Uploads are
idempotent: the same bytes sent twice are stored once.

The server decides a file's type from its bytes, never from what the uploader says: JPEG, PNG
or MP4, anything else is refused (issue 14: HTML and SVG were stored and served inline with
the uploader's type, and an HTML file opened with an operator's `?token=` could read it).
`served_type` is what a stored file is served as: its type when it is one of those three, else
`application/octet-stream` (rows stored before this rule).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session

from server.errors import (
    EvidenceMismatch,
    EvidenceNotFound,
    PayloadTooLarge,
    StorageFull,
    UnsupportedMedia,
)
from server.repositories import EvidenceRepository, evidence_info
from server.schemas import EvidenceInfo, EvidenceStored

log = logging.getLogger(__name__)

SHA256_PATTERN = r"^[0-9a-f]{64}$"
_SHA256 = re.compile(SHA256_PATTERN)
_CONTENT_TYPE = re.compile(r"^[\w.+-]+/[\w.+-]+$")
DEFAULT_CONTENT_TYPE = "application/octet-stream"
JPEG, PNG, MP4 = "image/jpeg", "image/png", "video/mp4"
MEDIA_TYPES = frozenset({JPEG, PNG, MP4})
# ISO base media files whose major brand says MP4 (what PyAV and phones write).
_MP4_BRANDS = frozenset(
    {b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"dash", b"M4V "}
)


def sniff_media_type(data: bytes) -> str | None:
    """image/jpeg, image/png or video/mp4 from the file's first bytes; None for anything else."""
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if len(data) >= 12 and data[4:8] == b"ftyp" and data[8:12] in _MP4_BRANDS:
        return MP4
    return None


def served_type(stored: str) -> str:
    """The type a stored file is served as: one of MEDIA_TYPES, else application/octet-stream."""
    return stored if stored in MEDIA_TYPES else DEFAULT_CONTENT_TYPE


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
        self._needed = 0  # bytes of the last file refused for want of space (0: none)

    def writable(self) -> bool:
        """Whether the media folder can take files: after a write failed for want of space,
        False until that much is free again (so /healthz tells the truth about uploads)."""
        if not self._needed:
            return True
        try:
            free = shutil.disk_usage(self._media_dir).free
        except OSError:
            return False
        if free > self._needed + 64 * 1024:
            self._needed = 0
        return not self._needed

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
        media_type = sniff_media_type(data)
        said = clean_content_type(content_type)
        if media_type is None:
            raise UnsupportedMedia(f"evidence must be a JPEG, PNG or MP4 file, not {said}")
        if said not in (media_type, DEFAULT_CONTENT_TYPE):
            log.info("evidence %s was said to be %s, is %s", sha256, said, media_type)
        path = self.path_of(sha256)
        rewritten = False
        if not (path.is_file() and path.stat().st_size == len(data)):
            try:
                _write_atomically(path, data)
            except OSError as error:
                if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                self._needed = len(data)
                log.error(
                    "media folder %s is full: evidence %s not stored", self._media_dir, sha256
                )
                raise StorageFull(f"the media folder is full; {len(data)} bytes wait") from None
            self._needed = 0
            rewritten = True
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
