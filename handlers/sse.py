"""The one Server-Sent Events writer, shared by the chat API's stream and the dashboard's live pages.

Data is JSON escaped to ASCII: text that is not valid Unicode (a lone surrogate from an agent or a
channel) must not make a write raise UnicodeEncodeError and kill the stream; JSON.parse in the
browser restores every other character exactly."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

import tornado.web

from buzzi import jsoncodec

# A client that cannot take a write within this long is cut off; it reconnects (and resumes).
WRITE_TIMEOUT_SECONDS = 10.0


class LoggedEvent(Protocol):
    """What `write_now` writes: a stream event as the hub hands it over (buzzi.broker.base.StreamEvent)."""

    @property
    def id(self) -> str: ...

    @property
    def event(self) -> str: ...

    @property
    def data(self) -> Any: ...


def _ignore_outcome(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: a client that went away is no error to log


def encode_data(data: Any) -> str:
    # orjson first (several times faster); its UTF-8 output is kept only when it is all ASCII
    # (most events), else the standard library writes the \u escapes.
    try:
        raw = jsoncodec.dumpb(data)
    except TypeError:  # a type JSON does not know: written as its str(), as before
        return json.dumps(data, separators=(",", ":"), ensure_ascii=True, default=str)
    if raw.isascii():
        return raw.decode("ascii")
    return json.dumps(data, separators=(",", ":"), ensure_ascii=True, default=str)


class SseWriter:
    """Writes one handler's event stream. Writes are buffered until `flush`, so a caller can
    coalesce a burst of events into one socket write."""

    __slots__ = ("_draining", "handler", "write_timeout")  # one per open stream

    def __init__(self, handler: tornado.web.RequestHandler, *, cache_control: str = "no-cache",
                 write_timeout: float = WRITE_TIMEOUT_SECONDS) -> None:
        self.handler = handler
        self.write_timeout = write_timeout
        self._draining: asyncio.Future[None] | None = None  # a write_now the socket has not taken yet
        handler.set_header("Content-Type", "text/event-stream")
        handler.set_header("Cache-Control", cache_control)
        handler.set_header("X-Accel-Buffering", "no")  # nginx must pass events on as they come

    def retry(self, milliseconds: int) -> None:
        """The EventSource reconnect delay after the stream ends."""
        self.handler.write(f"retry: {milliseconds}\n\n")

    def event(self, event: str, data: Any, event_id: str | None = None) -> None:
        head = f"id: {event_id}\n" if event_id else ""
        self.handler.write(f"{head}event: {event}\ndata: {encode_data(data)}\n\n")

    def write_now(self, event: LoggedEvent) -> bool:
        """Write and send one broker event now, without waiting: for StreamHub.events' fan-out.
        False when an earlier write_now is still waiting for the socket (the client is slow): the
        caller then goes through `flush`, which waits with the write timeout."""
        draining = self._draining
        if draining is not None and not draining.done():
            return False
        self.event(event.event, event.data, event.id)
        flushed = self.handler.flush()
        if flushed.done():
            flushed.result()  # raises for a client that went away
        else:
            self._draining = flushed
            flushed.add_done_callback(_ignore_outcome)  # a failure ends the stream through its task
        return True

    def heartbeat(self) -> None:
        self.handler.write(": heartbeat\n\n")

    async def flush(self) -> None:
        """Send what is buffered; raises TimeoutError for a client that does not take it in time,
        and tornado.iostream.StreamClosedError for one that went away."""
        draining = self._draining
        if draining is not None:
            self._draining = None
            if not draining.done():
                await asyncio.wait_for(draining, self.write_timeout)
        flushed = self.handler.flush()
        if flushed.done():  # the socket took it all at once: no timer to arm (the common case)
            flushed.result()
            return
        await asyncio.wait_for(flushed, self.write_timeout)
