"""Resuming a stream: a Last-Event-ID that is not an event id, a log trimmed past the client, a log
the broker lost (a new epoch, whose ids continue above the old ones), and live events a node missed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from buzzi.broker.base import StreamEvent, StreamLog
from buzzi.broker.redis import STREAM_CHANNEL, RedisBroker
from buzzi.chat import conversation_stream
from buzzi.config import Settings
from buzzi.metrics import Metrics
from buzzi.streams import StreamHub
from tests.chat.conftest import create_faq_agent, new_session
from tests.support.brokers import broker_settings
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.sse import SseEvent, collect_until_terminal, read_sse
from tests.support.waiting import wait_until


@pytest.fixture
async def quick(make_settings: Callable[..., Settings]) -> AsyncIterator[RunningGateway]:
    """A gateway with fast heartbeats (a heartbeat before any event = nothing was replayed) and an
    event log of 3 events per session (so it is easy to trim past a client)."""
    async with running_gateway(make_settings, chat={"heartbeat_seconds": 0.05},
                               broker={"event_log_size": 3}) as running:
        yield running


@pytest.fixture
async def short_lived(make_settings: Callable[..., Settings]) -> AsyncIterator[RunningGateway]:
    """A gateway whose event logs expire after a second without events (and keep 3 events): the
    way a broker loses a log, as a Redis restarted without its data does."""
    async with running_gateway(make_settings, broker={"event_log_size": 3, "event_log_ttl_seconds": 1}) as running:
        yield running


async def session_stream(gw: RunningGateway) -> tuple[str, str]:
    agent = await create_faq_agent(gw)
    session = await new_session(gw, agent)
    return session["sessionId"], conversation_stream(session["conversationId"])


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


async def lose_the_log(stream_log: StreamLog, stream: str) -> None:
    async def gone() -> bool:
        return await stream_log.last_id(stream) is None

    await wait_until(gone, 5)


async def test_a_client_of_a_lost_log_gets_the_new_log_whole_or_a_resync(short_lived: RunningGateway) -> None:
    sid, stream = await session_stream(short_lived)
    broker = short_lived.gateway.broker
    old = [await broker.publish(stream, "delta", {"content": "a"}),
           await broker.publish(stream, "complete", {"content": "a", "metadata": {}})]
    await lose_the_log(broker, stream)
    new = [await broker.publish(stream, "delta", {"content": "b"}),
           await broker.publish(stream, "complete", {"content": "b", "metadata": {}})]

    events = await resume(short_lived, sid, old[-1].id)
    assert [(e.id, e.event, e.data) for e in events] == [(p.id, p.event, p.data) for p in new]
    assert int(events[0].id) > int(old[-1].id)  # ids only grow for the client, across logs too

    # Once the new log is trimmed past its own start, that client is told to resync, still with an
    # id above its own, and its reconnect gets what the new log kept.
    more = [await broker.publish(stream, "delta", {"content": str(i)}) for i in range(3)]
    events = await resume(short_lived, sid, old[-1].id)
    assert [(e.event, e.data["code"]) for e in events] == [("error", "resync")]
    assert int(events[0].id) == more[0].seq - 1 > int(old[-1].id)
    again = await resume_until(short_lived, sid, events[0].id, len(more))
    assert [e.id for e in again] == [p.id for p in more]


async def test_a_log_lost_under_a_waiting_client_continues_above_its_ids(short_lived: RunningGateway) -> None:
    sid, stream = await session_stream(short_lived)
    broker = short_lived.gateway.broker
    old = await broker.publish(stream, "complete", {"content": "a", "metadata": {}})
    async with short_lived.http.get(f"{short_lived.base_url}/api/chat/{sid}/stream",
                                    headers={"Last-Event-ID": old.id}) as resp:
        await wait_until(lambda: broker.registry.by_stream.get(stream))  # the client is listening
        await lose_the_log(broker, stream)
        new = [await broker.publish(stream, "delta", {"content": "b"}),
               await broker.publish(stream, "complete", {"content": "b", "metadata": {}})]
        events = await asyncio.wait_for(collect_until_terminal(resp), 5)
    assert [e.id for e in events] == [p.id for p in new]
    assert new[0].epoch >= old.seq and int(events[0].id) > int(old.id)


async def resume_until(gw: RunningGateway, sid: str, last_event_id: str, count: int) -> list[SseEvent]:
    """The first `count` events of a resumed stream that has no terminal event to end it."""
    events: list[SseEvent] = []
    async with gw.http.get(f"{gw.base_url}/api/chat/{sid}/stream", headers={"Last-Event-ID": last_event_id}) as resp:
        async def read() -> None:
            async for event in read_sse(resp):
                if event.event != "comment":
                    events.append(event)
                if len(events) == count:
                    return

        await asyncio.wait_for(read(), 5)
    return events


async def test_live_events_a_node_missed_are_replayed_from_the_log(
    make_settings: Callable[..., Settings], redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Node A's pub/sub connection drops while node B publishes: A's subscriber never sees those
    events live, and the hub fetches them from the log when the next live one shows the gap."""
    caplog.set_level(logging.WARNING, logger="buzzi.streams")
    a = RedisBroker(redis_url, broker_settings(url=redis_url), "node-a")
    b = RedisBroker(redis_url, broker_settings(url=redis_url), "node-b")
    admin = aioredis.Redis.from_url(redis_url, decode_responses=True)
    await a.open()
    await b.open()
    try:
        hub = StreamHub(a, a, make_settings(), "node-a", Metrics())
        stream = conversation_stream("cv_missed")
        live = hub.open(stream, "cv_missed", "c_x", "a_x")
        published = [await b.publish(stream, "delta", {"content": "0"})]
        events = hub.events(live, published[0].id)
        waiting = asyncio.ensure_future(anext(events))
        channel = STREAM_CHANNEL + stream
        await wait_until(lambda: channel in a.listener_channels)

        async def listener() -> dict | None:
            found = [c for c in await admin.client_list() if c["name"] == "buzzi:node-a" and int(c["sub"]) > 1]
            return found[0] if found else None

        dropped = await listener()
        await admin.client_kill_filter(_id=dropped["id"])
        published += [await b.publish(stream, "delta", {"content": str(i)}) for i in (1, 2)]

        async def resubscribed() -> bool:
            again = await listener()
            return again is not None and again["id"] != dropped["id"] and channel in a.listener_channels

        await wait_until(resubscribed, 10)
        published.append(await b.publish(stream, "complete", {"content": "012", "metadata": {}}))
        received = [await asyncio.wait_for(waiting, 5)]
        received += [event async for event in events]  # ends after `complete`
        hub.close(live)
    finally:
        await admin.aclose()
        await b.close()
        await a.close()
    assert [e.id for e in received] == [p.id for p in published[1:]]
    assert "live events were missed" in caplog.text
