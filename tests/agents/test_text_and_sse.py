from __future__ import annotations

import pytest

from buzzi.agents.sse import SseEvent, SseProtocolError, iter_sse
from buzzi.agents.text import chunk_text, estimate_tokens
from buzzi.agents.upstream import parse_json


@pytest.mark.parametrize("text", [
    "one two three four five six seven",
    "  leading spaces and trailing  ",
    "Line one.\n\nLine two,\twith a tab.\n",
    "single",
    "   ",
    "naïve café — ünïcödé",
])
def test_chunks_reassemble_exactly_on_word_boundaries(text: str) -> None:
    chunks = chunk_text(text)
    assert "".join(chunks) == text
    assert all(len(c.split()) <= 3 for c in chunks)
    assert chunk_text("") == []


def test_a_long_answer_is_several_chunks() -> None:
    assert chunk_text("a b c d e f g") == ["a b c ", "d e f ", "g"]


def test_token_estimate_is_four_thirds_of_the_words() -> None:
    assert estimate_tokens("one two three") == 4
    assert estimate_tokens("a b c d e f", "g") == 10
    assert estimate_tokens("") == 0


async def lines(*raw: bytes):
    for line in raw:
        yield line


async def parse(*raw: bytes) -> list[SseEvent]:
    return [event async for event in iter_sse(lines(*raw))]


async def test_sse_fields_comments_multiline_and_crlf() -> None:
    events = await parse(b": heartbeat\n", b"event: delta\r\n", b"data: {\"a\":\r\n", b"data:1}\r\n", b"\r\n",
                         b"id: 7\n", b"data: plain\n", b"\n", b"\n")
    assert events == [SseEvent("delta", '{"a":\n1}'), SseEvent("message", "plain")]


async def test_sse_unterminated_event_is_dropped() -> None:
    assert await parse(b"data: complete\n", b"\n", b"data: cut off\n") == [SseEvent("message", "complete")]


async def test_sse_rejects_non_utf8() -> None:
    with pytest.raises(SseProtocolError):
        await parse(b"data: \xff\xfe\n", b"\n")


def test_upstream_json_loses_lone_surrogates_and_keeps_pairs() -> None:
    raw = '{"a": ["\\ud800", {"\\udc00k": "ok \\ud83d\\ude00", "n": 1}], "b": "\\udfff"}'
    assert parse_json(raw) == {"a": ["\ufffd", {"\ufffdk": "ok \U0001f600", "n": 1}], "b": "\ufffd"}
    assert parse_json(b'"\\ud800 alone"') == "\ufffd alone"
    assert parse_json("[1, null]") == [1, None]
    with pytest.raises(ValueError):
        parse_json(b"{not json")

