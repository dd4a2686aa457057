"""The periodic runner: each task at its own period, a failing task does not stop the others."""

from __future__ import annotations

import pytest

from server.scheduler import PeriodicTask, Scheduler


def test_tasks_run_at_their_periods_and_failures_are_contained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: list[str] = []

    def broken() -> None:
        runs.append("broken")
        raise RuntimeError("database away")

    scheduler = Scheduler(
        [
            PeriodicTask("fast", 1.0, lambda: runs.append("fast")),
            PeriodicTask("slow", 10.0, lambda: runs.append("slow")),
            PeriodicTask("broken", 5.0, broken),
        ]
    )

    for now in (0.0, 0.5, 1.0, 2.0, 5.0, 10.0):
        scheduler.tick(now)

    assert runs.count("fast") == 5  # 0, 1, 2, 5, 10
    assert runs.count("slow") == 2  # 0, 10
    assert runs.count("broken") == 3  # 0, 5, 10: tried again at each turn
    assert "periodic task broken failed" in caplog.text
