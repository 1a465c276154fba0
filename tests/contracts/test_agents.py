"""The AgentRunner contract (docs/contract.md §3 "SSE stream" and "Agents"), checked over every
registered agent kind: faq, openai against the fake LLM API, http against the fake company service.

What every runner promises, whatever its upstream does: only the contract's events, with the
contract's fields; exactly one terminal event, last; the deltas concatenate to the `complete`
content; `complete` carries token counts (the gateway adds `messageId`, a runner never does);
an `error` carries code, message and retryable; an upstream failure ends the run with an `error`
event rather than an exception; no event carries the agent's secrets or text UTF-8 cannot encode.
What only one kind does (BM25, the OpenAI request shape, Standard Webhooks signing) stays in
tests/agents/.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from buzzi.agents.base import AgentRunner, SettingsError
from buzzi.agents.registry import RUNNER_CLASSES, AgentRegistry
from buzzi.events import AgentEvent
from buzzi.models import AGENT_KINDS
from buzzi.netguard import NetPolicy
from tests.support.agent_factories import (
    FAQ,
    agent_registry,
    assert_failed,
    assert_one_terminal_last,
    collect,
    deltas_text,
    make_context,
    names,
)
from tests.support.fake_llm import FakeServices

# The event names of the contract (docs/contract.md §3): nothing else may reach a stream.
EVENT_NAMES = ("thinking", "tool_call", "delta", "complete", "error", "notification")

API_KEY = "sk-contract-very-secret-key-0123456789"
UPSTREAM_KINDS = ("openai", "http")
ANSWER = ["Parcels to Germany ", "arrive within ", "three business days."]


@dataclass(frozen=True)
class Upstream:
    """How one agent kind is pointed at, and scripted on, the fake services."""

    settings: Callable[[FakeServices, str], dict[str, Any]]
    answer: Callable[[FakeServices, list[str]], None]  # answer with these pieces
    fail_with: Callable[[FakeServices, int], None]  # answer with this HTTP status
    stall: Callable[[FakeServices], None]
    cut_after_first: Callable[[FakeServices, list[str]], None]  # one piece, then a dropped connection
    raw_text: Callable[[FakeServices, str], None]  # answer with exactly this text (no chunking)


def _openai_answer(fake: FakeServices, pieces: list[str]) -> None:
    fake.llm.chunks = pieces


def _openai_cut(fake: FakeServices, pieces: list[str]) -> None:
    fake.llm.chunks = pieces
    fake.llm.disconnect_after = 1


def _http_answer(fake: FakeServices, pieces: list[str]) -> None:
    fake.agent.events = [("delta", {"content": p}) for p in pieces]
    fake.agent.events.append(("complete", {"content": "".join(pieces), "metadata": {}}))


def _http_cut(fake: FakeServices, pieces: list[str]) -> None:
    _http_answer(fake, pieces)
    fake.agent.disconnect_after = 1


UPSTREAMS: dict[str, Upstream] = {
    "openai": Upstream(
        settings=lambda fake, _secret: {"baseUrl": fake.llm_base_url, "model": "m", "apiKey": API_KEY},
        answer=_openai_answer,
        fail_with=lambda fake, status: setattr(fake.llm, "status", status),
        stall=lambda fake: setattr(fake.llm, "stall", True),
        cut_after_first=_openai_cut,
        raw_text=lambda fake, text: setattr(fake.llm, "chunks", [text]),
    ),
    "http": Upstream(
        settings=lambda fake, secret: {"url": fake.agent_url, "secret": secret},
        answer=_http_answer,
        fail_with=lambda fake, status: setattr(fake.agent, "status", status),
        stall=lambda fake: setattr(fake.agent, "stall", True),
        cut_after_first=_http_cut,
        raw_text=lambda fake, text: setattr(fake.agent, "json", {"content": text}),
    ),
}


def settings_for(kind: str, fake: FakeServices, secret: str) -> dict[str, Any]:
    if kind == "faq":
        return {"documents": FAQ, "fallback": "Please ask a person."}
    return UPSTREAMS[kind].settings(fake, secret)


def secrets_of(settings: dict[str, Any]) -> list[str]:
    return [str(settings[key]) for key in ("apiKey", "secret") if key in settings]


async def run(runner: AgentRunner, settings: Any, content: str = "How long does shipping to Germany take?"
              ) -> list[AgentEvent]:
    return await collect(runner.run(make_context(runner.kind, settings, content, history=[("user", "Hi")])))


def assert_contract_events(events: list[AgentEvent]) -> AgentEvent:
    """Every event is one the contract names, with its fields; returns the terminal event."""
    for event in events:
        assert event.name in EVENT_NAMES, event
        data = event.data
        if event.name == "thinking":
            assert isinstance(data["step"], str) and 0 <= data["progress"] <= 1, data
        elif event.name == "tool_call":
            assert isinstance(data["tool"], str) and data["status"] in ("executing", "completed", "failed"), data
        elif event.name == "delta":
            assert isinstance(data["content"], str), data
        elif event.name == "notification":
            assert data["type"] in ("handover", "typing", "read"), data
        elif event.name == "error":
            assert set(data) == {"code", "message", "retryable"}, data
            assert isinstance(data["code"], str) and data["code"], data
            assert isinstance(data["message"], str) and data["message"], data
            assert isinstance(data["retryable"], bool), data
        elif event.name == "complete":
            assert isinstance(data["content"], str), data
            meta = data["metadata"]
            assert "messageId" not in meta  # the gateway's to set once the reply is stored
            assert set(meta["tokens"]) == {"input", "output"}, meta
            assert all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in meta["tokens"].values())
            if "sources" in meta:
                assert all(isinstance(s, str) for s in meta["sources"]), meta
            if "confidence" in meta:
                assert 0 <= meta["confidence"] <= 1, meta
    return assert_one_terminal_last(events)


def assert_encodable(events: list[AgentEvent]) -> None:
    """Text UTF-8 cannot encode (a lone surrogate) would break the store, the stream and the sends."""
    pending: list[Any] = [e.data for e in events]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            value.encode("utf-8")
        elif isinstance(value, dict):
            pending.extend([*value.keys(), *value.values()])
        elif isinstance(value, list):
            pending.extend(value)


def test_every_agent_kind_is_registered_and_covered_here() -> None:
    assert set(RUNNER_CLASSES) == set(AGENT_KINDS) == {"faq", *UPSTREAM_KINDS}


@pytest.mark.parametrize("kind", AGENT_KINDS)
async def test_an_answer_keeps_the_contract(kind: str, fake: FakeServices, registry: AgentRegistry,
                                            agent_secret: str) -> None:
    if kind != "faq":
        UPSTREAMS[kind].answer(fake, ANSWER)
    events = await run(registry.runner(kind), settings_for(kind, fake, agent_secret))
    last = assert_contract_events(events)
    assert last.name == "complete", last
    assert len([e for e in events if e.name == "delta"]) >= 2  # streamed, not one lump
    assert deltas_text(events) == last.data["content"]
    expected = FAQ[2]["content"] if kind == "faq" else "".join(ANSWER)
    assert last.data["content"] == expected
    assert last.data["metadata"]["tokens"]["output"] > 0


@pytest.mark.parametrize("kind", UPSTREAM_KINDS)
async def test_a_whole_answer_at_once_is_still_streamed_as_deltas(kind: str, fake: FakeServices,
                                                                  registry: AgentRegistry, agent_secret: str) -> None:
    if kind == "openai":
        fake.llm.as_json = True
        fake.llm.chunks = ["".join(ANSWER)]
    else:
        fake.agent.json = {"content": "".join(ANSWER)}
    events = await run(registry.runner(kind), settings_for(kind, fake, agent_secret))
    last = assert_contract_events(events)
    assert last.name == "complete"
    assert len([e for e in events if e.name == "delta"]) >= 2
    assert deltas_text(events) == last.data["content"] == "".join(ANSWER)


@pytest.mark.parametrize("kind", AGENT_KINDS)
async def test_stored_settings_that_no_longer_validate_end_in_one_error(kind: str, registry: AgentRegistry) -> None:
    events = await run(registry.runner(kind), {"documents": "nope", "baseUrl": "ftp://x", "url": "javascript:x"})
    assert_contract_events(events)
    assert names(events) == ["error"]
    assert events[0].data["code"] == "agent_misconfigured" and events[0].data["retryable"] is False
    assert "settings." in events[0].data["message"]  # names the field, for the operator


@pytest.mark.parametrize("kind", AGENT_KINDS)
@pytest.mark.parametrize("settings", ["not an object", ["a", "list"], 7])
def test_validate_settings_refuses_a_non_object_naming_settings(kind: str, settings: object) -> None:
    with pytest.raises(SettingsError) as info:
        RUNNER_CLASSES[kind].validate_settings(settings)
    assert info.value.field == "settings"


@pytest.mark.parametrize("kind", UPSTREAM_KINDS)
@pytest.mark.parametrize(("status", "code", "retryable"), [
    (429, "upstream_rate_limited", True),
    (500, "upstream_error", True),
    (503, "upstream_error", True),
    (401, "upstream_auth", False),
    (403, "upstream_auth", False),
    (400, "upstream_rejected", False),
    (404, "upstream_rejected", False),
])
async def test_an_upstream_http_error_is_one_error_event(kind: str, status: int, code: str, retryable: bool,
                                                         fake: FakeServices, registry: AgentRegistry,
                                                         agent_secret: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = settings_for(kind, fake, agent_secret)
    UPSTREAMS[kind].fail_with(fake, status)
    fake.llm.error_body = {"error": {"message": f"Incorrect API key provided: {API_KEY}"}}
    events = await run(registry.runner(kind), settings)
    assert_contract_events(events)
    assert_failed(events, code, retryable)
    assert "delta" not in names(events)
    for secret in secrets_of(settings):
        assert secret not in str(events) and secret not in caplog.text


@pytest.mark.parametrize("kind", UPSTREAM_KINDS)
async def test_a_connection_dropped_mid_answer_is_a_retryable_error_after_the_partial_deltas(
        kind: str, fake: FakeServices, registry: AgentRegistry, agent_secret: str,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = settings_for(kind, fake, agent_secret)
    UPSTREAMS[kind].cut_after_first(fake, ANSWER)
    events = await run(registry.runner(kind), settings)
    assert_contract_events(events)
    assert deltas_text(events) == ANSWER[0]
    assert_failed(events, "upstream_unavailable", True)
    for secret in secrets_of(settings):
        assert secret not in caplog.text


@pytest.mark.parametrize("kind", UPSTREAM_KINDS)
async def test_a_stalled_upstream_times_out_into_a_retryable_error(kind: str, fake: FakeServices,
                                                                   agent_secret: str) -> None:
    UPSTREAMS[kind].stall(fake)
    async with agent_registry(timeout_seconds=0.3, connect_seconds=0.3) as impatient:
        events = await run(impatient.runner(kind), settings_for(kind, fake, agent_secret))
    assert_contract_events(events)
    assert_failed(events, "upstream_unavailable", True)
    assert "timed out" in events[-1].data["message"]


@pytest.mark.parametrize("kind", UPSTREAM_KINDS)
async def test_an_unreachable_upstream_is_a_retryable_error(kind: str, registry: AgentRegistry,
                                                            agent_secret: str) -> None:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    settings = {"baseUrl": base + "/v1", "model": "m", "apiKey": API_KEY} if kind == "openai" else \
        {"url": base + "/agent", "secret": agent_secret}
    events = await run(registry.runner(kind), settings)
    assert_contract_events(events)
    assert_failed(events, "upstream_unavailable", True)


@pytest.mark.parametrize("kind", UPSTREAM_KINDS)
async def test_an_upstream_on_a_refused_network_is_a_final_error(kind: str, fake: FakeServices,
                                                                 agent_secret: str) -> None:
    async with agent_registry(net_policy=NetPolicy()) as strict:  # 127.0.0.1 is not a public address
        events = await run(strict.runner(kind), settings_for(kind, fake, agent_secret))
    assert_contract_events(events)
    assert_failed(events, "upstream_blocked", False)
    assert fake.requests == []


@pytest.mark.parametrize("kind", UPSTREAM_KINDS)
async def test_text_utf8_cannot_encode_never_leaves_a_runner(kind: str, fake: FakeServices, registry: AgentRegistry,
                                                             agent_secret: str) -> None:
    UPSTREAMS[kind].raw_text(fake, "broken \ud800 text")  # sent as the JSON escape "\ud800"
    events = await run(registry.runner(kind), settings_for(kind, fake, agent_secret))
    last = assert_contract_events(events)
    assert_encodable(events)
    assert last.name == "complete"
    assert deltas_text(events) == last.data["content"] == "broken \ufffd text"

