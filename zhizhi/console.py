"""How every `zhizhi` command reports a failure: one line on stderr, then details; no traceback."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer


def fail(reason: str, details: list[str] | None = None, code: int = 2) -> NoReturn:
    """One line saying why, on stderr, then any details; exit non-zero. No traceback."""
    print(f"zhizhi: error: {reason}", file=sys.stderr)  # noqa: T201
    for line in details or []:
        print(f"  - {line}", file=sys.stderr)  # noqa: T201
    raise typer.Exit(code)
