"""Conversations as an admin sees them: lists, history with delivery status, and human takeover."""

from __future__ import annotations

from typing import Any

from buzzi.admin import scope
from buzzi.admin import validation as v
from buzzi.auth import Principal
from buzzi.channels.registry import CHANNELS
from buzzi.conversations import ConversationService
from buzzi.errors import Conflict
from buzzi.models import WEB_CHANNEL, Conversation, Message
from buzzi.store.base import Store

STATUSES = ("open", "closed")
OWNERS = ("bot", "human")


class AdminConversations:
    def __init__(self, store: Store, service: ConversationService) -> None:
        self.store = store
        self.service = service

    async def list(self, principal: Principal, query: dict[str, str | None]) -> list[Conversation]:
        """Newest activity first. A company admin's list is always their own company's."""
        company = scope.company_filter(principal, query.get("companyId"))
        if company is None:
            return []
        where: dict[str, Any] = dict(company)
        if query.get("agentId"):
            where["agent_id"] = query["agentId"]
        if query.get("status"):
            where["status"] = v.choice(query["status"], "status", STATUSES)
        if query.get("channel"):
            where["channel"] = v.choice(query["channel"], "channel", (*CHANNELS, WEB_CHANNEL))
        if query.get("owner"):
            where["owner"] = v.choice(query["owner"], "owner", OWNERS)
        count = v.limit(query.get("limit"), default=50, maximum=500)
        return await self.store.find(Conversation, order_by="updated_at", descending=True, limit=count, **where)

    async def get(self, principal: Principal, conversation_id: str) -> Conversation:
        return await scope.conversation(self.store, principal, conversation_id)

    async def messages(self, principal: Principal, conversation_id: str, query: dict[str, str | None]
                       ) -> list[Message]:
        """Oldest first; with `limit`, the latest `limit` messages (still oldest first)."""
        conversation = await scope.conversation(self.store, principal, conversation_id)
        count = v.limit(query.get("limit"), default=500, maximum=5000)
        newest = await self.store.find(Message, conversation_id=conversation.id, order_by="created_at",
                                       descending=True, limit=count)
        return list(reversed(newest))

    async def handover(self, principal: Principal, conversation_id: str, data: Any) -> Conversation:
        conversation = await scope.conversation(self.store, principal, conversation_id)
        data = v.body_object(data)
        v.only(data, ("action", "message"))
        action = v.choice(v.require(data, "action"), "action", ("take", "release"))
        note = v.string(data["message"], "message", max_len=1000) if data.get("message") is not None else None
        return await self.service.handover(conversation, action, principal.email, note)

    async def reply(self, principal: Principal, conversation_id: str, data: Any) -> Message:
        """The human's reply, on the conversation's channel; only while a human has taken it over,
        so a person and the bot never answer the same message."""
        conversation = await scope.conversation(self.store, principal, conversation_id)
        data = v.body_object(data)
        v.only(data, ("content",))
        content = v.string(v.require(data, "content"), "content", max_len=20000)
        if conversation.owner != "human":
            raise Conflict("The conversation is not taken over by a human: take it first (handover take)")
        reply = await self.service.human_reply(conversation, content, principal.email)
        # Delivery on a channel is recorded on the message: read it back so the answer shows it.
        return await self.store.get(Message, reply.id) or reply

    async def typing(self, principal: Principal, conversation_id: str) -> None:
        conversation = await scope.conversation(self.store, principal, conversation_id)
        await self.service.typing(conversation)
