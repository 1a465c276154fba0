"""Bodies in and out of adapters: one way to read a platform's JSON and one way to write a sample's.

Every adapter reads its verified body through `json_object` (usually via WebhookRequest.json, which
parses once however many steps read it), so malformed, non-UTF-8 or absurdly nested input always
becomes a PayloadError (a 400 answer), never another exception (a 500). Nesting is bounded before
the decoder runs: everything downstream (dataclasses.asdict, copies, BSON, the dashboard's JSON)
recurses once per level, and Python's stack holds about a thousand frames.

Text from a channel may hold lone surrogates ("\\ud800" is valid JSON but not Unicode): they are
replaced by U+FFFD on arrival (`valid_unicode`), so nothing stored can fail to encode later.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

import orjson

# Deepest nesting accepted in a channel's JSON. Real payloads nest about ten levels (a Slack
# block_actions payload with rich-text blocks, a Teams activity with an Adaptive Card stay under
# 20); a hundred leaves room for any card while keeping every recursive copy far from the stack limit.
MAX_JSON_DEPTH = 100

# A JSON string, escapes included; an unterminated one runs to the end, and the possessive
# quantifiers never give back what they matched: linear, whatever the input.
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_BRACKET_STEP = [0] * 256
_BRACKET_STEP[ord("[")] = _BRACKET_STEP[ord("{")] = 1
_BRACKET_STEP[ord("]")] = _BRACKET_STEP[ord("}")] = -1
# A number of 19 digits or more in JSON follows ":", "," or "[" (whitespace and a minus sign in
# between): with every digit as "0", those three as ":" and whitespace and "-" gone, one substring
# search finds it (and a few such runs inside strings, which only cost the slower path).
_NUMBER_SHAPES = bytes.maketrans(b"0123456789,[", b"0000000000::")
_LONG_NUMBER = b":" + b"0" * 19
# NUL goes too: SQLite compares indexed strings only up to a NUL, so a chat id holding one could
# neither be found again nor stored twice (every later message of that chat was a 500).
_LONE_SURROGATE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


class PayloadError(Exception):
    """Malformed JSON or not the channel's shape: 400 with this message."""


def json_object(data: bytes | str) -> dict[str, Any]:
    """The JSON object in `data`; PayloadError when it is not UTF-8 JSON, not an object, or nested
    deeper than MAX_JSON_DEPTH."""
    if isinstance(data, bytes) and _LONG_NUMBER not in data.translate(_NUMBER_SHAPES, b" \t\r\n-"):
        # The common case in C: orjson reads only valid UTF-8 and refuses what json would read
        # differently (a BOM, "\ud800" escapes, NaN): each refusal takes the path below, which
        # gives json's result or json's words for the error. orjson would read an integer beyond
        # 64 bits as a float: a number of 19 digits or more takes the path below too.
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
        else:
            return _checked(value, data)
    text = _utf8(data)
    if text is None:
        raise PayloadError("malformed JSON: not UTF-8")
    if too_deep(data):
        raise PayloadError(f"malformed JSON: nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        # ValueError covers UnicodeDecodeError; RecursionError cannot happen below the depth bound
        # but stays a 400 should the bound ever be raised past the decoder's own limit.
        raise PayloadError(f"malformed JSON: {str(exc)[:200]}") from None
    if not isinstance(value, dict):
        raise PayloadError("expected a JSON object")
    return value


def _checked(value: Any, data: bytes) -> dict[str, Any]:
    """What orjson read from valid UTF-8 `data`, held to json_object's other rules."""
    if too_deep(data):
        raise PayloadError(f"malformed JSON: nested deeper than {MAX_JSON_DEPTH} levels")
    if not isinstance(value, dict):
        raise PayloadError("expected a JSON object")
    return value


def json_or_none(data: bytes | str) -> Any:
    """A platform or tenant service's answer as JSON, or None when it is not JSON or too deep to
    be anything but hostile (a tenant's callback service answers with whatever it likes)."""
    text = _utf8(data)
    try:
        return json.loads(text) if text and not too_deep(data) else None
    except (ValueError, RecursionError):
        return None


def _utf8(data: bytes | str) -> str | None:
    """JSON between systems is UTF-8 (RFC 8259 §8.1). json.loads would also guess UTF-16 and
    UTF-32 from bytes, where the depth scan's idea of a string (ASCII quotes and backslashes) no
    longer holds: such bodies are refused instead."""
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8-sig")  # a BOM is tolerated, as json.loads did
    except UnicodeDecodeError:
        return None


def too_deep(data: bytes | str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a JSON text nests brackets deeper than `limit` (brackets inside strings do not
    count). Linear and in C; a body with fewer brackets than the limit is not even scanned."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0) > limit


def valid_text(text: str) -> str:
    """`text` with every lone surrogate (and NUL) replaced by U+FFFD (a search in C when there is none)."""
    return _LONE_SURROGATE.sub(REPLACEMENT, text) if _LONE_SURROGATE.search(text) else text


def valid_unicode(value: Any) -> Any:
    """`value` with lone surrogates replaced in every string, dict keys included. Containers are
    fixed in place, without recursion (parsed payloads are ours, and bounded in depth anyway)."""
    if isinstance(value, str):
        return valid_text(value)
    pending = [value] if isinstance(value, dict | list) else []
    while pending:
        container = pending.pop()
        if isinstance(container, list):
            for index, item in enumerate(container):
                if isinstance(item, str):
                    container[index] = valid_text(item)
                elif isinstance(item, dict | list):
                    pending.append(item)
            continue
        for key, item in list(container.items()):
            if isinstance(key, str) and (fixed := valid_text(key)) is not key:
                del container[key]
                container[fixed] = item
                key = fixed
            if isinstance(item, str):
                container[key] = valid_text(item)
            elif isinstance(item, dict | list):
                pending.append(item)
    return value


# Readers of a parsed payload: platforms send numbers as strings and vice versa, and omit or null
# what they please; a wrong shape reads as None or {}, except a list the channel's shape is made of.

def list_of_dicts(container: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    """container[key] as a list of objects ([] when absent); PayloadError naming `where` otherwise."""
    value = container.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise PayloadError(f"{where}.{key}: expected a list of objects")
    return value


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def dicts_in(value: Any) -> list[dict[str, Any]]:
    """The objects in a list; anything else (absent, null, a string, a number) holds none."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def as_str(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def as_text(value: Any) -> str | None:
    """A string field; None for anything else (a number is not a name or a caption)."""
    return value if isinstance(value, str) else None


def as_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def compact_json(data: dict[str, Any]) -> bytes:
    """A body the way the platforms send theirs: compact, so a signature covers exactly these bytes."""
    return json.dumps(data, separators=(",", ":")).encode()
