"""The one SSE writer (handlers/sse.py): headers, retry, heartbeats, and data that can always be written."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web

from handlers.sse import SseWriter
from tests.support.sse import read_sse


class Events(tornado.web.RequestHandler):
    async def get(self) -> None:
        sse = SseWriter(self, cache_control="no-cache, no-store")
        sse.retry(1500)
        sse.heartbeat()
        sse.event("delta", {"content": "\ud800 Grüße"}, "7")
        sse.event("snapshot", {"n": 1})
        await sse.flush()
        self.finish()


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/events", Events)]))
    server.add_sockets(sockets)
    yield f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    server.stop()


async def test_a_lone_surrogate_is_written_as_an_ascii_escape(base_url: str) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{base_url}/events") as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert resp.headers["Cache-Control"] == "no-cache, no-store"
        assert resp.headers["X-Accel-Buffering"] == "no"
        raw = await asyncio.wait_for(resp.content.read(), 10)
    text = raw.decode()
    assert raw.isascii()
    assert text.startswith("retry: 1500\n\n: heartbeat\n\n")
    assert 'id: 7\nevent: delta\ndata: {"content":"\\ud800 Gr\\u00fc\\u00dfe"}\n\n' in text
    assert text.endswith('event: snapshot\ndata: {"n":1}\n\n')  # no id line when the event has none


async def test_events_parse_back_to_the_same_data(base_url: str) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{base_url}/events") as resp:
        events = [e async for e in read_sse(resp) if e.event != "comment"]
    assert [(e.id, e.event, e.data) for e in events] == [
        ("7", "delta", {"content": "\ud800 Grüße"}), (None, "snapshot", {"n": 1}),
    ]
