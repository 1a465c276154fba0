"""JSON on the hot paths (webhook bodies, stored documents, broker events): orjson where it can,
the standard library where orjson refuses, so callers see json.loads/json.dumps semantics.

orjson parses and writes several times faster than `json` (the profile of webhook intake spent a
tenth of its time in json); it is stricter, and each refusal falls back to the standard library:
- `loads`: a lone surrogate escape ("\\ud800") and NaN/Infinity literals, which json accepts;
- `dumps`: a str holding a lone surrogate, an int beyond 64 bits, or a type orjson does not know.
One difference stays: orjson reads an integer literal beyond 64 bits as a float (no platform id
comes near that). Output is compact (no spaces) and UTF-8 (ASCII escapes where the fallback wrote it).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def dumpb(value: Any) -> bytes:
    """`value` as compact UTF-8 JSON bytes."""
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except TypeError:
        return _fallback(value).encode()


def dumps(value: Any) -> str:
    """`value` as a compact JSON str."""
    try:
        return orjson.dumps(value, option=_OPTIONS).decode()
    except TypeError:
        return _fallback(value)


def _fallback(value: Any) -> str:
    # ASCII escapes: a lone surrogate stays a valid "\\udXXX" escape instead of unencodable text.
    return json.dumps(value, separators=(",", ":"))
