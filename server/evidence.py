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
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO

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
SPOOL_IN_MEMORY = 1024 * 1024  # an upload past this many bytes continues in a temporary file
SNIFF_BYTES = 16  # what `sniff_media_type` reads
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


class Upload:
    """A file as it arrives: hashed chunk by chunk, refused (PayloadTooLarge) as soon as it
    grows past `limit`, kept in memory up to SPOOL_IN_MEMORY bytes and in a temporary file
    beyond, so a 50 MiB clip is never held whole in a server's memory, and streamed from there
    to the store once its sha256 has been checked.

    Example:
        >>> with Upload(limit=50 << 20) as upload:
        ...     for chunk in chunks:  # as they come off the socket
        ...         upload.write(chunk)
        ...     service.store(name, upload, content_type=None)  # EvidenceMismatch unless
        ...                                                     # upload.sha256 == name
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.head = b""  # the first SNIFF_BYTES bytes, for the media type
        self._hash = hashlib.sha256()
        self.file: IO[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115 : closed by close
            max_size=SPOOL_IN_MEMORY, prefix="zhizhi-upload-"
        )

    @classmethod
    def of(cls, data: bytes, limit: int) -> Upload:
        upload = cls(limit)
        upload.write(data)
        return upload

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise PayloadTooLarge(f"evidence larger than {self.limit} bytes")
        if len(self.head) < SNIFF_BYTES:
            self.head += chunk[: SNIFF_BYTES - len(self.head)]
        self._hash.update(chunk)
        self.file.write(chunk)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Upload:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


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
        self,
        sha256: str,
        data: bytes | Upload,
        *,
        content_type: str | None,
        event_id: str | None = None,
    ) -> EvidenceStored:
        """Keep `data` (bytes, or an upload as received) under `sha256`; `stored` is False
        when it was there already."""
        if isinstance(data, bytes):
            with Upload.of(data, self.max_bytes) as upload:
                return self.store(sha256, upload, content_type=content_type, event_id=event_id)
        upload = data
        if upload.size > self.max_bytes:
            raise PayloadTooLarge(f"evidence larger than {self.max_bytes} bytes")
        actual = upload.sha256
        if actual != sha256:
            raise EvidenceMismatch(f"body hashes to {actual}, not to {sha256}")
        media_type = sniff_media_type(upload.head)
        said = clean_content_type(content_type)
        if media_type is None:
            raise UnsupportedMedia(f"evidence must be a JPEG, PNG or MP4 file, not {said}")
        if said not in (media_type, DEFAULT_CONTENT_TYPE):
            log.info("evidence %s was said to be %s, is %s", sha256, said, media_type)
        # The bytes are put before the row is written (a row means its file is there), and
        # put every time: no lookup first, neither in the database nor in the store (a HEAD
        # cost an object store a third of an upload, and the lookup a database session per
        # upload). A file uploaded again is rare (an edge retrying an upload whose answer it
        # lost), costs one put of bytes the server has just received, and puts back an
        # object that went missing. The key is the content's hash: the same bytes again.
        self.blobs.put(
            relative_path(sha256).as_posix(),
            upload.file,
            size=upload.size,
            content_type=media_type,
            sha256=sha256,
        )
        with self._session_factory() as session, session.begin():
            inserted = EvidenceRepository(session).add_if_new(
                sha256=sha256,
                content_type=media_type,
                size=upload.size,
                path=relative_path(sha256).as_posix(),
                created_at=datetime.now(UTC),
                event_id=event_id,
            )
        if inserted:
            log.info("stored evidence %s (%s, %d bytes)", sha256, media_type, upload.size)
        return EvidenceStored(
            sha256=sha256,
            content_type=media_type,
            size=upload.size,
            event_id=event_id,
            stored=inserted,
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
