"""Dashboard part 2: conversations with human takeover, and live sessions across the cluster.

Pages render what is stored; static/live.js then keeps them current: the conversation list polls
its JSON, a conversation and the sessions page follow Server-Sent Events (buzzi.admin.live feeds).
Tenancy and validation are the buzzi.admin services'; the shell (handlers.dashboard_shell) does
login and the CSRF check of every POST.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import weakref
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import tornado.iostream

from buzzi import clock
from buzzi.admin.conversations import OWNERS, STATUSES
from buzzi.admin.errors import AdminError
from buzzi.admin.live import ConversationFeed, LiveItem, SessionsFeed, company_names
from buzzi.admin.render import render_conversation, render_message
from buzzi.models import CHANNELS, WEB_CHANNEL
from handlers.dashboard_shell import DashboardHandler

if TYPE_CHECKING:
    from buzzi.runtime import Gateway

ID = r"([A-Za-z0-9_\-]{1,100})"
FILTERS = ("companyId", "status", "channel", "owner")
WRITE_TIMEOUT_SECONDS = 10.0
RETRY_MS = 2000  # EventSource reconnect delay after a stream ends (drain, overflow)

# Open admin SSE responses per gateway: what a drain waits for, and what tests check for leaks.
_open: weakref.WeakKeyDictionary[Gateway, set[LiveEvents]] = weakref.WeakKeyDictionary()


def open_streams(gateway: Gateway) -> set[LiveEvents]:
    return _open.setdefault(gateway, set())


def when(iso: str | None) -> str:
    """"2026-11-26 23:48:28 UTC" from an ISO time; live.js formats the same way."""
    if not iso:
        return ""
    return iso.replace("T", " ").split(".")[0].rstrip("Z") + " UTC"


def customer_label(conversation: dict[str, Any]) -> str:
    customer = conversation.get("customer") or {}
    for key in ("name", "email", "id"):
        if customer.get(key):
            return str(customer[key])
    return conversation.get("externalChatId") or ""


def message_author(message: dict[str, Any], conversation: dict[str, Any]) -> str:
    role = message["role"]
    if role == "user":
        return customer_label(conversation) or "Customer"
    if role == "human":
        return str((message.get("metadata") or {}).get("by") or "Support team")
    if role == "assistant":
        return "Bot"
    return role


def wants_json(handler: DashboardHandler) -> bool:
    """live.js posts with `Accept: application/json` and gets JSON; a plain form gets a redirect."""
    return handler.request.headers.get("Accept", "").startswith("application/json")


class ConversationsPage(DashboardHandler):
    nav = "conversations"

    async def get(self) -> None:
        filters = {name: self.get_query_argument(name, "") or "" for name in FILTERS}
        rows = await conversation_rows(self, filters)
        companies = await self.admin.companies.list(self.principal) if self.principal.is_owner else []
        self.render_page(
            "conversations.html", title="Conversations", rows=rows, filters=filters, companies=companies,
            statuses=STATUSES, channels=(WEB_CHANNEL, *CHANNELS), owners=OWNERS, when=when,
        )


class ConversationsData(DashboardHandler):
    """The list as JSON for live.js to refresh the table in place (same filters as the page)."""

    async def get(self) -> None:
        filters = {name: self.get_query_argument(name, "") or "" for name in FILTERS}
        self.write_json({"conversations": await conversation_rows(self, filters)})


async def conversation_rows(handler: DashboardHandler, filters: dict[str, str]) -> list[dict[str, Any]]:
    query: dict[str, str | None] = {k: (v or None) for k, v in filters.items()}
    found = await handler.admin.conversations.list(handler.principal, {**query, "limit": "100"})
    names = await company_names(handler.gateway.store, (c.company_id for c in found))
    rows = []
    for conversation in found:
        row = render_conversation(conversation)
        row["companyName"] = names[conversation.company_id]
        row["customerLabel"] = customer_label(row)
        rows.append(row)
    return rows


class ConversationPage(DashboardHandler):
    nav = "conversations"

    async def get(self, conv_id: str) -> None:
        conversation = render_conversation(await self.admin.conversations.get(self.principal, conv_id))
        messages = [render_message(m) for m in
                    await self.admin.conversations.messages(self.principal, conv_id, {"limit": "200"})]
        names = await company_names(self.gateway.store, [conversation["companyId"]])
        for message in messages:
            message["author"] = message_author(message, conversation)
        self.render_page(
            "conversation.html", title=f"Conversation {conv_id}", conversation=conversation, messages=messages,
            company_name=names[conversation["companyId"]],
            customer=customer_label(conversation), when=when,
        )


class LiveAction(DashboardHandler):
    """A POST from a conversation page: JSON in and out for live.js, a redirect for a plain form."""

    nav = "conversations"

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, AdminError) and wants_json(self) and not self._finished:
            self.write_json({"error": e.message, **e.extra}, e.status)
            return
        super()._handle_request_exception(e)


class HandoverAction(LiveAction):

    async def post(self, conv_id: str) -> None:
        action = self.field("action")
        conversation = await self.admin.conversations.handover(self.principal, conv_id, {"action": action})
        if wants_json(self):
            self.write_json({"conversation": render_conversation(conversation)})
            return
        self.redirect_to(f"/admin/conversations/{conv_id}", flash="taken" if action == "take" else "released")


class ReplyAction(LiveAction):

    async def post(self, conv_id: str) -> None:
        message = await self.admin.conversations.reply(self.principal, conv_id, {"content": self.field("content")})
        if wants_json(self):
            self.write_json({"message": render_message(message)}, 201)
            return
        self.redirect_to(f"/admin/conversations/{conv_id}", flash="sent")


class TypingAction(LiveAction):
    """The widget shows "A person is typing…"; live.js calls this at most every couple of seconds."""

    async def post(self, conv_id: str) -> None:
        await self.admin.conversations.typing(self.principal, conv_id)
        self.set_status(204)
        self.finish()


class SessionsPage(DashboardHandler):
    nav = "sessions"

    async def get(self) -> None:
        snapshot = await SessionsFeed(self.gateway.store, self.gateway.broker, self.principal).snapshot()
        self.render_page("sessions.html", title="Live sessions", snapshot=snapshot, when=when)


class LiveEvents(DashboardHandler):
    """Server-Sent Events to a dashboard page, ending when the client goes away or the node drains."""

    closed: asyncio.Event

    async def stream(self, items: AsyncIterator[tuple[str, dict[str, Any], str | None] | None]) -> None:
        self.closed = asyncio.Event()
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache, no-store")
        self.set_header("X-Accel-Buffering", "no")
        streams = open_streams(self.gateway)
        streams.add(self)
        try:
            self.write(f"retry: {RETRY_MS}\n\n")
            await self._flush()
            async with contextlib.aclosing(items) as events:
                async for item in events:
                    if self.gateway.draining:
                        break
                    if item is None:
                        self.write(": heartbeat\n\n")
                    else:
                        name, data, event_id = item
                        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)
                        self.write((f"id: {event_id}\n" if event_id else "") + f"event: {name}\ndata: {text}\n\n")
                    await self._flush()
        except (tornado.iostream.StreamClosedError, TimeoutError):
            pass  # the client went away or could not keep up: EventSource reconnects for a fresh picture
        finally:
            self.closed.set()
            streams.discard(self)
        if not self._finished:
            self.finish()

    async def _flush(self) -> None:
        await asyncio.wait_for(self.flush(), WRITE_TIMEOUT_SECONDS)

    def on_connection_close(self) -> None:
        closed = getattr(self, "closed", None)
        if closed is not None:
            closed.set()


class ConversationEvents(LiveEvents):
    """`conversation` and `message` items from the store, and the conversation's stream events as the
    widget gets them (thinking, tool_call, delta, complete, error, notification)."""

    async def get(self, conv_id: str) -> None:
        rendered = render_conversation(await self.admin.conversations.get(self.principal, conv_id))
        feed = ConversationFeed(self.gateway.store, self.gateway.broker, conv_id)
        await self.stream(self._items(feed, rendered))

    async def _items(self, feed: ConversationFeed, conversation: dict[str, Any]
                     ) -> AsyncIterator[tuple[str, dict[str, Any], str | None] | None]:
        async with contextlib.aclosing(feed.items(self.closed)) as items:
            async for item in items:
                yield None if item is None else self._shape(item, conversation)

    @staticmethod
    def _shape(item: LiveItem, conversation: dict[str, Any]) -> tuple[str, dict[str, Any], str | None]:
        if item.event == "conversation":
            conversation.update(item.data)
        if item.event == "message":
            item.data["author"] = message_author(item.data, conversation)
        return item.event, item.data, item.id


class SessionsEvents(LiveEvents):
    """A `snapshot` event whenever the visible sessions or nodes change (checked every 1.5 s)."""

    async def get(self) -> None:
        feed = SessionsFeed(self.gateway.store, self.gateway.broker, self.principal)
        await self.stream(self._items(feed))

    async def _items(self, feed: SessionsFeed) -> AsyncIterator[tuple[str, dict[str, Any], str | None] | None]:
        async with contextlib.aclosing(feed.snapshots(self.closed)) as snapshots:
            async for snapshot in snapshots:
                yield None if snapshot is None else ("snapshot", {**snapshot, "at": clock.iso(clock.now())}, None)


CONVERSATION = rf"/admin/conversations/{ID}"

ROUTES: list[tuple] = [
    (r"/admin/conversations/?", ConversationsPage),
    (r"/admin/conversations\.json", ConversationsData),
    (CONVERSATION, ConversationPage),
    (rf"{CONVERSATION}/events", ConversationEvents),
    (rf"{CONVERSATION}/handover", HandoverAction),
    (rf"{CONVERSATION}/reply", ReplyAction),
    (rf"{CONVERSATION}/typing", TypingAction),
    (r"/admin/sessions/?", SessionsPage),
    (r"/admin/sessions/events", SessionsEvents),
]

__all__ = ["ROUTES", "open_streams"]
