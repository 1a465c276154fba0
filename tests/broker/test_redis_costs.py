"""The multi-process mode's per-request Redis costs: inbox wake-ups coalesced (one PUBLISH in flight
per node, one more queued, none lost), rate-limit hits of one loop iteration in one script call
(same answers as one call per hit, across nodes), and a number's send rate split among the answer
processes of a node."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import threading
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from buzzi.broker.base import BrokerUnavailable, wake_inboxes
from buzzi.broker.redis import RedisBroker
from buzzi.channels.pacing import SendPacing
from buzzi.channels.registry import ChannelRegistry
from buzzi.errors import Throttled
from buzzi.metrics import Metrics
from buzzi.ratelimit import RateLimiter
from buzzi.runtime import ROLE_ANSWER, ROLE_WEB, Gateway
from tests.channels.test_pacing_limits import FakeClock
from tests.support.brokers import broker_settings
from tests.support.channel_factories import channel_webhook, reply_target
from tests.support.waiting import wait_until


@pytest.fixture
async def nodes(redis_url: str) -> AsyncIterator[tuple[RedisBroker, RedisBroker]]:
    a = RedisBroker(redis_url, broker_settings(url=redis_url), "web-1")
    b = RedisBroker(redis_url, broker_settings(url=redis_url), "answer-1")
    await a.open()
    await b.open()
    yield a, b
    await b.close()
    await a.close()


async def _calls(redis_url: str, command: str) -> int:
    """How many times Redis ran `command` (scripts' redis.call included) since the last reset."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def _reset_stats(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.config_resetstat()
    finally:
        await client.aclose()


# ---- inbox wake-ups


async def test_a_burst_of_wake_ups_sends_one_publish(nodes, redis_url: str) -> None:
    a, _ = nodes
    await _reset_stats(redis_url)
    await asyncio.gather(*(a.notify_inbox() for _ in range(100)))
    assert 1 <= await _calls(redis_url, "publish") <= 2  # one in flight, at most one queued


class _SnapshotOnWake(asyncio.Event):
    """The answer node's wake-up flag, noting how much work was stored when each wake-up arrived
    (what an answer process's claim would see)."""

    def __init__(self, stored: list[int], seen: list[int]) -> None:
        super().__init__()
        self._stored, self._seen = stored, seen

    def set(self) -> None:
        self._seen.append(len(self._stored))
        super().set()


def _run_answer_node(redis_url: str, stored: list[int], seen: list[int], stop: threading.Event,
                     ready: threading.Event) -> None:
    """An answer node on its own thread and loop: it receives wake-ups while the web node's loop is
    busy, as another process would."""

    async def main() -> None:
        b = RedisBroker(redis_url, broker_settings(url=redis_url), "answer-1")
        await b.open()
        b._inbox = _SnapshotOnWake(stored, seen)
        ready.set()
        await asyncio.to_thread(stop.wait)
        await b.close()

    asyncio.run(main())


async def test_the_answer_side_wakes_for_the_last_message_of_a_burst(redis_url: str) -> None:
    """Web node `a` stores work, then wakes. A wake-up PUBLISH already in flight may reach the
    answer node before the work was stored: the last message of a burst must still get its own."""
    a = RedisBroker(redis_url, broker_settings(url=redis_url), "web-1")
    await a.open()
    stored: list[int] = []
    seen: list[int] = []
    stop, ready = threading.Event(), threading.Event()
    answer = threading.Thread(target=_run_answer_node, args=(redis_url, stored, seen, stop, ready))
    answer.start()
    rng = random.Random(12)

    async def store_and_wake(i: int) -> None:
        await asyncio.sleep(rng.random() * 0.1)
        time.sleep(0.0005)  # noqa: ASYNC251 - a busy web loop: replies wait while the answer node woke
        stored.append(i)
        await a.notify_inbox()

    try:
        assert await asyncio.to_thread(ready.wait, 10)
        await _reset_stats(redis_url)
        for burst in range(1, 6):
            await asyncio.gather(*(store_and_wake(i) for i in range(200)))
            await wait_until(lambda burst=burst: seen and seen[-1] == 200 * burst)
        assert await _calls(redis_url, "publish") < 1000  # coalesced, yet every message was seen
    finally:
        stop.set()
        await asyncio.to_thread(answer.join, 10)
        await a.close()


async def test_wake_ups_fail_loudly_when_the_broker_is_closed(redis_url: str) -> None:
    broker = RedisBroker(redis_url, broker_settings(url=redis_url), "web-1")
    with pytest.raises(BrokerUnavailable):
        await broker.notify_inbox()
    assert await wake_inboxes(broker) is False  # best effort: the caller's request still succeeds


# ---- rate-limit hits


async def test_concurrent_hits_on_two_nodes_refuse_exactly_at_the_limit(nodes, redis_url: str) -> None:
    a, b = nodes
    limit = 25
    await _reset_stats(redis_url)
    decisions = await asyncio.gather(*((a if i % 2 else b).hit("k", limit, 60) for i in range(3 * limit)))
    assert sum(d.allowed for d in decisions) == limit
    assert sorted(d.count for d in decisions) == list(range(1, 3 * limit + 1))  # every hit counted once
    assert all(d.count > limit and 0 < d.retry_after <= 60 for d in decisions if not d.allowed)
    assert await _calls(redis_url, "evalsha") <= 4  # one script call per node and loop iteration, not 75
    assert not (await a.hit("k", limit, 60)).allowed


async def test_scopes_after_a_refusal_are_not_counted(nodes) -> None:
    a, b = nodes
    first = await a.hit_all([("ip", 1, 60), ("company", 10, 60)])
    assert [d.allowed for d in first] == [True, True]
    refused = await b.hit_all([("ip", 1, 60), ("company", 10, 60)])
    assert [(d.allowed, d.count) for d in refused] == [(False, 2)]  # stopped at the refusal
    assert (await a.hit("company", 10, 60)).count == 2  # the refused check did not count here


async def test_rate_limiter_across_two_nodes_lets_exactly_the_limit_through(nodes, make_settings) -> None:
    a, b = nodes
    limits = dataclasses.replace(make_settings().limits, webhook_per_minute=10, company_per_minute=1000)
    limiters = [RateLimiter(a, limits, Metrics()), RateLimiter(b, limits, Metrics())]
    results = await asyncio.gather(*(limiters[i % 2].check_webhook("c_1", "wh_1") for i in range(30)),
                                   return_exceptions=True)
    refused = [r for r in results if isinstance(r, Throttled)]
    assert len(refused) == 20 and results.count(None) == 10
    assert (await a.hit("rl:company:c_1", 1000, 60)).count == 11  # refused webhook hits spared the company


# ---- pacing with several answer processes


async def test_each_answer_process_paces_a_number_at_its_share(make_settings) -> None:
    registry = ChannelRegistry(make_settings().channels, pacing_share=2)
    try:
        adapter = registry.adapter("whatsapp")
        clock = FakeClock()
        pacing = SendPacing(share=registry.pacing.share, clock=clock, sleep=clock.sleep)
        webhook = channel_webhook("whatsapp", credentials={"phoneNumberId": "1065"})
        for i in range(40):
            await pacing.pace(adapter, webhook, reply_target("whatsapp", f"chat-{i}"))
        assert clock.sleeps == []  # half of the number's burst of 80
        await pacing.pace(adapter, webhook, reply_target("whatsapp", "chat-x"))
        assert clock.sleeps == [pytest.approx(1 / 40)]  # two processes at 40/s: 80/s for the number
        telegram = registry.adapter("telegram")
        hook = channel_webhook("telegram")
        clock.sleeps.clear()
        for _ in range(4):
            await pacing.pace(telegram, hook, reply_target("telegram", "chat-1"))
        assert clock.sleeps == [pytest.approx(1.0)]  # per chat undivided: one process answers a chat
    finally:
        await registry.close()


def test_pacing_share_needs_a_process() -> None:
    with pytest.raises(ValueError, match="share"):
        SendPacing(share=0)


@pytest.mark.parametrize(("server", "inbox", "share"), [(1, 0, 1), (2, 1, 1), (2, 3, 3), (3, 0, 3)])
def test_the_node_splits_a_number_among_its_answer_processes(make_settings, redis_url: str, server: int,
                                                             inbox: int, share: int) -> None:
    settings = make_settings(server={"processes": server}, inbox={"processes": inbox},
                             broker={"url": redis_url})
    gateway = Gateway(settings, ROLE_ANSWER if inbox else ROLE_WEB)
    assert gateway.channels.pacing.share == share
