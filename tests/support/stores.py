"""What the store tests share: domain objects with sensible defaults, so each test states only
what it is about, and the check that a store which cannot reach its backend says so."""

from __future__ import annotations

from typing import Any

import pytest

from buzzi import ids
from buzzi.models import PENDING, Company, Conversation, Message, User, Webhook, WebhookEvent
from buzzi.store import Store, StoreUnavailable


def user(email: str, **kw: Any) -> User:
    return User(id=ids.new_id("user"), email=email, password_hash="scrypt$x", **kw)


def webhook(**kw: Any) -> Webhook:
    return Webhook(id=ids.new_id("webhook"), company_id="c_1", agent_id="a_1", channel="telegram", **kw)


def conversation(chat_key: str | None = None, **kw: Any) -> Conversation:
    return Conversation(
        id=ids.new_id("conversation"), company_id="c_1", agent_id="a_1", channel="telegram", chat_key=chat_key, **kw
    )


def message(content: str = "hi", *, role: str = "user", state: str = PENDING, **kw: Any) -> Message:
    return Message(
        id=ids.new_id("message"), conversation_id="cv_1", company_id="c_1", agent_id="a_1",
        role=role, content=content, state=state, **kw,
    )


def event(webhook_id: str | None, received_at: float, **kw: Any) -> WebhookEvent:
    return WebhookEvent(
        id=ids.new_id("webhook_event"), webhook_id=webhook_id, company_id="c_1", channel="telegram",
        outcome="ok", status_code=200, latency_ms=1.0, received_at=received_at, **kw,
    )


async def assert_unavailable(store: Store) -> None:
    with pytest.raises(StoreUnavailable):
        await store.ping()
    with pytest.raises(StoreUnavailable):
        await store.add(Company(id="c_new", name="New"))
    with pytest.raises(StoreUnavailable):
        await store.get(Company, "c_1")
    with pytest.raises(StoreUnavailable):
        await store.claim_next_message("node-a", 60)
