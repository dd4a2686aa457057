"""What every HTTP request and response passes through (issue 14): the shared input limits on
request bodies, safe validation errors, security headers.

`BodyLimits` (ASGI middleware) reads each request body as it arrives, counting bytes whatever
the framing (a chunked body has no Content-Length to trust), and refuses:

- 413 for more than `max_bytes`, unless the body is a file upload (`image/*`, `video/*`,
  `application/octet-stream`, `multipart/*`): those routes stream with their own, larger limits;
- 422 for a JSON body (or one with no Content-Type that parses as JSON, which FastAPI reads as
  JSON) outside `common.limits` (depth, NaN/Infinity, 64-bit integers, NUL and lone
  surrogates): the same limits the MQTT consumer applies.

`safe_validation_error` answers a 422 like FastAPI does, without echoing the input (a
password, a NaN that cannot be serialised, a lone surrogate that cannot be encoded).

`SecurityHeaders` puts the headers below on every response; evidence files override the CSP
with a sandbox of their own (server/api.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.limits import InputLimits, InputRefused, clean_text, parse_json
from server.metrics import MESSAGES_REJECTED

log = logging.getLogger(__name__)

UPLOAD_TYPES = ("image/", "video/", "application/octet-stream", "multipart/")
EVENTS_PATH = "/api/v1/events"

# The dashboard is plain ES modules and CSS from this server (no CDN, no inline script):
# nothing else may run, frame it, or be sent the page's address with its ?token= links.
DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
    "img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# A file someone uploaded, opened on its own: never a page that can run anything.
SANDBOX_CSP = "default-src 'none'; img-src 'self'; media-src 'self'; sandbox"
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": DASHBOARD_CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


class BodyLimits:
    """ASGI middleware: request bodies within `max_bytes`, JSON bodies within the limits."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.limits = InputLimits(max_bytes=max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        content_type = _header(scope, b"content-type").split(";", 1)[0].strip().lower()
        if content_type.startswith(UPLOAD_TYPES):
            await self.app(scope, receive, send)
            return
        body: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.limits.max_bytes:
                _count(scope, "oversized")
                detail = f"request body larger than {self.limits.max_bytes} bytes"
                await _answer(scope, receive, send, 413, {"detail": detail})
                return
            body.append(chunk)
            more = bool(message.get("more_body", False))
        data = b"".join(body)
        if data and (not content_type or content_type.endswith(("/json", "+json"))):
            try:
                parse_json(data, self.limits)
            except InputRefused as refused:
                if not content_type and refused.reason in ("bad_json", "not_utf8"):
                    # Not JSON at all: raw bytes for a route that takes them; a JSON route
                    # answers 422 on its own (FastAPI cannot parse it).
                    await self.app(scope, _replay(data, receive), send)
                    return
                _count(scope, refused.reason)
                problem = {"type": refused.reason, "loc": ["body"], "msg": refused.detail}
                await _answer(scope, receive, send, 422, {"detail": [problem]})
                return
        await self.app(scope, _replay(data, receive), send)


class SecurityHeaders:
    """ASGI middleware: the security headers on every response (a route's own win)."""

    def __init__(self, app: ASGIApp, headers: dict[str, str] | None = None) -> None:
        self.app = app
        self.headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in (headers or SECURITY_HEADERS).items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in self.headers if n not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def safe_validation_error(request: Request, error: Exception) -> JSONResponse:
    """FastAPI's 422, without the input values: type, location and message of each problem."""
    if not isinstance(error, RequestValidationError):
        raise TypeError(f"unexpected {type(error).__name__}")
    if request.method == "POST" and request.url.path == EVENTS_PATH:
        MESSAGES_REJECTED.labels("invalid_event").inc()
    problems = [
        {
            "type": clean_text(str(item.get("type", "invalid")), 64),
            "loc": [_location(part) for part in item.get("loc", ())],
            "msg": clean_text(str(item.get("msg", "")), 300),
        }
        for item in error.errors()
    ]
    log.info(
        "refused an invalid request: %s %s: %s",
        request.method,
        request.url.path,
        "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in problems[:3]),
    )
    return JSONResponse({"detail": problems}, status_code=422)


def _location(part: object) -> str | int:
    return part if isinstance(part, int) else clean_text(str(part), 64)


def _header(scope: Scope, name: bytes) -> str:
    headers: Iterable[tuple[bytes, bytes]] = scope.get("headers", [])
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def _count(scope: Scope, reason: str) -> None:
    if scope["method"] == "POST" and scope.get("path") == EVENTS_PATH:
        MESSAGES_REJECTED.labels(reason).inc()
    log.info("refused a request body: %s %s: %s", scope["method"], scope.get("path"), reason)


def _replay(data: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body read already, then waits on the client."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": data, "more_body": False}
        return await receive()

    return replay


async def _answer(
    scope: Scope, receive: Receive, send: Send, status: int, body: dict[str, Any]
) -> None:
    response = JSONResponse(body, status_code=status, headers={"Connection": "close"})
    await response(scope, receive, send)
