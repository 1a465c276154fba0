"""A small SSE client for tests: reads events (and comments) from a live aiohttp response."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass
class SseEvent:
    id: str | None
    event: str
    data: Any
    comment: str | None = None


async def read_sse(resp: aiohttp.ClientResponse) -> AsyncIterator[SseEvent]:
    """Yield events as they arrive; comments (e.g. heartbeats) come as SseEvent(event="comment")."""
    fields: dict[str, str] = {}
    data_lines: list[str] = []
    async for raw in resp.content:
        line = raw.decode("utf-8").rstrip("\r\n")
        if line == "":
            if data_lines:  # as in browsers: a block without data dispatches nothing
                text = "\n".join(data_lines)
                try:
                    data: Any = json.loads(text) if text else None
                except ValueError:
                    data = text
                yield SseEvent(fields.get("id"), fields.get("event", "message"), data)
            fields, data_lines = {}, []
            continue
        if line.startswith(":"):
            yield SseEvent(None, "comment", None, comment=line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data_lines.append(value)
        elif name in ("id", "event", "retry"):
            fields[name] = value


async def collect_until_terminal(resp: aiohttp.ClientResponse, limit: int = 500) -> list[SseEvent]:
    """All events (not comments) until the stream ends or a complete/error arrives."""
    events: list[SseEvent] = []
    async for ev in read_sse(resp):
        if ev.event == "comment":
            continue
        events.append(ev)
        if ev.event in ("complete", "error") or len(events) >= limit:
            break
    return events
