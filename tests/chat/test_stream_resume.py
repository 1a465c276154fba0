"""Resuming a stream: a Last-Event-ID that is not an event id, and a log trimmed past the client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from buzzi.broker.base import StreamEvent
from buzzi.chat import conversation_stream
from buzzi.config import Settings
from buzzi.models import Conversation
from tests.chat.conftest import create_faq_agent, new_session
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.sse import SseEvent, collect_until_terminal, read_sse


@pytest.fixture
async def quick(make_settings: Callable[..., Settings]) -> AsyncIterator[RunningGateway]:
    """A gateway with fast heartbeats (a heartbeat before any event = nothing was replayed) and an
    event log of 3 events per session (so it is easy to trim past a client)."""
    async with running_gateway(make_settings, chat={"heartbeat_seconds": 0.05},
                               broker={"event_log_size": 3}) as running:
        yield running


async def session_stream(gw: RunningGateway) -> tuple[str, str]:
    agent = await create_faq_agent(gw)
    sid = (await new_session(gw, agent))["sessionId"]
    conversation = await gw.store.find_one(Conversation, agent_id=agent.id)
    return sid, conversation_stream(conversation.id)


@pytest.mark.parametrize(("headers", "query"), [
    ({"Last-Event-ID": "abc"}, ""),
    ({"Last-Event-ID": "-5"}, ""),
    ({"Last-Event-ID": "1.5"}, ""),
    ({"Last-Event-ID": ""}, ""),
    ({}, "?lastEventId="),
    ({}, "?lastEventId=abc"),
    ({"Last-Event-ID": "abc"}, "?lastEventId=-1"),
])
async def test_malformed_last_event_id_starts_at_the_present(quick: RunningGateway, headers: dict[str, str],
                                                             query: str) -> None:
    sid, stream = await session_stream(quick)
    broker = quick.gateway.broker
    await broker.publish(stream, "delta", {"content": "old"})
    await broker.publish(stream, "complete", {"content": "old", "metadata": {"messageId": "m_old"}})
    async with quick.http.get(f"{quick.base_url}/api/chat/{sid}/stream{query}", headers=headers) as resp:
        assert resp.status == 200
        events = read_sse(resp)
        first = await asyncio.wait_for(events.__anext__(), 5)
        assert first.event == "comment"  # a heartbeat: nothing of the past was replayed
        new = await broker.publish(stream, "complete", {"content": "new", "metadata": {"messageId": "m_new"}})
        rest = await asyncio.wait_for(collect_until_terminal(resp), 5)
    assert [(e.id, e.data["content"]) for e in rest] == [(new.id, "new")]


async def test_a_valid_header_wins_over_a_malformed_query(quick: RunningGateway) -> None:
    sid, stream = await session_stream(quick)
    published = [await quick.gateway.broker.publish(stream, "delta", {"content": str(i)}) for i in range(2)]
    published.append(await quick.gateway.broker.publish(stream, "complete", {"content": "01", "metadata": {}}))
    async with quick.http.get(f"{quick.base_url}/api/chat/{sid}/stream?lastEventId=abc",
                              headers={"Last-Event-ID": published[0].id}) as resp:
        events = await asyncio.wait_for(collect_until_terminal(resp), 5)
    assert [e.id for e in events] == [p.id for p in published[1:]]


async def resume(gw: RunningGateway, sid: str, last_event_id: str) -> list[SseEvent]:
    async with gw.http.get(f"{gw.base_url}/api/chat/{sid}/stream",
                           headers={"Last-Event-ID": last_event_id}) as resp:
        return await asyncio.wait_for(collect_until_terminal(resp), 5)


async def test_a_trimmed_log_tells_the_client_to_resync(quick: RunningGateway) -> None:
    sid, stream = await session_stream(quick)
    broker = quick.gateway.broker
    published: list[StreamEvent] = [await broker.publish(stream, "delta", {"content": str(i)}) for i in range(5)]
    published.append(await broker.publish(stream, "complete", {"content": "01234", "metadata": {}}))
    retained = published[-3:]  # ids 4, 5, 6: 2 and 3 are gone

    for last in ("1", "0"):
        events = await resume(quick, sid, last)
        assert [(e.event, e.data) for e in events] == [
            ("error", {"code": "resync", "message": events[0].data["message"], "retryable": True})]
        assert events[0].data["message"]
        # Its id is the one just before the oldest event kept: the reconnect (EventSource sends it
        # as Last-Event-ID) gets everything still kept, and ids still only grow for this client.
        assert int(events[0].id) == retained[0].seq - 1 > int(last)
        again = await resume(quick, sid, events[0].id)
        assert [(e.id, e.event) for e in again] == [(p.id, p.event) for p in retained]

    # A client whose next event is still kept resumes without a resync.
    events = await resume(quick, sid, published[2].id)
    assert [e.id for e in events] == [p.id for p in retained]
