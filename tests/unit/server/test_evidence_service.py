"""The evidence service asks the store only what it must (issue 16: a HEAD before every PUT
cost an object store a third of an upload): a new file is put at once, a known one is looked
for and put again only when its object is missing or short."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from server.db.session import make_engine, make_session_factory, migrate
from server.evidence import EvidenceService, relative_path
from server.storage import LocalStore

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

    def put(self, key: str, data: bytes, *, content_type: str, sha256: str) -> None:
        self.calls.append("put")
        super().put(key, data, content_type=content_type, sha256=sha256)


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'zhizhi.db'}")
    migrate(engine)
    yield make_session_factory(engine)
    engine.dispose()


def test_a_new_file_is_put_without_asking_the_store_first(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    store = CountingStore(tmp_path / "media")
    service = EvidenceService(sessions, store, max_bytes=1 << 20)

    first = service.store(SHA, JPEG, content_type="image/jpeg")
    assert first.stored and store.calls == ["put"]

    again = service.store(SHA, JPEG, content_type="image/jpeg")
    assert not again.stored and store.calls == ["put", "size"]  # known, there: nothing put


def test_a_known_file_whose_object_went_missing_is_put_again(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    store = CountingStore(tmp_path / "media")
    service = EvidenceService(sessions, store, max_bytes=1 << 20)
    service.store(SHA, JPEG, content_type="image/jpeg")
    (tmp_path / "media" / relative_path(SHA)).unlink()

    again = service.store(SHA, JPEG, content_type="image/jpeg")

    assert again.stored and store.calls == ["put", "size", "put"]
    assert (tmp_path / "media" / relative_path(SHA)).read_bytes() == JPEG
