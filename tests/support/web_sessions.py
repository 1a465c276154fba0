"""A web chat session's stored conversation, for tests that need it before any message.

A new session stores nothing (buzzi/chat.py): its conversation is stored with its first message.
Tests that list, open or take over the conversation of a session that has not sent one store it
here exactly as that first message would (same id, session hash and customer)."""

from __future__ import annotations

from typing import Any

from buzzi.crypto import sha256_hex
from buzzi.models import WEB_CHANNEL, Conversation
from tests.support.gateway import RunningGateway


async def store_conversation(gw: RunningGateway, session: dict[str, Any], company_id: str, agent_id: str,
                             customer: dict[str, Any] | None = None) -> Conversation:
    return await gw.store.add(Conversation(
        id=session["conversationId"], company_id=company_id, agent_id=agent_id, channel=WEB_CHANNEL,
        session_hash=sha256_hex(session["sessionId"]), customer=dict(customer or {}),
    ))
