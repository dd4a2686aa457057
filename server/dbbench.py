"""Throughput of `IngestService.ingest_many` straight into a database, with no broker.

    python -m server.dbbench --db postgresql://postgres@127.0.0.1:5432/zhizhi --events 20000

Events are built before the clock starts; the figure covers row mapping, the INSERT ... ON
CONFLICT ... RETURNING round trip and the commit, batch after batch from one caller. The
rows it wrote (their event ids share one random prefix) are deleted afterwards.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete

from common.events import Event
from server.db.models import EventRow
from server.db.session import make_engine, make_session_factory, migrate
from server.ingest import IngestService


@dataclass(frozen=True, slots=True)
class DbBench:
    backend: str
    events: int
    batch: int
    seconds: float
    batch_p50_ms: float
    batch_p99_ms: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    def line(self) -> str:
        return (
            f"{self.backend}: {self.events} events in batches of {self.batch}: "
            f"{self.events_per_s:,.0f} events/s (batch p50 {self.batch_p50_ms:.1f} ms, "
            f"p99 {self.batch_p99_ms:.1f} ms)"
        )


def synthetic_events(count: int, prefix: str) -> list[Event]:
    """`count` distinct, realistic event messages (four messages per situation)."""
    start = datetime.now(UTC)
    return [
        Event.model_validate(
            {
                "event_id": f"{prefix}-{i // 4}",
                "seq": i % 4,
                "state": "new" if i % 4 == 0 else "update",
                "type": "fire_lane",
                "site_id": "bench-site",
                "camera_id": f"cam-{i % 8}",
                "zone_id": "lane",
                "rule_id": "lane-blocked",
                "observed_at": start + timedelta(milliseconds=i),
                "pts_s": i * 0.2,
                "onset_pts_s": 1.0,
                "bbox": (0.1, 0.2, 0.3, 0.4),
                "score": 0.8,
                "details": {"blocked_s": 121.0, "blockers": [{"kind": "vehicle"}]},
                "model": {"name": "yolov8n-640", "version": "8.3", "sha256": "ab" * 32},
                "evidence": [
                    {
                        "kind": "snapshot",
                        "sha256": "0f" * 32,
                        "content_type": "image/jpeg",
                        "url": "x.jpg",
                    }
                ],
            }
        )
        for i in range(count)
    ]


def measure(url: str, *, events: int = 20_000, batch: int = 100) -> DbBench:
    """Ingest `events` new events in batches of `batch` and time it."""
    engine = make_engine(url)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        migrate(engine)
        sessions = make_session_factory(engine)
        service = IngestService(sessions)
        items = [(event, "bench-edge") for event in synthetic_events(events, prefix)]
        durations: list[float] = []
        started = time.perf_counter()
        for offset in range(0, len(items), batch):
            t0 = time.perf_counter()
            flags = service.ingest_many(items[offset : offset + batch], source="mqtt")
            durations.append(time.perf_counter() - t0)
            if not all(flags):
                raise RuntimeError("a synthetic event was reported as a duplicate")
        seconds = time.perf_counter() - started
        with sessions() as session, session.begin():
            session.execute(delete(EventRow).where(EventRow.event_id.startswith(prefix)))
        cuts = statistics.quantiles(durations, n=100) if len(durations) > 1 else durations * 99
        return DbBench(
            backend=engine.dialect.name,
            events=events,
            batch=batch,
            seconds=seconds,
            batch_p50_ms=statistics.median(durations) * 1000,
            batch_p99_ms=cuts[98] * 1000,
        )
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--db", required=True, help="sqlite:///path or postgresql://...")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args(argv)
    result = measure(args.db, events=args.events, batch=args.batch)
    sys.stdout.write(result.line() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
