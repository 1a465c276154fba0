"""The `faq` agent: BM25 retrieval over the agent's documents; answers with the best document.

Events: thinking -> tool_call rag_search executing -> completed {"sources": [...]} -> the answer
as word-boundary deltas -> complete. An empty result is not a failure: the answer is `fallback`
and the tool call completes with no sources.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from buzzi.agents import checks
from buzzi.agents.base import AgentContext, AgentRunner, SettingsError
from buzzi.agents.bm25 import INDEXES
from buzzi.agents.text import chunk_text, estimate_tokens
from buzzi.agents.upstream import MISCONFIGURED
from buzzi.events import AgentEvent, complete, delta, error, thinking, tool_call

RAG_TOOL = "rag_search"
# confidence = score / BM25Index.unit_score(), capped at 1. A hit counts as a match only from
# MIN_CONFIDENCE up: a query word found in most documents (the company's name, say) has an idf
# near zero and must not pull an arbitrary document in, while one rare word shared with the
# question is enough whatever else the (chatty) question says.
MIN_CONFIDENCE = 0.1
MAX_SOURCES = 3
OFFLOAD_DOCUMENTS = 200
DEFAULT_FALLBACK = "Sorry, I don't have an answer to that yet. Could you rephrase, or ask for a person?"


@dataclass(frozen=True)
class Hit:
    title: str
    content: str
    score: float
    confidence: float  # 0..1, see MIN_CONFIDENCE


def retrieve(documents: Sequence[Mapping[str, Any]], query: str, k: int = MAX_SOURCES) -> list[Hit]:
    """The best matching documents, best first, each above MIN_CONFIDENCE."""
    if not documents:
        return []
    index = INDEXES.get(documents)
    unit = index.unit_score()
    hits = []
    for i, score in index.search(query, k):
        confidence = min(1.0, score / unit)
        if confidence >= MIN_CONFIDENCE:
            doc = documents[i]
            hits.append(Hit(doc["title"], doc["content"], score, round(confidence, 4)))
    return hits


async def retrieve_async(documents: Sequence[Mapping[str, Any]], query: str, k: int = MAX_SOURCES) -> list[Hit]:
    """retrieve() off the event loop when the corpus is big enough that a first-time index build
    (about 0.3 s per thousand long entries) would stall other conversations."""
    if len(documents) >= OFFLOAD_DOCUMENTS:
        return await asyncio.to_thread(retrieve, documents, query, k)
    return retrieve(documents, query, k)


async def stream_answer(content: str) -> AsyncIterator[AgentEvent]:
    """The answer as several deltas; yields to the loop between them so publishing interleaves."""
    for chunk in chunk_text(content):
        yield delta(chunk)
        await asyncio.sleep(0)


class FaqAgent(AgentRunner):
    kind = "faq"

    @classmethod
    def validate_settings(cls, settings: Any) -> dict[str, Any]:
        s = checks.as_mapping(settings)
        docs = checks.documents(s, required=True)
        fallback = checks.string(s, "fallback", required=False)
        return {"documents": docs, "fallback": fallback or DEFAULT_FALLBACK}

    async def run(self, ctx: AgentContext) -> AsyncIterator[AgentEvent]:  # type: ignore[override]
        try:
            settings = self.validate_settings(ctx.agent.settings)
        except SettingsError as exc:
            yield error(MISCONFIGURED, f"The agent is misconfigured ({exc.field})", False)
            return
        query = ctx.message.content
        yield thinking("Searching the knowledge base", 0.2)
        yield tool_call(RAG_TOOL, "executing")
        hits = await retrieve_async(settings["documents"], query)
        sources = [hit.title for hit in hits]
        yield tool_call(RAG_TOOL, "completed", {"sources": sources})
        yield thinking("Writing the answer", 0.8)
        answer = hits[0].content if hits else settings["fallback"]
        async for event in stream_answer(answer):
            yield event
        yield complete(answer, {
            "tokens": {"input": estimate_tokens(query), "output": estimate_tokens(answer)},
            "sources": sources,
            "confidence": hits[0].confidence if hits else 0.0,
        })
