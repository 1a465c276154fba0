"""Helpers for driving agent runners in tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from buzzi.agents.base import AgentContext
from buzzi.events import AgentEvent
from buzzi.models import Agent, Conversation, Message


def make_context(kind: str, settings: dict[str, Any], content: str = "How do I reset my password?",
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
