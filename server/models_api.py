"""Model files for the roll-out (issue 7): an admin uploads an ONNX file under its name and
version, edges download it. Files live in `media_dir/models/{name}/{version}/model.onnx`
with `meta.json` (sha256, size, who, when); a version once uploaded never changes.

    PUT /api/v1/models/{name}/{version}?sha256=HEX   raw body; admin; 201, or 200 if the same
    GET /api/v1/models/{name}/{version}              the file; role edge (or viewer and up)
    GET /api/v1/models/{name}/{version}/meta         its sha256 and size
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict

from server.auth import Principal, require_role
from server.settings import ServerSettings

MAX_MODEL_BYTES = 256 * 1024 * 1024
NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"
VERSION = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,62}$"

router = APIRouter(prefix="/api/v1/models", tags=["models"])
NameParam = Annotated[str, PathParam(pattern=NAME)]
VersionParam = Annotated[str, PathParam(pattern=VERSION)]


class ModelFileMeta(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    version: str
    sha256: str
    size: int
    uploaded_by: str
    uploaded_at: datetime


def _folder(request: Request, name: str, version: str) -> Path:
    settings: ServerSettings = request.app.state.settings
    return Path(settings.media_dir) / "models" / name / version


def _meta(folder: Path) -> ModelFileMeta | None:
    path = folder / "meta.json"
    return ModelFileMeta.model_validate_json(path.read_text()) if path.is_file() else None


@router.put("/{name}/{version}", status_code=status.HTTP_201_CREATED)
async def put_model(
    name: NameParam,
    version: VersionParam,
    request: Request,
    response: Response,
    principal: Annotated[Principal, Depends(require_role("admin"))],
    sha256: Annotated[str, Query(pattern=r"^[0-9a-f]{64}$")],
) -> ModelFileMeta:
    """Store the body as this model version; 400 when it does not hash to `sha256`, 409 when
    the version exists with other bytes, 200 when it exists with these."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_MODEL_BYTES:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "model file too large")
        chunks.append(chunk)
    folder = _folder(request, name, version)
    meta, created = await run_in_threadpool(
        _store, folder, b"".join(chunks), name, version, sha256, principal.name
    )
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return meta


def _store(
    folder: Path, data: bytes, name: str, version: str, sha256: str, who: str
) -> tuple[ModelFileMeta, bool]:
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"body has sha256 {actual}, not {sha256}")
    existing = _meta(folder)
    if existing is not None:
        if existing.sha256 != sha256:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"{name} {version} exists with sha256 {existing.sha256}; upload a new version",
            )
        return existing, False
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, suffix=".part")
    with os.fdopen(handle, "wb") as stream:
        stream.write(data)
    Path(temporary).replace(folder / "model.onnx")
    meta = ModelFileMeta(
        name=name,
        version=version,
        sha256=sha256,
        size=len(data),
        uploaded_by=who,
        uploaded_at=datetime.now(UTC),
    )
    (folder / "meta.json").write_text(meta.model_dump_json())
    return meta, True


@router.get(
    "/{name}/{version}",
    response_class=FileResponse,
    dependencies=[Depends(require_role("edge", "viewer"))],
)
def get_model(name: NameParam, version: VersionParam, request: Request) -> FileResponse:
    """The ONNX file, with its sha256 in `X-Content-SHA256` (the edge checks it again)."""
    folder = _folder(request, name, version)
    meta = _meta(folder)
    if meta is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no model {name} version {version}")
    return FileResponse(
        folder / "model.onnx",
        media_type="application/octet-stream",
        headers={"X-Content-SHA256": meta.sha256},
    )


@router.get("/{name}/{version}/meta", dependencies=[Depends(require_role("edge", "viewer"))])
def get_model_meta(name: NameParam, version: VersionParam, request: Request) -> ModelFileMeta:
    meta = _meta(_folder(request, name, version))
    if meta is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no model {name} version {version}")
    return meta


def model_url(server: str, name: str, version: str) -> str:
    return f"{server.rstrip('/')}/api/v1/models/{name}/{version}"


__all__ = ["ModelFileMeta", "model_url", "router"]
