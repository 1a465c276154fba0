"""The web chat end to end over real HTTP: session, message, streamed answer, history."""

from __future__ import annotations

import asyncio

from tests.chat.conftest import new_session
from tests.support.sse import collect_until_terminal


async def test_message_is_answered_over_sse(gw, faq_agent):
    session = await new_session(gw, faq_agent, customer={"id": "cust-1", "name": "Ana"})
    sid = session["sessionId"]
    assert sid.startswith("s_") and len(sid) >= 40
    async with gw.http.get(f"{gw.base_url}/api/chat/{sid}/stream") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert resp.headers["Cache-Control"] == "no-cache"
        assert resp.headers["X-Accel-Buffering"] == "no"
        status, body, _ = await gw.request("POST", f"/api/chat/{sid}/message",
                                           json_body={"content": "What are your opening hours?"})
        assert status == 202 and body["status"] == "processing"
        events = await asyncio.wait_for(collect_until_terminal(resp), 10)
    names = [e.event for e in events]
    assert names[0] == "thinking"
    assert "tool_call" in names and "delta" in names and names[-1] == "complete"
    ids = [int(e.id) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    complete = events[-1].data
    assert "".join(e.data["content"] for e in events if e.event == "delta") == complete["content"]
    assert "Monday to Friday" in complete["content"]
    assert complete["metadata"]["sources"] == ["Opening hours"]
    assert complete["metadata"]["messageId"].startswith("m_")

    status, history, _ = await gw.request("GET", f"/api/chat/{sid}/messages")
    assert status == 200
    assert [m["role"] for m in history["messages"]] == ["user", "assistant"]
    assert history["messages"][1]["id"] == complete["metadata"]["messageId"]
