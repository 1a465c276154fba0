"""Conversations with human takeover: the list (live.js refreshes it from its JSON), one conversation
with its live events, and the takeover, reply and typing actions (JSON for live.js, a redirect for a
plain form). Tenancy and validation are the buzzi.admin services'."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from buzzi.admin.conversations import OWNERS, STATUSES
from buzzi.admin.live import ConversationFeed, LiveItem
from buzzi.admin.render import render_conversation, render_message
from buzzi.models import WEB_CHANNEL
from handlers.dashboard.live import LiveEvent, LiveEvents
from handlers.dashboard.shell import ID, DashboardHandler

FILTERS = ("companyId", "status", "channel", "owner")
CONVERSATION = rf"/admin/conversations/{ID}"


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


class ConversationArea(DashboardHandler):
    nav = "conversations"

    def filters(self) -> dict[str, str]:
        return {name: self.get_query_argument(name, "") or "" for name in FILTERS}

    async def rows(self, filters: dict[str, str]) -> list[dict[str, Any]]:
        query: dict[str, str | None] = {k: (v or None) for k, v in filters.items()}
        found = await self.admin.conversations.list(self.principal, {**query, "limit": "100"})
        names = await self.admin.live.company_names(self.principal, (c.company_id for c in found))
        rows = []
        for conversation in found:
            row = render_conversation(conversation)
            row["companyName"] = names[conversation.company_id]
            row["customerLabel"] = customer_label(row)
            rows.append(row)
        return rows


class ConversationsPage(ConversationArea):
    async def get(self) -> None:
        filters = self.filters()
        rows = await self.rows(filters)
        companies = await self.admin.companies.list(self.principal) if self.principal.is_owner else []
        self.render_page(
            "conversations.html", title="Conversations", rows=rows, filters=filters, companies=companies,
            statuses=STATUSES, channels=(WEB_CHANNEL, *self.gateway.channels.channels), owners=OWNERS,
        )


class ConversationsData(ConversationArea):
    """The list as JSON for live.js to refresh the table in place (same filters as the page)."""

    async def get(self) -> None:
        self.write_json({"conversations": await self.rows(self.filters())})


class ConversationPage(ConversationArea):
    async def get(self, conv_id: str) -> None:
        conversation = render_conversation(await self.admin.conversations.get(self.principal, conv_id))
        messages = [render_message(m) for m in
                    await self.admin.conversations.messages(self.principal, conv_id, {"limit": "200"})]
        names = await self.admin.live.company_names(self.principal, [conversation["companyId"]])
        for message in messages:
            message["author"] = message_author(message, conversation)
        self.render_page(
            "conversation.html", title=f"Conversation {conv_id}", conversation=conversation, messages=messages,
            company_name=names[conversation["companyId"]], customer=customer_label(conversation),
        )


class HandoverAction(ConversationArea):
    async def post(self, conv_id: str) -> None:
        action = self.field("action")
        conversation = await self.admin.conversations.handover(self.principal, conv_id, {"action": action})
        if self.wants_json:
            self.write_json({"conversation": render_conversation(conversation)})
            return
        self.redirect_to(f"/admin/conversations/{conv_id}", flash="taken" if action == "take" else "released")


class ReplyAction(ConversationArea):
    async def post(self, conv_id: str) -> None:
        message = await self.admin.conversations.reply(self.principal, conv_id, {"content": self.field("content")})
        if self.wants_json:
            self.write_json({"message": render_message(message)}, 201)
            return
        self.redirect_to(f"/admin/conversations/{conv_id}", flash="sent")


class TypingAction(ConversationArea):
    """The widget shows "A person is typing…"; live.js calls this at most every couple of seconds."""

    async def post(self, conv_id: str) -> None:
        await self.admin.conversations.typing(self.principal, conv_id)
        self.set_status(204)
        self.finish()


class ConversationEvents(LiveEvents):
    """`conversation` and `message` items from the store, and the conversation's stream events as the
    widget gets them (thinking, tool_call, delta, complete, error, notification)."""

    nav = "conversations"

    async def get(self, conv_id: str) -> None:
        feed = await self.admin.live.conversation_feed(self.principal, conv_id)
        await self.stream(self._items(feed, render_conversation(feed.conversation)))

    async def _items(self, feed: ConversationFeed, conversation: dict[str, Any]) -> AsyncIterator[LiveEvent]:
        async with contextlib.aclosing(feed.items(self.closed)) as items:
            async for item in items:
                yield None if item is None else self._shape(item, conversation)

    @staticmethod
    def _shape(item: LiveItem, conversation: dict[str, Any]) -> LiveEvent:
        if item.event == "conversation":
            conversation.update(item.data)
        if item.event == "message":
            item.data["author"] = message_author(item.data, conversation)
        return item.event, item.data, item.id


ROUTES: list[tuple] = [
    (r"/admin/conversations/?", ConversationsPage),
    (r"/admin/conversations\.json", ConversationsData),
    (CONVERSATION, ConversationPage),
    (rf"{CONVERSATION}/events", ConversationEvents),
    (rf"{CONVERSATION}/handover", HandoverAction),
    (rf"{CONVERSATION}/reply", ReplyAction),
    (rf"{CONVERSATION}/typing", TypingAction),
]
