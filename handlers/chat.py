"""Web chat API (SPEC §3): sessions, messages, history and the SSE stream."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from typing import Any

import tornado.iostream

from buzzi import clock
from buzzi.chat import ChatError, ChatSession, render_message
from buzzi.ratelimit import RateLimited
from buzzi.streams import HEARTBEAT, TooManyStreams, parse_event_id
from handlers.base import ApiError, BaseHandler

log = logging.getLogger("buzzi.handlers.chat")

# A client that cannot take a write within this long is cut off; it resumes by Last-Event-ID.
WRITE_TIMEOUT_SECONDS = 10.0
# Most events coalesced into one socket write when a client's stream has a backlog.
MAX_EVENTS_PER_WRITE = 32


class ChatHandler(BaseHandler):
    """CORS for the widget on other sites: the origin is echoed back only when the agent allows it;
    the session id in the URL is the credential, so no cookies are involved."""

    cors_origin: str | None = None

    def set_cors(self, origin: str | None) -> None:
        if origin:
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Vary", "Origin")

    def options(self, *args: Any) -> None:
        origin = self.request.headers.get("Origin")
        self.set_cors(origin)
        self.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        self.set_header("Access-Control-Allow-Headers", "Content-Type, Last-Event-ID")
        self.set_header("Access-Control-Max-Age", "600")
        self.set_status(204)
        self.finish()

    async def session(self, session_id: str) -> ChatSession:
        try:
            return await self.gateway.chat.resolve(session_id)
        except ChatError as exc:
            raise ApiError(exc.status, exc.message) from None
        finally:
            self.set_cors(self.request.headers.get("Origin"))

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, ChatError):
            e = ApiError(e.status, e.message)
        elif isinstance(e, RateLimited):
            e = ApiError(429, "Rate limit exceeded", headers={"Retry-After": str(e.retry_after)},
                         extra={"retryAfter": e.retry_after})
        elif isinstance(e, TooManyStreams):
            # A place frees up as soon as one of the session's streams ends; the widget's own
            # reconnect delay is a fair hint for when to try again.
            retry_after = max(1, math.ceil(self.gateway.settings.chat.retry_ms / 1000))
            e = ApiError(429, "Too many open streams for this session",
                         headers={"Retry-After": str(retry_after)},
                         extra={"retryAfter": retry_after, "limit": e.limit})
        super()._handle_request_exception(e)


class SessionsHandler(ChatHandler):
    async def post(self) -> None:
        origin = self.request.headers.get("Origin")
        self.set_cors(origin)  # also on errors, so a widget on another site can read them
        body = self.json_body()
        await self.gateway.limiter.check(("ip", self.client_ip, self.gateway.settings.limits.ip_per_minute))
        session_id, session = await self.gateway.chat.create_session(body, origin)
        self.write_json({
            "sessionId": session_id, "conversationId": session.conversation_id,
            "expiresAt": clock.iso(session.expires_at),
        }, 201)


class MessageHandler(ChatHandler):
    async def post(self, session_id: str) -> None:
        session = await self.session(session_id)
        body = self.json_body()
        message = await self.gateway.chat.post_message(session, body, self.client_ip)
        self.gateway.inbox.take(message.id)  # answered on this node at once; the claim loop is the fallback
        self.write_json({"messageId": message.id, "status": "processing"}, 202)


class HistoryHandler(ChatHandler):
    async def get(self, session_id: str) -> None:
        session = await self.session(session_id)
        # The event id first: a client resuming from it may see an answer twice (it dedupes by
        # messageId) but never misses one stored between the two reads.
        last_id = await self.gateway.broker.last_id(session.stream)
        messages = await self.gateway.chat.history(session)
        self.write_json({"conversationId": session.conversation_id, "lastEventId": last_id,
                         "messages": [render_message(m) for m in messages]})


class StreamHandler(ChatHandler):
    """GET /api/chat/{sid}/stream. `Last-Event-ID` (or ?lastEventId= for a widget that reloaded)
    resumes after that event; without a valid one the stream starts at the present."""

    async def get(self, session_id: str) -> None:
        if self.gateway.draining:
            raise ApiError(503, "Unavailable")
        session = await self.session(session_id)
        last_event_id = self._last_event_id()
        hub = self.gateway.streams
        live = hub.open(session.stream, session.conversation_id, session.company_id, session.agent_id)
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        self._live = live
        try:
            self.write(f"retry: {self.gateway.settings.chat.retry_ms}\n\n")
            await self._flush()
            unflushed = 0
            async for event in hub.events(live, last_event_id):
                if event is HEARTBEAT:
                    self.write(": heartbeat\n\n")
                else:
                    # ASCII escapes: text that is not valid Unicode (a lone surrogate from an agent)
                    # must not make the write fail; JSON.parse restores every other character exactly.
                    data = json.dumps(event.data, separators=(",", ":"), ensure_ascii=True)
                    self.write(f"id: {event.id}\nevent: {event.event}\ndata: {data}\n\n")
                    unflushed += 1
                    # A burst already queued goes out in one write; nothing waits for more to come.
                    if live.queued and unflushed < MAX_EVENTS_PER_WRITE:
                        continue
                await self._flush()
                if unflushed:
                    hub.sent(live, event, unflushed)
                    unflushed = 0
            if unflushed:  # the stream ended (complete, error, cut off) with a burst still unflushed
                await self._flush()
                hub.sent(live, event, unflushed)
        except (tornado.iostream.StreamClosedError, TimeoutError):
            pass  # the client went away or could not keep up; it resumes by Last-Event-ID
        finally:
            hub.close(live)
        if not self._finished:
            self.finish()

    def _last_event_id(self) -> str | None:
        """The browser's Last-Event-ID (sent on its automatic reconnects) wins over the ?lastEventId=
        the page opened the stream with; one that is not an event id counts as absent."""
        for value in (self.request.headers.get("Last-Event-ID"), self.get_query_argument("lastEventId", None)):
            if parse_event_id(value) is not None:
                return value
        return None

    async def _flush(self) -> None:
        await asyncio.wait_for(self.flush(), WRITE_TIMEOUT_SECONDS)

    def on_connection_close(self) -> None:
        live = getattr(self, "_live", None)
        if live is not None:
            live.closed.set()
