"""A store or broker outage while a web chat message is answered: the widget still gets exactly
one answer, once the dependency is back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from buzzi.config import Settings
from buzzi.models import Agent, Message
from tests.chat.conftest import create_faq_agent, new_session
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.outage import Outage, broker_down, publishing, store_down, storing_a_reply
from tests.support.sse import SseEvent, collect_until_terminal
from tests.support.waiting import wait_until

QUESTION = "What are your opening hours?"


@pytest.fixture
async def gw(make_settings: Callable[..., Settings]) -> AsyncIterator[RunningGateway]:
    # A retry is claimed again by the inbox poll after its backoff: keep both short.
    async with running_gateway(make_settings, inbox={"poll_seconds": 0.05, "retry_base_seconds": 0.05}) as running:
        yield running


@pytest.fixture
async def faq_agent(gw: RunningGateway) -> Agent:
    return await create_faq_agent(gw)



async def ask(gw: RunningGateway, agent: Agent) -> list[SseEvent]:
    """Ask over a live stream and follow it as the widget does: a stream ends at any error, and
    after an `interrupted` one the widget reconnects from the last event id it saw for the fresh
    answer. The events seen up to the answer (or another error)."""
    sid = (await new_session(gw, agent))["sessionId"]
    url = f"{gw.base_url}/api/chat/{sid}/stream"
    events: list[SseEvent] = []
    async with gw.http.get(url) as resp:
        assert resp.status == 200
        status, body, _ = await gw.request("POST", f"/api/chat/{sid}/message", json_body={"content": QUESTION})
        assert status == 202, body
        events += await asyncio.wait_for(collect_until_terminal(resp), 10)
    while events and events[-1].event == "error" and events[-1].data.get("code") == "interrupted":
        async with gw.http.get(url, headers={"Last-Event-ID": events[-1].id or ""}) as resp:
            assert resp.status == 200
            events += await asyncio.wait_for(collect_until_terminal(resp), 10)
    return events


async def settled_user_message(gw: RunningGateway) -> Message:
    async def check() -> Message | None:
        [user] = await gw.store.find(Message, role="user")
        return user if user.state in ("done", "failed", "skipped") else None

    return await wait_until(check)



async def test_a_complete_event_the_broker_missed_is_published_on_retry(gw: RunningGateway, faq_agent: Agent) -> None:
    with Outage(gw.gateway.broker, "publish", broker_down, when=publishing("complete")) as outage:
        events = await ask(gw, faq_agent)
    assert outage.raised == 1
    complete = events[-1]
    assert complete.event == "complete" and "Monday to Friday" in complete.data["content"]
    [reply] = await gw.store.find(Message, role="assistant")
    assert complete.data["metadata"]["messageId"] == reply.id
    assert complete.data["content"] == reply.content
    user = await settled_user_message(gw)
    assert user.state == "done" and user.attempts == 2


async def test_a_store_outage_while_answering_is_retried_not_failed(gw: RunningGateway, faq_agent: Agent) -> None:
    with Outage(gw.store, "add_message_once", store_down, when=storing_a_reply) as outage:
        events = await ask(gw, faq_agent)
    assert outage.raised == 1
    names = [e.event for e in events]
    # The first attempt streamed an answer it could not store: the widget is told to drop it.
    assert ("error", "interrupted") in [(e.event, e.data.get("code")) for e in events]
    assert names[-1] == "complete" and names.count("complete") == 1
    [reply] = await gw.store.find(Message, role="assistant")
    assert events[-1].data["metadata"]["messageId"] == reply.id
    user = await settled_user_message(gw)
    assert user.state == "done" and user.attempts == 2
