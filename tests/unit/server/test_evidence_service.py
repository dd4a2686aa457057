"""The evidence service asks the store only what it must (issue 16: a HEAD before every PUT
cost an object store a third of an upload, a lookup in the database a session): every upload
is put at once, a file sent again is put again (which also puts back a missing object)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from sqlalchemy.orm import Session, sessionmaker

from server.errors import EvidenceMismatch, PayloadTooLarge
from server.evidence import EvidenceService, Upload, relative_path
from server.storage import LocalStore
from tests.support.databases import sqlite_sessions

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 16 + b"\xff\xd9"
SHA = hashlib.sha256(JPEG).hexdigest()


class CountingStore(LocalStore):
    """A real folder store that counts what the service asks of it."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.calls: list[str] = []

    def size(self, key: str) -> int | None:
        self.calls.append("size")
        return super().size(key)

    def put(self, key: str, body: IO[bytes], *, size: int, content_type: str, sha256: str) -> None:
        self.calls.append("put")
        super().put(key, body, size=size, content_type=content_type, sha256=sha256)


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    yield from sqlite_sessions(tmp_path)


def test_a_new_file_is_put_without_asking_the_store_first(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    store = CountingStore(tmp_path / "media")
    service = EvidenceService(sessions, store, max_bytes=1 << 20)

    first = service.store(SHA, JPEG, content_type="image/jpeg")
    assert first.stored and store.calls == ["put"]

    again = service.store(SHA, JPEG, content_type="image/jpeg")
    assert not again.stored and store.calls == ["put", "put"]  # known: put again, not asked


def test_a_known_file_whose_object_went_missing_is_put_again(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    store = CountingStore(tmp_path / "media")
    service = EvidenceService(sessions, store, max_bytes=1 << 20)
    service.store(SHA, JPEG, content_type="image/jpeg")
    (tmp_path / "media" / relative_path(SHA)).unlink()

    again = service.store(SHA, JPEG, content_type="image/jpeg")

    assert not again.stored and store.calls == ["put", "put"]  # the row was there already
    assert (tmp_path / "media" / relative_path(SHA)).read_bytes() == JPEG


def test_a_large_upload_is_spooled_to_a_temporary_file_and_stored_whole(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    clip = b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 12_000  # 3 MB, an MP4's header
    service = EvidenceService(sessions, LocalStore(tmp_path / "media"), max_bytes=8 << 20)
    sha = hashlib.sha256(clip).hexdigest()

    with Upload(service.max_bytes) as upload:
        for start in range(0, len(clip), 65536):  # as the body arrives
            upload.write(clip[start : start + 65536])
        assert upload.file._rolled  # type: ignore[attr-defined]  # on disk, not in memory
        stored = service.store(sha, upload, content_type="video/mp4")

    assert (stored.stored, stored.size, stored.content_type) == (True, len(clip), "video/mp4")
    assert (tmp_path / "media" / relative_path(sha)).read_bytes() == clip


def test_an_upload_past_its_limit_is_refused_as_it_grows() -> None:
    with Upload(limit=100_000) as upload:
        upload.write(bytes(60_000))
        with pytest.raises(PayloadTooLarge):
            upload.write(bytes(60_000))


def test_bytes_that_hash_otherwise_are_refused_and_nothing_is_stored(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    store = CountingStore(tmp_path / "media")
    service = EvidenceService(sessions, store, max_bytes=1 << 20)
    with pytest.raises(EvidenceMismatch):
        service.store("0" * 64, JPEG, content_type="image/jpeg")
    assert store.calls == []
