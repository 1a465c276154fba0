"""Sessions, validation, CORS, resume and rate limits of the chat API (docs/contract.md §3)."""

from __future__ import annotations

import asyncio

from buzzi import clock
from buzzi.crypto import sha256_hex
from buzzi.models import Agent, Conversation, Message
from tests.chat.conftest import create_faq_agent, new_session
from tests.support.gateway import running_gateway


async def test_session_refused_for_unknown_or_inactive_agent(gw, faq_agent):
    for body in ({"companyId": faq_agent.company_id, "agentId": "a_nope"},
                 {"companyId": "c_nope", "agentId": faq_agent.id}):
        status, answer, _ = await gw.request("POST", "/api/chat/sessions", json_body=body)
        assert (status, answer) == (404, {"error": "Agent not found"})
    await gw.store.update(Agent, faq_agent.id, {"status": "inactive"})
    status, _, _ = await gw.request("POST", "/api/chat/sessions",
                                    json_body={"companyId": faq_agent.company_id, "agentId": faq_agent.id})
    assert status == 404


async def test_bad_session_bodies_are_400(gw, faq_agent):
    status, body, _ = await gw.request("POST", "/api/chat/sessions", data=b"{not json")
    assert status == 400 and "JSON" in body["error"]
    status, body, _ = await gw.request("POST", "/api/chat/sessions", json_body={
        "companyId": faq_agent.company_id, "agentId": faq_agent.id, "customer": "bob"})
    assert status == 400 and "customer" in body["error"]


async def test_allowed_origins_and_cors(gw, faq_agent):
    await gw.store.update(Agent, faq_agent.id, {"allowed_origins": ["https://shop.example"]})
    body = {"companyId": faq_agent.company_id, "agentId": faq_agent.id}
    status, answer, headers = await gw.request("POST", "/api/chat/sessions", json_body=body,
                                               headers={"Origin": "https://evil.example"})
    assert (status, answer) == (403, {"error": "Origin not allowed"})
    assert headers["Access-Control-Allow-Origin"] == "https://evil.example"  # readable by the widget
    status, answer, headers = await gw.request("POST", "/api/chat/sessions", json_body=body,
                                               headers={"Origin": "https://shop.example"})
    assert status == 201
    assert headers["Access-Control-Allow-Origin"] == "https://shop.example"
    async with gw.http.options(f"{gw.base_url}/api/chat/sessions",
                               headers={"Origin": "https://shop.example"}) as resp:
        assert resp.status == 204
        assert "POST" in resp.headers["Access-Control-Allow-Methods"]


async def test_message_validation(gw, faq_agent):
    sid = (await new_session(gw, faq_agent))["sessionId"]
    cases = [
        (b"nope", "Invalid JSON body"),
        (b'{"content": 5}', "content must be a string"),
        (b'{}', "content is required"),
        (b'{"content": "   "}', "content must not be empty"),
        (('{"content": "' + "x" * 4001 + '"}').encode(), "content is longer than 4000 characters"),
        (b'{"content": "hi", "attachments": "x"}', "attachments must be a list of at most 10 objects"),
    ]
    for data, error in cases:
        status, body, _ = await gw.request("POST", f"/api/chat/{sid}/message", data=data)
        assert (status, body) == (400, {"error": error}), data
    assert await gw.store.count(Message) == 0


async def test_unknown_session_is_401(gw):
    for path in ("/api/chat/s_unknown/message", "/api/chat/s_unknown/messages", "/api/chat/s_unknown/stream"):
        method = "POST" if path.endswith("message") else "GET"
        status, body, _ = await gw.request(method, path, json_body={"content": "hi"} if method == "POST" else None)
        assert (status, body) == (401, {"error": "Invalid session"}), path


async def test_session_resumes_from_store_after_ttl_within_24h(make_settings):
    async with running_gateway(make_settings, chat={"session_ttl_seconds": 1}) as gw:
        sid = (await new_session(gw, await create_faq_agent(gw)))["sessionId"]
        # A session's conversation is stored with its first message (an unused one ends with its TTL).
        status, _, _ = await gw.request("POST", f"/api/chat/{sid}/message", json_body={"content": "hello"})
        assert status == 202
        await asyncio.sleep(1.2)  # the cached session expires: the store still knows the conversation
        status, _, _ = await gw.request("GET", f"/api/chat/{sid}/messages")
        assert status == 200
        # A conversation idle for more than 24 h cannot be resumed.
        conversation = await gw.store.find_one(Conversation, session_hash=sha256_hex(sid))
        old = clock.now() - 25 * 3600
        await gw.store.update(Conversation, conversation.id, {"last_message_at": old, "created_at": old})
        await asyncio.sleep(1.2)
        status, body, _ = await gw.request("GET", f"/api/chat/{sid}/messages")
        assert (status, body) == (401, {"error": "Invalid session"})


async def test_session_rate_limit_is_atomic(gw, faq_agent):
    sid = (await new_session(gw, faq_agent))["sessionId"]
    results = await asyncio.gather(*[
        gw.request("POST", f"/api/chat/{sid}/message", json_body={"content": f"question {i}"}) for i in range(45)
    ])
    statuses = [r[0] for r in results]
    assert statuses.count(202) == 30
    assert statuses.count(429) == 15
    refused = next(r for r in results if r[0] == 429)
    assert refused[1]["error"] == "Rate limit exceeded"
    assert refused[1]["retryAfter"] >= 1
    assert int(refused[2]["Retry-After"]) == refused[1]["retryAfter"]
    assert await gw.store.count(Message, role="user") == 30


async def test_ip_limit_applies_across_sessions(make_settings):
    async with running_gateway(make_settings, limits={"ip_per_minute": 3}) as gw:
        agent = await create_faq_agent(gw)
        body = {"companyId": agent.company_id, "agentId": agent.id}
        statuses = [(await gw.request("POST", "/api/chat/sessions", json_body=body))[0] for _ in range(4)]
        assert statuses == [201, 201, 201, 429]
