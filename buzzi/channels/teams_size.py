"""How big a Teams activity is, the way Teams counts it, and splitting a reply to fit.

"The bot message size limit is 100 KB": approximate, counting the message (text, links,
@-mentions, reactions) encoded as UTF-16; keep a message within 80 KB to be sure it is delivered;
above the limit the bot gets 413 RequestEntityTooLarge with code MessageSizeTooBig
[learn.microsoft.com/microsoftteams/platform/bots/how-to/format-your-bot-messages, "Note
regarding bot message size limit"]. So the measure is the whole activity JSON as we send it
(UTF-8 on the wire, `ensure_ascii=False` so that an emoji is not six `\\uXXXX` bytes), counted in
UTF-16 code units x 2 bytes: a character count (the former 28,000-character split) is wrong twice
over, for astral characters (emoji: 1 character, 2 units) and for JSON escapes (`"`, newlines).
"""

from __future__ import annotations

import bisect
import itertools
import json
from typing import Any

# The documented limit is about 100 KB (UTF-16); "within 80 KB" is the doc's advice and our target
# for a whole activity, read as 80,000 bytes for headroom whichever KB Microsoft means.
SAFE_BYTES = 80 * 1000
# Room kept for everything but the text (from/recipient ids and names, conversation id,
# replyToId, locale): a few hundred units in practice; send() measures the real activity anyway.
ENVELOPE_BYTES = 8 * 1024
TEXT_BUDGET_BYTES = SAFE_BYTES - ENVELOPE_BYTES
# Below this much room for text an envelope is broken, not large: refuse instead of sending
# thousands of tiny parts.
MIN_TEXT_BYTES = 1024
# Where a part may end, best first (the last one is CJK's full stop).
SEPARATORS = ("\n\n", "\n", ". ", "\u3002", " ")
_SHORT_ESCAPES = frozenset('"\\\n\r\t\b\f')


def encode(activity: dict[str, Any]) -> bytes:
    """The body as sent. Lone surrogates (never valid UTF-8) become U+FFFD."""
    return json.dumps(activity, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")


def utf16_bytes(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass"))


def activity_bytes(activity: dict[str, Any]) -> int:
    """The activity's size as Teams counts it: its JSON in UTF-16 bytes."""
    return utf16_bytes(json.dumps(activity, ensure_ascii=False, separators=(",", ":")))


def char_bytes(char: str) -> int:
    """What one character adds to a JSON string value, in UTF-16 bytes."""
    if char in _SHORT_ESCAPES:
        return 4  # \" \\ \n ...: two units
    point = ord(char)
    if point < 0x20:
        return 12  # \u00XX: six units
    return 4 if point > 0xFFFF else 2  # a surrogate pair, or one unit


def split_by_size(text: str, budget: int) -> list[str]:
    """Cut `text` into parts whose JSON-escaped UTF-16 size is at most `budget` bytes, at a
    paragraph, line, sentence or word boundary when one lies in the last two thirds of the room."""
    text = text.strip()
    # cum[i]: the bytes of text[:i]; increasing, so the longest fitting part is a bisection.
    cum = [0, *itertools.accumulate(map(char_bytes, text))]
    parts: list[str] = []
    start = 0
    while start < len(text):
        if text[start].isspace():
            start += 1
            continue
        end = bisect.bisect_right(cum, cum[start] + budget, lo=start) - 1
        if end >= len(text):
            parts.append(text[start:].rstrip())
            break
        end = max(end, start + 1)  # a budget below one character still moves on
        window = text[start:end]
        cut = len(window)
        for separator in SEPARATORS:
            index = window.rfind(separator)
            if index > len(window) // 3:
                cut = index + len(separator)
                break
        parts.append(text[start:start + cut].rstrip())
        start += cut
    return [part for part in parts if part]
