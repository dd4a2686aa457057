"""Evidence in S3-compatible object storage (issue 16), against a real S3 API server on
loopback: moto's standalone server (`python -m moto.server`), started by the test (MinIO cannot
be installed here). boto3 speaks to it over HTTP exactly as to MinIO, OSS or COS.

Uploaded through the REST API, a file lands in the bucket under <prefix>ab/cd/<sha256> with its
SHA-256 checksum, is read back through the server (audited), or through a short-lived
presigned URL when that is set; the same bytes twice are stored once; bytes that do not hash
to their name are refused; a second server process on another media folder serves the same
file; the retention sweep deletes the object; a bucket that refuses writes turns `media` false
in /healthz."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from server.api import create_app
from server.auth import create_token
from server.db.models import AuditRow, EvidenceRow
from server.ingest import IngestService
from server.retention import RetentionPolicy, sweep_evidence
from server.settings import ServerSettings
from tests.component.server.conftest import event_message
from tests.support.databases import sqlite_sessions
from tests.support.mosquitto import unavailable
from zhizhi.local_services import MotoS3, ServiceUnavailable

pytestmark = pytest.mark.integration

BUCKET = "zhizhi-evidence"
KEYS = {"ZHIZHI_S3_ACCESS_KEY_ID": "test-key", "ZHIZHI_S3_SECRET_ACCESS_KEY": "test-secret"}
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 64 + b"\xff\xd9"


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    """moto's S3 API server on a free loopback port, for this module."""
    try:
        server = MotoS3()
    except ServiceUnavailable as error:
        unavailable(str(error))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def bucket_client(s3_url: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=s3_url,
        region_name="us-east-1",
        aws_access_key_id=KEYS["ZHIZHI_S3_ACCESS_KEY_ID"],
        aws_secret_access_key=KEYS["ZHIZHI_S3_SECRET_ACCESS_KEY"],
    )


@pytest.fixture
def bucket(s3_url: str) -> Iterator[Any]:
    client = bucket_client(s3_url)
    client.create_bucket(Bucket=BUCKET)
    yield client
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    yield from sqlite_sessions(tmp_path)


def settings_for(s3_url: str, tmp_path: Path, **extra: Any) -> ServerSettings:
    return ServerSettings.from_env(
        {
            **KEYS,
            "ZHIZHI_EVIDENCE_STORE": "s3",
            "ZHIZHI_S3_BUCKET": BUCKET,
            "ZHIZHI_S3_ENDPOINT_URL": s3_url,
            "ZHIZHI_MEDIA_DIR": str(tmp_path / "unused-media"),
        },
        **extra,
    )


def client_for(settings: ServerSettings, sessions: sessionmaker[Session]) -> TestClient:
    engine = sessions.kw["bind"]
    app = create_app(
        settings, engine, ingest=IngestService(sessions), broker_connected=lambda: True
    )
    return TestClient(app)


@pytest.fixture
def auth(sessions: sessionmaker[Session]) -> Callable[[str], dict[str, str]]:
    with sessions() as session:
        tokens = {
            role: create_token(session, role, f"t-{role}") for role in ("admin", "viewer", "edge")
        }
    return lambda role: {"Authorization": f"Bearer {tokens[role]}"}


def test_an_upload_lands_in_the_bucket_and_is_read_back_through_the_server(
    s3_url: str,
    bucket: Any,
    sessions: sessionmaker[Session],
    auth: Callable[[str], dict[str, str]],
    tmp_path: Path,
) -> None:
    sha = hashlib.sha256(JPEG).hexdigest()
    client = client_for(settings_for(s3_url, tmp_path), sessions)

    put = client.put(f"/api/v1/evidence/{sha}", content=JPEG, headers=auth("admin"))
    again = client.put(f"/api/v1/evidence/{sha}", content=JPEG, headers=auth("admin"))
    wrong = client.put(f"/api/v1/evidence/{'0' * 64}", content=JPEG, headers=auth("admin"))

    assert (put.status_code, put.json()["stored"]) == (201, True)
    assert (again.status_code, again.json()["stored"]) == (200, False)
    assert wrong.status_code == 400
    key = f"evidence/{sha[:2]}/{sha[2:4]}/{sha}"
    head = bucket.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(JPEG)
    assert head["ContentType"] == "image/jpeg"
    assert [o["Key"] for o in bucket.list_objects_v2(Bucket=BUCKET)["Contents"]] == [key]
    assert not (tmp_path / "unused-media").exists()  # nothing on this machine's disk

    got = client.get(f"/api/v1/evidence/{sha}", headers=auth("viewer"))
    assert got.status_code == 200
    assert got.content == JPEG
    assert got.headers["content-type"] == "image/jpeg"
    assert got.headers["x-content-type-options"] == "nosniff"
    with sessions() as session:
        actions = session.scalars(select(AuditRow.action)).all()
    assert "view_evidence" in actions


def test_another_process_on_another_disk_serves_the_same_file(
    s3_url: str,
    bucket: Any,
    sessions: sessionmaker[Session],
    auth: Callable[[str], dict[str, str]],
    tmp_path: Path,
) -> None:
    sha = hashlib.sha256(JPEG).hexdigest()
    first = client_for(settings_for(s3_url, tmp_path / "one"), sessions)
    second = client_for(settings_for(s3_url, tmp_path / "two"), sessions)
    assert first.put(f"/api/v1/evidence/{sha}", content=JPEG, headers=auth("admin")).is_success
    assert second.get(f"/api/v1/evidence/{sha}", headers=auth("viewer")).content == JPEG


def test_with_presigning_the_view_is_audited_then_sent_to_the_bucket(
    s3_url: str,
    bucket: Any,
    sessions: sessionmaker[Session],
    auth: Callable[[str], dict[str, str]],
    tmp_path: Path,
) -> None:
    sha = hashlib.sha256(JPEG).hexdigest()
    client = client_for(settings_for(s3_url, tmp_path, evidence_presign_s=60), sessions)
    client.put(f"/api/v1/evidence/{sha}", content=JPEG, headers=auth("admin"))

    answer = client.get(f"/api/v1/evidence/{sha}", headers=auth("viewer"), follow_redirects=False)

    assert answer.status_code == 307
    url = answer.headers["location"]
    assert url.startswith(s3_url)
    assert "X-Amz-Expires=60" in url or "Expires=" in url
    fetched = httpx.get(url, timeout=10)
    assert fetched.status_code == 200 and fetched.content == JPEG
    assert fetched.headers["content-type"] == "image/jpeg"
    with sessions() as session:
        assert "view_evidence" in session.scalars(select(AuditRow.action)).all()


def sweep_after_40_days(settings: ServerSettings, sessions: sessionmaker[Session]) -> int:
    """Every file made 40 days old, then the retention sweep (30 days): how many it deleted."""
    old = datetime.now(UTC) - timedelta(days=40)
    with sessions() as session, session.begin():
        session.execute(update(EvidenceRow).values(created_at=old))
    with sessions() as session:
        return sweep_evidence(
            session, settings.blob_store(), RetentionPolicy({}, 30.0), datetime.now(UTC)
        )


def test_the_retention_sweep_deletes_the_object(
    s3_url: str,
    bucket: Any,
    sessions: sessionmaker[Session],
    auth: Callable[[str], dict[str, str]],
    tmp_path: Path,
) -> None:
    settings = settings_for(s3_url, tmp_path)
    client = client_for(settings, sessions)
    sha = hashlib.sha256(JPEG).hexdigest()
    client.put(f"/api/v1/evidence/{sha}", content=JPEG, headers=auth("admin"))
    deleted = sweep_after_40_days(settings, sessions)

    assert deleted == 1
    assert bucket.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0


def test_the_sweep_keeps_the_objects_of_an_incident_on_legal_hold(
    s3_url: str,
    bucket: Any,
    sessions: sessionmaker[Session],
    auth: Callable[[str], dict[str, str]],
    tmp_path: Path,
) -> None:
    """Two expired snapshots in the bucket, each cited by its own incident; the one whose
    incident is on legal hold stays in the bucket, the other is deleted."""
    settings = settings_for(s3_url, tmp_path)
    client = client_for(settings, sessions)
    files = [JPEG + b"one", JPEG + b"two"]
    shas = [hashlib.sha256(data).hexdigest() for data in files]
    for index, (sha, data) in enumerate(zip(shas, files, strict=True)):
        put = client.put(f"/api/v1/evidence/{sha}", content=data, headers=auth("edge"))
        assert put.status_code == 201
        snapshot = {"kind": "snapshot", "sha256": sha, "content_type": "image/jpeg", "url": "x"}
        message = event_message(event_id=f"e{index}", zone_id=f"z{index}", evidence=[snapshot])
        posted = client.post("/api/v1/events", json=message, headers=auth("edge"))
        assert posted.status_code in (200, 201), posted.text
    listed = client.get("/api/v1/incidents", headers=auth("viewer")).json()["items"]
    held = next(item for item in listed if item["event_id"] == "e1")
    hold = client.post(f"/api/v1/incidents/{held['id']}/hold", headers=auth("admin"))
    assert hold.json()["legal_hold"] is True
    deleted = sweep_after_40_days(settings, sessions)

    assert deleted == 1
    keys = [o["Key"] for o in bucket.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert keys == [f"evidence/{shas[1][:2]}/{shas[1][2:4]}/{shas[1]}"]
    got = client.get(f"/api/v1/evidence/{shas[1]}", headers=auth("viewer"))
    assert (got.status_code, got.content) == (200, files[1])


def test_a_bucket_that_refuses_writes_shows_in_healthz(
    s3_url: str,
    sessions: sessionmaker[Session],
    auth: Callable[[str], dict[str, str]],
    tmp_path: Path,
) -> None:
    """No bucket at all (never created): the upload is a 503, /healthz says media false."""
    client = client_for(settings_for(s3_url, tmp_path), sessions)
    sha = hashlib.sha256(JPEG).hexdigest()
    refused = client.put(f"/api/v1/evidence/{sha}", content=JPEG, headers=auth("admin"))
    assert refused.status_code == 503  # the edge keeps the file and tries again later
    assert "NoSuchBucket" in refused.json()["detail"]
    assert client.get("/healthz").json()["media"] is False
