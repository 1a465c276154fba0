"""Limits a single client cannot get around: open streams per session, sessions per company."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import aiohttp

from buzzi.config import Settings
from tests.chat.conftest import create_faq_agent, new_session
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.waiting import wait_until


async def open_stream(gw: RunningGateway, sid: str, stack: contextlib.AsyncExitStack) -> aiohttp.ClientResponse:
    resp = await stack.enter_async_context(gw.http.get(f"{gw.base_url}/api/chat/{sid}/stream"))
    if resp.status == 200:
        assert await resp.content.readline() == b"retry: 2000\n"
    return resp


async def test_open_streams_per_session_are_capped(make_settings: Callable[..., Settings]) -> None:
    async with running_gateway(make_settings, chat={"max_streams_per_session": 2}) as gw:
        agent = await create_faq_agent(gw)
        sid = (await new_session(gw, agent))["sessionId"]
        other = (await new_session(gw, agent))["sessionId"]
        hub = gw.gateway.streams
        async with contextlib.AsyncExitStack() as stack:
            first = await open_stream(gw, sid, stack)
            second = await open_stream(gw, sid, stack)
            assert (first.status, second.status) == (200, 200)

            refused = await open_stream(gw, sid, stack)
            assert refused.status == 429
            assert refused.headers["Content-Type"].startswith("application/json")
            body = await refused.json()
            assert body["error"] == "Too many open streams for this session"
            assert body["retryAfter"] >= 1
            assert int(refused.headers["Retry-After"]) == body["retryAfter"]
            assert len(hub.live) == 2  # the refused one holds nothing

            # Another session is not affected.
            assert (await open_stream(gw, other, stack)).status == 200

            # A stream that ends frees its place.
            first.close()
            await wait_until(lambda: len(hub.live) == 2)
            assert (await open_stream(gw, sid, stack)).status == 200


async def test_session_creation_has_its_own_company_budget(make_settings: Callable[..., Settings]) -> None:
    limits = {"company_per_minute": 3, "sessions_per_company_per_minute": 3}
    async with running_gateway(make_settings, limits=limits) as gw:
        agent = await create_faq_agent(gw)
        body = {"companyId": agent.company_id, "agentId": agent.id}
        results = [await gw.request("POST", "/api/chat/sessions", json_body=body) for _ in range(4)]
        assert [status for status, _, _ in results] == [201, 201, 201, 429]
        _, refused, headers = results[-1]
        assert refused["error"] == "Rate limit exceeded" and refused["retryAfter"] >= 1
        assert int(headers["Retry-After"]) == refused["retryAfter"]

        # The sessions spent none of the company's message budget: all of it is still there.
        sid = results[0][1]["sessionId"]
        statuses = [(await gw.request("POST", f"/api/chat/{sid}/message", json_body={"content": f"hi {i}"}))[0]
                    for i in range(4)]
        assert statuses == [202, 202, 202, 429]

        # Another company has its own budget; a request refused before counting spends none of it.
        other = await create_faq_agent(gw)
        await gw.request("POST", "/api/chat/sessions", json_body={"companyId": other.company_id, "agentId": "a_no"})
        for _ in range(3):
            await new_session(gw, other)
