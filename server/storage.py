"""Where evidence files live: the local disk (the embedded default) or an S3-compatible object
store (MinIO, 阿里云 OSS, 腾讯云 COS, AWS S3), so that several server processes on several
machines serve the same files (issue 16).

Files are content-addressed: the key is `ab/cd/<sha256>` (under a prefix in a bucket). The
evidence service checks a file's sha256 before it is stored; the object store checks it again
(`ChecksumSHA256` on the PUT), so a file corrupted on the way is refused, not kept.
"""

from __future__ import annotations

import base64
import errno
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from server.errors import EvidenceNotFound, StorageFull, StorageUnavailable

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024


class BlobStore(Protocol):
    """What the evidence service needs of a place to keep files."""

    def describe(self) -> str: ...

    def size(self, key: str) -> int | None:
        """The stored object's size; None when there is none."""
        ...

    def put(self, key: str, body: IO[bytes], *, size: int, content_type: str, sha256: str) -> None:
        """Store `size` bytes read from `body` (from its start) under `key`, whole or not at
        all; StorageFull when there is no room."""
        ...

    def local_path(self, key: str) -> Path | None:
        """A file on this machine (served as it is), or None for a remote store."""
        ...

    def chunks(self, key: str) -> Iterator[bytes]:
        """The object's bytes; EvidenceNotFound when it is missing."""
        ...

    def delete(self, key: str) -> None: ...

    def presign(self, key: str, *, expires_s: int, content_type: str, filename: str) -> str | None:
        """A short-lived URL a browser may fetch the object from (None: not offered)."""
        ...

    def writable(self) -> bool:
        """Whether it takes files now (the local disk after it ran full: False until there is
        room again)."""
        ...


def _write_atomically(path: Path, body: IO[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.part")
    try:
        with temporary.open("wb") as stream:
            body.seek(0)
            shutil.copyfileobj(body, stream, CHUNK)
            stream.flush()
            os.fsync(stream.fileno())
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


class LocalStore:
    """media_dir/ab/cd/<sha256>: written to a temporary name, fsynced, renamed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._needed = 0  # bytes of the last file refused for want of space (0: none)

    def describe(self) -> str:
        return f"folder {self.root}"

    def size(self, key: str) -> int | None:
        path = self.root / key
        return path.stat().st_size if path.is_file() else None

    def put(self, key: str, body: IO[bytes], *, size: int, content_type: str, sha256: str) -> None:
        del content_type, sha256  # the name is the hash; the type lives in the database
        try:
            _write_atomically(self.root / key, body)
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            self._needed = size
            log.error("media folder %s is full: %s not stored", self.root, key)
            raise StorageFull(f"the media folder is full; {size} bytes wait") from None
        self._needed = 0

    def local_path(self, key: str) -> Path | None:
        return self.root / key

    def chunks(self, key: str) -> Iterator[bytes]:
        try:
            stream = (self.root / key).open("rb")
        except FileNotFoundError:
            raise EvidenceNotFound(key) from None
        with stream:
            while block := stream.read(CHUNK):
                yield block

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def presign(self, key: str, *, expires_s: int, content_type: str, filename: str) -> str | None:
        del key, expires_s, content_type, filename
        return None

    def writable(self) -> bool:
        if not self._needed:
            return True
        try:
            free = shutil.disk_usage(self.root).free
        except OSError:
            return False
        if free > self._needed + 64 * 1024:
            self._needed = 0
        return not self._needed


@dataclass(frozen=True, slots=True)
class S3Config:
    """An S3-compatible bucket. `addressing`: "path" for MinIO and most private installs,
    "virtual" for 阿里云 OSS and 腾讯云 COS (bucket.endpoint)."""

    bucket: str
    endpoint_url: str | None = None
    region: str = "us-east-1"
    prefix: str = "evidence/"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    addressing: Literal["path", "virtual", "auto"] = "path"


class S3Store:
    """Evidence in a bucket through boto3 (the maintained AWS SDK, which MinIO, OSS and COS
    all answer)."""

    def __init__(self, config: S3Config, *, client: Any | None = None) -> None:
        self.config = config
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                "s3",
                endpoint_url=config.endpoint_url,
                region_name=config.region,
                aws_access_key_id=config.access_key_id,
                aws_secret_access_key=config.secret_access_key,
                config=Config(
                    s3={"addressing_style": config.addressing},
                    retries={"max_attempts": 5, "mode": "standard"},
                    connect_timeout=5,
                    read_timeout=30,
                ),
            )
        self._client = client
        self._failed = False

    def describe(self) -> str:
        where = self.config.endpoint_url or "AWS"
        return f"bucket {self.config.bucket} at {where} (prefix {self.config.prefix!r})"

    def _key(self, key: str) -> str:
        return f"{self.config.prefix}{key}"

    def size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            head = self._client.head_object(Bucket=self.config.bucket, Key=self._key(key))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return int(head["ContentLength"])

    def put(self, key: str, body: IO[bytes], *, size: int, content_type: str, sha256: str) -> None:
        checksum = base64.b64encode(bytes.fromhex(sha256)).decode("ascii")
        try:
            body.seek(0)
            self._client.put_object(  # streamed from the file (a retry seeks back)
                Bucket=self.config.bucket,
                Key=self._key(key),
                Body=body,
                ContentLength=size,
                ContentType=content_type,
                ChecksumSHA256=checksum,  # the store refuses bytes that hash otherwise
            )
        except Exception as error:  # botocore's errors: down, refused, no such bucket
            self._failed = True
            log.error("evidence %s not stored in %s: %s", key, self.describe(), error)
            raise StorageUnavailable(f"the object store did not take the file: {error}") from error
        self._failed = False

    def local_path(self, key: str) -> Path | None:
        del key
        return None

    def chunks(self, key: str) -> Iterator[bytes]:
        from botocore.exceptions import ClientError

        try:
            answer = self._client.get_object(Bucket=self.config.bucket, Key=self._key(key))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise EvidenceNotFound(key) from None
            raise
        body = answer["Body"]
        try:
            yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self.config.bucket, Key=self._key(key))

    def presign(self, key: str, *, expires_s: int, content_type: str, filename: str) -> str | None:
        url: str = self._client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.config.bucket,
                "Key": self._key(key),
                "ResponseContentType": content_type,
                "ResponseContentDisposition": f'inline; filename="{filename}"',
            },
            ExpiresIn=expires_s,
        )
        return url

    def writable(self) -> bool:
        return not self._failed
