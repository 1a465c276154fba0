"""The one error path (handlers.base.BaseHandler.write_error): a ServiceError becomes its status,
headers and JSON body; anything else a bare JSON error; outages are a warning, not a traceback."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from types import SimpleNamespace

import aiohttp
import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web

from buzzi.errors import Invalid, ServiceError, Throttled, Unavailable
from buzzi.metrics import Metrics
from handlers.base import BaseHandler

FAILURES: dict[str, BaseException] = {
    "throttled": Throttled(3),
    "invalid": Invalid("name", "required"),
    "unavailable": Unavailable("redis: connection refused"),
    "bug": RuntimeError("boom"),
    "teapot": ServiceError("I am a teapot", status=418, extra={"hint": "tea"}),
}


class Failing(BaseHandler):
    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("X-Every-Answer", "yes")

    def get(self, name: str) -> None:
        self.set_header("X-Lost-On-Error", "yes")
        raise FAILURES[name]


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    gateway = SimpleNamespace(metrics=Metrics(), trusted_proxies=[])
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/fail/(\w+)", Failing)], gateway=gateway))
    server.add_sockets(sockets)
    yield f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    server.stop()


async def fetch(url: str) -> tuple[int, dict, aiohttp.typedefs.LooseHeaders]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.headers["Content-Type"].startswith("application/json")
        return resp.status, await resp.json(), resp.headers


@pytest.mark.parametrize(("name", "status", "body"), [
    ("throttled", 429, {"error": "Too many attempts", "retryAfter": 3}),
    ("invalid", 400, {"error": "name: required", "field": "name"}),
    ("unavailable", 503, {"error": "Unavailable"}),
    ("teapot", 418, {"error": "I am a teapot", "hint": "tea"}),
    ("bug", 500, {"error": "Internal server error"}),
])
async def test_each_error_gets_its_answer(base_url: str, name: str, status: int, body: dict) -> None:
    got_status, got_body, headers = await fetch(f"{base_url}/fail/{name}")
    assert (got_status, got_body) == (status, body)
    assert headers["X-Every-Answer"] == "yes" and "X-Lost-On-Error" not in headers
    assert headers.get("Retry-After") == ("3" if name == "throttled" else None)


async def test_only_bugs_are_logged_with_a_traceback(base_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="buzzi.handlers")
    for name in ("throttled", "invalid", "unavailable", "bug"):
        await fetch(f"{base_url}/fail/{name}")
    records = [r for r in caplog.records if r.name == "buzzi.handlers"]
    assert [(r.levelno, r.exc_info is not None) for r in records] == [(logging.WARNING, False), (logging.ERROR, True)]
    assert records[0].fields["error"] == "redis: connection refused"  # type: ignore[attr-defined]
