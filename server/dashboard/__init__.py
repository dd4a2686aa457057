"""The command center's dashboard: static ES modules and CSS, served by the server at `/`.

No build step: the browser loads `web/` as it is (no CDN, so an offline command center works).
`mount_dashboard` adds `GET /` (the page) and `/dashboard/...` (its assets) to an app; the
dashboard talks to the REST API under `/api/v1` with the bearer token it gets at login.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.staticfiles import PathLike
from starlette.types import Scope

WEB_DIR = Path(__file__).resolve().parent / "web"
ASSETS_PATH = "/dashboard"
# The page and its modules change with each release; let the browser revalidate every time.
NO_CACHE = {"Cache-Control": "no-cache"}


class _RevalidatedFiles(StaticFiles):
    """StaticFiles whose responses carry `Cache-Control: no-cache` (ETag revalidation)."""

    def file_response(
        self,
        full_path: PathLike,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(NO_CACHE)
        return response


def mount_dashboard(app: FastAPI) -> None:
    """Serve the dashboard page at `/` and its assets under `/dashboard/`."""

    @app.get("/", include_in_schema=False)
    def dashboard_page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html", headers=NO_CACHE)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        """What a browser asks for before it reads the page's icon link (no 404 in its log)."""
        return FileResponse(WEB_DIR / "favicon.svg", media_type="image/svg+xml", headers=NO_CACHE)

    app.mount(ASSETS_PATH, _RevalidatedFiles(directory=WEB_DIR), name="dashboard")
