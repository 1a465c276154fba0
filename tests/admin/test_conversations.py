"""Conversations seen from the admin API: lists, history with delivery status, human takeover and
replies reaching the widget; live sessions; the webhook delivery log."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlencode

from buzzi.models import Message
from tests.admin.helpers import (
    ON_EVERY_STORE,
    SECRET_HEADERS_PLAIN,
    call,
    company_admin,
    create_agent,
    create_company,
    create_webhook,
)
from tests.support.gateway import RunningGateway
from tests.support.sse import collect_until_terminal
from tests.support.waiting import wait_until
from tests.support.web_sessions import store_conversation


async def web_chat(gw: RunningGateway, owner: str, name: str = "Acme") -> tuple[str, str, dict]:
    cid = (await create_company(gw, owner, name))["id"]
    aid = (await create_agent(gw, owner, cid))["id"]
    session = await call(gw, "POST", "/api/chat/sessions", None, {"companyId": cid, "agentId": aid}, 201)
    await store_conversation(gw, session, cid, aid)  # as its first message would
    return cid, aid, session


@ON_EVERY_STORE
async def test_list_and_messages_of_a_web_conversation(gw: RunningGateway, owner: str) -> None:
    cid, aid, session = await web_chat(gw, owner)
    _, _, other = await web_chat(gw, owner, "Other")
    sid, conv_id = session["sessionId"], session["conversationId"]
    await call(gw, "POST", f"/api/chat/{sid}/message", None, {"content": "What are your opening hours?"}, 202)

    async def answered() -> list:
        found = await call(gw, "GET", f"/api/admin/conversations/{conv_id}/messages", owner)
        # The user message is closed (done) just after the answer is stored: wait for both.
        done = [m["role"] for m in found] == ["user", "assistant"] and found[0]["state"] == "done"
        return found if done else []

    messages = await wait_until(answered)
    assert messages[0]["content"] == "What are your opening hours?"
    assert "Monday to Friday" in messages[1]["content"]
    assert messages[0]["createdAt"] <= messages[1]["createdAt"]

    listed = await call(gw, "GET", "/api/admin/conversations", owner)
    # Newest activity first: ours had a message after the other one was created.
    assert [c["id"] for c in listed] == [conv_id, other["conversationId"]]
    mine = await call(gw, "GET", f"/api/admin/conversations?companyId={cid}&status=open&channel=web", owner)
    assert [c["id"] for c in mine] == [conv_id]
    assert mine[0]["agentId"] == aid and mine[0]["owner"] == "bot" and mine[0]["messageCount"] >= 2
    assert await call(gw, "GET", "/api/admin/conversations?channel=telegram", owner) == []
    assert len(await call(gw, "GET", "/api/admin/conversations?limit=1", owner)) == 1
    assert (await call(gw, "GET", "/api/admin/conversations?status=lost", owner, expect=400))["field"] == "status"
    assert (await call(gw, "GET", "/api/admin/conversations?limit=0", owner, expect=400))["field"] == "limit"
    assert (await call(gw, "GET", f"/api/admin/conversations/{conv_id}", owner))["id"] == conv_id
    await call(gw, "GET", "/api/admin/conversations/cv_nope", owner, expect=404)


async def test_failed_delivery_is_visible(gw: RunningGateway, owner: str) -> None:
    cid, aid, session = await web_chat(gw, owner)
    conv_id = session["conversationId"]
    await gw.store.add(Message(id="m_failed", conversation_id=conv_id, company_id=cid, agent_id=aid,
                               role="assistant", content="lost", delivery={"status": "failed", "error": "blocked"}))
    messages = await call(gw, "GET", f"/api/admin/conversations/{conv_id}/messages", owner)
    # Stored before receipts as a plain string: shown in the contract's shape (docs/contract.md §4).
    assert messages[-1]["delivery"] == {"status": "failed", "attempts": 0, "ids": [],
                                        "error": {"code": None, "title": "blocked"}}


async def test_human_takeover_reply_reaches_the_widget(gw: RunningGateway, owner: str) -> None:
    cid, _, session = await web_chat(gw, owner)
    sid, conv_id = session["sessionId"], session["conversationId"]
    base = f"/api/admin/conversations/{conv_id}"
    answer = await call(gw, "POST", f"{base}/reply", owner, {"content": "Hello from a person"}, 409)
    assert "take" in answer["error"]
    assert (await call(gw, "POST", f"{base}/handover", owner, {"action": "grab"}, 400))["field"] == "action"

    async with gw.http.get(f"{gw.base_url}/api/chat/{sid}/stream") as stream:
        assert stream.status == 200
        events = asyncio.create_task(collect_until_terminal(stream))

        async def listed() -> list:
            return await call(gw, "GET", "/api/admin/sessions", owner)

        live = await wait_until(listed)
        assert live[0]["conversationId"] == conv_id and live[0]["nodeId"] == "test-node"
        taken = await call(gw, "POST", f"{base}/handover", owner, {"action": "take"})
        assert taken["owner"] == "human"
        await call(gw, "POST", f"{base}/typing", owner, expect=204)
        reply = await call(gw, "POST", f"{base}/reply", owner, {"content": "Hello from a person"}, 201)
        assert reply["role"] == "human" and reply["content"] == "Hello from a person"
        seen = await asyncio.wait_for(events, 10)

    names = [(e.event, e.data.get("type")) for e in seen]
    assert names == [("notification", "handover"), ("notification", "typing"), ("complete", None)]
    assert seen[-1].data["content"] == "Hello from a person"
    assert seen[-1].data["metadata"]["author"] == "human"
    # The operator's email is for the dashboard: nothing the customer's browser receives carries it.
    assert all("admin@localhost" not in json.dumps(e.data) for e in seen)

    history = await call(gw, "GET", f"/api/chat/{sid}/messages", None)
    items = history["messages"] if isinstance(history, dict) else history
    assert [(m["role"], m["content"]) for m in items] == [("human", "Hello from a person")]
    assert items[0]["metadata"] == {"author": "human"} and "admin@localhost" not in json.dumps(history)
    # The admin API still says who answered.
    assert (await call(gw, "GET", f"{base}/messages", owner))[0]["metadata"]["by"] == "admin@localhost"

    released = await call(gw, "POST", f"{base}/handover", owner, {"action": "release"})
    assert released["owner"] == "bot"
    await call(gw, "POST", f"{base}/reply", owner, {"content": "too late"}, 409)

    # Another company's admin sees neither the session nor the conversation.
    other = (await create_company(gw, owner, "Other"))["id"]
    token = await company_admin(gw, owner, other, "other@example.com")
    assert await call(gw, "GET", "/api/admin/sessions", token) == []
    mine = await company_admin(gw, owner, cid, "mine@example.com")
    assert isinstance(await call(gw, "GET", "/api/admin/sessions", mine), list)


async def test_nodes_lists_this_node(gw: RunningGateway, owner: str) -> None:
    async def nodes() -> list:
        return [n for n in await call(gw, "GET", "/api/admin/nodes", owner) if n["nodeId"] == "test-node"]

    assert await wait_until(nodes)


@ON_EVERY_STORE
async def test_webhook_events_are_listed_without_secrets(gw: RunningGateway, owner: str) -> None:
    cid = (await create_company(gw, owner))["id"]
    aid = (await create_agent(gw, owner, cid))["id"]
    hook = await create_webhook(gw, owner, cid, aid)
    second = await create_webhook(gw, owner, cid, aid)
    path = f"/api/webhooks/{cid}/{aid}/whatsapp/{hook['id']}"
    status, _, _ = await gw.request("POST", path, data=b'{"object":"whatsapp_business_account","entry":[]}',
                                    headers={"Content-Type": "application/json",
                                             "X-Hub-Signature-256": SECRET_HEADERS_PLAIN})
    assert status == 401
    query = urlencode({"hub.mode": "subscribe", "hub.verify_token": hook["verifyToken"], "hub.challenge": "7"})
    status, _, _ = await gw.request("GET", f"{path}?{query}")
    assert status == 200
    await gw.gateway.webhooks.wait_idle()

    events = await call(gw, "GET", f"/api/admin/webhook-events?webhookId={hook['id']}", owner)
    assert [e["statusCode"] for e in events] == [200, 401]  # newest first
    assert all(e["webhookId"] == hook["id"] and e["latencyMs"] >= 0 and e["receivedAt"] for e in events)
    assert SECRET_HEADERS_PLAIN not in json.dumps(events)
    assert hook["secret"] not in json.dumps(events)
    rejected = await call(gw, "GET", f"/api/admin/webhook-events?webhookId={hook['id']}&outcome=rejected", owner)
    assert [e["statusCode"] for e in rejected] == [401]
    assert await call(gw, "GET", f"/api/admin/webhook-events?webhookId={second['id']}", owner) == []
    assert len(await call(gw, "GET", "/api/admin/webhook-events?limit=1", owner)) == 1
    await call(gw, "GET", "/api/admin/webhook-events?webhookId=wh_nope", owner, expect=404)
    assert (await call(gw, "GET", "/api/admin/webhook-events?outcome=meh", owner, expect=400))["field"] == "outcome"
