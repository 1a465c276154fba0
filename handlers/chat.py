"""Web chat API (docs/contract.md §3): sessions, messages, history and the SSE stream."""

from __future__ import annotations

from typing import Any

import tornado.iostream

from buzzi import clock
from buzzi.chat import render_message
from buzzi.errors import ServiceError
from buzzi.streams import HEARTBEAT, parse_event_id
from handlers.base import BaseHandler
from handlers.sse import SseWriter

# Most events coalesced into one socket write when a client's stream has a backlog.
MAX_EVENTS_PER_WRITE = 32


class ChatHandler(BaseHandler):
    """CORS for the widget on other sites: every answer, errors included, echoes the Origin so the
    widget can read it (whether an agent accepts that origin is the chat service's decision); the
    session id in the URL is the credential, so no cookies are involved."""

    def set_default_headers(self) -> None:
        super().set_default_headers()
        origin = self.request.headers.get("Origin")
        if origin:
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Vary", "Origin")

    def options(self, *args: Any) -> None:
        self.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        self.set_header("Access-Control-Allow-Headers", "Content-Type, Last-Event-ID")
        self.set_header("Access-Control-Max-Age", "600")
        self.set_status(204)
        self.finish()


class SessionsHandler(ChatHandler):
    async def post(self) -> None:
        origin = self.request.headers.get("Origin")
        session_id, session = await self.gateway.chat.create_session(self.json_body(), origin, self.client_ip)
        self.write_json({
            "sessionId": session_id, "conversationId": session.conversation_id,
            "expiresAt": clock.iso(session.expires_at),
        }, 201)


class MessageHandler(ChatHandler):
    async def post(self, session_id: str) -> None:
        session = await self.gateway.chat.resolve(session_id)
        body = self.json_body()
        inbox = self.gateway.inbox
        # A free answer slot here: the message is stored claimed by this node and answered at once.
        # Without one, the claim loop (of any node) answers it.
        reservation = await inbox.reserve()
        try:
            message = await self.gateway.chat.post_message(
                session, body, self.client_ip, claim=reservation.claim() if reservation else None)
        except BaseException:
            if reservation:
                reservation.cancel()
            raise
        if reservation:
            reservation.answer(message)
        else:
            inbox.take(message.id)  # the claim loop is the fallback
        self.write_json({"messageId": message.id, "status": "processing"}, 202)


class HistoryHandler(ChatHandler):
    async def get(self, session_id: str) -> None:
        session = await self.gateway.chat.resolve(session_id)
        history = await self.gateway.chat.history(session)
        self.write_json({"conversationId": session.conversation_id, "lastEventId": history.last_event_id,
                         "messages": [render_message(m) for m in history.messages]})


class StreamHandler(ChatHandler):
    """GET /api/chat/{sid}/stream. `Last-Event-ID` (or ?lastEventId= for a widget that reloaded)
    resumes after that event; without a valid one the stream starts at the present."""

    async def get(self, session_id: str) -> None:
        if self.gateway.draining:
            raise ServiceError("Unavailable", status=503)
        session = await self.gateway.chat.resolve(session_id)
        last_event_id = self._last_event_id()
        hub = self.gateway.streams
        live = hub.open(session.stream, session.conversation_id, session.company_id, session.agent_id,
                        self.client_ip)
        del session  # this frame lives as long as the stream: keep only what `live` holds
        sse = SseWriter(self)
        self._live = live
        try:
            sse.retry(self.gateway.settings.chat.retry_ms)
            await sse.flush()
            unflushed = 0
            async for event in hub.events(live, last_event_id, write_now=sse.write_now):
                if event is HEARTBEAT:
                    sse.heartbeat()
                else:
                    sse.event(event.event, event.data, event.id)
                    unflushed += 1
                    # A burst already queued goes out in one write; nothing waits for more to come.
                    if live.queued and unflushed < MAX_EVENTS_PER_WRITE:
                        continue
                await sse.flush()
                if unflushed:
                    hub.sent(live, event, unflushed)
                    unflushed = 0
            if unflushed:  # the stream ended (complete, error, cut off) with a burst still unflushed
                await sse.flush()
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

    def on_connection_close(self) -> None:
        live = getattr(self, "_live", None)
        if live is not None:
            live.closed.set()
