"""Dashboard part 2 over plain HTTP: conversations with human takeover and live sessions; tenancy,
CSRF, escaping, and the live SSE endpoints (their events, and that they stop on disconnect)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import aiohttp

from buzzi.models import Conversation, Message
from tests.admin.helpers import call, company_admin, create_agent, create_company
from tests.dashboard.client import DashboardClient
from tests.support.gateway import RunningGateway
from tests.support.sse import SseEvent, read_sse
from tests.support.waiting import wait_until
from tests.support.web_sessions import store_conversation

XSS = "<img src=x onerror=alert(1)>"


async def web_chat(gw: RunningGateway, token: str, name: str) -> tuple[str, str, dict]:
    cid = (await create_company(gw, token, name))["id"]
    aid = (await create_agent(gw, token, cid))["id"]
    customer = {"name": f"Customer of {name}"}
    session = await call(gw, "POST", "/api/chat/sessions", None,
                         {"companyId": cid, "agentId": aid, "customer": customer}, 201)
    await store_conversation(gw, session, cid, aid, customer)  # as its first message would
    return cid, aid, session


async def say(gw: RunningGateway, session: dict, content: str) -> None:
    await call(gw, "POST", f"/api/chat/{session['sessionId']}/message", None, {"content": content}, 202)


@contextlib.asynccontextmanager
async def sse(client: DashboardClient, path: str) -> AsyncIterator[tuple[aiohttp.ClientResponse,
                                                                        AsyncIterator[SseEvent]]]:
    async with client.http.get(client.gw.base_url + path, allow_redirects=False) as resp:
        yield resp, read_sse(resp)


async def next_event(events: AsyncIterator[SseEvent], want, timeout: float = 10.0) -> SseEvent:
    """The first event (comments skipped) for which want(event) holds."""
    async def find() -> SseEvent:
        async for event in events:
            if event.event != "comment" and want(event):
                return event
        raise AssertionError("the stream ended")

    return await asyncio.wait_for(find(), timeout)


async def until(events: AsyncIterator[SseEvent], want, timeout: float = 10.0) -> list[SseEvent]:
    """Every event (comments skipped) up to and including the first for which want(event) holds."""
    seen: list[SseEvent] = []

    async def read() -> list[SseEvent]:
        async for event in events:
            if event.event != "comment":
                seen.append(event)
                if want(event):
                    return seen
        raise AssertionError(f"the stream ended: {seen}")

    return await asyncio.wait_for(read(), timeout)


async def test_company_admin_sees_only_their_company(gw: RunningGateway, clients) -> None:
    token = await gw.login()
    cid_a, _, mine = await web_chat(gw, token, "Acme")
    cid_b, _, theirs = await web_chat(gw, token, "Globex")
    await company_admin(gw, token, cid_a, "ann@acme.test")
    ann = clients()
    await ann.login("ann@acme.test", "company-pass-123")

    listing = await ann.get("/admin/conversations")
    assert listing.status == 200
    assert mine["conversationId"] in listing.text and theirs["conversationId"] not in listing.text
    data = await ann.get("/admin/conversations.json")
    assert [c["id"] for c in json.loads(data.text)["conversations"]] == [mine["conversationId"]]
    other = await ann.get(f"/admin/conversations.json?companyId={cid_b}")
    assert json.loads(other.text) == {"conversations": []}

    assert (await ann.get(f"/admin/conversations/{mine['conversationId']}")).status == 200
    for conv_id in (theirs["conversationId"], "cv_does_not_exist"):
        base = f"/admin/conversations/{conv_id}"
        assert (await ann.get(base)).status == 404
        assert (await ann.get(f"{base}/events")).status == 404
        for action, form in (("handover", {"action": "take"}), ("reply", {"content": "hi"}), ("typing", {})):
            page = await ann.post(f"{base}/{action}", form)
            assert page.status == 404, (action, page.status)
    assert (await gw.store.get(Conversation, theirs["conversationId"])).owner == "bot"


async def test_state_changes_need_the_csrf_token_and_a_login(gw: RunningGateway, owner: DashboardClient,
                                                             clients) -> None:
    token = await gw.login()
    _, _, session = await web_chat(gw, token, "Acme")
    base = f"/admin/conversations/{session['conversationId']}"
    await owner.get(base)

    assert (await owner.post(f"{base}/handover", {"action": "take"}, csrf=False)).status == 403
    wrong = await owner.request("POST", f"{base}/handover", data={"action": "take", "_csrf": "0" * 64})
    assert wrong.status == 403
    assert (await owner.post(f"{base}/typing", {}, csrf=False)).status == 403
    assert (await owner.post(f"{base}/reply", {"content": "hi"}, csrf=False)).status == 403
    assert (await gw.store.get(Conversation, session["conversationId"])).owner == "bot"

    stranger = clients()
    assert (await stranger.request("POST", f"{base}/handover", data={"action": "take"})).status == 401
    login = await stranger.get(f"{base}/events", follow=False)
    assert login.status == 302 and login.headers["Location"].startswith("/admin/login")

    # With the token, a plain form works (redirect back with a notice), and a reply needs a takeover first.
    refused = await owner.post(f"{base}/reply", {"content": "hello"}, headers={"Accept": "application/json"})
    assert refused.status == 409 and "take it first" in refused.text
    taken = await owner.post(f"{base}/handover", {"action": "take"}, follow=False)
    assert taken.status == 303 and taken.headers["Location"] == f"{base}?flash=taken"
    assert (await gw.store.get(Conversation, session["conversationId"])).owner == "human"


async def test_customer_text_and_delivery_errors_render_as_text(gw: RunningGateway, owner: DashboardClient) -> None:
    token = await gw.login()
    cid, aid, session = await web_chat(gw, token, "Acme")
    conv_id = session["conversationId"]
    await gw.store.update(Conversation, conv_id, {"customer": {"name": "<b>Eve</b>"}})
    await gw.store.add(Message(id="m_xss", conversation_id=conv_id, company_id=cid, agent_id=aid, role="user",
                               content=XSS))
    await gw.store.add(Message(id="m_failed", conversation_id=conv_id, company_id=cid, agent_id=aid,
                               role="assistant", content="lost",
                               delivery={"status": "failed", "error": "<script>bad()</script>"}))
    page = await owner.get(f"/admin/conversations/{conv_id}")
    assert page.status == 200
    assert XSS not in page.text and "&lt;img src=x onerror=alert(1)&gt;" in page.text
    assert "<b>Eve</b>" not in page.text and "&lt;b&gt;Eve&lt;/b&gt;" in page.text
    assert "<script>bad()" not in page.text and "failed: &lt;script&gt;bad()&lt;/script&gt;" in page.text
    listing = await owner.get("/admin/conversations")
    assert "<b>Eve</b>" not in listing.text and "&lt;b&gt;Eve&lt;/b&gt;" in listing.text


async def test_conversation_events_follow_the_chat_takeover_and_replies(gw: RunningGateway,
                                                                       owner: DashboardClient) -> None:
    token = await gw.login()
    _, _, session = await web_chat(gw, token, "Acme")
    conv_id = session["conversationId"]
    base = f"/admin/conversations/{conv_id}"
    await say(gw, session, "hello there")
    await wait_until(lambda: gw.store.count(Message, conversation_id=conv_id, role="assistant"))
    await owner.get(base)
    stream = f"conv:{conv_id}"

    async with sse(owner, f"{base}/events") as (resp, events):
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
        first = await next_event(events, lambda e: e.event == "conversation")
        assert first.data["id"] == conv_id and first.data["owner"] == "bot"
        history = [await next_event(events, lambda e: e.event == "message") for _ in range(2)]
        assert [m.data["role"] for m in history] == ["user", "assistant"]
        assert history[0].data["content"] == "hello there" and history[0].data["author"] == "Customer of Acme"

        await say(gw, session, "What are your opening hours?")
        answer = await until(events, lambda e: e.event == "message" and e.data["role"] == "assistant")
        names = [e.event for e in answer]
        # The question shows before the answer starts streaming, and the stored answer after its complete.
        asked = next(e for e in answer if e.event == "message" and e.data["role"] == "user")
        assert asked.data["content"] == "What are your opening hours?"
        assert names.index("message") < names.index("delta") < names.index("complete")
        deltas = [e for e in answer if e.event == "delta"]
        done = next(e for e in answer if e.event == "complete")
        assert all(e.id for e in deltas) and "".join(e.data["content"] for e in deltas) == done.data["content"]
        assert "Monday to Friday" in done.data["content"]
        assert answer[-1].data["id"] == done.data["metadata"]["messageId"] and answer[-1].data["author"] == "Bot"

        json_post = {"Accept": "application/json"}
        taken = await owner.post(f"{base}/handover", {"action": "take"}, headers=json_post)
        assert taken.status == 200 and '"owner":"human"' in taken.text
        handover = await next_event(events, lambda e: e.event == "notification")
        assert handover.data == {"type": "handover", "data": {"owner": "human"}}
        changed = await next_event(events, lambda e: e.event == "conversation")
        assert changed.data["owner"] == "human"

        assert (await owner.post(f"{base}/typing", {})).status == 204
        typing = await next_event(events, lambda e: e.event == "notification")
        assert typing.data == {"type": "typing", "data": {"author": "human"}}

        sent = await owner.post(f"{base}/reply", {"content": "A person here. " + XSS}, headers=json_post)
        assert sent.status == 201
        human = await next_event(events, lambda e: e.event == "complete")
        assert human.data["metadata"]["author"] == "human" and human.data["content"].endswith(XSS)
        stored = await next_event(events, lambda e: e.event == "message" and e.data["role"] == "human")
        assert stored.data["author"] == "admin@localhost"

        assert gw.gateway.broker.registry.by_stream.get(stream)
        assert len(gw.gateway.admin_streams) == 1
    # The client went away: the endpoint ends and leaves no subscription behind.
    await wait_until(lambda: not gw.gateway.admin_streams and stream not in gw.gateway.broker.registry.by_stream)


async def test_conversation_events_end_when_the_conversation_is_deleted(gw: RunningGateway,
                                                                       owner: DashboardClient) -> None:
    token = await gw.login()
    _, _, session = await web_chat(gw, token, "Acme")
    conv_id = session["conversationId"]
    async with sse(owner, f"/admin/conversations/{conv_id}/events") as (_, events):
        await next_event(events, lambda e: e.event == "conversation")
        await gw.store.delete(Conversation, conv_id)
        # Read to the end: the server closes the stream within one poll interval.
        async with asyncio.timeout(10):
            async for _ in events:
                pass
    await wait_until(lambda: not gw.gateway.admin_streams)


async def test_sessions_events_show_live_sessions_by_tenant(gw: RunningGateway, owner: DashboardClient,
                                                           clients) -> None:
    token = await gw.login()
    cid_a, _, mine = await web_chat(gw, token, "Acme")
    _, _, theirs = await web_chat(gw, token, "Globex")
    await company_admin(gw, token, cid_a, "ann@acme.test")
    ann = clients()
    await ann.login("ann@acme.test", "company-pass-123")

    def has(event: SseEvent, conv_id: str) -> bool:
        return any(s["conversationId"] == conv_id for s in event.data["sessions"])

    async with contextlib.AsyncExitStack() as stack:
        widgets = []
        for session in (mine, theirs):
            resp = await stack.enter_async_context(gw.http.get(f"{gw.base_url}/api/chat/{session['sessionId']}/stream"))
            assert await resp.content.readline() == b"retry: 2000\n"
            widgets.append(resp)

        async with sse(owner, "/admin/sessions/events") as (resp, events):
            assert resp.status == 200
            seen = await next_event(events, lambda e: e.event == "snapshot" and has(e, mine["conversationId"])
                                    and has(e, theirs["conversationId"]))
            row = next(s for s in seen.data["sessions"] if s["conversationId"] == mine["conversationId"])
            assert row["nodeId"] == "test-node" and row["companyName"] == "Acme" and row["eventsSent"] == 0
            assert {"nodeId": "test-node", "streams": 2} | seen.data["nodes"][0] == seen.data["nodes"][0]

            async with sse(ann, "/admin/sessions/events") as (_, ann_events):
                ann_seen = await next_event(ann_events, lambda e: e.event == "snapshot" and e.data["sessions"])
                assert [s["conversationId"] for s in ann_seen.data["sessions"]] == [mine["conversationId"]]
                assert ann_seen.data["nodes"] == [{"nodeId": "test-node", "streams": 1}]

            widgets[0].close()  # the customer closes the chat: the next snapshot drops the session
            gone = await next_event(events, lambda e: e.event == "snapshot" and not has(e, mine["conversationId"]))
            assert has(gone, theirs["conversationId"])
    await wait_until(lambda: not gw.gateway.admin_streams)

    page = await ann.get("/admin/sessions")
    assert page.status == 200 and "Live sessions" in page.text


async def test_owner_filters_the_list(gw: RunningGateway, owner: DashboardClient) -> None:
    token = await gw.login()
    cid_a, _, mine = await web_chat(gw, token, "Acme")
    _, _, theirs = await web_chat(gw, token, "Globex")
    await say(gw, theirs, "hello")

    def ids(page) -> list[str]:
        return [c["id"] for c in json.loads(page.text)["conversations"]]

    # Newest activity first, every company for an owner, with its name.
    everything = await owner.get("/admin/conversations.json")
    assert ids(everything) == [theirs["conversationId"], mine["conversationId"]]
    assert json.loads(everything.text)["conversations"][0]["companyName"] == "Globex"
    assert ids(await owner.get(f"/admin/conversations.json?companyId={cid_a}")) == [mine["conversationId"]]
    assert ids(await owner.get("/admin/conversations.json?channel=telegram&owner=bot")) == []
    assert (await owner.get("/admin/conversations.json?status=lost")).status == 400
    page = await owner.get(f"/admin/conversations?companyId={cid_a}&owner=bot")
    assert mine["conversationId"] in page.text and theirs["conversationId"] not in page.text
    assert f'<option value="{cid_a}" selected>Acme</option>' in page.text


async def test_live_streams_end_when_the_node_drains(gw: RunningGateway, owner: DashboardClient) -> None:
    token = await gw.login()
    _, _, session = await web_chat(gw, token, "Acme")
    async with sse(owner, f"/admin/conversations/{session['conversationId']}/events") as (_, conv_events), \
            sse(owner, "/admin/sessions/events") as (_, session_events):
        await next_event(conv_events, lambda e: e.event == "conversation")
        await next_event(session_events, lambda e: e.event == "snapshot")
        assert len(gw.gateway.admin_streams) == 2
        await gw.gateway.drain()
        async with asyncio.timeout(10):
            async for _ in conv_events:
                pass
            async for _ in session_events:
                pass
    await wait_until(lambda: not gw.gateway.admin_streams)


async def test_a_lone_surrogate_in_a_stream_event_does_not_end_the_live_stream(gw: RunningGateway,
                                                                             owner: DashboardClient) -> None:
    """Agents and channels can publish text that is not valid Unicode; the event reaches the page
    escaped, and the stream carries on with the next one."""
    token = await gw.login()
    _, _, session = await web_chat(gw, token, "Acme")
    conv_id = session["conversationId"]
    async with sse(owner, f"/admin/conversations/{conv_id}/events") as (_, events):
        await next_event(events, lambda e: e.event == "conversation")
        await gw.gateway.broker.publish(f"conv:{conv_id}", "delta", {"content": "broken \ud800 text"})
        await gw.gateway.broker.publish(f"conv:{conv_id}", "delta", {"content": "still here"})
        broken = await next_event(events, lambda e: e.event == "delta")
        assert broken.data == {"content": "broken \ud800 text"}
        after = await next_event(events, lambda e: e.event == "delta")
        assert after.data == {"content": "still here"}
