"""A local HTTP server standing in for an OpenAI-compatible LLM API and a company's agent service.

    async with FakeServices(agent_secret=secret) as fake:
        fake.llm.chunks = ["Hel", "lo"]           # script the next answers
        ... settings {"baseUrl": fake.llm_base_url, ...} / {"url": fake.agent_url, ...}
        fake.requests[-1].json                     # what the gateway sent

Runs on 127.0.0.1, port 0, in the test's own event loop. Every request is recorded; requests to
the agent endpoint are checked against the Standard Webhooks signature (`signature_ok`).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from buzzi.signing import standard_verify

SIGNATURE_TOLERANCE = 300.0


@dataclass
class LlmScript:
    """How /v1/chat/completions answers the next requests."""

    chunks: list[str] = field(default_factory=lambda: ["Hello", " there", ", how can I help?"])
    usage: dict[str, int] | None = field(default_factory=lambda: {"prompt_tokens": 21, "completion_tokens": 7})
    status: int = 200
    error_body: dict[str, Any] = field(default_factory=lambda: {"error": {"message": "scripted failure"}})
    disconnect_after: int | None = None  # drop the connection after this many chunks
    stall: bool = False  # accept the request and never answer (timeout tests)
    raw_data: list[str] | None = None  # send these `data:` payloads verbatim instead of chunks
    send_done: bool = True
    as_json: bool = False  # answer one non-streamed completion, as servers ignoring `stream` do
    delay: float = 0.0  # seconds before the answer starts: a slow model


@dataclass
class AgentScript:
    """How the company agent endpoint answers."""

    status: int = 200
    location: str | None = None  # with a 3xx status: the redirect target
    json: Any = field(default_factory=lambda: {"content": "Our office opens at nine in the morning.",
                                               "sources": ["Opening hours"]})
    events: list[tuple[str, Any]] | None = None  # SSE answer: (event name, data) pairs
    disconnect_after: int | None = None  # with events: drop the connection after this many
    stall: bool = False


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool | None = None  # agent endpoint only

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class FakeServices:
    def __init__(self, agent_secret: str | None = None) -> None:
        self.agent_secret = agent_secret
        self.llm = LlmScript()
        self.agent = AgentScript()
        self.requests: list[RecordedRequest] = []
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def llm_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def agent_url(self) -> str:
        return self.url + "/agent"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/agent", self._agent)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        self._closing.set()  # releases stalled handlers
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeServices:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _record(self, request: web.Request) -> RecordedRequest:
        recorded = RecordedRequest(request.path, dict(request.headers), await request.read())
        self.requests.append(recorded)
        return recorded

    async def _stall(self) -> web.Response:
        await self._closing.wait()
        return web.Response(status=503)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        script = self.llm
        if script.stall:
            return await self._stall()
        if script.delay:
            await asyncio.sleep(script.delay)
        if script.status != 200:
            return web.json_response(script.error_body, status=script.status)
        if script.as_json:
            return web.json_response({
                "id": "chatcmpl-fake", "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(script.chunks)},
                             "finish_reason": "stop"}],
                "usage": script.usage,
            })
        if script.raw_data is not None:
            payloads = list(script.raw_data)
        else:
            payloads = [_chunk({"role": "assistant", "content": ""})]
            payloads += [_chunk({"content": text}) for text in script.chunks]
            payloads.append(_chunk({}, finish="stop"))
            if script.usage is not None:
                payloads.append(json.dumps({"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                                            "choices": [], "usage": script.usage}))
            if script.send_done:
                payloads.append("[DONE]")
        # the first payload is the role chunk, so "after N chunks" counts content chunks
        cut = None if script.disconnect_after is None or script.raw_data is not None else script.disconnect_after + 1
        return await _send_sse(request, [("", p) for p in payloads], cut)

    async def _agent(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        if self.agent_secret is not None:
            recorded.signature_ok = standard_verify(
                self.agent_secret, request.headers.get("webhook-id", ""),
                request.headers.get("webhook-timestamp", ""), request.headers.get("webhook-signature", ""),
                recorded.body, now=time.time(), tolerance=SIGNATURE_TOLERANCE)
            if not recorded.signature_ok:
                return web.json_response({"error": "bad signature"}, status=401)
        script = self.agent
        if script.stall:
            return await self._stall()
        if script.status != 200:
            headers = {"Location": script.location} if script.location else None
            return web.json_response({"error": "scripted failure"}, status=script.status, headers=headers)
        if script.events is None:
            return web.json_response(script.json)
        events = [(name, data if isinstance(data, str) else json.dumps(data)) for name, data in script.events]
        return await _send_sse(request, events, script.disconnect_after)


def _chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    return json.dumps({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": "fake-model",
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


async def _send_sse(request: web.Request, events: list[tuple[str, str]], cut: int | None) -> web.StreamResponse:
    """Stream `events` (name, data); with `cut`, abort the connection after that many, mid-body."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    for i, (name, data) in enumerate(events):
        if cut is not None and i >= cut:
            assert request.transport is not None
            request.transport.abort()  # no final chunk: the client sees a broken transfer
            return resp
        frame = (f"event: {name}\n" if name else "") + "".join(f"data: {line}\n" for line in data.split("\n"))
        await resp.write((frame + "\n").encode())
    await resp.write_eof()
    return resp
