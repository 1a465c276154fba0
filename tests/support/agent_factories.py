"""What tests of the agent runners share: a small knowledge base, contexts to answer, a registry
pointed at the local fake services, and the checks of the AgentRunner promise.

    ctx = make_context("faq", {"documents": FAQ, "fallback": "?"}, "How do I reset my password?")
    events = await collect(runner.run(ctx))
    assert_failed(events, "upstream_error", True)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from buzzi.agents.base import AgentContext
from buzzi.agents.registry import AgentRegistry
from buzzi.config import AgentSettings
from buzzi.events import AgentEvent
from buzzi.models import Agent, Conversation, Message
from buzzi.netguard import NetPolicy

FAQ = [
    {"title": "Opening hours", "content": "Our store opens at 9am and closes at 6pm, Monday to Saturday."},
    {"title": "Password reset", "content": "To reset your password, open Settings, choose Security and follow the "
                                           "reset link we email you."},
    {"title": "Shipping to Germany", "content": "We ship to Germany within 3 business days; shipping is free "
                                                "above 50 euros."},
    {"title": "Refund policy", "content": "Refunds are paid back to the original card within 14 days of the return."},
    {"title": "Café menu", "content": "The café serves crème brûlée and espresso every afternoon."},
]
FAILURE_MESSAGE = "Sorry, try again."
LOCAL_SERVICES = NetPolicy(allow_private=True)  # the fake agent and LLM services run on 127.0.0.1


@asynccontextmanager
async def agent_registry(timeout_seconds: float = 5.0, connect_seconds: float = 2.0,
                         net_policy: NetPolicy = LOCAL_SERVICES) -> AsyncIterator[AgentRegistry]:
    """A registry (by default allowed to reach 127.0.0.1), closed with its HTTP session on exit."""
    settings = AgentSettings(timeout_seconds=timeout_seconds, http_connect_timeout_seconds=connect_seconds,
                             failure_message=FAILURE_MESSAGE)
    registry = AgentRegistry(settings, net_policy)
    try:
        yield registry
    finally:
        await registry.close()


def make_context(kind: str, settings: Any, content: str = "How do I reset my password?",
                 history: list[tuple[str, str]] | None = None,
                 customer: dict[str, Any] | None = None) -> AgentContext:
    agent = Agent(id="a_test", company_id="c_test", name="Test agent", kind=kind, settings=settings)
    conversation = Conversation(id="cv_test", company_id="c_test", agent_id="a_test", channel="web",
                                customer=customer or {})
    past = [Message(id=f"m_past{i}", conversation_id="cv_test", company_id="c_test", agent_id="a_test",
                    role=role, content=text) for i, (role, text) in enumerate(history or [])]
    message = Message(id="m_current", conversation_id="cv_test", company_id="c_test", agent_id="a_test",
                      role="user", content=content)
    return AgentContext(agent=agent, conversation=conversation, message=message, history=past)


async def collect(stream: AsyncIterator[AgentEvent]) -> list[AgentEvent]:
    return [event async for event in stream]


def names(events: list[AgentEvent]) -> list[str]:
    return [e.name for e in events]


def deltas_text(events: list[AgentEvent]) -> str:
    return "".join(e.data["content"] for e in events if e.name == "delta")


def assert_one_terminal_last(events: list[AgentEvent]) -> AgentEvent:
    """The seam's promise: exactly one terminal event, and it comes last."""
    terminals = [e for e in events if e.terminal]
    assert len(terminals) == 1, names(events)
    assert events[-1] is terminals[0], names(events)
    return terminals[0]


def assert_failed(events: list[AgentEvent], code: str, retryable: bool) -> None:
    last = assert_one_terminal_last(events)
    assert last.name == "error", names(events)
    assert last.data["code"] == code, last.data
    assert last.data["retryable"] is retryable, last.data
    assert isinstance(last.data["message"], str) and last.data["message"]
    assert "complete" not in names(events)
