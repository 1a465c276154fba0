"""The `http` agent: POST the conversation to the company's own service, signed with Standard
Webhooks (webhook-id = the user message id, so the service can dedupe a retried request).

The service answers either JSON `{"content", "sources"?}` (streamed on as word-boundary deltas)
or `text/event-stream` with the contract's events, passed through. The run still guarantees the
invariants: exactly one terminal event, and `complete` content == the concatenated deltas.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import aiohttp

from buzzi import clock
from buzzi.agents import checks
from buzzi.agents.base import AgentContext, AgentRunner, SettingsError
from buzzi.agents.faq import stream_answer
from buzzi.agents.sse import SseProtocolError, iter_sse
from buzzi.agents.text import chunk_text, estimate_tokens
from buzzi.agents.upstream import (
    MAX_ANSWER_CHARS,
    MISCONFIGURED,
    UpstreamFailure,
    for_exception,
    for_status,
    parse_json,
    protocol,
    read_body,
    too_long,
    truncated,
)
from buzzi.events import AgentEvent, complete, delta, error, notification, thinking, tool_call
from buzzi.signing import standard_headers

log = logging.getLogger("buzzi.agents.http")
WHAT = "The company's agent service"
TOOL_STATUSES = ("executing", "completed", "failed")
NOTIFICATION_TYPES = ("handover", "typing", "read")
USER_AGENT = "BuzziGateway/0.1 (+https://buzzi.ai)"


def request_body(ctx: AgentContext) -> dict[str, Any]:
    return {
        "type": "agent.request",
        "timestamp": clock.iso(clock.now()),
        "data": {
            "conversationId": ctx.conversation.id,
            "message": {"id": ctx.message.id, "content": ctx.message.content,
                        "attachments": ctx.message.attachments},
            # Roles as stored (user | assistant | human): the service may care who answered.
            "history": [{"role": m.role, "content": m.content} for m in ctx.history if m.role != "system"],
            "customer": ctx.conversation.customer,
        },
    }


class HttpAgent(AgentRunner):
    kind = "http"
    url_settings = ("url",)

    def __init__(self, session: Callable[[], aiohttp.ClientSession]) -> None:
        self._session = session

    @classmethod
    def validate_settings(cls, settings: Any) -> dict[str, Any]:
        s = checks.as_mapping(settings)
        return {"url": checks.http_url(s, "url"), "secret": checks.standard_secret(s, "secret")}

    async def run(self, ctx: AgentContext) -> AsyncIterator[AgentEvent]:  # type: ignore[override]
        try:
            settings = self.validate_settings(ctx.agent.settings)
        except SettingsError as exc:
            yield error(MISCONFIGURED, f"The agent is misconfigured ({exc.field})", False)
            return
        body = json.dumps(request_body(ctx), separators=(",", ":"), ensure_ascii=False).encode()
        headers = standard_headers(settings["secret"], ctx.message.id, int(clock.now()), body)
        headers.update({"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                        "User-Agent": USER_AGENT})
        fields = {"agent_id": ctx.agent.id, "message_id": ctx.message.id}
        yield thinking("Asking the agent service", 0.2)
        emitted = 0
        try:
            async with self._session().post(settings["url"], data=body, headers=headers,
                                            allow_redirects=False) as resp:
                if resp.status >= 300:
                    log.warning("agent service refused", extra={"fields": {**fields, "status": resp.status}})
                    raise for_status(resp.status, WHAT)
                if resp.content_type == "text/event-stream":
                    stream = _relay_stream(resp, ctx.message.content)
                else:
                    stream = _relay_json(await read_body(resp, WHAT), ctx.message.content)
                async with aclosing(stream):
                    async for event in stream:
                        emitted += 1
                        yield event
        except UpstreamFailure as failure:
            yield failure.event()
        except SseProtocolError as exc:
            yield protocol(WHAT, str(exc)).event()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("agent service failed",
                        extra={"fields": {**fields, "error": exc.__class__.__name__, "events": emitted}})
            yield for_exception(exc, WHAT).event()


async def _relay_json(raw: bytes, question: str) -> AsyncIterator[AgentEvent]:
    try:
        doc = parse_json(raw)
    except ValueError:
        raise protocol(WHAT, "the answer is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("content"), str):
        raise protocol(WHAT, "content must be a string")
    content = doc["content"]
    if len(content) > MAX_ANSWER_CHARS:
        raise too_long(WHAT)
    metadata: dict[str, Any] = {"tokens": {"input": estimate_tokens(question), "output": estimate_tokens(content)}}
    sources = doc.get("sources")
    if sources is not None:
        if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
            raise protocol(WHAT, "sources must be a list of strings")
        metadata["sources"] = sources
    async for event in stream_answer(content):
        yield event
    yield complete(content, metadata)


async def _relay_stream(resp: aiohttp.ClientResponse, question: str) -> AsyncIterator[AgentEvent]:
    """Pass the service's events through, normalised; stop at its first terminal event."""
    parts: list[str] = []
    size = 0
    async for sse in iter_sse(resp.content):
        try:
            data = parse_json(sse.data)
        except ValueError:
            raise protocol(WHAT, f"{sse.event} data is not JSON") from None
        if not isinstance(data, dict):
            raise protocol(WHAT, f"{sse.event} data is not an object")
        name = sse.event
        if name == "delta":
            text = _field(data, "content", str, name)
            if text:
                size += len(text)
                if size > MAX_ANSWER_CHARS:
                    raise too_long(WHAT)
                parts.append(text)
                yield delta(text)
        elif name == "error":
            retryable = data.get("retryable", False)
            yield error(str(data.get("code") or "agent_error"), str(data.get("message") or "The agent failed"),
                        retryable if isinstance(retryable, bool) else False)
            return
        elif name == "complete":
            async for event in _finish(data, parts, question):
                yield event
            return
        elif name in _PROGRESS_EVENTS:
            yield _PROGRESS_EVENTS[name](data)
        # other event names (a "message" keep-alive, future additions) are ignored
    raise truncated(WHAT)


def _thinking(data: dict[str, Any]) -> AgentEvent:
    progress = data.get("progress", 0.0)
    if isinstance(progress, bool) or not isinstance(progress, int | float):
        raise protocol(WHAT, "thinking.progress must be a number")
    return thinking(_field(data, "step", str, "thinking"), progress)


def _tool_call(data: dict[str, Any]) -> AgentEvent:
    status = _field(data, "status", str, "tool_call")
    if status not in TOOL_STATUSES:
        raise protocol(WHAT, "tool_call.status is not executing|completed|failed")
    return tool_call(_field(data, "tool", str, "tool_call"), status, data.get("result"))


def _notification(data: dict[str, Any]) -> AgentEvent:
    type_ = _field(data, "type", str, "notification")
    if type_ not in NOTIFICATION_TYPES:
        raise protocol(WHAT, "notification.type is not handover|typing|read")
    return notification(type_, data.get("data"))


# Events passed through as they come, once checked against the contract's shape.
_PROGRESS_EVENTS: dict[str, Callable[[dict[str, Any]], AgentEvent]] = {
    "thinking": _thinking, "tool_call": _tool_call, "notification": _notification,
}


async def _finish(data: dict[str, Any], parts: list[str], question: str) -> AsyncIterator[AgentEvent]:
    """Emit the deltas needed so that complete content == concatenated deltas, then complete."""
    streamed = "".join(parts)
    content = data.get("content")
    if not isinstance(content, str):
        content = streamed
    if len(content) > MAX_ANSWER_CHARS:
        raise too_long(WHAT)
    if content != streamed:
        if content.startswith(streamed):
            for chunk in chunk_text(content[len(streamed):]):
                yield delta(chunk)
        else:
            # The widget has already shown the deltas and cannot take them back: they win.
            log.warning("agent service complete disagrees with its deltas; keeping the deltas")
            content = streamed
    raw_meta = data.get("metadata")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    metadata: dict[str, Any] = {}
    tokens = meta.get("tokens")
    if (isinstance(tokens, dict) and all(isinstance(tokens.get(k), int) and not isinstance(tokens.get(k), bool)
                                         for k in ("input", "output"))):
        metadata["tokens"] = {"input": tokens["input"], "output": tokens["output"]}
    else:
        metadata["tokens"] = {"input": estimate_tokens(question), "output": estimate_tokens(content)}
    sources = meta.get("sources")
    if isinstance(sources, list) and all(isinstance(s, str) for s in sources):
        metadata["sources"] = sources
    confidence = meta.get("confidence")
    if isinstance(confidence, int | float) and not isinstance(confidence, bool):
        metadata["confidence"] = max(0.0, min(1.0, float(confidence)))
    # messageId is the caller's to set; anything else the service sent is dropped.
    yield complete(content, metadata)


def _field(data: dict[str, Any], key: str, typ: type, event: str) -> Any:
    value = data.get(key)
    if not isinstance(value, typ):
        raise protocol(WHAT, f"{event}.{key} must be a {typ.__name__}")
    return value
