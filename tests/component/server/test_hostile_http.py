"""The REST API attacked as an outsider and as a careless or compromised edge (issue 14).

Each test reproduces one attack of the issue; on the code before the fix it fails.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from server import users
from server.db.models import EventRow, EvidenceRow
from server.evidence import relative_path
from server.main import uvicorn_options
from server.settings import ServerSettings
from server.users import create_user
from tests.support.mosquitto import free_port

Headers = Callable[[str], dict[str, str]]
Message = Callable[..., dict[str, Any]]
EVENTS = "/api/v1/events"
RIGHT = "right-password"  # the test user's password


def stored_events(session_factory: sessionmaker[Session]) -> int:
    with session_factory() as session:
        return int(session.scalar(select(func.count(EventRow.id))) or 0)


def chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    """A body sent with Transfer-Encoding: chunked: no Content-Length to check."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


# Item 6: chunked requests bypassed the 256 KiB event limit ---------------------------------


def test_a_chunked_event_larger_than_the_limit_is_refused(
    client: TestClient,
    auth: Headers,
    make_message: Message,
    session_factory: sessionmaker[Session],
) -> None:
    big = json.dumps(make_message(event_id="ev-big", details={"pad": "x" * 2_000_000})).encode()

    response = client.post(
        EVENTS,
        content=chunks(big),
        headers={**auth("edge"), "Content-Type": "application/json"},
    )

    assert response.status_code == 413, response.text[:200]
    assert stored_events(session_factory) == 0


def test_a_chunked_event_within_the_limit_is_stored(
    client: TestClient, auth: Headers, make_message: Message
) -> None:
    body = json.dumps(make_message(event_id="ev-chunked")).encode()

    response = client.post(
        EVENTS,
        content=chunks(body, 100),
        headers={**auth("edge"), "Content-Type": "application/json"},
    )

    assert response.status_code == 201, response.text


# Item 7: NaN, Infinity, 1e400 or a lone surrogate in any JSON body gave a 500 ---------------

POISON = {
    "NaN": "NaN",
    "Infinity": "Infinity",
    "-Infinity": "-Infinity",
    "1e400": "1e400",
    "lone surrogate": '"\\ud800"',
    "NUL": '"a\\u0000b"',
}
# (path, body with {} where the poison goes, role or None for anonymous)
BODIES: list[tuple[str, str, str | None]] = [
    ("/api/v1/auth/login", '{{"username": {}, "password": "whatever1"}}', None),
    ("/api/v1/auth/login", '{{"username": "admin", "password": "x", "extra": {}}}', None),
    (EVENTS, "EVENT", "edge"),
    ("/api/v1/silences", '{{"ends_at": "2030-01-01T00:00:00Z", "comment": {}}}', "operator"),
    ("/api/v1/incidents/1/ack", '{{"note": {}}}', "operator"),
]


@pytest.mark.parametrize("poison", list(POISON))
@pytest.mark.parametrize(("path", "template", "role"), BODIES)
def test_a_json_body_with_a_poison_value_is_a_422_never_a_500(
    client: TestClient,
    auth: Headers,
    make_message: Message,
    session_factory: sessionmaker[Session],
    path: str,
    template: str,
    role: str | None,
    poison: str,
) -> None:
    value = POISON[poison]
    if template == "EVENT":
        body = json.dumps(make_message(event_id="ev-poison")).replace(
            '"pts_s": 135.2', f'"pts_s": {value}'
        )
        assert value in body
    else:
        body = template.format(value)
    headers = {"Content-Type": "application/json", **(auth(role) if role else {})}

    response = client.post(path, content=body.encode(), headers=headers)

    assert response.status_code == 422, f"{response.status_code}: {response.text[:300]}"
    assert stored_events(session_factory) == 0


def test_an_infinite_time_in_an_event_is_refused_not_stored_as_null(
    client: TestClient, auth: Headers, make_message: Message
) -> None:
    body = json.dumps(make_message(event_id="ev-inf")).replace('"pts_s": 135.2', '"pts_s": 1e999')

    response = client.post(
        EVENTS, content=body.encode(), headers={**auth("edge"), "Content-Type": "application/json"}
    )

    assert response.status_code == 422
    listed = client.get(EVENTS, headers=auth("viewer")).json()
    assert listed["total"] == 0


def test_a_body_without_content_type_is_held_to_the_same_limits(
    client: TestClient, auth: Headers, make_message: Message
) -> None:
    """FastAPI reads a body with no Content-Type as JSON: the limits apply to it too."""
    body = json.dumps(make_message(event_id="ev-bare")).replace('"score": 0.87', '"score": NaN')

    response = client.post(EVENTS, content=body.encode(), headers=auth("edge"))

    assert response.status_code == 422


# Item 10 (part): a 422 echoed a submitted password --------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"password": "s3cret-Echo-1"},  # username missing: the whole body was echoed
        {"username": "admin", "password": "s3cret-Echo-1" * 100},  # too long: echoed
        {"username": "admin", "password": "s3cret-Echo-1", "otp": 1},  # an extra key
    ],
)
def test_a_refused_login_never_echoes_the_password(
    client: TestClient, body: dict[str, Any]
) -> None:
    response = client.post("/api/v1/auth/login", json=body)

    assert response.status_code == 422
    assert "s3cret-Echo-1" not in response.text
    assert response.json()["detail"][0]["loc"][0] == "body"


# Item 4: evidence was stored and served inline with the uploader's Content-Type -------------

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(64)) + b"\xff\xd9"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(32)
MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(32)
HTML = b"<html><script>fetch('/x?'+location.search)</script></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
XHTML = b'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"></html>'


def evidence_url(data: bytes) -> str:
    return f"/api/v1/evidence/{hashlib.sha256(data).hexdigest()}"


@pytest.mark.parametrize(
    ("data", "said"),
    [(HTML, "text/html"), (SVG, "image/svg+xml"), (XHTML, "application/xhtml+xml"), (HTML, "")],
)
def test_evidence_that_is_not_jpeg_png_or_mp4_is_refused(
    client: TestClient, auth: Headers, data: bytes, said: str
) -> None:
    headers = {**auth("edge"), **({"Content-Type": said} if said else {})}

    response = client.put(evidence_url(data), content=data, headers=headers)

    assert response.status_code == 415, response.text
    assert client.get(evidence_url(data), headers=auth("viewer")).status_code == 404


@pytest.mark.parametrize(
    ("data", "said", "served"),
    [
        (JPEG, "text/html", "image/jpeg"),  # the bytes decide, not the uploader
        (PNG, "image/svg+xml", "image/png"),
        (MP4, "application/octet-stream", "video/mp4"),
    ],
)
def test_evidence_is_served_as_the_type_its_bytes_show_in_a_sandbox(
    client: TestClient, auth: Headers, data: bytes, said: str, served: str
) -> None:
    put = client.put(
        evidence_url(data), content=data, headers={**auth("edge"), "Content-Type": said}
    )

    response = client.get(evidence_url(data), headers=auth("viewer"))

    assert put.status_code == 201 and put.json()["content_type"] == served
    assert response.headers["content-type"] == served
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in response.headers["content-security-policy"]
    assert response.headers["content-disposition"].startswith("inline")


def test_evidence_stored_before_with_another_type_is_only_a_download(
    client: TestClient,
    auth: Headers,
    settings: ServerSettings,
    session_factory: sessionmaker[Session],
) -> None:
    sha256 = hashlib.sha256(HTML).hexdigest()
    path = settings.media_dir / relative_path(sha256)
    path.parent.mkdir(parents=True)
    path.write_bytes(HTML)
    with session_factory() as session, session.begin():
        session.add(
            EvidenceRow(
                sha256=sha256,
                content_type="text/html",
                size=len(HTML),
                path=relative_path(sha256).as_posix(),
                created_at=datetime.now(UTC),
            )
        )

    response = client.get(evidence_url(HTML), headers=auth("viewer"))

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"].startswith("attachment")
    assert "sandbox" in response.headers["content-security-policy"]


# Item 9: security headers; /docs and /metrics open to anyone, /docs from a CDN --------------

HEADERS = (
    "content-security-policy",
    "x-frame-options",
    "x-content-type-options",
    "referrer-policy",
)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/"), ("GET", "/healthz"), ("GET", EVENTS), ("POST", EVENTS), ("GET", "/nowhere")],
)
def test_every_response_carries_the_security_headers(
    client: TestClient, method: str, path: str
) -> None:
    response = client.request(method, path, content=b"x" * 300_000 if method == "POST" else None)

    assert response.status_code in (200, 401, 404, 413), response.status_code
    for name in HEADERS:
        assert name in response.headers, (name, dict(response.headers))
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"])
def test_api_docs_are_not_served_by_default(client: TestClient, auth: Headers, path: str) -> None:
    assert client.get(path).status_code in (401, 404)
    assert client.get(path, headers=auth("admin")).status_code == 404


def test_with_api_docs_set_the_schema_goes_to_admins_and_no_page_loads_a_cdn(
    make_client: Callable[[ServerSettings], TestClient], settings: ServerSettings, auth: Headers
) -> None:
    client = make_client(settings.model_copy(update={"api_docs": True}))

    assert client.get("/openapi.json").status_code == 401
    assert client.get("/openapi.json", headers=auth("viewer")).status_code == 403
    schema = client.get("/openapi.json", headers=auth("admin"))
    assert schema.status_code == 200 and schema.json()["info"]["title"] == "Zhizhi server"
    assert client.get("/docs").status_code == 404  # its scripts would come from a CDN


def test_metrics_need_a_token_unless_made_public(
    client: TestClient,
    make_client: Callable[[ServerSettings], TestClient],
    settings: ServerSettings,
    auth: Headers,
) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=auth("viewer")).status_code == 200
    assert client.get("/metrics", headers=auth("edge")).status_code == 403
    public = make_client(settings.model_copy(update={"metrics_public": True}))
    assert public.get("/metrics").status_code == 200


def test_uvicorn_believes_no_forwarded_header_unless_told_which_proxies() -> None:
    default = uvicorn_options(ServerSettings())
    assert default["proxy_headers"] is False
    assert default["forwarded_allow_ips"] == ""
    behind = uvicorn_options(ServerSettings(forwarded_allow_ips="10.0.0.5"))
    assert behind["proxy_headers"] is True
    assert behind["forwarded_allow_ips"] == "10.0.0.5"


# Item 8: the login limiter could be bypassed ----------------------------------------------


@pytest.fixture
def user_admin(session_factory: sessionmaker[Session]) -> str:
    with session_factory() as session:
        create_user(session, username="zhang", password=RIGHT, role="admin", sites=["*"])
    return "zhang"


def counting_checks(monkeypatch: pytest.MonkeyPatch, hold_s: float) -> dict[str, int]:
    """Count password checks, and the most running at once (each held `hold_s`)."""
    seen = {"checks": 0, "running": 0, "most": 0}
    lock = threading.Lock()
    real = users.password_matches

    def counted(password_hash: str, password: str) -> bool:
        with lock:
            seen["checks"] += 1
            seen["running"] += 1
            seen["most"] = max(seen["most"], seen["running"])
        try:
            time.sleep(hold_s)  # an argon2 check takes this long on a busy box
            return real(password_hash, password)
        finally:
            with lock:
                seen["running"] -= 1

    monkeypatch.setattr(users, "password_matches", counted)
    return seen


def parallel_logins(client: TestClient, bodies: list[dict[str, str]]) -> list[int]:
    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        responses = list(pool.map(lambda b: client.post("/api/v1/auth/login", json=b), bodies))
    return [r.status_code for r in responses]


def test_parallel_wrong_passwords_are_checked_no_more_often_than_the_limit(
    client: TestClient, user_admin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = counting_checks(monkeypatch, hold_s=0.05)

    codes = parallel_logins(client, [{"username": user_admin, "password": "wrong!"}] * 30)

    assert seen["checks"] <= 5, f"{seen['checks']} passwords checked, the limit is 5"
    assert sorted(set(codes)) == [401, 429], codes
    assert codes.count(401) == seen["checks"]
    right = client.post("/api/v1/auth/login", json={"username": user_admin, "password": RIGHT})
    assert right.status_code == 429  # the right password too, once over the limit


def test_password_checks_run_at_most_max_password_checks_at_once(
    make_client: Callable[[ServerSettings], TestClient],
    settings: ServerSettings,
    user_admin: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = make_client(settings.model_copy(update={"login_max_failures_per_ip": 1000}))
    seen = counting_checks(monkeypatch, hold_s=0.1)

    codes = parallel_logins(client, [{"username": f"u{n}", "password": "x"} for n in range(40)])

    assert codes.count(401) == 40, codes  # all were checked, a few at a time
    assert seen["most"] <= settings.max_password_checks == 2, seen


def test_a_rotating_forwarded_for_header_does_not_dodge_the_per_address_limit(
    make_client: Callable[[ServerSettings], TestClient], settings: ServerSettings, user_admin: str
) -> None:
    """The real uvicorn, started with the server's options: X-Forwarded-For from 127.0.0.1 was
    believed by default, so each attempt looked like a new address."""
    limited = settings.model_copy(update={"login_max_failures_per_ip": 3, "port": free_port()})
    app = make_client(limited).app
    server = uvicorn.Server(
        uvicorn.Config(app, **{**uvicorn_options(limited), "log_level": "warning"})
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        codes = []
        for n in range(5):
            response = httpx.post(
                f"http://127.0.0.1:{limited.port}/api/v1/auth/login",
                json={"username": f"guess{n}", "password": "wrong!"},
                headers={"X-Forwarded-For": f"203.0.113.{n}"},
                timeout=10,
            )
            codes.append(response.status_code)
    finally:
        server.should_exit = True
        thread.join(10)
    assert codes == [401, 401, 401, 429, 429]
