"""Human takeover: a person takes a conversation from the bot, replies, and gives it back."""

from __future__ import annotations

import logging
from typing import Any

from buzzi.broker.base import StreamLog
from buzzi.chat import conversation_stream
from buzzi.delivery import ReplyDelivery
from buzzi.errors import ServiceError
from buzzi.events import complete, notification
from buzzi.ids import new_id
from buzzi.models import Conversation, Message
from buzzi.store.base import Store

log = logging.getLogger("buzzi.conversations")


class ConversationError(ServiceError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, status=status)


class ConversationService:
    def __init__(self, store: Store, broker: StreamLog, delivery: ReplyDelivery) -> None:
        self.store = store
        self.broker = broker
        self.delivery = delivery

    async def publish(self, conversation_id: str, name: str, data: dict[str, Any]) -> None:
        await self.broker.publish(conversation_stream(conversation_id), name, data)

    async def handover(self, conversation: Conversation, action: str, by: str, note: str | None = None
                       ) -> Conversation:
        """action "take": a human owns it and the bot stays silent; "release": back to the bot.
        Inputs are checked once, by the caller's service (buzzi.admin.conversations)."""
        owner = "human" if action == "take" else "bot"
        updated = await self.store.update(Conversation, conversation.id, {"owner": owner})
        if updated is None:
            raise ConversationError(404, "Conversation not found")
        # Who acted is the operators' business: it goes to the log, never to the customer's stream.
        log.info("conversation %s: owner %s (%s)", conversation.id, owner, by)
        await self.publish(conversation.id, *_event(notification(
            "handover", {"owner": owner, **({"message": note} if note else {})})))
        return updated

    async def human_reply(self, conversation: Conversation, content: str, author: str) -> Message:
        """Store a person's reply and deliver it on the conversation's channel or widget stream."""
        reply = Message(
            id=new_id("message"), conversation_id=conversation.id, company_id=conversation.company_id,
            agent_id=conversation.agent_id, role="human", content=content, channel=conversation.channel,
            webhook_id=conversation.webhook_id, metadata={"author": "human", "by": author},
        )
        await self.store.add(reply)
        await self.store.record_message(conversation.id, reply.created_at)
        await self.publish(conversation.id, *_event(complete(
            content, {"messageId": reply.id, "author": "human", "tokens": {"input": 0, "output": 0}})))
        await self.delivery.deliver(conversation, reply, None)
        return reply

    async def typing(self, conversation: Conversation) -> None:
        await self.publish(conversation.id, *_event(notification("typing", {"author": "human"})))


def _event(event: Any) -> tuple[str, dict[str, Any]]:
    return event.name, event.data
