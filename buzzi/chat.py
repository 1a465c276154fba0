"""Web chat sessions and messages (docs/contract.md §3), independent of HTTP.

A session id is a bearer secret; only its sha256 is stored (on the conversation) and used as a
cache key, so neither the store nor Redis ever holds a usable session id.

Anyone can start sessions (company and agent ids are public), so a new session costs no store
write: it lives in the broker's KeyValue with the idle TTL, holding the id its conversation will
get, and the conversation is stored with the first message. An unused session simply expires;
its history is empty and its stream works like any other (docs/contract.md §5).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from buzzi import clock
from buzzi.broker.base import KeyValue, StreamLog, WakeUps, wake_inboxes
from buzzi.config import Settings
from buzzi.crypto import sha256_hex
from buzzi.errors import ServiceError
from buzzi.ids import new_id, new_session_id
from buzzi.models import PENDING, PROCESSING, WEB_CHANNEL, Agent, Company, Conversation, Message
from buzzi.ratelimit import RateLimiter
from buzzi.store.base import DuplicateKey, Store

MAX_ATTACHMENTS = 10
HISTORY_LIMIT = 200  # newest messages a (re)loading widget gets


class ChatError(ServiceError):
    """An expected refusal: `status` and `message` go to the client as they are."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, status=status)


class InvalidSession(ChatError):
    def __init__(self) -> None:
        super().__init__(401, "Invalid session")


@dataclass(frozen=True)
class ChatSession:
    key: str  # sha256 of the session id
    conversation_id: str
    company_id: str
    agent_id: str
    expires_at: float
    # False until the first message stores the conversation (with this customer).
    stored: bool = True
    customer: dict[str, Any] = field(default_factory=dict)

    @property
    def stream(self) -> str:
        return conversation_stream(self.conversation_id)


@dataclass(frozen=True)
class History:
    last_event_id: str | None  # resume the stream after this event
    messages: list[Message]  # oldest first


def conversation_stream(conversation_id: str) -> str:
    return f"conv:{conversation_id}"


class ChatBroker(KeyValue, StreamLog, WakeUps, Protocol):
    """What chat uses of the broker: the session cache, the stream's newest id, inbox wake-ups."""


class ChatService:
    def __init__(self, store: Store, broker: ChatBroker, limiter: RateLimiter, settings: Settings) -> None:
        self.store = store
        self.broker = broker
        self.limiter = limiter
        self.settings = settings
        self.ttl = settings.chat.session_ttl_seconds

    async def load_agent(self, company_id: Any, agent_id: Any) -> tuple[Company, Agent]:
        if not isinstance(company_id, str) or not isinstance(agent_id, str):
            raise ChatError(400, "companyId and agentId must be strings")
        company = await self.store.get(Company, company_id)
        agent = await self.store.get(Agent, agent_id)
        if company is None or agent is None or agent.company_id != company.id or agent.status != "active":
            raise ChatError(404, "Agent not found")
        return company, agent

    @staticmethod
    def origin_allowed(agent: Agent, origin: str | None) -> bool:
        """No list = any origin; with a list, a browser Origin must be in it ('*' allows all)."""
        if not agent.allowed_origins or "*" in agent.allowed_origins:
            return True
        return origin is not None and origin.rstrip("/") in [o.rstrip("/") for o in agent.allowed_origins]

    async def create_session(self, body: dict[str, Any], origin: str | None, ip: str) -> tuple[str, ChatSession]:
        await self.limiter.check(("ip", ip, self.settings.limits.ip_per_minute))
        company, agent = await self.load_agent(body.get("companyId"), body.get("agentId"))
        if not self.origin_allowed(agent, origin):
            raise ChatError(403, "Origin not allowed")
        if not company.subscription_active():
            raise ChatError(403, "Subscription not active")
        customer = _customer(body.get("customer"))
        # Sessions have their own budget, never the company's message budget. Counted only once the
        # request is otherwise good: refused requests (and made-up company ids) neither spend a real
        # company's budget nor create limiter keys.
        await self.limiter.check_session_start(company.id, ip)
        session_id = new_session_id()
        session = ChatSession(sha256_hex(session_id), new_id("conversation"), company.id, agent.id,
                              clock.now() + self.ttl, stored=False, customer=customer)
        return session_id, await self._cache(session)

    async def resolve(self, session_id: str) -> ChatSession:
        """The live session, extending its idle TTL; resumed from the store within the resume window."""
        if not session_id or len(session_id) > 200:
            raise InvalidSession()
        key = sha256_hex(session_id)
        cached = await self.broker.kv_get(f"chat:{key}", touch_ttl=self.ttl)
        if cached is not None:
            data = json.loads(cached)
            unstored = "u" in data
            return ChatSession(key, data["c"], data["co"], data["a"], clock.now() + self.ttl,
                               stored=not unstored, customer=data["u"] if unstored else {})
        # Only a session that had a message has a stored conversation: an unused one ends with its TTL.
        conversation = await self.store.find_one(Conversation, session_hash=key)
        if conversation is None:
            raise InvalidSession()
        last = conversation.last_message_at or conversation.created_at
        if clock.now() - last > self.settings.chat.resume_window_seconds:
            raise InvalidSession()
        return await self._cache(ChatSession(key, conversation.id, conversation.company_id,
                                             conversation.agent_id, clock.now() + self.ttl))

    async def _cache(self, session: ChatSession) -> ChatSession:
        data: dict[str, Any] = {"c": session.conversation_id, "co": session.company_id, "a": session.agent_id}
        if not session.stored:
            data["u"] = session.customer  # present = the conversation is not stored yet
        await self.broker.kv_set(f"chat:{session.key}", json.dumps(data), self.ttl)
        return session

    async def _store_conversation(self, session: ChatSession) -> None:
        """The conversation of a session's first message, under the id the session was given."""
        try:
            await self.store.add(Conversation(
                id=session.conversation_id, company_id=session.company_id, agent_id=session.agent_id,
                channel=WEB_CHANNEL, session_hash=session.key, customer=session.customer,
            ))
        except DuplicateKey:
            pass  # a concurrent first message of this session (on any node) stored it
        await self._cache(replace(session, stored=True, customer={}))

    def validate_message(self, body: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
        content = body.get("content")
        if content is None:
            raise ChatError(400, "content is required")
        if not isinstance(content, str):
            raise ChatError(400, "content must be a string")
        if not content.strip():
            raise ChatError(400, "content must not be empty")
        limit = self.settings.chat.max_content_chars
        if len(content) > limit:
            raise ChatError(400, f"content is longer than {limit} characters")
        attachments = body.get("attachments", [])
        if attachments is None:
            attachments = []
        if not isinstance(attachments, list) or len(attachments) > MAX_ATTACHMENTS:
            raise ChatError(400, f"attachments must be a list of at most {MAX_ATTACHMENTS} objects")
        clean = []
        for item in attachments:
            if not isinstance(item, dict) or not isinstance(item.get("url", ""), str):
                raise ChatError(400, "each attachment must be an object with a url")
            clean.append({k: str(item[k])[:2000] for k in ("url", "mime_type", "name") if item.get(k) is not None})
        return content, clean

    async def post_message(self, session: ChatSession, body: dict[str, Any], ip: str,
                           claim: tuple[str, float] | None = None) -> Message:
        """Validate, rate-limit, store, count and queue a user message; it is answered by the inbox.
        With `claim` (owner, lease_until) it is stored already claimed by that node, which answers
        it at once (no claim round trip, no wake-up); should that node die, the lease expires and
        any node claims it, as any claimed message."""
        content, attachments = self.validate_message(body)
        await self.limiter.check_chat(session.company_id, session.key, ip)
        if not session.stored:
            await self._store_conversation(session)
        message = Message(
            id=new_id("message"), conversation_id=session.conversation_id, company_id=session.company_id,
            agent_id=session.agent_id, role="user", content=content, attachments=attachments, state=PENDING,
        )
        if claim is not None:
            owner, lease_until = claim
            message = replace(message, state=PROCESSING, lease_owner=owner, lease_until=lease_until, attempts=1)
        await self.store.add_user_message(message)
        if claim is None:
            await wake_inboxes(self.broker)
        return message

    async def history(self, session: ChatSession) -> History:
        # The event id first: a client resuming from it may see an answer twice (it dedupes by
        # messageId) but never misses one stored between the two reads.
        last_event_id = await self.broker.last_id(session.stream)
        messages = await self.store.find(
            Message, conversation_id=session.conversation_id, order_by="created_at", descending=True,
            limit=HISTORY_LIMIT,
        )
        return History(last_event_id, list(reversed(messages)))


def _customer(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ChatError(400, "customer must be an object")
    customer = {}
    for key in ("id", "name", "email"):
        item = value.get(key)
        if item is not None:
            if not isinstance(item, str | int):
                raise ChatError(400, f"customer.{key} must be a string")
            customer[key] = str(item)[:200]
    return customer


# What a customer may see of a message's metadata: who wrote it and what the answer rests on.
# Everything else (the operator's email, internal error codes, channel details) stays on the admin side.
PUBLIC_METADATA = ("author", "sources", "confidence", "tokens", "kind")


def render_message(message: Message) -> dict[str, Any]:
    """A message as the chat API shows it to the widget (camelCase, docs/contract.md)."""
    metadata = {k: message.metadata[k] for k in PUBLIC_METADATA if k in message.metadata}
    return {
        "id": message.id,
        "role": message.role,
        "content": message.content,
        "attachments": message.attachments,
        "createdAt": clock.iso(message.created_at),
        "status": message.state,
        **({"metadata": metadata} if metadata else {}),
    }
