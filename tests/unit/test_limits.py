"""The input limits shared by the MQTT consumer and the REST API (common/limits.py)."""

from __future__ import annotations

import json

import pytest

from common.limits import InputLimits, InputRefused, clean_text, nesting_depth, parse_json


def refusal(data: bytes | str, limits: InputLimits | None = None) -> str:
    with pytest.raises(InputRefused) as caught:
        parse_json(data, limits)
    return caught.value.reason


def test_a_contract_sized_document_is_parsed() -> None:
    text = json.dumps({"a": [1, 2.5, None, True, {"b": "文字 😀"}], "seq": 2**31})
    assert parse_json(text.encode()) == json.loads(text)
    assert parse_json(text) == json.loads(text)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"zone_id": "z\\u0000"}', "bad_text"),
        (b'{"z\\u0000": 1}', "bad_text"),  # keys too
        (b'["\\ud800"]', "bad_text"),  # a lone surrogate
        (b'["\\udc00x"]', "bad_text"),
        (b"[NaN]", "not_finite"),
        (b"[Infinity]", "not_finite"),
        (b"[-Infinity]", "not_finite"),
        (b"[1e400]", "not_finite"),
        (b"[-1e400]", "not_finite"),
        (b"[9223372036854775808]", "number_range"),
        (b"[-9223372036854775809]", "number_range"),
        (b"[" + b"9" * 5000 + b"]", "bad_json"),  # Python refuses ints of > 4,300 digits
        (b"\xff\xfe", "not_utf8"),
        (b"{", "bad_json"),
        (b"", "bad_json"),
        (b"[" * 1500 + b"]" * 1500, "too_deep"),  # json.loads: RecursionError
        (b'{"a": ' * 40 + b"1" + b"}" * 40, "too_deep"),
    ],
)
def test_what_the_limits_refuse(data: bytes, reason: str) -> None:
    assert refusal(data) == reason


def test_the_byte_limit_counts_bytes_not_characters() -> None:
    limits = InputLimits(max_bytes=10)
    assert parse_json('"汉字"', limits) == "汉字"  # 8 bytes
    assert refusal('"汉字汉"', limits) == "oversized"  # 11 bytes
    assert refusal(b" " * 11, limits) == "oversized"


def test_depth_is_counted_outside_strings_only() -> None:
    deep_text = json.dumps({"note": "[" * 500})
    assert parse_json(deep_text) == {"note": "[" * 500}
    assert nesting_depth('{"a": [[1], {"b": "]]]]"}]}', 10) == 3
    limits = InputLimits(max_depth=3)
    assert parse_json("[[[1]]]", limits) == [[[1]]]
    assert refusal("[[[[1]]]]", limits) == "too_deep"


def test_valid_surrogate_pairs_and_64_bit_integers_pass() -> None:
    assert parse_json(b'["\\ud83d\\ude00", 9223372036854775807, -9223372036854775808]') == [
        "😀",
        2**63 - 1,
        -(2**63),
    ]


def test_the_detail_never_quotes_the_input() -> None:
    with pytest.raises(InputRefused) as caught:
        parse_json(b'{"password": "hunter2\\u0000"}')
    assert "hunter2" not in str(caught.value)


def test_clean_text_replaces_what_cannot_be_stored() -> None:
    assert clean_text("a\x00b\ud800c", 10) == "a\ufffdb\ufffdc"
    assert clean_text("x" * 50, 5) == "xxxxx"
