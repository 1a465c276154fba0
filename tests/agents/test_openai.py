from __future__ import annotations

import pytest

from buzzi.agents.base import SettingsError
from buzzi.agents.openai import OpenAIAgent
from buzzi.agents.registry import AgentRegistry
from buzzi.agents.text import estimate_tokens
from tests.support.agent_factories import (
    FAQ,
    assert_failed,
    assert_one_terminal_last,
    collect,
    deltas_text,
    make_context,
)
from tests.support.fake_llm import FakeServices

API_KEY = "sk-test-very-secret-key-0123456789"


def settings(fake: FakeServices, **extra: object) -> dict[str, object]:
    return {"baseUrl": fake.llm_base_url, "model": "gpt-test", "apiKey": API_KEY, **extra}


async def run(registry: AgentRegistry, agent_settings: dict[str, object], content: str = "Hello?",
              history: list[tuple[str, str]] | None = None):
    ctx = make_context("openai", agent_settings, content, history)
    return await collect(registry.runner("openai").run(ctx))


async def test_request_shape(fake: FakeServices, registry: AgentRegistry) -> None:
    history = [("user", "Hi"), ("assistant", "Hello! How can I help?"), ("system", "handed over"),
               ("human", "This is Anna from support."), ("user", "Thanks Anna")]
    await run(registry, settings(fake, systemPrompt="You are Buzzi.", temperature=0.2), "Where is my order?", history)
    [request] = fake.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    body = request.json
    assert body["model"] == "gpt-test"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0.2
    assert body["messages"] == [
        {"role": "system", "content": "You are Buzzi."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "assistant", "content": "This is Anna from support."},
        {"role": "user", "content": "Thanks Anna"},
        {"role": "user", "content": "Where is my order?"},
    ]


async def test_without_system_prompt_there_is_no_system_message(fake: FakeServices, registry: AgentRegistry) -> None:
    await run(registry, settings(fake), "Hi")
    assert fake.requests[0].json["messages"] == [{"role": "user", "content": "Hi"}]
    assert "temperature" not in fake.requests[0].json


async def test_streams_a_delta_per_chunk_and_completes_with_reported_usage(
        fake: FakeServices, registry: AgentRegistry) -> None:
    fake.llm.chunks = ["The ", "answer ", "is ", "42."]
    fake.llm.usage = {"prompt_tokens": 17, "completion_tokens": 4, "total_tokens": 21}
    events = await run(registry, settings(fake))
    last = assert_one_terminal_last(events)
    assert [e.data["content"] for e in events if e.name == "delta"] == ["The ", "answer ", "is ", "42."]
    assert last.name == "complete"
    assert last.data["content"] == "The answer is 42." == deltas_text(events)
    assert last.data["metadata"] == {"tokens": {"input": 17, "output": 4}}


async def test_tokens_are_estimated_when_usage_is_not_reported(fake: FakeServices, registry: AgentRegistry) -> None:
    fake.llm.chunks = ["one two three ", "four five six"]
    fake.llm.usage = None
    events = await run(registry, settings(fake), "count to six")
    tokens = events[-1].data["metadata"]["tokens"]
    expected_output = estimate_tokens("one two three four five six")
    assert tokens == {"input": estimate_tokens("count to six"), "output": expected_output}


async def test_a_non_streamed_json_completion_is_still_answered(fake: FakeServices, registry: AgentRegistry) -> None:
    fake.llm.as_json = True
    fake.llm.chunks = ["A whole answer in one go, with several words."]
    events = await run(registry, settings(fake))
    assert events[-1].name == "complete"
    assert events[-1].data["content"] == "A whole answer in one go, with several words." == deltas_text(events)
    assert events[-1].data["metadata"]["tokens"] == {"input": 21, "output": 7}


async def test_documents_are_retrieved_and_passed_as_context(fake: FakeServices, registry: AgentRegistry) -> None:
    events = await run(registry, settings(fake, systemPrompt="Be brief.", documents=FAQ), "how do I reset my password")
    tool_calls = [e.data for e in events if e.name == "tool_call"]
    assert [t["status"] for t in tool_calls] == ["executing", "completed"]
    assert tool_calls[1]["result"]["sources"][0] == "Password reset"
    system = fake.requests[0].json["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith("Be brief.")
    assert FAQ[1]["content"] in system["content"]
    assert FAQ[3]["content"] not in system["content"]  # the refund policy is irrelevant here
    assert events[-1].data["metadata"]["sources"] == tool_calls[1]["result"]["sources"]


async def test_a_stream_ending_without_finish_or_done_is_an_error(fake: FakeServices, registry: AgentRegistry) -> None:
    fake.llm.raw_data = ['{"choices": [{"index": 0, "delta": {"content": "partial"}, "finish_reason": null}]}']
    events = await run(registry, settings(fake))
    assert_failed(events, "upstream_error", True)


@pytest.mark.parametrize("raw", [
    ["{not json"],
    ['{"choices": "nope"}'],
    ["[1, 2]"],
])
async def test_a_malformed_stream_is_a_protocol_error(fake: FakeServices, registry: AgentRegistry,
                                                      raw: list[str]) -> None:
    fake.llm.raw_data = raw
    assert_failed(await run(registry, settings(fake)), "upstream_protocol", False)


async def test_an_error_object_inside_the_stream_is_retryable(fake: FakeServices, registry: AgentRegistry) -> None:
    fake.llm.raw_data = ['{"error": {"message": "overloaded"}}']
    assert_failed(await run(registry, settings(fake)), "upstream_error", True)


@pytest.mark.parametrize(("settings_", "field"), [
    ({"model": "m", "apiKey": "k"}, "settings.baseUrl"),
    ({"baseUrl": "ftp://x.example", "model": "m", "apiKey": "k"}, "settings.baseUrl"),
    ({"baseUrl": "https://", "model": "m", "apiKey": "k"}, "settings.baseUrl"),
    ({"baseUrl": "https://api.example.com/v1", "apiKey": "k"}, "settings.model"),
    ({"baseUrl": "https://api.example.com/v1", "model": "m", "apiKey": 12}, "settings.apiKey"),
    ({"baseUrl": "https://api.example.com/v1", "model": "m", "apiKey": "k", "systemPrompt": 1},
     "settings.systemPrompt"),
    ({"baseUrl": "https://api.example.com/v1", "model": "m", "apiKey": "k", "temperature": 5},
     "settings.temperature"),
    ({"baseUrl": "https://api.example.com/v1", "model": "m", "apiKey": "k", "documents": [{}]},
     "settings.documents[0].title"),
])
def test_validate_settings_names_the_field(settings_: dict[str, object], field: str) -> None:
    with pytest.raises(SettingsError) as info:
        OpenAIAgent.validate_settings(settings_)
    assert info.value.field == field


def test_validate_settings_normalises() -> None:
    out = OpenAIAgent.validate_settings({"baseUrl": "https://api.example.com/v1/", "model": "m", "apiKey": "k",
                                         "systemPrompt": "", "unknown": True})
    assert out == {"baseUrl": "https://api.example.com/v1", "model": "m", "apiKey": "k"}
