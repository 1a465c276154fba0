"""Text that is not valid Unicode (lone UTF-16 surrogates) never gets in, and never breaks a stream."""

from __future__ import annotations

import asyncio
import json

import pytest

from buzzi.broker.base import StreamEvent
from buzzi.chat import conversation_stream
from buzzi.models import Agent, Conversation, Message
from tests.chat.conftest import new_session
from tests.support.gateway import RunningGateway
from tests.support.sse import collect_until_terminal


@pytest.mark.parametrize(("body", "field"), [
    (b'{"content": "\\ud800"}', "content"),
    (b'{"content": "ok \\udfff ok"}', "content"),
    (b'{"content": "\xed\xa0\x80"}', "content"),  # a surrogate written as raw (CESU-8) bytes
    (b'{"content": "hi", "attachments": [{"url": "https://x.test/a", "name": "\\ud83d"}]}',
     "attachments[0].name"),
    (b'{"content": "hi", "\\udc00": 1}', "\\udc00"),
])
async def test_lone_surrogates_are_refused_with_the_field_named(gw: RunningGateway, faq_agent: Agent,
                                                                body: bytes, field: str) -> None:
    sid = (await new_session(gw, faq_agent))["sessionId"]
    status, answer, _ = await gw.request("POST", f"/api/chat/{sid}/message", data=body,
                                         headers={"Content-Type": "application/json"})
    assert status == 400, answer
    assert field in answer["error"]
    assert await gw.store.count(Message, role="user") == 0


async def test_nested_surrogate_in_a_session_body_is_refused(gw: RunningGateway, faq_agent: Agent) -> None:
    # json.dumps writes the lone surrogate as the JSON escape \ud800, as a hostile client would.
    body = json.dumps({"companyId": faq_agent.company_id, "agentId": faq_agent.id,
                       "customer": {"name": "\ud800"}}).encode()
    assert b"\\ud800" in body
    status, answer, _ = await gw.request("POST", "/api/chat/sessions", data=body)
    assert status == 400
    assert "customer.name" in answer["error"]
    assert await gw.store.count(Conversation) == 0


async def test_surrogate_pairs_and_other_non_ascii_text_are_accepted(gw: RunningGateway, faq_agent: Agent) -> None:
    sid = (await new_session(gw, faq_agent))["sessionId"]
    status, answer, _ = await gw.request("POST", f"/api/chat/{sid}/message",
                                         data='{"content": "Grüße \\ud83d\\ude00 😀"}'.encode())
    assert status == 202, answer
    stored = await gw.store.find_one(Message, role="user")
    assert stored.content == "Grüße 😀 😀"


async def test_deeply_nested_json_is_a_400_not_a_crash(gw: RunningGateway, faq_agent: Agent) -> None:
    sid = (await new_session(gw, faq_agent))["sessionId"]
    # 60,000 levels: far past the parser's recursion limit, under server.max_body_bytes (64 KiB).
    status, answer, _ = await gw.request("POST", f"/api/chat/{sid}/message", data=b"[" * 60_000)
    assert status == 400, answer


async def test_sse_data_is_ascii_escaped_json(gw: RunningGateway, faq_agent: Agent) -> None:
    """Whatever an agent emits (even a lone surrogate) reaches the client; non-ASCII text arrives
    as JSON \\u escapes, which JSON.parse in the widget turns back into the same text."""
    session = await new_session(gw, faq_agent)
    sid, stream = session["sessionId"], conversation_stream(session["conversationId"])
    broker = gw.gateway.broker
    text = "Grüße, 你好 😀"
    published: list[StreamEvent] = [
        await broker.publish(stream, "delta", {"content": "\ud800"}),
        await broker.publish(stream, "complete", {"content": text, "metadata": {"messageId": "m_1"}}),
    ]
    async with gw.http.get(f"{gw.base_url}/api/chat/{sid}/stream", headers={"Last-Event-ID": "0"}) as resp:
        raw = await asyncio.wait_for(resp.content.read(), 10)  # the stream ends after `complete`
    assert raw.isascii()
    assert "\\u00fc" in raw.decode() and "\\ud83d\\ude00" in raw.decode()

    async with gw.http.get(f"{gw.base_url}/api/chat/{sid}/stream", headers={"Last-Event-ID": "0"}) as resp:
        events = await asyncio.wait_for(collect_until_terminal(resp), 10)
    assert [(e.id, e.event, e.data) for e in events] == [(p.id, p.event, p.data) for p in published]
