from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from buzzi.agents.base import AgentContext, AgentRunner, SettingsError
from buzzi.agents.faq import FaqAgent
from buzzi.agents.http import HttpAgent
from buzzi.agents.openai import OpenAIAgent
from buzzi.agents.registry import AgentRegistry
from buzzi.events import AgentEvent, delta, thinking
from tests.support.agent_factories import FAQ, assert_one_terminal_last, collect, make_context, names
from tests.support.fake_llm import FakeServices


def test_runner_by_kind(registry: AgentRegistry) -> None:
    assert isinstance(registry.runner("faq"), FaqAgent)
    assert isinstance(registry.runner("openai"), OpenAIAgent)
    assert isinstance(registry.runner("http"), HttpAgent)
    assert registry.runner("faq") is registry.runner("faq")
    with pytest.raises(SettingsError) as info:
        registry.runner("telepathy")
    assert info.value.field == "kind"


@pytest.mark.parametrize(("kind", "settings", "field"), [
    ("telepathy", {}, "kind"),
    ("faq", {"documents": None}, "settings.documents"),
    ("openai", {"baseUrl": "http://llm.local/v1", "model": "", "apiKey": "k"}, "settings.model"),
    ("http", {"url": "https://bot.example.com", "secret": 7}, "settings.secret"),
])
def test_validate_settings_dispatches_and_names_the_field(registry: AgentRegistry, kind: str, settings: object,
                                                          field: str) -> None:
    with pytest.raises(SettingsError) as info:
        registry.validate_settings(kind, settings)
    assert info.value.field == field
    assert field in str(info.value)


def test_validate_settings_returns_normalised_settings(registry: AgentRegistry) -> None:
    out = registry.validate_settings("faq", {"documents": FAQ, "fallback": "Ask a person."})
    assert out == {"documents": FAQ, "fallback": "Ask a person."}


async def test_one_shared_session_with_configured_timeouts_closed_on_close(registry: AgentRegistry) -> None:
    session = registry.session()
    assert registry.session() is session
    assert session.timeout.total == 5.0 and session.timeout.connect == 2.0
    await registry.close()
    assert session.closed
    assert registry.session() is not session  # usable again after close (lazily recreated)


async def test_openai_and_http_runners_use_the_registry_session(fake: FakeServices, registry: AgentRegistry,
                                                                agent_secret: str) -> None:
    await collect(registry.run(make_context("openai", {"baseUrl": fake.llm_base_url, "model": "m", "apiKey": "k"})))
    session = registry.session()
    await collect(registry.run(make_context("http", {"url": fake.agent_url, "secret": agent_secret})))
    assert registry.session() is session
    assert len(fake.requests) == 2


async def test_run_dispatches_on_the_agent_kind(registry: AgentRegistry) -> None:
    events = await collect(registry.run(make_context("faq", {"documents": FAQ, "fallback": "?"}, "refund")))
    assert events[-1].name == "complete"
    assert events[-1].data["metadata"]["sources"][0] == "Refund policy"


async def test_run_with_an_unknown_kind_is_one_error(registry: AgentRegistry) -> None:
    events = await collect(registry.run(make_context("telepathy", {})))
    assert names(events) == ["error"] and events[0].data["code"] == "agent_misconfigured"


class Crashing(AgentRunner):
    kind = "faq"

    @classmethod
    def validate_settings(cls, settings: object) -> dict[str, object]:
        return {}

    async def run(self, ctx: AgentContext) -> AsyncIterator[AgentEvent]:  # type: ignore[override]
        yield thinking("about to fail", 0.5)
        yield delta("half an ans")
        raise RuntimeError("bug")


class Silent(Crashing):
    async def run(self, ctx: AgentContext) -> AsyncIterator[AgentEvent]:  # type: ignore[override]
        yield thinking("thinking forever", 0.5)


@pytest.mark.parametrize("runner", [Crashing(), Silent()])
async def test_run_guarantees_one_terminal_event(registry: AgentRegistry, runner: AgentRunner) -> None:
    registry._runners["faq"] = runner  # a broken runner stands in for a future bug
    events = await collect(registry.run(make_context("faq", {})))
    last = assert_one_terminal_last(events)
    assert last.name == "error" and last.data["code"] == "agent_failed" and last.data["retryable"] is False
