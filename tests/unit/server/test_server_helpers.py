"""Pure helpers of the server: batch de-duplication, evidence paths, content types, retries."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from server.evidence import DEFAULT_CONTENT_TYPE, clean_content_type, relative_path
from server.ingest import first_occurrences, is_transient


def test_first_occurrences_marks_repeats_in_a_batch() -> None:
    keys = [("a", 0), ("b", 0), ("a", 0), ("a", 1), ("b", 0)]

    assert first_occurrences(keys) == [True, True, False, True, False]
    assert first_occurrences([]) == []


def test_evidence_lives_two_folders_deep_by_its_hash() -> None:
    sha = "ab" + "cd" + "ef" * 30

    assert relative_path(sha) == Path("ab") / "cd" / sha


@pytest.mark.parametrize("bad", ["../" + "a" * 61, "AB" * 32, "ab" * 31, "ab" * 33, ""])
def test_evidence_paths_only_take_lowercase_sha256(bad: str) -> None:
    with pytest.raises(ValueError, match="sha256"):
        relative_path(bad)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("image/jpeg", "image/jpeg"),
        ("Video/MP4; codecs=avc1", "video/mp4"),
        (None, DEFAULT_CONTENT_TYPE),
        ("", DEFAULT_CONTENT_TYPE),
        ("text/html\r\nX-Evil: 1", DEFAULT_CONTENT_TYPE),
        ("jpeg", DEFAULT_CONTENT_TYPE),
    ],
)
def test_content_types_are_cleaned(given: str | None, expected: str) -> None:
    assert clean_content_type(given) == expected


class _DriverError(Exception):
    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("orig", "expected"),
    [
        (_DriverError("deadlock detected", "40P01"), True),
        (_DriverError("could not serialize access", "40001"), True),
        (_DriverError("database is locked"), True),
        (_DriverError("relation does not exist", "42P01"), False),
        (_DriverError("disk I/O error"), False),
    ],
)
def test_only_transient_database_errors_are_retried(orig: Exception, expected: bool) -> None:
    assert is_transient(OperationalError("INSERT", {}, orig)) is expected
