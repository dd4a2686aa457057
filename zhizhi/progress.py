"""Terminal output for long runs: a progress bar on stderr and the evaluation table."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any, Self

from rich.console import Console
from rich.table import Table
from tqdm import tqdm


class FrameProgress:
    """A tqdm bar over decoded frames; quiet when stderr is not a terminal or when disabled."""

    def __init__(self, description: str, enabled: bool = True) -> None:
        self._description = description
        self._enabled = enabled and sys.stderr.isatty()
        self._bar: tqdm[Any] | None = None

    def update(self, index: int, total: int | None) -> None:
        if not self._enabled:
            return
        if self._bar is None:
            self._bar = tqdm(total=total, desc=self._description, unit="frame", file=sys.stderr)
        self._bar.update(index + 1 - self._bar.n)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.close()


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def print_report(result: dict[str, Any]) -> None:
    """The per-type table of an evaluation report, on stdout."""
    table = Table(title="zhizhi eval")
    columns = [
        "type",
        "true_positives",
        "false_alarms",
        "misses",
        "precision",
        "recall",
        "median_latency_s",
    ]
    for column in columns:
        table.add_column(column)
    for name, row in result["types"].items():
        table.add_row(name, *(_fmt(row[c]) for c in columns[1:]))
    Console(soft_wrap=True).print(table)
