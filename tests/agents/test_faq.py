from __future__ import annotations

import pytest

from buzzi.agents import bm25
from buzzi.agents.base import SettingsError
from buzzi.agents.faq import FaqAgent
from tests.support.agent_factories import FAQ, assert_one_terminal_last, collect, deltas_text, make_context, names

SETTINGS = {"documents": FAQ, "fallback": "Sorry, I can only answer questions about our shop."}


async def test_answers_with_the_best_document_as_incremental_deltas() -> None:
    events = await collect(FaqAgent().run(make_context("faq", SETTINGS, "How do I reset my password?")))
    last = assert_one_terminal_last(events)
    assert last.name == "complete"
    assert names(events)[:3] == ["thinking", "tool_call", "tool_call"]
    executing, completed = events[1].data, events[2].data
    assert executing == {"tool": "rag_search", "status": "executing"}
    assert completed["tool"] == "rag_search" and completed["status"] == "completed"
    assert completed["result"]["sources"][0] == "Password reset"

    answer = FAQ[1]["content"]
    deltas = [e for e in events if e.name == "delta"]
    assert len(deltas) >= 3  # visibly incremental
    assert all(len(d.data["content"].split()) <= 3 for d in deltas)
    assert deltas_text(events) == answer == last.data["content"]

    meta = last.data["metadata"]
    assert meta["sources"] == completed["result"]["sources"]
    assert 0 < meta["confidence"] <= 1
    assert meta["tokens"]["input"] > 0 and meta["tokens"]["output"] >= len(answer.split())
    assert "messageId" not in meta


async def test_nothing_matching_answers_the_fallback_and_the_tool_call_still_completes() -> None:
    events = await collect(FaqAgent().run(make_context("faq", SETTINGS, "Tell me a xylophone joke")))
    last = assert_one_terminal_last(events)
    tool_calls = [e.data for e in events if e.name == "tool_call"]
    assert [t["status"] for t in tool_calls] == ["executing", "completed"]
    assert tool_calls[1]["result"] == {"sources": []}
    assert last.name == "complete"
    assert last.data["content"] == SETTINGS["fallback"] == deltas_text(events)
    assert last.data["metadata"]["sources"] == []
    assert last.data["metadata"]["confidence"] == 0.0


async def test_a_word_in_every_document_is_not_a_match() -> None:
    docs = [{"title": f"Acme {topic}", "content": f"Acme {topic} details."} for topic in ("billing", "support")]
    events = await collect(FaqAgent().run(make_context("faq", {"documents": docs, "fallback": "nope"}, "acme")))
    assert events[-1].data["content"] == "nope"


async def test_better_matches_are_more_confident() -> None:
    strong = await collect(FaqAgent().run(make_context("faq", SETTINGS, "reset password")))
    weak = await collect(FaqAgent().run(make_context("faq", SETTINGS, "password for my cat and my dog and my fish")))
    assert strong[-1].data["metadata"]["confidence"] > weak[-1].data["metadata"]["confidence"] > 0


async def test_a_hot_agent_does_not_reindex_per_message(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = [{"title": "Unique cache doc", "content": "Zebra crossings are striped."}]
    built: list[bm25.BM25Index] = []

    class CountingIndex(bm25.BM25Index):
        def __init__(self, *args: object) -> None:
            super().__init__(*args)
            built.append(self)

    monkeypatch.setattr(bm25, "BM25Index", CountingIndex)
    for _ in range(3):
        await collect(FaqAgent().run(make_context("faq", {"documents": docs, "fallback": "x"}, "zebra")))
    assert len(built) == 1


@pytest.mark.parametrize(("settings", "field"), [
    ({}, "settings.documents"),
    ({"documents": {"title": "x"}}, "settings.documents"),
    ({"documents": ["text"]}, "settings.documents[0]"),
    ({"documents": [{"title": "ok", "content": "ok"}, {"title": "t"}]}, "settings.documents[1].content"),
    ({"documents": [{"title": "", "content": "c"}]}, "settings.documents[0].title"),
    ({"documents": [], "fallback": 3}, "settings.fallback"),
])
def test_validate_settings_names_the_field(settings: object, field: str) -> None:
    with pytest.raises(SettingsError) as info:
        FaqAgent.validate_settings(settings)
    assert info.value.field == field


def test_validate_settings_normalises() -> None:
    out = FaqAgent.validate_settings({"documents": [{"title": "T", "content": "C", "extra": 1}]})
    assert out["documents"] == [{"title": "T", "content": "C"}]
    assert out["fallback"]  # a default fallback when none is configured


async def test_a_chatty_question_with_one_rare_shared_word_still_matches() -> None:
    question = "Hi there, I forgot the password to my account yesterday, could you please help me out?"
    events = await collect(FaqAgent().run(make_context("faq", SETTINGS, question)))
    assert events[-1].data["content"] == FAQ[1]["content"]


async def test_a_large_knowledge_base_is_searched_off_the_loop_with_the_same_result() -> None:
    filler = [{"title": f"Product {i}", "content": f"Model {i} specifications and warranty terms."} for i in range(300)]
    docs = [*filler, {"title": "Lost luggage", "content": "Report lost luggage at the help desk."}]
    ctx = make_context("faq", {"documents": docs, "fallback": "?"}, "I lost my luggage")
    events = await collect(FaqAgent().run(ctx))
    assert events[-1].data["content"] == "Report lost luggage at the help desk."
    assert events[-1].data["metadata"]["sources"][0] == "Lost luggage"
