"""Evidence files to the server over HTTP, identified by sha256 (issue 5).

`EvidenceUploader.prepare(event)` is called once per event before it goes to the sinks: it
registers the event's local evidence files with the outbox and rewrites their urls to the
server's form, ``{server_url}/api/v1/evidence/{sha256}``. The uploader's thread then sends
each pending file with ``PUT`` (raw body, its Content-Type, ``Authorization: Bearer``). The
server stores a file only if the body's sha256 matches the url and answers the same for a
second copy, so an upload cut off halfway is simply sent again from the start.

Outcomes: 200/201 done (the local file is deleted if `delete_after_upload`); network errors,
timeouts, 5xx, 408 and 429 retried with capped exponential backoff, for ever; 401, 403, 404
and 405 mean the server refuses every file (wrong token or URL), so they are retried too, with
one error logged per streak; any other 4xx (400: the file does not match its sha256, 413, ...)
marks that file failed for good with its attempt count, and keeps it on disk for inspection.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from common.events import Event, Evidence
from edge.capture.sources import Backoff
from edge.delivery.outbox import EvidenceItem, Outbox

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({401, 403, 404, 405, 408, 429})


class Outcome(Enum):
    DONE = "done"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class UploadPass:
    uploaded: int
    failed: int
    retry: bool  # a transient failure stopped the pass: back off before the next one


def evidence_url(server_url: str, sha256: str) -> str:
    return f"{server_url.rstrip('/')}/api/v1/evidence/{sha256}"


def local_path(url: str) -> Path | None:
    """The file behind an evidence url written by the edge, or None for a remote url."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        return None
    if parts.scheme == "file":
        return Path(parts.path)
    return Path(url)


def classify(status: int) -> Outcome:
    if status in (200, 201):
        return Outcome.DONE
    if 400 <= status < 500 and status not in RETRY_STATUSES:
        return Outcome.FAILED
    return Outcome.RETRY


class EvidenceUploader:
    """Uploads the outbox's pending evidence files from a background thread."""

    def __init__(
        self,
        server_url: str,
        token: str,
        outbox: Outbox,
        *,
        delete_after_upload: bool = False,
        timeout_s: float = 30.0,
        backoff: Backoff | None = None,
        poll_s: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        autostart: bool = True,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.outbox = outbox
        self.delete_after_upload = delete_after_upload
        self.poll_s = poll_s
        self._backoff = backoff or Backoff(initial_s=1.0, max_s=60.0)
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
            headers={"Authorization": f"Bearer {token}"},
            transport=transport,
        )
        self._failing = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="evidence-upload", daemon=True)
        if autostart:
            self.start()

    def __repr__(self) -> str:
        return f"EvidenceUploader({self.server_url})"

    # -- the edge worker's side --------------------------------------------------------------

    def prepare(self, event: Event) -> Event:
        """Register the event's local evidence files for upload and point its urls at the
        server. Call before the event goes to any sink; never raises."""
        if not event.evidence:
            return event
        evidence = [self._register(item) for item in event.evidence]
        self._wake.set()
        return event.model_copy(update={"evidence": evidence})

    def _register(self, item: Evidence) -> Evidence:
        path = local_path(item.url)
        if path is None:
            return item
        try:
            size = path.stat().st_size
            self.outbox.add_evidence(item.sha256, path.resolve(), size, item.content_type)
        except Exception:  # the event still goes out; its file is reported missing
            logger.exception("evidence %s (%s) could not be queued for upload", item.sha256, path)
        return item.model_copy(update={"url": evidence_url(self.server_url, item.sha256)})

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)
        self._http.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                result = self.upload_pending()
            except Exception:  # boundary of a background thread: log, back off, go on
                logger.exception("evidence upload pass failed")
                result = UploadPass(0, 0, retry=True)
            if result.retry:
                self._stop.wait(self._backoff.next_s())
            elif result.uploaded == 0 and result.failed == 0:
                self._wake.wait(self.poll_s)
                self._wake.clear()

    # -- uploading ---------------------------------------------------------------------------

    def upload_pending(self, limit: int = 20) -> UploadPass:
        """One pass over up to `limit` pending files; stops at the first transient failure."""
        uploaded = failed = 0
        for item in self.outbox.pending_evidence(limit):
            if self._stop.is_set():
                break
            outcome = self.upload(item)
            if outcome is Outcome.RETRY:
                return UploadPass(uploaded, failed, retry=True)
            if outcome is Outcome.DONE:
                uploaded += 1
            else:
                failed += 1
        return UploadPass(uploaded, failed, retry=False)

    def upload(self, item: EvidenceItem) -> Outcome:
        try:
            body = item.path.read_bytes()
        except FileNotFoundError:
            logger.warning("evidence file %s (%s) is gone; not uploaded", item.path, item.sha256)
            self.outbox.evidence_failed(item.sha256, "file missing", permanent=True)
            return Outcome.FAILED
        url = evidence_url(self.server_url, item.sha256)
        try:
            response = self._http.put(
                url, content=body, headers={"Content-Type": item.content_type}
            )
        except httpx.HTTPError as error:
            return self._retry(item, f"{type(error).__name__}: {error}")
        outcome = classify(response.status_code)
        if outcome is Outcome.DONE:
            self._done(item)
        elif outcome is Outcome.RETRY:
            self._retry(item, f"HTTP {response.status_code}")
        else:
            self._failed(item, response)
        return outcome

    def _done(self, item: EvidenceItem) -> None:
        self.outbox.evidence_uploaded(item.sha256)
        if self._failing:
            self._failing = False
            logger.info("evidence uploads to %s work again", self.server_url)
        self._backoff.reset()
        if self.delete_after_upload:
            item.path.unlink(missing_ok=True)

    def _retry(self, item: EvidenceItem, error: str) -> Outcome:
        self.outbox.evidence_failed(item.sha256, error)
        if not self._failing:
            self._failing = True
            logger.warning(
                "evidence upload to %s failed (%s); retrying with backoff", self.server_url, error
            )
        return Outcome.RETRY

    def _failed(self, item: EvidenceItem, response: httpx.Response) -> None:
        error = f"HTTP {response.status_code}: {response.text[:200]}"
        self.outbox.evidence_failed(item.sha256, error, permanent=True)
        logger.error(
            "evidence %s (%s) refused by the server (%s); kept for inspection, not retried",
            item.sha256,
            item.path,
            error,
        )
