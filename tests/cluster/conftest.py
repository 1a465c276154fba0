"""Cluster fixtures: real node processes (tests/support/cluster.py) on one MongoDB-wire server and a
Redis of their own, a slow `http` agent service in the test process, and small chat/SSE helpers.

`cluster3` (module scope) is three nodes the tests share as long as they do not kill any;
`make_cluster` gives a test its own nodes and its own Redis, for the tests that kill or restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from buzzi.models import Agent, Message
from buzzi.signing import new_standard_secret, standard_verify
from buzzi.store.mongo import MongoStore
from tests.support.cluster import Cluster, Node, create_agent
from tests.support.redis_server import RedisServer, free_port
from tests.support.sse import SseEvent, read_sse
from tests.support.waiting import wait_until

FAQ = {
    "documents": [
        {"title": "Opening hours", "content": "We are open Monday to Friday from 9 to 18."},
        {"title": "Returns", "content": "Items can be returned within 30 days for a full refund."},
    ],
    "fallback": "Sorry, I do not know.",
}
READ_TIMEOUT = 15.0


# ----------------------------------------------------------------------------- the slow agent service

@dataclass
class SlowAgent:
    """A company `http` agent service answering SSE: two deltas at once, then (for the requests it
    holds) nothing until the test sets `gate`, then the last delta and `complete`.
    `hold` = how many of the first requests wait on the gate; later requests answer at once."""

    hold: int = 1
    secret: str = field(default_factory=new_standard_secret)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    parts: tuple[str, ...] = ("Hello ", "from ", "the service!")

    @property
    def answer(self) -> str:
        return "".join(self.parts)

    def settings(self) -> dict[str, str]:
        return {"url": self.url, "secret": self.secret}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        # The gateway signs like a custom webhook: a request we cannot verify is not the gateway's.
        h = request.headers
        if not standard_verify(self.secret, h.get("webhook-id", ""), h.get("webhook-timestamp", ""),
                               h.get("webhook-signature", ""), body, time.time(), 300):
            return web.json_response({"error": "bad signature"}, status=401)
        doc = json.loads(body)
        number = len(self.requests)
        self.requests.append(doc)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        for part in self.parts[:-1]:
            await resp.write(_sse("delta", {"content": part}))
        if number < self.hold:
            await self.gate.wait()
        await resp.write(_sse("delta", {"content": self.parts[-1]}))
        await resp.write(_sse("complete", {"content": self.answer}))
        return resp

    async def wait_request(self, count: int = 1) -> dict[str, Any]:
        await wait_until(lambda: len(self.requests) >= count, READ_TIMEOUT)
        return self.requests[count - 1]


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


@pytest.fixture
async def slow_agent() -> AsyncIterator[SlowAgent]:
    agent = SlowAgent()
    app = web.Application()
    app.router.add_post("/agent", agent.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    agent.url = f"http://127.0.0.1:{port}/agent"
    try:
        yield agent
    finally:
        agent.gate.set()
        await runner.cleanup()


# ----------------------------------------------------------------------------- clusters

@pytest.fixture(scope="module")
def cluster3(mongo_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """node-a, node-b, node-c on a fresh database and a Redis of their own, shared by a module."""
    redis = RedisServer()
    redis.start()
    cluster = Cluster.fresh(tmp_path_factory.mktemp("cluster3"), mongo_url, redis.url)
    try:
        with cluster.running():
            cluster.start("node-a", "node-b", "node-c")
            yield cluster
    finally:
        redis.cleanup()


@dataclass
class ClusterFactory:
    mongo_url: str
    tmp_path: Path
    redis: list[RedisServer] = field(default_factory=list)
    clusters: list[Cluster] = field(default_factory=list)

    def __call__(self, **env: str) -> Cluster:
        redis = RedisServer()
        redis.start()
        self.redis.append(redis)
        cluster = Cluster.fresh(self.tmp_path / f"cluster{len(self.clusters)}", self.mongo_url, redis, **env)
        self.clusters.append(cluster)
        return cluster

    def close(self) -> None:
        for cluster in self.clusters:
            cluster.close()
        for redis in self.redis:
            redis.cleanup()


@pytest.fixture
def make_cluster(mongo_url: str, tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """Clusters private to one test (own Redis, own database); nodes started by the test."""
    factory = ClusterFactory(mongo_url, tmp_path)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
async def store3(cluster3: Cluster) -> AsyncIterator[MongoStore]:
    async with opened(cluster3) as store:
        yield store


@contextlib.asynccontextmanager
async def opened(cluster: Cluster) -> AsyncIterator[MongoStore]:
    store = cluster.store()
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # No total timeout: streams stay open; every read is bounded by READ_TIMEOUT instead.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5)) as session:
        yield session


# ----------------------------------------------------------------------------- chat helpers

async def new_session(http: aiohttp.ClientSession, node: Node, agent: Agent) -> str:
    async with http.post(f"{node.base_url}/api/chat/sessions",
                         json={"companyId": agent.company_id, "agentId": agent.id}) as resp:
        body = await resp.json()
        assert resp.status == 201, body
        return body["sessionId"]


async def post_message(http: aiohttp.ClientSession, node: Node, sid: str, content: str) -> tuple[int, Any]:
    async with http.post(f"{node.base_url}/api/chat/{sid}/message", json={"content": content}) as resp:
        return resp.status, await resp.json()


@contextlib.asynccontextmanager
async def open_stream(http: aiohttp.ClientSession, node: Node, sid: str,
                      last_event_id: str | None) -> AsyncIterator[aiohttp.ClientResponse]:
    """The SSE stream, once the node has answered its headers and the `retry:` hint."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    async with http.get(f"{node.base_url}/api/chat/{sid}/stream", headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert (await asyncio.wait_for(resp.content.readline(), READ_TIMEOUT)).startswith(b"retry:")
        yield resp


async def read_events(resp: aiohttp.ClientResponse, until: Callable[[list[SseEvent]], bool] | None = None,
                      timeout: float = READ_TIMEOUT) -> list[SseEvent]:
    """Events (not comments) until `until(events)` holds, a terminal event, or the end of the stream."""
    events: list[SseEvent] = []

    async def read() -> None:
        async for ev in read_sse(resp):
            if ev.event == "comment":
                continue
            events.append(ev)
            if (until and until(events)) or ev.event in ("complete", "error"):
                return

    await asyncio.wait_for(read(), timeout)
    return events


async def stream_events(http: aiohttp.ClientSession, node: Node, sid: str, last_event_id: str | None,
                        until: Callable[[list[SseEvent]], bool] | None = None) -> list[SseEvent]:
    async with open_stream(http, node, sid, last_event_id) as resp:
        return await read_events(resp, until)


def deltas(n: int) -> Callable[[list[SseEvent]], bool]:
    return lambda events: sum(e.event == "delta" for e in events) >= n


def ids(events: list[SseEvent]) -> list[int]:
    return [int(e.id) for e in events if e.id is not None]


def assert_consecutive(events: list[SseEvent]) -> None:
    """Every event once, in order, none missing: ids count up by one."""
    got = ids(events)
    assert got == list(range(got[0], got[0] + len(got))), got


def answer_text(events: list[SseEvent]) -> str:
    return "".join(e.data["content"] for e in events if e.event == "delta")


async def message_owner(store: MongoStore, message_id: str) -> str:
    """The node holding the lease on a user message (the one running its agent)."""
    async def owner() -> str | None:
        message = await store.get(Message, message_id)
        return message.lease_owner if message else None

    return await wait_until(owner, READ_TIMEOUT)


async def http_agent(store: MongoStore, slow: SlowAgent) -> Agent:
    return await create_agent(store, kind="http", settings=slow.settings(), name="Service")


async def faq_agent(store: MongoStore) -> Agent:
    return await create_agent(store, kind="faq", settings=FAQ)
