"""Limits on untrusted JSON, one set for every way input reaches the server (issue 14).

The MQTT consumer and the REST API both read JSON written by others: an edge box (perhaps
careless, perhaps compromised) or anyone who can reach the port. Before a model sees it, the
bytes pass `parse_json`, which refuses, with a reason:

- more than `max_bytes` (callers count the bytes as they arrive, however they arrive);
- bytes that are not UTF-8, text that is not JSON;
- nesting deeper than `max_depth` (counted before parsing: Python's parser would raise
  RecursionError, not ValueError, at about 1,500 levels);
- numbers that are not finite (`NaN`, `Infinity`, `1e400`) or integers beyond 64 bits;
- text with a NUL character (PostgreSQL refuses it in text and JSON) or a lone UTF-16
  surrogate (`"\\ud800"`: not a character, cannot be encoded), in values and keys alike.

Pure functions, standard library only (the edge imports `common` too).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

KIB = 1024
DEFAULT_MAX_BYTES = 256 * KIB  # an event message: evidence travels apart, as files
DEFAULT_MAX_DEPTH = 32  # the deepest contract message nests 5 levels
MAX_INT = 2**63 - 1  # what a 64-bit database column holds

RefusalReason = Literal[
    "oversized",  # more bytes than the limit
    "not_utf8",  # the bytes are not UTF-8
    "bad_json",  # not JSON, or truncated
    "too_deep",  # nested deeper than the limit
    "not_finite",  # NaN, Infinity, a number too large for a double
    "number_range",  # an integer beyond 64 bits
    "bad_text",  # a NUL character or a lone surrogate in a string
]
REFUSAL_REASONS: tuple[RefusalReason, ...] = (
    "oversized",
    "not_utf8",
    "bad_json",
    "too_deep",
    "not_finite",
    "number_range",
    "bad_text",
)

_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


@dataclass(frozen=True, slots=True)
class InputLimits:
    """What one JSON document may be: bytes and nesting depth."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_depth: int = DEFAULT_MAX_DEPTH

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_depth < 1:
            raise ValueError("input limits must be positive")


class InputRefused(ValueError):
    """Input outside the limits: `reason` is stable (metrics, dead letters), `detail` is short,
    safe to log and never quotes the input."""

    def __init__(self, reason: RefusalReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: RefusalReason = reason
        self.detail = detail


def parse_json(data: bytes | str, limits: InputLimits | None = None) -> Any:
    """The JSON value of `data` when it keeps within `limits` (default: `InputLimits()`);
    InputRefused otherwise."""
    limits = limits or InputLimits()
    size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
    if size > limits.max_bytes:
        raise InputRefused("oversized", f"{size} bytes > limit {limits.max_bytes}")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InputRefused("not_utf8", f"invalid UTF-8 at byte {error.start}") from None
    else:
        text = data
    depth = nesting_depth(text, limits.max_depth)
    if depth > limits.max_depth:
        raise InputRefused("too_deep", f"nested more than {limits.max_depth} levels")
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except InputRefused:
        raise
    except ValueError as error:  # JSONDecodeError, and int() of more than 4,300 digits
        raise InputRefused("bad_json", _json_problem(error)) from None
    check_value(value)
    return value


def nesting_depth(text: str, limit: int) -> int:
    """How deep arrays and objects nest in JSON `text` (strings skipped); the count stops
    once it passes `limit`. Linear time, no recursion."""
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        else:
            depth -= 1
    return deepest


def check_value(value: Any) -> None:
    """InputRefused for a parsed JSON value holding an integer beyond 64 bits, a float that is
    not finite, or a string (value or key) with a NUL character or a lone surrogate."""
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not -MAX_INT - 1 <= item <= MAX_INT:
                raise InputRefused("number_range", "an integer beyond 64 bits")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InputRefused("not_finite", "a number that is not finite")
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_text(key)
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)


def clean_text(value: str, max_chars: int = 300) -> str:
    """`value` safe to store and show: NUL and lone surrogates replaced, at most `max_chars`."""
    return _BAD_TEXT.sub("\ufffd", value)[:max_chars]


def _check_text(text: str) -> None:
    found = _BAD_TEXT.search(text)
    if found is not None:
        what = "a NUL character" if found.group() == "\x00" else "a lone surrogate"
        raise InputRefused("bad_text", f"text with {what}")


def _no_constant(name: str) -> Any:
    raise InputRefused("not_finite", f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise InputRefused("not_finite", "a number too large for a double")
    return number


def _json_problem(error: ValueError) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"not JSON: {error.msg} at line {error.lineno} column {error.colno}"
    return "not JSON: a number too long to read"
