"""The server's periodic work, on one background thread: escalate incidents past their ack
deadline, send due webhook deliveries, sweep expired evidence. Each task runs at its own
period; a task that raises is logged and tried again at its next turn."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session

from server.dispatch import DispatchConfig
from server.incidents import escalate_overdue
from server.notify import Notifier, WebhookSender
from server.retention import RetentionPolicy, sweep_evidence
from server.storage import BlobStore

log = logging.getLogger(__name__)

SessionFactory = Callable[[], Session]


@dataclass
class PeriodicTask:
    name: str
    period_s: float
    run: Callable[[], object]
    next_at: float = 0.0


def escalation_task(
    session_factory: SessionFactory,
    dispatch: DispatchConfig,
    notifier: Notifier,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Callable[[], int]:
    """Escalate the overdue incidents (committed), then notify about them."""

    def run() -> int:
        with session_factory() as session, session.begin():
            changes = notifier.write_outbox(session, escalate_overdue(session, dispatch, clock()))
        if changes:
            notifier.incidents_changed(changes)
        return len(changes)

    return run


def retention_task(
    session_factory: SessionFactory,
    store: BlobStore | Path,
    policy: RetentionPolicy,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Callable[[], int]:
    def run() -> int:
        with session_factory() as session:
            return sweep_evidence(session, store, policy, clock())

    return run


class Scheduler:
    """Runs `tasks` on a daemon thread until `stop`; `tick` runs whatever is due (tests)."""

    def __init__(self, tasks: list[PeriodicTask], *, resolution_s: float = 0.5) -> None:
        self.tasks = tasks
        self._resolution_s = resolution_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for task in self.tasks:
            if now < task.next_at:
                continue
            task.next_at = now + task.period_s
            try:
                task.run()
            except Exception:
                log.exception(
                    "periodic task %s failed; trying again in %.0f s", task.name, task.period_s
                )

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._resolution_s):
            self.tick()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None


def build_scheduler(
    session_factory: SessionFactory,
    dispatch: DispatchConfig,
    notifier: Notifier,
    sender: WebhookSender,
    *,
    media_dir: BlobStore | Path,
    retention: RetentionPolicy,
    escalation_check_s: float,
    retention_sweep_s: float,
) -> Scheduler:
    return Scheduler(
        [
            PeriodicTask(
                "escalation",
                escalation_check_s,
                escalation_task(session_factory, dispatch, notifier),
            ),
            PeriodicTask("webhooks", 1.0, sender.deliver_due),
            PeriodicTask(
                "retention",
                retention_sweep_s,
                retention_task(session_factory, media_dir, retention),
            ),
        ]
    )
