"""The Redis path's batching and delivery: publishes coalesced into one script call in call order,
one pub/sub message per channel per batch, the listener's watchdog on a silent Redis, the
subscription's heartbeat timeout and its sink (events taken without waking the consumer)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from buzzi.broker import redis as redis_module
from buzzi.broker.base import StreamEvent
from buzzi.broker.batching import Batcher
from buzzi.broker.local import SubscriberRegistry
from buzzi.broker.redis import RedisBroker
from tests.support.brokers import broker_settings, live
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_until


@pytest.fixture
async def nodes(redis_url: str) -> AsyncIterator[tuple[RedisBroker, RedisBroker]]:
    a = RedisBroker(redis_url, broker_settings(url=redis_url, event_log_size=1000), "node-a")
    b = RedisBroker(redis_url, broker_settings(url=redis_url, event_log_size=1000), "node-b")
    await a.open()
    await b.open()
    yield a, b
    await b.close()
    await a.close()


# ---- Batcher


async def test_batcher_sends_what_one_iteration_submits_as_one_batch_in_order() -> None:
    batches: list[list[int]] = []

    async def send(items: list[int]) -> list[int]:
        batches.append(items)
        await asyncio.sleep(0)
        return [i * 10 for i in items]

    batcher: Batcher[int, int] = Batcher(send, max_batch=4)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
    assert results == [i * 10 for i in range(10)]
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]  # call order, capped at max_batch


async def test_batcher_fails_every_item_of_a_failed_batch_and_goes_on() -> None:
    calls = 0

    async def send(items: list[str]) -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("down")
        return items

    batcher: Batcher[str, str] = Batcher(send, max_batch=10)
    first = [batcher.submit("a"), batcher.submit("b")]
    outcomes = await asyncio.gather(*first, return_exceptions=True)
    assert [type(o) for o in outcomes] == [ConnectionError, ConnectionError]
    assert await batcher.submit("c") == "c"


async def test_batcher_drops_an_item_cancelled_before_its_batch_left() -> None:
    sent: list[str] = []

    async def send(items: list[str]) -> list[str]:
        sent.extend(items)
        return items

    batcher: Batcher[str, str] = Batcher(send, max_batch=10)
    keep, drop = batcher.submit("keep"), batcher.submit("drop")
    drop.cancel()
    assert await keep == "keep"
    assert sent == ["keep"]


# ---- Redis: one script call per batch, one message per channel


async def test_concurrent_publishes_go_out_as_one_call_and_one_message_per_channel(
        nodes, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    publisher, subscriber = nodes
    subs = {s: subscriber.subscribe(s, maxsize=100) for s in ("s1", "s2")}
    for s in subs:
        await live(subscriber, s)
    await publisher.publish("s1", "warmup", {})  # loads the script
    await subs["s1"].get(timeout=5)

    payloads: list[tuple[str, bytes]] = []
    dispatch = subscriber._dispatch
    monkeypatch.setattr(subscriber, "_dispatch", lambda ch, p: (payloads.append((ch, p)), dispatch(ch, p)))
    calls: list[int] = []
    batch = publisher._publish_batch

    async def counting(items):
        calls.append(len(items))
        return await batch(items)

    monkeypatch.setattr(publisher._batcher, "_send", counting)
    published = await asyncio.gather(*(publisher.publish(f"s{1 + i % 2}", "delta", {"i": i}) for i in range(20)))
    assert calls == [20]  # one script call for the whole burst
    for stream, sub in subs.items():
        mine = [e for e in published if e.data["i"] % 2 == (0 if stream == "s1" else 1)]
        got = [await sub.get(timeout=5) for _ in mine]
        assert got == mine  # every event once, ids in call order
        assert [e.seq for e in mine] == list(range(mine[0].seq, mine[0].seq + len(mine)))
    assert sorted(ch for ch, _ in payloads) == ["buzzi:ch:s1", "buzzi:ch:s2"]  # one message per channel
    assert await publisher.replay("s2", None) == [e for e in published if e.data["i"] % 2]


async def test_a_message_in_the_one_event_format_of_older_nodes_is_still_delivered(nodes, redis_url: str) -> None:
    _, subscriber = nodes
    sub = subscriber.subscribe("old", maxsize=10)
    await live(subscriber, "old")
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.publish("buzzi:ch:old", b'[7,5,"delta",{"content":"hi"}]')
    finally:
        await client.aclose()
    assert await sub.get(timeout=5) == StreamEvent("7", "delta", {"content": "hi"}, 5)


# ---- the listener's watchdog


async def test_the_listener_drops_a_silent_connection_and_resubscribes(
        redis_server: RedisServer, nodes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis frozen (SIGSTOP, as a hung server or a dead link looks): no read timeout fires, the
    watchdog's unanswered PING does, and the listener reconnects once Redis answers again."""
    monkeypatch.setattr(redis_module, "IDLE_PING", 0.2)
    publisher, subscriber = nodes
    await subscriber.close()
    await subscriber.open()  # a listener with the short idle time
    sub = subscriber.subscribe("w", maxsize=10)
    await live(subscriber, "w")
    reconnects = 0
    original = subscriber._sync_channels

    async def counting() -> None:
        nonlocal reconnects
        reconnects += 1
        await original()

    monkeypatch.setattr(subscriber, "_sync_channels", counting)
    pid = redis_server._proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        await wait_until(lambda: not subscriber.listener_channels, 10)  # the silent link was dropped
    finally:
        os.kill(pid, signal.SIGCONT)
    await wait_until(lambda: "buzzi:ch:w" in subscriber.listener_channels, 10)
    assert reconnects >= 1
    event = await publisher.publish("w", "delta", {"after": True})
    assert await sub.get(timeout=5) == event


# ---- LocalSubscription: heartbeat timeout and sink


async def test_get_times_out_after_silence_and_keeps_what_comes_later() -> None:
    registry = SubscriberRegistry()
    sub = registry.add("s", maxsize=10)
    with pytest.raises(TimeoutError):
        await sub.get(timeout=0.05)
    event = StreamEvent("2", "delta", {}, 1)
    registry.deliver("s", event)
    assert await sub.get(timeout=0.05) == event
    getter = asyncio.ensure_future(sub.get(timeout=5))  # a later, longer wait is not cut short
    await asyncio.sleep(0.1)
    assert not getter.done()
    registry.deliver("s", event)
    assert await getter == event


async def test_sink_takes_events_only_while_the_consumer_waits_with_nothing_queued() -> None:
    registry = SubscriberRegistry()
    sub = registry.add("s", maxsize=10)
    taken: list[str] = []
    sub.sink = lambda e: taken.append(e.id) or e.id != "3"  # refuses event 3
    registry.deliver("s", StreamEvent("1", "delta", {}, 0))  # nobody waits yet: queued
    assert (await sub.get()).id == "1"
    getter = asyncio.ensure_future(sub.get(timeout=5))
    await asyncio.sleep(0)
    registry.deliver("s", StreamEvent("2", "delta", {}, 0))  # taken by the sink: the getter sleeps on
    await asyncio.sleep(0)
    assert taken == ["2"] and not getter.done()
    registry.deliver("s", StreamEvent("3", "delta", {}, 0))  # refused: queued and the getter wakes
    assert (await getter).id == "3"
    assert taken == ["2", "3"]
    with contextlib.suppress(Exception):
        sub.close()
