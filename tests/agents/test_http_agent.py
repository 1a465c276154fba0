from __future__ import annotations

import pytest

from buzzi.agents.base import SettingsError
from buzzi.agents.http import HttpAgent
from buzzi.agents.registry import AgentRegistry
from buzzi.signing import new_standard_secret
from tests.support.agent_factories import (
    assert_failed,
    assert_one_terminal_last,
    collect,
    deltas_text,
    make_context,
    names,
)
from tests.support.fake_llm import FakeServices


async def run(registry: AgentRegistry, fake: FakeServices, secret: str, content: str = "When do you open?",
              history: list[tuple[str, str]] | None = None):
    ctx = make_context("http", {"url": fake.agent_url, "secret": secret}, content, history,
                       customer={"id": "cust-1", "name": "Ada"})
    return await collect(registry.runner("http").run(ctx))


async def test_posts_a_signed_request(fake: FakeServices, registry: AgentRegistry, agent_secret: str) -> None:
    await run(registry, fake, agent_secret, "When do you open?",
              history=[("user", "Hi"), ("assistant", "Hello!"), ("system", "note"), ("human", "Anna here")])
    [request] = fake.requests
    assert request.signature_ok is True
    assert request.headers["webhook-id"] == "m_current"  # the message id: the service can dedupe
    assert request.headers["Content-Type"] == "application/json"
    body = request.json
    assert body["type"] == "agent.request"
    assert isinstance(body["timestamp"], str) and body["timestamp"].endswith("Z")
    assert body["data"] == {
        "conversationId": "cv_test",
        "message": {"id": "m_current", "content": "When do you open?", "attachments": []},
        "history": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                    {"role": "human", "content": "Anna here"}],
        "customer": {"id": "cust-1", "name": "Ada"},
    }


async def test_a_json_answer_becomes_deltas_and_complete(fake: FakeServices, registry: AgentRegistry,
                                                         agent_secret: str) -> None:
    fake.agent.json = {"content": "We open at nine in the morning on weekdays.", "sources": ["Opening hours"]}
    events = await run(registry, fake, agent_secret)
    last = assert_one_terminal_last(events)
    assert last.name == "complete"
    assert len([e for e in events if e.name == "delta"]) >= 3
    assert deltas_text(events) == last.data["content"] == "We open at nine in the morning on weekdays."
    assert last.data["metadata"]["sources"] == ["Opening hours"]
    assert last.data["metadata"]["tokens"]["output"] > 0


async def test_a_wrong_secret_is_refused_by_the_service(fake: FakeServices, registry: AgentRegistry) -> None:
    events = await run(registry, fake, new_standard_secret())
    assert fake.requests[0].signature_ok is False
    assert_failed(events, "upstream_auth", False)


async def test_an_sse_answer_is_passed_through(fake: FakeServices, registry: AgentRegistry, agent_secret: str) -> None:
    fake.agent.events = [
        ("thinking", {"step": "Looking up your order", "progress": 0.4}),
        ("tool_call", {"tool": "order_lookup", "status": "executing"}),
        ("tool_call", {"tool": "order_lookup", "status": "completed", "result": {"order": "A-1"}}),
        ("notification", {"type": "typing", "data": None}),
        ("delta", {"content": "Your order "}),
        ("delta", {"content": "ships today."}),
        ("complete", {"content": "Your order ships today.",
                      "metadata": {"tokens": {"input": 30, "output": 5}, "sources": ["Orders"], "confidence": 0.9,
                                   "messageId": "m_forged"}}),
        ("delta", {"content": " ignored after complete"}),
    ]
    events = await run(registry, fake, agent_secret)
    assert names(events) == ["thinking", "thinking", "tool_call", "tool_call", "notification",
                             "delta", "delta", "complete"]
    assert events[1].data == {"step": "Looking up your order", "progress": 0.4}
    assert events[3].data["result"] == {"order": "A-1"}
    assert events[4].data == {"type": "typing", "data": None}
    last = events[-1]
    assert last.data["content"] == "Your order ships today." == deltas_text(events)
    assert last.data["metadata"] == {"tokens": {"input": 30, "output": 5}, "sources": ["Orders"], "confidence": 0.9}


async def test_a_complete_without_deltas_is_streamed(fake: FakeServices, registry: AgentRegistry,
                                                     agent_secret: str) -> None:
    fake.agent.events = [("complete", {"content": "All of the answer arrives at the very end."})]
    events = await run(registry, fake, agent_secret)
    assert len([e for e in events if e.name == "delta"]) >= 3
    assert deltas_text(events) == events[-1].data["content"] == "All of the answer arrives at the very end."
    assert events[-1].data["metadata"]["tokens"]["output"] > 0


async def test_a_complete_extending_the_deltas_adds_the_rest(fake: FakeServices, registry: AgentRegistry,
                                                             agent_secret: str) -> None:
    fake.agent.events = [("delta", {"content": "Hello"}), ("complete", {"content": "Hello, world", "metadata": {}})]
    events = await run(registry, fake, agent_secret)
    assert deltas_text(events) == events[-1].data["content"] == "Hello, world"


async def test_a_complete_contradicting_the_deltas_keeps_the_deltas(fake: FakeServices, registry: AgentRegistry,
                                                                    agent_secret: str) -> None:
    fake.agent.events = [("delta", {"content": "Yes."}), ("complete", {"content": "No."})]
    events = await run(registry, fake, agent_secret)
    assert deltas_text(events) == events[-1].data["content"] == "Yes."


async def test_an_sse_error_is_passed_through(fake: FakeServices, registry: AgentRegistry, agent_secret: str) -> None:
    fake.agent.events = [("delta", {"content": "Let me"}),
                         ("error", {"code": "crm_down", "message": "CRM unavailable", "retryable": True})]
    events = await run(registry, fake, agent_secret)
    assert_failed(events, "crm_down", True)


async def test_an_sse_stream_without_terminal_is_an_error(fake: FakeServices, registry: AgentRegistry,
                                                          agent_secret: str) -> None:
    fake.agent.events = [("delta", {"content": "I was about to"})]
    assert_failed(await run(registry, fake, agent_secret), "upstream_error", True)


@pytest.mark.parametrize("events", [
    [("delta", "not json")],
    [("delta", {"content": 5})],
    [("tool_call", {"tool": "x", "status": "running"})],
    [("notification", {"type": "confetti"})],
    [("thinking", {"step": "x", "progress": "half"})],
])
async def test_malformed_sse_events_are_protocol_errors(fake: FakeServices, registry: AgentRegistry,
                                                        agent_secret: str, events: list) -> None:
    fake.agent.events = events
    assert_failed(await run(registry, fake, agent_secret), "upstream_protocol", False)


@pytest.mark.parametrize("answer", [{"answer": "wrong key"}, {"content": "ok", "sources": "Opening hours"}, [1]])
async def test_malformed_json_answers_are_protocol_errors(fake: FakeServices, registry: AgentRegistry,
                                                          agent_secret: str, answer: object) -> None:
    fake.agent.json = answer
    assert_failed(await run(registry, fake, agent_secret), "upstream_protocol", False)


@pytest.mark.parametrize(("settings", "field"), [
    ({"secret": new_standard_secret()}, "settings.url"),
    ({"url": "javascript:alert(1)", "secret": new_standard_secret()}, "settings.url"),
    ({"url": "https://bot.example.com/answer"}, "settings.secret"),
    ({"url": "https://bot.example.com/answer", "secret": "plain-secret"}, "settings.secret"),
    ({"url": "https://bot.example.com/answer", "secret": "whsec_!!notbase64"}, "settings.secret"),
    ({"url": "https://bot.example.com/answer", "secret": "whsec_c2hvcnQ="}, "settings.secret"),
])
def test_validate_settings_names_the_field(settings: dict[str, object], field: str) -> None:
    with pytest.raises(SettingsError) as info:
        HttpAgent.validate_settings(settings)
    assert info.value.field == field


async def test_redirects_are_not_followed(fake: FakeServices, registry: AgentRegistry, agent_secret: str) -> None:
    fake.agent.status = 307
    fake.agent.location = fake.agent_url + "?again"  # following it would post the signed body twice
    assert_failed(await run(registry, fake, agent_secret), "upstream_rejected", False)
    assert len(fake.requests) == 1


@pytest.mark.parametrize("events", [None, [("complete", {"content": "x" * 200_001})]])
async def test_oversized_answers_are_refused(fake: FakeServices, registry: AgentRegistry, agent_secret: str,
                                             events: list | None) -> None:
    fake.agent.json = {"content": "x" * 200_001}
    fake.agent.events = events
    assert_failed(await run(registry, fake, agent_secret), "upstream_protocol", False)
