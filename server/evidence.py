"""Evidence files (snapshots, clips), content-addressed by sha256.

A file is kept under the key ab/cd/<sha256> in a `BlobStore` (server/storage.py): the media
folder (written to a temporary name, flushed, renamed, so a crash never leaves a half file
under the final name) or an S3-compatible bucket. Uploads are idempotent: the same bytes sent
twice are stored once.

The server decides a file's type from its bytes, never from what the uploader says: JPEG, PNG
or MP4, anything else is refused (issue 14: HTML and SVG were stored and served inline with
the uploader's type, and an HTML file opened with an operator's `?token=` could read it).
`served_type` is what a stored file is served as: its type when it is one of those three, else
`application/octet-stream` (rows stored before this rule).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session

from server.errors import (
    EvidenceMismatch,
    EvidenceNotFound,
    PayloadTooLarge,
    UnsupportedMedia,
)
from server.repositories import EvidenceRepository, evidence_info
from server.schemas import EvidenceInfo, EvidenceStored
from server.storage import BlobStore, LocalStore

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


class EvidenceService:
    """Store and find evidence files; the database keeps type, size and location."""

    def __init__(
        self,
        session_factory: Callable[[], Session],
        store: BlobStore | Path,
        *,
        max_bytes: int,
    ) -> None:
        self._session_factory = session_factory
        self.blobs: BlobStore = LocalStore(store) if isinstance(store, Path) else store
        self.max_bytes = max_bytes

    def writable(self) -> bool:
        """Whether the store takes files: after a write failed for want of space (or the
        object store failed), False until it is fine again (so /healthz tells the truth)."""
        return self.blobs.writable()

    def path_of(self, sha256: str) -> Path | None:
        """The file on this machine (local store), None for an object store."""
        return self.blobs.local_path(relative_path(sha256).as_posix())

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
        key = relative_path(sha256).as_posix()
        # A file without a row is new (the row is written after the file, and retention
        # removes the file before its row): put it at once, no lookup in the store first (a
        # HEAD to an object store cost as much as a third of an upload). Only a file that has
        # a row is looked for, and put again if it is missing or short.
        with self._session_factory() as session:
            known = EvidenceRepository(session).get(sha256) is not None
        rewritten = False
        if not known or self.blobs.size(key) != len(data):
            self.blobs.put(key, data, content_type=media_type, sha256=sha256)
            rewritten = known
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

    def record(self, sha256: str) -> tuple[EvidenceInfo, str]:
        """The file's record and its key in the store; EvidenceNotFound when unknown."""
        with self._session_factory() as session:
            row = EvidenceRepository(session).get(sha256)
            info = None if row is None else evidence_info(row)
            relative = None if row is None else row.path
        if info is None or relative is None:
            raise EvidenceNotFound(sha256)
        return info, relative

    def find(self, sha256: str) -> tuple[EvidenceInfo, Path | None]:
        """The file's record and its path on this machine (None: in an object store, read it
        with `chunks`); EvidenceNotFound when unknown or missing on disk."""
        info, key = self.record(sha256)
        path = self.blobs.local_path(key)
        if path is not None and not path.is_file():
            log.error("evidence %s is recorded but its file %s is missing", sha256, path)
            raise EvidenceNotFound(sha256)
        return info, path

    def chunks(self, sha256: str) -> Iterator[bytes]:
        """The file's bytes from wherever it is kept."""
        _, key = self.record(sha256)
        return self.blobs.chunks(key)

    def presign(self, sha256: str, *, expires_s: int, content_type: str) -> str | None:
        _, key = self.record(sha256)
        return self.blobs.presign(
            key, expires_s=expires_s, content_type=content_type, filename=sha256[:16]
        )
