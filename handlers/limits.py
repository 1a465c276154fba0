"""Request bodies at the transport: each route's size limit and the body timeout, enforced while a
request arrives, before any handler reads or parses it (docs/contract.md "Public endpoints under
hostile load").

Tornado reads the whole body before a handler's prepare(), and answers a Content-Length over its
own limit with a bare 400 and a closed connection. `RequestGuard` wraps the application's
per-request delegate instead: in headers_received it picks the route's limit, sets the body
timeout, and answers 413 `{"error": "Payload too large"}` itself when the declared length is over
the limit, without reading the body; a chunked body is counted as it arrives and refused the same
way once the count passes the limit."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from asyncio import Future
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tornado import gen, httputil
from tornado.http1connection import HTTP1Connection
from tornado.iostream import IOStream, StreamClosedError

WEBHOOK_PREFIX = "/api/webhooks/"
# Bodies slightly over webhooks.max_body_bytes still reach the webhook intake, which answers 413
# itself after its earlier checks (404, 403: docs/contract.md §2) and records the attempt in the
# delivery log; beyond this headroom the transport refuses without reading.
WEBHOOK_HEADROOM = 64 * 1024
# After a refusal, what the client still sends is read and dropped for at most this long, so that
# closing does not reset the connection before the client has read the 413 (a "lingering close").
LINGER_SECONDS = 5.0
_DRAIN_BYTES = 64 * 1024

_BODY = json.dumps({"error": "Payload too large"}).encode()
REFUSAL = b"\r\n".join([
    b"HTTP/1.1 413 Payload Too Large",
    b"Content-Type: application/json; charset=UTF-8",
    b"Content-Length: %d" % len(_BODY),
    b"X-Content-Type-Options: nosniff",
    b"Connection: close",
    b"",
    _BODY,
])

# (method, path, seconds since the headers arrived, client address) of a refused request.
OnRefused = Callable[[str, str, float, str], None]


@dataclass(frozen=True)
class BodyLimits:
    default: int  # every route but channel webhooks: chat, admin API, dashboard (server.max_body_bytes)
    webhooks: int  # channel webhooks: webhooks.max_body_bytes + WEBHOOK_HEADROOM
    timeout_seconds: float  # the whole body must arrive within this (server.body_timeout_seconds)

    def for_path(self, path: str) -> int:
        return self.webhooks if path.startswith(WEBHOOK_PREFIX) else self.default

    @property
    def largest(self) -> int:
        return max(self.default, self.webhooks)


class RequestGuard(httputil.HTTPServerConnectionDelegate):
    """What the HTTPServer serves: the application, with every request passing `_GuardedRequest`."""

    def __init__(self, app: httputil.HTTPServerConnectionDelegate, limits: BodyLimits,
                 on_refused: OnRefused) -> None:
        self.app = app
        self.limits = limits
        self.on_refused = on_refused

    def start_request(self, server_conn: object, request_conn: httputil.HTTPConnection
                      ) -> httputil.HTTPMessageDelegate:
        inner = self.app.start_request(server_conn, request_conn)
        assert isinstance(request_conn, HTTP1Connection)  # the only connection HTTPServer makes
        return _GuardedRequest(inner, request_conn, self.limits, self.on_refused)

    def on_close(self, server_conn: object) -> None:
        self.app.on_close(server_conn)


class _GuardedRequest(httputil.HTTPMessageDelegate):
    def __init__(self, inner: httputil.HTTPMessageDelegate, conn: HTTP1Connection, limits: BodyLimits,
                 on_refused: OnRefused) -> None:
        self.inner = inner
        self.conn = conn
        self.limits = limits
        self.on_refused = on_refused
        self.limit = limits.default
        self.received = 0
        self.refused = False
        self.answered: Future[None] | None = None
        self.started = 0.0
        self.start_line: httputil.RequestStartLine | None = None

    def headers_received(self, start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
                         headers: httputil.HTTPHeaders) -> Awaitable[None] | None:
        assert isinstance(start_line, httputil.RequestStartLine)
        self.start_line = start_line
        self.started = time.monotonic()
        self.limit = self.limits.for_path(start_line.path)
        self.conn.set_body_timeout(self.limits.timeout_seconds)
        declared = _content_length(headers)
        if declared is not None and declared > self.limit:
            # Nothing of the body has been read: take the stream from Tornado (no 100-continue,
            # no body read, no bare 400) and answer on it.
            return self._refuse_unread(self.conn.detach())
        if declared is not None:
            self.conn.set_max_body_size(self.limit)
            if _buffered(self.conn.stream) >= declared:
                # The whole body came with the headers (nearly every webhook): reading it cannot
                # wait on the client, so Tornado's timer for it (a Task, a Future and a timer
                # handle per request) would only be armed and cancelled. No handler streams its
                # body (stream_request_body), so nothing else can be slow in that read.
                self.conn.set_body_timeout(None)  # type: ignore[arg-type]
        # A chunked body keeps the transport maximum (make_server): Tornado would refuse a
        # declared chunk over the route's limit with a bare 400; data_received counts instead.
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        if self.refused:
            return None  # already answered: the rest of the body is read and dropped
        self.received += len(chunk)
        if self.received > self.limit:
            # Tornado is still reading this chunked body (a read is pending on the stream), so
            # answer and half-close here, and let it drop the rest: until the body ends (finish),
            # the body timeout or the transport maximum, whichever comes first.
            self._record_refusal()
            self.answered = answer_and_half_close(self.conn.stream, REFUSAL)
            return None
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        if not self.refused:
            self.inner.finish()
            return
        # The whole body was dropped: end the connection once the 413 is out.
        stream = self.conn.stream
        if self.answered is None or self.answered.done():
            stream.close()
        else:
            self.answered.add_done_callback(lambda _: stream.close())

    def on_connection_close(self) -> None:
        self.inner.on_connection_close()

    async def _refuse_unread(self, stream: IOStream) -> None:
        self._record_refusal()
        await answer_and_linger(stream, REFUSAL)

    def _record_refusal(self) -> None:
        self.refused = True
        assert self.start_line is not None
        remote_ip = getattr(self.conn.context, "remote_ip", "") or ""
        self.on_refused(self.start_line.method, self.start_line.path, time.monotonic() - self.started, remote_ip)


async def answer_and_linger(stream: IOStream, response: bytes) -> None:
    """On a stream we own: write `response`, end our side, drop what the client still sends (at
    most LINGER_SECONDS), then close, so a client still sending its body reads the answer
    instead of a connection reset."""
    try:
        await stream.write(response)
        stream.socket.shutdown(socket.SHUT_WR)
        deadline = stream.io_loop.time() + LINGER_SECONDS
        while True:
            await gen.with_timeout(deadline, stream.read_bytes(_DRAIN_BYTES, partial=True),
                                   quiet_exceptions=(StreamClosedError,))
    except (StreamClosedError, TimeoutError, OSError):
        pass  # the client closed, or lingered too long, or the socket is gone: all the same here
    finally:
        stream.close()


def answer_and_half_close(stream: IOStream, response: bytes) -> Future[None]:
    """Write `response` and end our side once it is flushed; reading goes on elsewhere."""
    def written(future: Future[None]) -> None:
        if future.exception() is None and stream.socket is not None:
            with contextlib.suppress(OSError):
                stream.socket.shutdown(socket.SHUT_WR)

    future = stream.write(response)
    future.add_done_callback(written)
    return future


def _buffered(stream: IOStream) -> int:
    """Bytes already read from the socket and not yet consumed; 0 when Tornado does not say."""
    size = getattr(stream, "_read_buffer_size", 0)  # Tornado's own count (no public accessor)
    return size if isinstance(size, int) else 0


def _content_length(headers: httputil.HTTPHeaders) -> int | None:
    """The declared Content-Length when it is one plain number; anything odd is Tornado's to refuse."""
    value: Any = headers.get("Content-Length")
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None
