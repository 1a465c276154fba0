"""Conversations with human takeover: the list (live.js refreshes it from its JSON), one conversation
with its live events, and the takeover, reply and typing actions (JSON for live.js, a redirect for a
plain form). Tenancy and validation are the buzzi.admin services'."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from buzzi import windows
from buzzi.admin.conversations import OWNERS, STATUSES
from buzzi.admin.live import ConversationFeed, LiveItem
from buzzi.admin.render import render_conversation, render_delivery, render_message
from buzzi.errors import NotFound
from buzzi.models import WEB_CHANNEL, Conversation
from handlers.dashboard.live import LiveEvent, LiveEvents
from handlers.dashboard.shell import ID, DashboardHandler
from handlers.dashboard.views import delivery_view, window_label

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


def message_view(message: dict[str, Any], conversation: dict[str, Any]) -> dict[str, Any]:
    """A rendered message with what the thread shows of it: author, delivery badges."""
    message["author"] = message_author(message, conversation)
    message["deliveryView"] = delivery_view(message.get("delivery"))
    return message


def conversation_view(conversation: dict[str, Any], template: str | None) -> dict[str, Any]:
    conversation["windowLabel"] = window_label(conversation.get("window"), template)
    return conversation


def delivery_notification(data: dict[str, Any]) -> dict[str, Any]:
    """A `delivery` notification's stored shape as the API renders it, with the thread's badges, so
    live.js updates the reply's badge in place."""
    inner = data.get("data") if isinstance(data.get("data"), dict) else {}
    raw = inner.get("delivery")
    delivery = render_delivery(raw) if isinstance(raw, dict) else None
    return {**data, "data": {"messageId": inner.get("messageId"), "delivery": delivery,
                             "deliveryView": delivery_view(delivery)}}


class ConversationArea(DashboardHandler):
    nav = "conversations"

    async def template_name(self, conversation: Conversation) -> str | None:
        """The webhook's re-engagement template, for the window's words (WhatsApp)."""
        try:
            adapter = self.gateway.channels.adapter(conversation.channel)
        except KeyError:
            return None
        if not adapter.template_reengagement or not conversation.webhook_id:
            return None
        try:
            webhook = await self.admin.webhooks.get(self.principal, conversation.company_id, conversation.agent_id,
                                                    conversation.webhook_id)
        except NotFound:
            return None
        template = windows.reengagement_template(webhook)
        return str(template["name"]) if template else None

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
        found = await self.admin.conversations.get(self.principal, conv_id)
        conversation = conversation_view(render_conversation(found), await self.template_name(found))
        messages = [message_view(render_message(m), conversation) for m in
                    await self.admin.conversations.messages(self.principal, conv_id, {"limit": "200"})]
        names = await self.admin.live.company_names(self.principal, [conversation["companyId"]])
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
            conversation = render_conversation(await self.admin.conversations.get(self.principal, conv_id))
            self.write_json({"message": message_view(render_message(message), conversation)}, 201)
            return
        self.redirect_to(f"/admin/conversations/{conv_id}", flash="sent")


class TypingAction(ConversationArea):
    """The widget shows "A person is typing…"; live.js calls this at most every couple of seconds."""

    async def post(self, conv_id: str) -> None:
        await self.admin.conversations.typing(self.principal, conv_id)
        self.set_status(204)
        self.finish()


class ConversationEvents(ConversationArea, LiveEvents):
    """`conversation` and `message` items from the store, and the conversation's stream events as the
    widget gets them (thinking, tool_call, delta, complete, error, notification)."""

    async def get(self, conv_id: str) -> None:
        feed = await self.admin.live.conversation_feed(self.principal, conv_id)
        template = await self.template_name(feed.conversation)
        await self.stream(self._items(feed, render_conversation(feed.conversation), template))

    async def _items(self, feed: ConversationFeed, conversation: dict[str, Any], template: str | None
                     ) -> AsyncIterator[LiveEvent]:
        async with contextlib.aclosing(feed.items(self.closed)) as items:
            async for item in items:
                yield None if item is None else self._shape(item, conversation, template)

    @staticmethod
    def _shape(item: LiveItem, conversation: dict[str, Any], template: str | None) -> LiveEvent:
        data = item.data
        if item.event == "conversation":
            conversation.update(conversation_view(data, template))
        elif item.event == "message":
            message_view(data, conversation)
        elif item.event == "notification" and data.get("type") == "delivery":
            data = delivery_notification(data)
        return item.event, data, item.id


ROUTES: list[tuple] = [
    (r"/admin/conversations/?", ConversationsPage),
    (r"/admin/conversations\.json", ConversationsData),
    (CONVERSATION, ConversationPage),
    (rf"{CONVERSATION}/events", ConversationEvents),
    (rf"{CONVERSATION}/handover", HandoverAction),
    (rf"{CONVERSATION}/reply", ReplyAction),
    (rf"{CONVERSATION}/typing", TypingAction),
]
