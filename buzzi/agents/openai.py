"""The `openai` agent: any OpenAI-compatible streaming /chat/completions endpoint.

Messages: one system message (systemPrompt, plus the best faq documents as context when the agent
has `documents`), the conversation history (human takeover replies count as assistant), then the
user message. Every non-empty content chunk becomes a `delta`; `complete` carries their
concatenation and the reported usage. Any failure, even after some deltas, ends the run with
exactly one `error` and no `complete` (the caller discards the partial answer).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import aiohttp

from buzzi.agents import checks
from buzzi.agents.base import AgentContext, AgentRunner, SettingsError
from buzzi.agents.faq import RAG_TOOL, retrieve_async
from buzzi.agents.sse import SseProtocolError, iter_sse
from buzzi.agents.text import chunk_text, estimate_tokens
from buzzi.agents.upstream import (
    MAX_ANSWER_CHARS,
    MISCONFIGURED,
    UPSTREAM_ERROR,
    UpstreamFailure,
    for_exception,
    for_status,
    parse_json,
    protocol,
    read_body,
    too_long,
    truncated,
)
from buzzi.events import AgentEvent, complete, delta, error, thinking, tool_call
from buzzi.models import Message

log = logging.getLogger("buzzi.agents.openai")
WHAT = "The AI service"
CONTEXT_DOCUMENTS = 3
HISTORY_ROLES = {"user": "user", "assistant": "assistant", "human": "assistant"}


def history_messages(history: list[Message]) -> list[dict[str, str]]:
    """Earlier turns as chat messages; system notes and empty messages are left out."""
    return [{"role": HISTORY_ROLES[m.role], "content": m.content}
            for m in history if m.role in HISTORY_ROLES and m.content]


def context_prompt(titles_and_contents: list[tuple[str, str]]) -> str:
    parts = [f"### {title}\n{content}" for title, content in titles_and_contents]
    return ("Answer using the following knowledge base entries when they are relevant. "
            "If they do not cover the question, say so rather than guessing.\n\n" + "\n\n".join(parts))


class OpenAIAgent(AgentRunner):
    kind = "openai"
    url_settings = ("baseUrl",)

    def __init__(self, session: Callable[[], aiohttp.ClientSession]) -> None:
        self._session = session

    @classmethod
    def validate_settings(cls, settings: Any) -> dict[str, Any]:
        s = checks.as_mapping(settings)
        out: dict[str, Any] = {
            "baseUrl": checks.http_url(s, "baseUrl").rstrip("/"),
            "model": checks.string(s, "model", max_len=200),
            "apiKey": checks.string(s, "apiKey", max_len=1000),
        }
        prompt = checks.string(s, "systemPrompt", required=False, allow_empty=True)
        if prompt:
            out["systemPrompt"] = prompt
        docs = checks.documents(s, required=False)
        if docs:
            out["documents"] = docs
        temperature = checks.number(s, "temperature", 0.0, 2.0)
        if temperature is not None:
            out["temperature"] = temperature
        return out

    async def run(self, ctx: AgentContext) -> AsyncIterator[AgentEvent]:  # type: ignore[override]
        try:
            settings = self.validate_settings(ctx.agent.settings)
        except SettingsError as exc:
            yield error(MISCONFIGURED, f"The agent is misconfigured ({exc.field})", False)
            return
        system_parts = [settings["systemPrompt"]] if settings.get("systemPrompt") else []
        sources: list[str] | None = None
        if settings.get("documents"):
            yield thinking("Searching the knowledge base", 0.1)
            yield tool_call(RAG_TOOL, "executing")
            hits = await retrieve_async(settings["documents"], ctx.message.content, CONTEXT_DOCUMENTS)
            sources = [hit.title for hit in hits]
            yield tool_call(RAG_TOOL, "completed", {"sources": sources})
            if hits:
                system_parts.append(context_prompt([(h.title, h.content) for h in hits]))
        messages: list[dict[str, str]] = []
        if system_parts:
            messages.append({"role": "system", "content": "\n\n".join(system_parts)})
        messages += history_messages(ctx.history)
        messages.append({"role": "user", "content": ctx.message.content})
        body: dict[str, Any] = {
            "model": settings["model"],
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if "temperature" in settings:
            body["temperature"] = settings["temperature"]

        yield thinking("Writing the answer", 0.3)
        parts: list[str] = []
        usage: dict[str, Any] = {}
        try:
            # aclosing: a consumer that stops early releases the upstream connection at once
            async with aclosing(self._stream(settings, body, parts, usage, ctx)) as stream:
                async for event in stream:
                    yield event
        except UpstreamFailure as failure:
            yield failure.event()
            return
        content = "".join(parts)
        metadata: dict[str, Any] = {"tokens": {
            "input": _count(usage.get("prompt_tokens"), estimate_tokens(*(m["content"] for m in messages))),
            "output": _count(usage.get("completion_tokens"), estimate_tokens(content)),
        }}
        if sources is not None:
            metadata["sources"] = sources
        yield complete(content, metadata)

    async def _stream(self, settings: dict[str, Any], body: dict[str, Any], parts: list[str],
                      usage: dict[str, Any], ctx: AgentContext) -> AsyncIterator[AgentEvent]:
        """Yield deltas, appending their text to `parts` and the reported usage to `usage`;
        raise UpstreamFailure on any error."""
        url = settings["baseUrl"] + "/chat/completions"
        headers = {"Authorization": f"Bearer {settings['apiKey']}", "Accept": "text/event-stream"}
        fields = {"agent_id": ctx.agent.id, "message_id": ctx.message.id, "model": settings["model"]}
        try:
            async with self._session().post(url, json=body, headers=headers, allow_redirects=False) as resp:
                if resp.status >= 300:
                    failure = for_status(resp.status, WHAT)
                    log.warning("chat completion refused", extra={"fields": {**fields, "status": resp.status}})
                    raise failure
                if resp.content_type == "application/json":
                    # A server that ignores `stream: true` answers one JSON completion.
                    async for event in _whole_completion(await read_body(resp, WHAT), parts, usage):
                        yield event
                    return
                finished = False
                size = 0
                async for sse in iter_sse(resp.content):
                    if sse.data.strip() == "[DONE]":
                        return
                    chunk = _parse_chunk(sse.data)
                    if isinstance(chunk.get("usage"), dict):
                        usage.update(chunk["usage"])
                    for choice in chunk["choices"]:
                        piece = choice.get("delta")
                        text = piece.get("content") if isinstance(piece, dict) else None
                        if isinstance(text, str) and text:
                            size += len(text)
                            if size > MAX_ANSWER_CHARS:
                                raise too_long(WHAT)
                            parts.append(text)
                            yield delta(text)
                        finished = finished or bool(choice.get("finish_reason"))
                if not finished:
                    raise truncated(WHAT)
        except UpstreamFailure:
            raise
        except SseProtocolError as exc:
            raise protocol(WHAT, str(exc)) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("chat completion failed",
                        extra={"fields": {**fields, "error": exc.__class__.__name__, "deltas": len(parts)}})
            raise for_exception(exc, WHAT) from None


def _parse_chunk(data: str) -> dict[str, Any]:
    try:
        chunk = parse_json(data)
    except ValueError:
        raise protocol(WHAT, "a stream event is not JSON") from None
    if not isinstance(chunk, dict):
        raise protocol(WHAT, "a stream event is not an object")
    if "error" in chunk:  # some servers report failures inside a 200 stream
        raise UpstreamFailure(UPSTREAM_ERROR, f"{WHAT} failed while answering", True)
    choices = chunk.get("choices", [])
    if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
        raise protocol(WHAT, "choices is not a list of objects")
    chunk["choices"] = choices
    return chunk


async def _whole_completion(raw: bytes, parts: list[str], usage: dict[str, Any]) -> AsyncIterator[AgentEvent]:
    try:
        doc = parse_json(raw)
        content = doc["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise protocol(WHAT, "not a chat completion") from None
    if not isinstance(content, str):
        raise protocol(WHAT, "content is not a string")
    if isinstance(doc.get("usage"), dict):
        usage.update(doc["usage"])
    for chunk in chunk_text(content):
        parts.append(chunk)
        yield delta(chunk)


def _count(reported: Any, estimate: int) -> int:
    if isinstance(reported, int) and not isinstance(reported, bool) and reported >= 0:
        return reported
    return estimate
