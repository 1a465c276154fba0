"""Answer text helpers shared by the runners: streaming chunks and token estimates."""

from __future__ import annotations

import math
import re

WORDS_PER_CHUNK = 3
_WORD_WITH_SPACE = re.compile(r"\s*\S+\s*")


def chunk_text(text: str, words: int = WORDS_PER_CHUNK) -> list[str]:
    """Split on word boundaries into chunks of `words` words; "".join(chunks) == text exactly
    (whitespace and newlines kept), so a stream of these deltas reassembles the answer."""
    if not text:
        return []
    pieces = _WORD_WITH_SPACE.findall(text)
    if not pieces:  # whitespace only
        return [text]
    chunks = ["".join(pieces[i:i + words]) for i in range(0, len(pieces), max(1, words))]
    # findall drops nothing for non-empty text: every char is either \s or \S and each match ends
    # where the next begins; the assertion guards the invariant the caller relies on.
    assert "".join(chunks) == text
    return chunks


def estimate_tokens(*texts: str) -> int:
    """Rough BPE token count when the model reports none: about 4 tokens per 3 English words."""
    words = sum(len(t.split()) for t in texts if t)
    return math.ceil(words * 4 / 3)
