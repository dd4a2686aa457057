"""Dead letters: MQTT messages refused for good, kept for an admin (issue 14).

The consumer sorts every failure into "this message is bad" and "the store is down". A bad
message is refused with a reason, PUBACKed, and kept here (one row per topic and payload,
`times` counting its arrivals), so nothing an edge sends is silently lost: an admin can read
it, replay it once the cause is fixed (a bug in the checks, a site registered late), or
discard it. Replaying runs the consumer's own checks again and stores through the ingest
service, as if the message had just arrived.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.orm import Session

from common.events import parse_topic
from common.limits import clean_text
from server.repositories import DeadLetterRepository

KEPT_PAYLOAD_BYTES = 256 * 1024  # more is cut (an oversized message keeps its start)
MAX_ROWS = 100_000  # the oldest beyond are dropped
LetterStatus = Literal["held", "replayed", "discarded"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One refused message as the consumer hands it over."""

    topic: str
    payload: bytes
    reason: str
    detail: str
    received_at: datetime
    event_id: str | None = None
    seq: int | None = None
    source: str = "mqtt"


def letter_row(letter: DeadLetter) -> dict[str, Any]:
    """The column values of a letter: site and edge from the topic, text made storable."""
    parsed = parse_topic(letter.topic)
    site_id, edge_id = (parsed[0], parsed[1]) if parsed is not None else (None, None)
    return {
        "received_at": letter.received_at,
        "last_at": letter.received_at,
        "times": 1,
        "source": letter.source,
        "topic": clean_text(letter.topic, 512),
        "site_id": clean_text(site_id, 63) if site_id else None,
        "edge_id": clean_text(edge_id, 63) if edge_id else None,
        "event_id": clean_text(letter.event_id, 128) if letter.event_id else None,
        "seq": letter.seq,
        "reason": clean_text(letter.reason, 32),
        "detail": clean_text(letter.detail, 300),
        "size": len(letter.payload),
        "payload_sha256": hashlib.sha256(letter.payload).hexdigest(),
        "payload": letter.payload[:KEPT_PAYLOAD_BYTES],
        "status": "held",
    }


def keep(session_factory: Callable[[], Session], letters: Sequence[DeadLetter]) -> None:
    """Keep the letters in one transaction (raises when the database does not take them)."""
    with session_factory() as session, session.begin():
        DeadLetterRepository(session).keep([letter_row(x) for x in letters], max_rows=MAX_ROWS)


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    """What replaying a letter did: stored (or a duplicate), or refused again and why."""

    status: LetterStatus
    stored: bool
    refused: str | None = None


class LetterNotFound(LookupError):
    """No dead letter with that id (or none the caller may see)."""


def replay(
    session: Session,
    letter_id: int,
    *,
    store: Any,
    by: str,
    at: datetime,
    max_payload_bytes: int,
) -> ReplayOutcome:
    """Check a held letter again as the consumer would, and store it through `store` (the
    ingest service) when it passes: the letter is then `replayed`. Refused again: it stays
    `held` and the outcome says why. The caller commits."""
    from server.consumers.mqtt import EventDelivery, Rejected, validate_message

    row = DeadLetterRepository(session).get(letter_id)
    if row is None:
        raise LetterNotFound(letter_id)
    if row.size > len(row.payload):
        return ReplayOutcome("held", False, "oversized: only the start of it was kept")
    verdict = validate_message(row.topic, row.payload, max_payload_bytes=max_payload_bytes)
    if isinstance(verdict, Rejected):
        return ReplayOutcome("held", False, f"{verdict.reason}: {verdict.detail}")
    if isinstance(verdict, EventDelivery):
        stored = bool(store.ingest(verdict.event, source=row.source, edge_id=verdict.edge_id))
    else:
        store.record_status(verdict.site_id, verdict.edge_id, verdict.status, at)
        stored = True
    row.status, row.handled_by, row.handled_at = "replayed", by, at
    return ReplayOutcome("replayed", stored)


def discard(session: Session, letter_id: int, *, by: str, at: datetime) -> None:
    """Mark a letter discarded (it stays on record, with who and when). The caller commits."""
    row = DeadLetterRepository(session).get(letter_id)
    if row is None:
        raise LetterNotFound(letter_id)
    row.status, row.handled_by, row.handled_at = "discarded", by, at
