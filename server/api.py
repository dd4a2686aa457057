"""The REST API of the server (contract section 5): routes only, built by `create_app`.

Routes parse HTTP, call a service or a repository and return a model; SQL lives in
`server.repositories`, decisions in `server.ingest` and `server.evidence`. Every collaborator
is passed in (no import-time globals); the caller runs the MQTT consumer beside the app.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response, status
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy import Engine
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session

from common.events import Event, EventState, EventType
from server import audit
from server.auth import Principal, bearer, require_role
from server.command_api import ROUTERS, client_ip
from server.dashboard import mount_dashboard
from server.db.session import database_answers, make_session_factory
from server.errors import (
    EvidenceMismatch,
    EvidenceNotFound,
    ForeignIds,
    PayloadTooLarge,
    ServerError,
    StorageFull,
    StorageUnavailable,
    UnstorableInput,
    UnsupportedMedia,
)
from server.evidence import (
    DEFAULT_CONTENT_TYPE,
    SHA256_PATTERN,
    SPOOL_IN_MEMORY,
    EvidenceService,
    Upload,
    served_type,
)
from server.http_guard import SANDBOX_CSP, BodyLimits, SecurityHeaders, safe_validation_error
from server.incidents import evidence_sites
from server.ingest import IngestService, utc_representable
from server.metrics import CONTENT_TYPE, MESSAGES_REJECTED, render
from server.notify import Notifier, StreamHub
from server.repositories import EdgeRepository, EventRepository
from server.schemas import (
    EdgeList,
    EventFilter,
    EventPage,
    EvidenceStored,
    Health,
    StoredResponse,
)
from server.settings import ServerSettings
from server.storage import BlobStore

log = logging.getLogger(__name__)

EVENTS_PATH = "/api/v1/events"
DEFAULT_PAGE = 50
MAX_PAGE = 500
_STATUS_OF: dict[type[ServerError], int] = {
    EvidenceMismatch: status.HTTP_400_BAD_REQUEST,
    EvidenceNotFound: status.HTTP_404_NOT_FOUND,
    PayloadTooLarge: status.HTTP_413_CONTENT_TOO_LARGE,
    UnstorableInput: status.HTTP_422_UNPROCESSABLE_CONTENT,
    UnsupportedMedia: status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
    ForeignIds: status.HTTP_409_CONFLICT,
    StorageFull: status.HTTP_507_INSUFFICIENT_STORAGE,
    StorageUnavailable: status.HTTP_503_SERVICE_UNAVAILABLE,
}

# Dependencies ---------------------------------------------------------------------------------


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.session_factory() as session:
        yield session


def get_ingest(request: Request) -> IngestService:
    service: IngestService = request.app.state.ingest
    return service


def get_evidence(request: Request) -> EvidenceService:
    service: EvidenceService = request.app.state.evidence
    return service


SessionDep = Annotated[Session, Depends(get_session)]
IngestDep = Annotated[IngestService, Depends(get_ingest)]
EvidenceDep = Annotated[EvidenceService, Depends(get_evidence)]
Sha256 = Annotated[str, PathParam(pattern=SHA256_PATTERN, description="lowercase hex sha256")]
Viewer = Annotated[Principal, Depends(require_role("viewer"))]

# Routes ---------------------------------------------------------------------------------------

health = APIRouter(tags=["health"])
events = APIRouter(prefix="/api/v1/events", tags=["events"])
evidence = APIRouter(prefix="/api/v1/evidence", tags=["evidence"])
edges = APIRouter(prefix="/api/v1/edges", tags=["edges"])


@health.get("/healthz", response_model=Health)
def healthz(request: Request) -> JSONResponse:
    """200 when the database answers, the broker is connected and MQTT ingestion runs (the
    consumer subscribed, its worker alive, its store answering), else 503 naming which.
    `media` false (status "degraded", still 200: alerts flow) while the media folder is too
    full for the evidence uploads that failed."""
    database = database_answers(request.app.state.engine)
    broker = bool(request.app.state.broker_connected())
    ingest = bool(request.app.state.ingest_healthy())
    media = request.app.state.evidence.writable()
    good = database and broker and ingest
    body = Health(
        status=("ok" if media else "degraded") if good else "unavailable",
        database=database,
        broker=broker,
        ingest=ingest,
        media=media,
    )
    code = status.HTTP_503_SERVICE_UNAVAILABLE if not good else status.HTTP_200_OK
    return JSONResponse(body.model_dump(), status_code=code)


_metrics_reader = require_role("viewer")


@health.get(
    "/metrics",
    response_class=Response,
    responses={401: {"description": "A token is needed unless metrics_public is set"}},
)
def metrics(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Response:
    """Prometheus text format; a viewer-rank bearer token unless `metrics_public` is set."""
    settings: ServerSettings = request.app.state.settings
    if not settings.metrics_public:
        _metrics_reader(request, credentials)
    return Response(render(), media_type=CONTENT_TYPE)


@health.get("/openapi.json", include_in_schema=False)
def openapi_schema(
    request: Request, _admin: Annotated[Principal, Depends(require_role("admin"))]
) -> JSONResponse:
    """The OpenAPI schema, to admins, when `api_docs` is set (404 otherwise)."""
    settings: ServerSettings = request.app.state.settings
    if not settings.api_docs:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
    return JSONResponse(request.app.openapi())


@events.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": StoredResponse, "description": "Stored already (a duplicate)"},
        403: {"description": "The role may not send events, or the site is not the caller's"},
    },
)
def post_event(
    event: Event,
    response: Response,
    ingest: IngestDep,
    principal: Annotated[Principal, Depends(require_role("edge", "operator"))],
) -> StoredResponse:
    """Ingest one event message; idempotent on (event_id, seq): 201 new, 200 duplicate.

    A site-scoped user may only send events of their own sites."""
    if not principal.may_see(event.site_id):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"site {event.site_id} is outside your sites"
        )
    if not utc_representable(event.observed_at):
        MESSAGES_REJECTED.labels("invalid_event").inc()
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "observed_at is out of range once in UTC"
        )
    stored = ingest.ingest(event, source="http")
    response.status_code = status.HTTP_201_CREATED if stored else status.HTTP_200_OK
    return StoredResponse(stored=stored)


@events.get("")
def list_events(
    session: SessionDep,
    principal: Viewer,
    site_id: str | None = None,
    camera_id: str | None = None,
    type: EventType | None = None,
    state: EventState | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> EventPage:
    """Stored event messages (of the caller's sites), newest first, with the total matching
    the filters; 403 for a `site_id` outside the caller's sites."""
    if site_id is not None and not principal.may_see(site_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"site {site_id} is outside your sites")
    filters = EventFilter(
        site_id=site_id, camera_id=camera_id, type=type, state=state, sites=principal.sites
    )
    items, total = EventRepository(session).list_newest(filters, limit=limit, offset=offset)
    return EventPage(items=items, total=total)


@evidence.put(
    "/{sha256}",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": EvidenceStored, "description": "Stored already"},
        403: {"description": "The event_id belongs to a site outside the caller's"},
        415: {"description": "Not a JPEG, PNG or MP4 file"},
    },
)
async def put_evidence(
    sha256: Sha256,
    request: Request,
    response: Response,
    service: EvidenceDep,
    principal: Annotated[Principal, Depends(require_role("edge", "admin"))],
    event_id: Annotated[str | None, Query(max_length=128)] = None,
) -> EvidenceStored:
    """Upload a file under its sha256 (raw body); 400 when the bytes hash otherwise. An
    `event_id` must be of the caller's sites (checked before it is used)."""
    if event_id is not None and principal.sites is not None:
        sites = await run_in_threadpool(_event_sites, request, event_id)
        if sites - principal.sites:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "that event is outside your sites")
    with await _receive(request, service.max_bytes) as upload:
        result = await run_in_threadpool(
            service.store,
            sha256,
            upload,
            content_type=request.headers.get("content-type"),
            event_id=event_id,
        )
    response.status_code = status.HTTP_201_CREATED if result.stored else status.HTTP_200_OK
    return result


@evidence.get(
    "/{sha256}",
    response_class=FileResponse,
    responses={307: {"description": "evidence_presign_s set: a short-lived bucket URL"}},
)
def get_evidence_file(
    sha256: Sha256,
    service: EvidenceDep,
    request: Request,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require_role("viewer", query_token=True))],
    token: Annotated[str | None, Query(max_length=256, description="Bearer token (<img>)")] = None,
    download: bool = False,
) -> Response:
    """The file, as the type the server found in its bytes (JPEG, PNG, MP4), in a sandbox
    (CSP), never sniffed; anything else only as a download. Every view is audited. From an
    object store it is streamed through the server, or (evidence_presign_s) the browser is
    sent to a URL of the bucket valid that long."""
    del token  # read by the dependency
    info, path = service.find(sha256)
    if principal.sites is not None:
        sites = evidence_sites(session, sha256)
        if not sites & principal.sites:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "that evidence is outside your sites")
    audit.record(
        session,
        actor=principal.name,
        role=principal.role,
        action="download_evidence" if download else "view_evidence",
        target=f"evidence {sha256}",
        client_ip=client_ip(request),
        at=datetime.now(UTC),
        details={"content_type": info.content_type},
    )
    session.commit()
    media_type = served_type(info.content_type)
    inline = not download and media_type != DEFAULT_CONTENT_TYPE
    headers = {
        "Content-Disposition": f'{"inline" if inline else "attachment"}; filename="{sha256[:16]}"',
        "Content-Security-Policy": SANDBOX_CSP,
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, no-cache",
    }
    if path is not None:
        return FileResponse(path, media_type=media_type, headers=headers)
    settings: ServerSettings = request.app.state.settings
    if settings.evidence_presign_s and not download:
        url = service.presign(
            sha256, expires_s=settings.evidence_presign_s, content_type=media_type
        )
        if url is not None:
            return RedirectResponse(url, status_code=status.HTTP_307_TEMPORARY_REDIRECT)
    headers["Content-Length"] = str(info.size)
    return StreamingResponse(service.chunks(sha256), media_type=media_type, headers=headers)


@evidence.head("/{sha256}")
def head_evidence_file(
    sha256: Sha256,
    service: EvidenceDep,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require_role("edge", "viewer"))],
) -> Response:
    """200 with type and size when the file is stored (the edge checks before uploading)."""
    info, _ = service.find(sha256)
    if principal.sites is not None and not evidence_sites(session, sha256) & principal.sites:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "that evidence is outside your sites")
    headers = {"Content-Length": str(info.size)}
    media_type = served_type(info.content_type)
    return Response(status_code=status.HTTP_200_OK, headers=headers, media_type=media_type)


@edges.get("")
def list_edges(session: SessionDep, principal: Viewer) -> EdgeList:
    """Each edge's and camera's online state and last-seen time (of the caller's sites)."""
    items = [e for e in EdgeRepository(session).list_edges() if principal.may_see(e.site_id)]
    return EdgeList(items=items, total=len(items))


# Helpers --------------------------------------------------------------------------------------


def _event_sites(request: Request, event_id: str) -> set[str]:
    with request.app.state.session_factory() as session:
        owners = EventRepository(session).owners({event_id})
    return {site for site, _ in owners.get(event_id, set())}


def _declared_length(request: Request) -> int:
    try:
        return int(request.headers.get("content-length", "0"))
    except ValueError:
        return 0


async def _receive(request: Request, limit: int) -> Upload:
    """The request body as an `Upload` (hashed as it comes, spooled to a temporary file past
    1 MiB), refused (413) as soon as it grows past `limit` bytes."""
    if _declared_length(request) > limit:
        raise PayloadTooLarge(f"body larger than {limit} bytes")
    upload = Upload(limit)
    try:
        async for chunk in request.stream():
            if upload.size + len(chunk) > SPOOL_IN_MEMORY:  # on disk: off the event loop
                await run_in_threadpool(upload.write, chunk)
            else:
                upload.write(chunk)
    except BaseException:
        upload.close()
        raise
    return upload


async def _server_error(request: Request, error: Exception) -> JSONResponse:  # noqa: ARG001
    code = next(
        (code for kind, code in _STATUS_OF.items() if isinstance(error, kind)),
        status.HTTP_400_BAD_REQUEST,
    )
    return JSONResponse({"detail": str(error)}, status_code=code)


async def _unstorable(request: Request, error: Exception) -> JSONResponse:
    """422 for input the database refuses as data (PostgreSQL: a NUL character in a text,
    a number out of range): bad input, not a server fault."""
    if request.method == "POST" and request.url.path == EVENTS_PATH:
        MESSAGES_REJECTED.labels("invalid_event").inc()
    cause = getattr(error, "orig", None) or error
    log.info(
        "refused input the database cannot take: %s %s: %s",
        request.method,
        request.url.path,
        str(cause).partition("\n")[0][:200],
    )
    return JSONResponse(
        {"detail": "a value in the request cannot be stored (a NUL character or out of range)"},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


def create_app(
    settings: ServerSettings,
    engine: Engine,
    *,
    ingest: IngestService,
    broker_connected: Callable[[], bool],
    notifier: Notifier | None = None,
    ingest_healthy: Callable[[], bool] | None = None,
    blobs: BlobStore | None = None,
) -> FastAPI:
    """The REST API on `engine` (already migrated); `broker_connected` and `ingest_healthy`
    (the MQTT consumer's own health; None: as `broker_connected`) feed /healthz.

    Without a `notifier`, one is made on a new stream hub and registered with `ingest`.
    """
    # No /docs or /redoc page (their scripts come from a CDN); the schema only to admins, and
    # only with `api_docs` (issue 14).
    app = FastAPI(
        title="Zhizhi server",
        version="1",
        summary="Zhizhi central server API",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    session_factory = make_session_factory(engine)
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = session_factory
    app.state.ingest = ingest
    app.state.broker_connected = broker_connected
    app.state.ingest_healthy = ingest_healthy or broker_connected
    app.state.evidence = EvidenceService(
        session_factory,
        blobs if blobs is not None else settings.blob_store(),
        max_bytes=settings.max_evidence_bytes,
    )
    if notifier is None:
        notifier = Notifier(session_factory, StreamHub(), ingest.policy.dispatch)
        ingest.add_listener(notifier)
        ingest.add_outbox(notifier.write_outbox)
    app.state.notifier = notifier
    for router in (health, events, evidence, edges, *ROUTERS):
        app.include_router(router)
    from server.models_api import router as models_router  # model roll-out (issue 7)
    from server.routes import (
        dead_letters,  # refused MQTT messages (issue 14)
        members,  # the server processes of the group (issue 18)
    )

    app.include_router(models_router)
    app.include_router(dead_letters.router)
    app.include_router(members.router)
    app.add_exception_handler(ServerError, _server_error)
    app.add_exception_handler(RequestValidationError, safe_validation_error)
    app.add_exception_handler(DataError, _unstorable)
    mount_dashboard(app)  # GET / and /dashboard/...: the command center's web page
    # Every body within the shared input limits, however it arrives (chunked too), and the
    # security headers on every answer, refusals included (the outermost middleware).
    app.add_middleware(BodyLimits, max_bytes=settings.max_payload_bytes)
    app.add_middleware(SecurityHeaders)
    return app
