"""buzzi/channels/payload.py: the one JSON reader of every adapter bounds nesting before decoding
(with brackets inside strings not counted), accepts only UTF-8, and `valid_unicode` replaces lone
surrogates everywhere in a parsed payload, keys included."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buzzi.channels.payload import MAX_JSON_DEPTH, PayloadError, json_object, too_deep, valid_unicode

# Strings full of what a depth scan could mistake for structure.
tricky_text = st.text(alphabet=st.sampled_from('[]{}"\\ab\u00e9\u2603'), max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | tricky_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(tricky_text, children, max_size=3),
    max_leaves=40,
)


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


def wrapped(value: Any, levels: int) -> Any:
    for _ in range(levels):
        value = [value]
    return value


@given(json_values, st.integers(min_value=0, max_value=MAX_JSON_DEPTH + 5), st.booleans())
def test_the_depth_scan_agrees_with_the_structure(value: Any, levels: int, ascii_only: bool) -> None:
    document = wrapped(value, levels)
    text = json.dumps(document, ensure_ascii=ascii_only)
    assert too_deep(text.encode()) == (depth(document) > MAX_JSON_DEPTH)
    assert too_deep(text) == (depth(document) > MAX_JSON_DEPTH)


@pytest.mark.parametrize("depth_", [MAX_JSON_DEPTH + 1, 5_000, 100_000])
def test_deep_nesting_is_a_payload_error_at_any_depth(depth_: int) -> None:
    with pytest.raises(PayloadError, match="nested deeper"):
        json_object(b'{"a":' + b"[" * depth_ + b"]" * depth_ + b"}")


def test_brackets_inside_strings_do_not_count() -> None:
    body = json.dumps({"text": "[" * 10_000, "quote": '\\"[[[', "ok": wrapped(1, 50)}).encode()
    assert json_object(body)["text"] == "[" * 10_000


def test_only_utf8_is_read() -> None:
    """json.loads would guess UTF-16 from bytes, where the scan's idea of a string does not hold."""
    hidden = json.dumps({"a": '"', "b": wrapped(1, 150)}).encode("utf-16-le")
    with pytest.raises(PayloadError):
        json_object(hidden)
    with pytest.raises(PayloadError, match="not UTF-8"):
        json_object(b'{"a": "\xff"}')
    assert json_object(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}  # a UTF-8 BOM is tolerated


def test_lone_surrogates_are_replaced_everywhere() -> None:
    value = json_object(b'{"n\\ud800": ["x\\udc00", {"k": "\\ud83d\\ude00 ok", "d": [["\\udfff"]]}], "i": 1}')
    assert valid_unicode(value) == {"n\ufffd": ["x\ufffd", {"k": "\U0001f600 ok", "d": [["\ufffd"]]}], "i": 1}
    assert valid_unicode("a\ud800b") == "a\ufffdb"
    deep = wrapped("\ud800", 5_000)  # no recursion: any depth is fine
    inner = valid_unicode(deep)
    for _ in range(5_000):
        inner = inner[0]
    assert inner == "\ufffd"
