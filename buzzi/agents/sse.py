"""A Server-Sent Events reader for upstream streams (OpenAI chat completions, company services).

Follows the WHATWG parsing rules that matter here: `event:` and `data:` fields, multi-line data
joined by "\n", one optional space after the colon, comment lines ignored, an event dispatched at
a blank line. An unterminated event at end of stream is dropped, as browsers do.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass


class SseProtocolError(ValueError):
    """The upstream stream is not valid SSE (e.g. a line longer than the reader accepts)."""


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: str


async def iter_sse(lines: AsyncIterable[bytes]) -> AsyncIterator[SseEvent]:
    """Parse an async iterable of raw lines (aiohttp's `response.content`) into events."""
    event = ""
    data: list[str] = []
    iterator = aiter(lines)
    while True:
        try:
            raw = await anext(iterator)
        except StopAsyncIteration:
            return
        except ValueError as exc:  # aiohttp: "Chunk too big" / "Line is too long"
            raise SseProtocolError(str(exc)) from exc
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            raise SseProtocolError("stream is not UTF-8") from exc
        if not line:
            if data:
                yield SseEvent(event or "message", "\n".join(data))
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        # id / retry / unknown fields carry nothing a runner needs
