"""Bodies in and out of adapters: one way to read a platform's JSON and one way to write a sample's.

Every adapter reads its verified body through `json_object` (usually via WebhookRequest.json, which
parses once however many steps read it), so malformed, non-UTF-8 or absurdly nested input always
becomes a PayloadError (a 400 answer), never another exception (a 500).
"""

from __future__ import annotations

import json
from typing import Any


class PayloadError(Exception):
    """Malformed JSON or not the channel's shape: 400 with this message."""


def json_object(data: bytes | str) -> dict[str, Any]:
    """The JSON object in `data`; PayloadError when it is not JSON or not an object."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as exc:
        # ValueError covers UnicodeDecodeError; RecursionError is the decoder's answer to nesting
        # deeper than the interpreter's stack.
        raise PayloadError(f"malformed JSON: {str(exc)[:200]}") from None
    if not isinstance(value, dict):
        raise PayloadError("expected a JSON object")
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
