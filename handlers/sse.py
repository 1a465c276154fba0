"""The one Server-Sent Events writer, shared by the chat API's stream and the dashboard's live pages.

Data is JSON escaped to ASCII: text that is not valid Unicode (a lone surrogate from an agent or a
channel) must not make a write raise UnicodeEncodeError and kill the stream; JSON.parse in the
browser restores every other character exactly."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import tornado.web

# A client that cannot take a write within this long is cut off; it reconnects (and resumes).
WRITE_TIMEOUT_SECONDS = 10.0


def encode_data(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=True, default=str)


class SseWriter:
    """Writes one handler's event stream. Writes are buffered until `flush`, so a caller can
    coalesce a burst of events into one socket write."""

    def __init__(self, handler: tornado.web.RequestHandler, *, cache_control: str = "no-cache",
                 write_timeout: float = WRITE_TIMEOUT_SECONDS) -> None:
        self.handler = handler
        self.write_timeout = write_timeout
        handler.set_header("Content-Type", "text/event-stream")
        handler.set_header("Cache-Control", cache_control)
        handler.set_header("X-Accel-Buffering", "no")  # nginx must pass events on as they come

    def retry(self, milliseconds: int) -> None:
        """The EventSource reconnect delay after the stream ends."""
        self.handler.write(f"retry: {milliseconds}\n\n")

    def event(self, event: str, data: Any, event_id: str | None = None) -> None:
        head = f"id: {event_id}\n" if event_id else ""
        self.handler.write(f"{head}event: {event}\ndata: {encode_data(data)}\n\n")

    def heartbeat(self) -> None:
        self.handler.write(": heartbeat\n\n")

    async def flush(self) -> None:
        """Send what is buffered; raises TimeoutError for a client that does not take it in time,
        and tornado.iostream.StreamClosedError for one that went away."""
        await asyncio.wait_for(self.handler.flush(), self.write_timeout)
