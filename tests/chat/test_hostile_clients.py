"""The public chat API under hostile load (docs/contract.md §5), over real HTTP against a running node:
session floods have their own budget and store nothing, open streams are capped per client address,
and agent failures reach customers as generic text while admins keep the detail.

Several client addresses are real: a client bound to 127.0.0.N is a different address to the node."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from buzzi.config import Settings, load_settings
from buzzi.ids import new_id
from buzzi.models import Agent, Company, Conversation, Message
from buzzi.signing import new_standard_secret
from tests.admin.helpers import call
from tests.chat.conftest import create_faq_agent, new_session
from tests.support.fake_llm import FakeServices
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.sse import collect_until_terminal
from tests.support.waiting import wait_until
from tests.webhooks.kit import channel_lab

FLOOD_ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
INTERNAL = "10.0.0.3"


@contextlib.asynccontextmanager
async def client_from(address: str) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client whose requests come from `address`."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0))) as http:
        yield http


async def start_sessions(gw: RunningGateway, body: dict[str, Any], address: str, count: int
                         ) -> list[tuple[int, dict[str, Any], str | None]]:
    """`count` session creations from `address`, 16 at a time: (status, body, Retry-After)."""
    gate = asyncio.Semaphore(16)

    async def one(http: aiohttp.ClientSession) -> tuple[int, dict[str, Any], str | None]:
        async with gate, http.post(f"{gw.base_url}/api/chat/sessions", json=body) as resp:
            return resp.status, await resp.json(), resp.headers.get("Retry-After")

    async with client_from(address) as http:
        return list(await asyncio.gather(*[one(http) for _ in range(count)]))


async def test_a_session_flood_leaves_webhooks_and_live_chats_alone_and_stores_nothing(
        make_settings: Callable[..., Settings]) -> None:
    # The addresses' general request limit is out of the way: only the session budget can refuse.
    limits = {"ip_per_minute": 100_000, "sessions_per_ip_per_minute": 100, "sessions_per_company_per_minute": 250}
    async with channel_lab(make_settings, limits=limits) as lab:
        gw = lab.gw
        body = {"companyId": lab.company.id, "agentId": lab.agent.id}
        chatting = await new_session(gw, lab.agent)  # a customer already in a conversation
        status, _, _ = await gw.request("POST", f"/api/chat/{chatting['sessionId']}/message",
                                        json_body={"content": "Does it come in red?"})
        assert status == 202
        assert await gw.store.count(Conversation) == 1

        per_address = await asyncio.gather(*[start_sessions(gw, body, a, 250) for a in FLOOD_ADDRESSES])
        results = [r for batch in per_address for r in batch]
        assert len(results) == 1000
        # Each address has 100 sessions a minute, the company 250 (the customer above used one).
        assert all(sum(status == 201 for status, _, _ in batch) <= 100 for batch in per_address)
        assert sum(status == 201 for status, _, _ in results) == 249
        refused = [(answer, retry) for status, answer, retry in results if status != 201]
        assert len(refused) == 751
        assert all(a["error"] == "Rate limit exceeded" and int(r) == a["retryAfter"] >= 1 for a, r in refused)
        # Not one conversation stored for the 249 sessions that were created.
        assert await gw.store.count(Conversation) == 1

        # The company's message budget is untouched: its signed webhook and the live chat go through.
        status, answer, _ = await lab.post("custom", lab.message("custom"))
        assert status == 200, answer
        status, answer, _ = await gw.request("POST", f"/api/chat/{chatting['sessionId']}/message",
                                             json_body={"content": "And in blue?"})
        assert status == 202, answer


async def test_an_unused_session_reads_streams_and_is_stored_by_its_first_message(
        make_settings: Callable[..., Settings]) -> None:
    async with running_gateway(make_settings, chat={"session_ttl_seconds": 1}) as gw:
        agent = await create_faq_agent(gw)
        session = await new_session(gw, agent, customer={"name": "Ada"})
        sid, conversation_id = session["sessionId"], session["conversationId"]
        assert await gw.store.count(Conversation) == 0

        status, history, _ = await gw.request("GET", f"/api/chat/{sid}/messages")
        assert (status, history["conversationId"], history["messages"]) == (200, conversation_id, [])
        async with gw.http.get(f"{gw.base_url}/api/chat/{sid}/stream") as stream:
            assert stream.status == 200
            assert await stream.content.readline() == b"retry: 2000\n"
            status, _, _ = await gw.request("POST", f"/api/chat/{sid}/message",
                                            json_body={"content": "What are your opening hours?"})
            assert status == 202
            events = await asyncio.wait_for(collect_until_terminal(stream), 10)
        assert events[-1].event == "complete" and "Monday to Friday" in events[-1].data["content"]

        # The first message stored the conversation under the id the session was given.
        conversation = await gw.store.get(Conversation, conversation_id)
        assert conversation is not None and conversation.customer == {"name": "Ada"}
        assert await gw.store.count(Conversation) == 1
        status, history, _ = await gw.request("GET", f"/api/chat/{sid}/messages")
        assert [m["role"] for m in history["messages"]] == ["user", "assistant"]

        # An unused session that expired has nothing to resume; a used one resumes from the store.
        unused = (await new_session(gw, agent))["sessionId"]
        await asyncio.sleep(1.2)
        assert (await gw.request("GET", f"/api/chat/{unused}/messages"))[:2] == (401, {"error": "Invalid session"})
        assert (await gw.request("GET", f"/api/chat/{sid}/messages"))[0] == 200
        assert await gw.store.count(Conversation) == 1


async def test_session_starts_per_address_have_their_own_budget(make_settings: Callable[..., Settings]) -> None:
    async with running_gateway(make_settings, limits={"sessions_per_ip_per_minute": 2}) as gw:
        agent = await create_faq_agent(gw)
        body = {"companyId": agent.company_id, "agentId": agent.id}
        first = await start_sessions(gw, body, "127.0.0.2", 3)
        assert sorted(status for status, _, _ in first) == [201, 201, 429]
        # Another address has its own budget, and messages are not counted in it.
        assert [s for s, _, _ in await start_sessions(gw, body, "127.0.0.3", 2)] == [201, 201]
        sid = next(answer["sessionId"] for status, answer, _ in first if status == 201)
        for i in range(3):
            status, _, _ = await gw.request("POST", f"/api/chat/{sid}/message", json_body={"content": f"hi {i}"})
            assert status == 202


async def open_stream(gw: RunningGateway, http: aiohttp.ClientSession, sid: str,
                      stack: contextlib.AsyncExitStack) -> aiohttp.ClientResponse:
    resp = await stack.enter_async_context(http.get(f"{gw.base_url}/api/chat/{sid}/stream"))
    if resp.status == 200:
        assert await resp.content.readline() == b"retry: 2000\n"
    return resp


async def test_open_streams_per_client_address_are_capped(make_settings: Callable[..., Settings]) -> None:
    assert load_settings(env={}).chat.max_streams_per_address == 20
    async with running_gateway(make_settings, chat={"max_streams_per_address": 3}) as gw, \
            client_from("127.0.0.2") as here, client_from("127.0.0.3") as there:
        agent = await create_faq_agent(gw)
        sids = [(await new_session(gw, agent))["sessionId"] for _ in range(3)]
        hub = gw.gateway.streams
        async with contextlib.AsyncExitStack() as stack:
            # Two sessions, three streams: within each session's cap of 5, at the address's cap of 3.
            opened = [await open_stream(gw, here, sid, stack) for sid in (sids[0], sids[0], sids[1])]
            assert [r.status for r in opened] == [200, 200, 200]

            refused = await open_stream(gw, here, sids[2], stack)  # a fresh session does not help
            assert refused.status == 429
            assert refused.headers["Content-Type"].startswith("application/json")
            answer = await refused.json()
            assert answer["error"] == "Too many open streams for this address" and answer["limit"] == 3
            assert int(refused.headers["Retry-After"]) == answer["retryAfter"] >= 1
            assert len(hub.live) == 3  # the refused one holds nothing

            assert (await open_stream(gw, there, sids[2], stack)).status == 200  # another address

            opened[0].close()  # a stream that ends frees its place
            await wait_until(lambda: len(hub.live) == 3)
            assert (await open_stream(gw, here, sids[2], stack)).status == 200
        # Every stream closed: the per-address counts are gone, not kept at zero.
        await wait_until(lambda: not hub.live)
        assert hub._by_address == {}


async def ask(gw: RunningGateway, agent: Agent, question: str) -> tuple[str, list[Any]]:
    session = await new_session(gw, agent)
    async with gw.http.get(f"{gw.base_url}/api/chat/{session['sessionId']}/stream") as stream:
        status, _, _ = await gw.request("POST", f"/api/chat/{session['sessionId']}/message",
                                        json_body={"content": question})
        assert status == 202
        return session["conversationId"], await asyncio.wait_for(collect_until_terminal(stream), 10)


async def admin_sees_failure(gw: RunningGateway, token: str, conversation_id: str) -> str:
    """The error the admin API shows on the failed customer message, once it has failed."""
    async def failed() -> str | None:
        messages = await call(gw, "GET", f"/api/admin/conversations/{conversation_id}/messages", token)
        user = [m for m in messages if m["role"] == "user" and m["state"] == "failed"]
        return user[0]["metadata"]["error"] if user else None

    return await wait_until(failed)


async def test_agent_failures_tell_customers_nothing_internal_and_admins_everything(
        make_settings: Callable[..., Settings]) -> None:
    # Private networks are refused, except the fake company service on loopback.
    security = {"allow_private_networks": False, "allowed_private_cidrs": ["127.0.0.1/32"]}
    async with running_gateway(make_settings, security=security) as gw, FakeServices() as services:
        token = await gw.login()
        company = await gw.store.add(Company(id=new_id("company"), name="Acme"))

        # An agent pointing at an internal host: refused by the network policy, which names the host.
        internal = await gw.store.add(Agent(
            id=new_id("agent"), company_id=company.id, name="Internal", kind="http",
            settings={"url": f"http://{INTERNAL}:8000/agent", "secret": new_standard_secret()}))
        conversation_id, events = await ask(gw, internal, "Where is my order?")
        error = events[-1]
        assert error.event == "error" and error.data["code"] == "upstream_blocked"
        assert error.data["retryable"] is False and error.data["message"].startswith("Sorry")
        assert all(INTERNAL not in str(e.data) and "blocked" not in str(e.data.get("message")) for e in events)
        detail = await admin_sees_failure(gw, token, conversation_id)
        assert INTERNAL in detail and "upstream_blocked" in detail

        # A company service whose own error names its internals: the customer gets none of it.
        services.agent.events = [("delta", {"content": "Let me check"}),
                                 ("error", {"code": "crm_down", "retryable": True,
                                            "message": f"cannot reach http://{INTERNAL}:8000/crm"})]
        relaying = await gw.store.add(Agent(
            id=new_id("agent"), company_id=company.id, name="Relay", kind="http",
            settings={"url": services.agent_url, "secret": new_standard_secret()}))
        session = await new_session(gw, relaying)
        sid = session["sessionId"]
        async with gw.http.get(f"{gw.base_url}/api/chat/{sid}/stream") as stream:
            assert (await gw.request("POST", f"/api/chat/{sid}/message", json_body={"content": "Order?"}))[0] == 202
            events = await asyncio.wait_for(collect_until_terminal(stream), 10)
        error = events[-1]
        assert (error.event, error.data["code"], error.data["retryable"]) == ("error", "agent_error", True)
        assert INTERNAL not in error.data["message"] and "crm" not in error.data["message"]
        detail = await admin_sees_failure(gw, token, session["conversationId"])
        assert detail == f"agent error: crm_down: cannot reach http://{INTERNAL}:8000/crm"
        # The customer's own history shows the failed message without the detail.
        _, history, _ = await gw.request("GET", f"/api/chat/{sid}/messages")
        assert INTERNAL not in str(history) and "crm" not in str(history)
        stored = await gw.store.find(Message, conversation_id=session["conversationId"], role="user")
        assert [m.state for m in stored] == ["failed"]
