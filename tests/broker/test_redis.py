"""What only the Redis broker promises: one round trip per event, one pub/sub connection per node,
surviving a Redis restart (its logs gone, new epochs above them), and a clear error when Redis is
not there. The contract both backends keep is tests/contracts/test_broker.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from buzzi.broker.base import BrokerUnavailable, wake_inboxes
from buzzi.broker.redis import RedisBroker, redact_url
from tests.support.brokers import broker_settings, live
from tests.support.redis_server import RedisServer, free_port
from tests.support.waiting import wait_until


@pytest.fixture
async def nodes(redis_url: str) -> AsyncIterator[tuple[RedisBroker, RedisBroker]]:
    a = RedisBroker(redis_url, broker_settings(url=redis_url), "node-a")
    b = RedisBroker(redis_url, broker_settings(url=redis_url), "node-b")
    await a.open()
    await b.open()
    yield a, b
    await b.close()
    await a.close()


@pytest.fixture
async def admin(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def test_at_most_two_commands_per_delivered_event(nodes, redis_url: str) -> None:
    publisher, subscriber = nodes
    sub = subscriber.subscribe("s", maxsize=1000)
    await live(subscriber, "s")
    await publisher.publish("s", "warmup", {})  # loads the script
    await sub.get()
    n = 100
    # MONITOR tells commands sent by clients ("tcp"/"unix") from those run inside scripts ("lua").
    monitor_client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    sent: list[str] = []
    script_publishes = 0
    async with monitor_client.monitor() as monitor:

        async def record() -> None:
            nonlocal script_publishes
            while True:
                cmd = await monitor.next_command()
                if cmd.get("client_type") == "lua":
                    script_publishes += cmd["command"].upper().startswith("PUBLISH")
                else:
                    sent.append(cmd["command"])

        recorder = asyncio.create_task(record())
        await monitor_client.ping()  # MONITOR is active once commands show up
        await wait_until(lambda: sent, 5)  # the monitor has started
        sent.clear()
        for i in range(n):
            await publisher.publish("s", "message", {"i": i})
        received = [await asyncio.wait_for(sub.get(), 5) for _ in range(n)]
        await wait_until(lambda: script_publishes >= n, 5)  # the monitor saw every publish
        recorder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await recorder
    await monitor_client.aclose()
    assert [e.data["i"] for e in received] == list(range(n))
    assert script_publishes == n
    print(f"client commands per event: {len(sent) / n}")
    assert 0 < len(sent) / n <= 2, sent[:10]


async def test_one_pubsub_connection_per_node(nodes, admin: aioredis.Redis) -> None:
    _, subscriber = nodes
    subs = [subscriber.subscribe(f"s{i}") for i in range(5)] + [subscriber.subscribe("s0")]
    for i in range(5):
        await live(subscriber, f"s{i}")
    mine = [c for c in await admin.client_list() if c["name"] == "buzzi:node-b" and int(c["sub"]) > 0]
    assert len(mine) == 1
    assert int(mine[0]["sub"]) == 6  # five streams plus the inbox channel
    for sub in subs:
        sub.close()
    await wait_until(lambda: subscriber.listener_channels == {"buzzi:inbox"}, 5)


async def test_subscription_survives_a_redis_restart(redis_server: RedisServer, nodes,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="buzzi.broker.redis")
    publisher, subscriber = nodes
    sub = subscriber.subscribe("s")
    await live(subscriber, "s")
    first = await publisher.publish("s", "message", {"phase": "before"})
    assert await asyncio.wait_for(sub.get(), 5) == first

    redis_server.restart()

    # Publish until one arrives: events sent before the listener has resubscribed are not live
    # (a resuming client gets them from the log), so keep going until the channel is back.
    async def delivered_after_restart() -> bool:
        try:
            await publisher.publish("s", "message", {"phase": "after"})
        except BrokerUnavailable:
            return False
        try:
            event = await asyncio.wait_for(sub.get(), 0.2)
        except TimeoutError:
            return False
        return event.data == {"phase": "after"}

    await wait_until(delivered_after_restart, 15)
    assert "pub/sub reconnected" in caplog.text
    # Inbox wake-ups were re-subscribed too.
    await publisher.notify_inbox()
    assert await subscriber.wait_inbox(5) is True


async def test_open_against_unreachable_redis_names_the_url_without_password() -> None:
    url = f"redis://user:s3cret-pw@127.0.0.1:{free_port()}/0"
    broker = RedisBroker(url, broker_settings(url=url), "node-a")
    with pytest.raises(BrokerUnavailable) as caught:
        await broker.open()
    message = str(caught.value)
    assert f"127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}" in message
    assert "s3cret-pw" not in message
    assert "user:***@" in message


async def test_commands_against_a_stopped_redis_raise_broker_unavailable(redis_server: RedisServer, nodes) -> None:
    publisher, _ = nodes
    redis_server.stop()
    try:
        with pytest.raises(BrokerUnavailable):
            await publisher.publish("s", "message", {})
        with pytest.raises(BrokerUnavailable):
            await publisher.ping()
        # Stored work is picked up by the next poll: a wake-up lost to the outage is no error.
        assert await wake_inboxes(publisher) is False
    finally:
        redis_server.start()

    async def answers() -> bool:
        try:
            await publisher.ping()
        except BrokerUnavailable:
            return False
        return True

    await wait_until(answers, 10)  # and recovers without being reopened


def test_redact_url() -> None:
    assert redact_url("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert redact_url("rediss://u:pw@h/1") == "rediss://u:***@h/1"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"


async def test_a_redis_restarted_empty_starts_new_logs_above_the_old_ids(redis_server: RedisServer, nodes) -> None:
    publisher, _ = nodes
    old = [await publisher.publish("s", "message", {"n": n}) for n in range(3)]
    redis_server.restart()  # no persistence: every log is gone

    async def published() -> object:
        try:
            return await publisher.publish("s", "message", {"n": "after"})
        except BrokerUnavailable:
            return None

    new = await wait_until(published, 10)
    assert new.epoch >= old[-1].seq and new.seq == new.epoch + 1
    assert await publisher.replay("s", old[-1].id) == [new]


async def test_a_log_that_outlived_its_head_keeps_its_ids_growing(nodes, admin: aioredis.Redis) -> None:
    """Evicted under memory pressure, the head may go while the log stays: the new epoch is then
    raised above the log's newest id, so appending still works and ids still only grow."""
    publisher, _ = nodes
    old = [await publisher.publish("s", "message", {"n": n}) for n in range(3)]
    await admin.delete("buzzi:{s}:head")
    # Without its head the log's epoch is unknown: 0, so a gap in it reads as trimmed, never as new.
    assert [(e.id, e.epoch) for e in await publisher.replay("s", None)] == [(e.id, 0) for e in old]
    # An entry ahead of the server's clock (another server's, before a failover): the new epoch is
    # raised above it rather than taken from the clock.
    ahead = old[-1].seq + 10**9
    await admin.xadd("buzzi:{s}:log", {"e": "message", "d": "{}"}, id=f"{ahead}-0")
    new = await publisher.publish("s", "message", {"n": "after"})
    assert new.epoch == ahead and new.seq == ahead + 1
    assert [e.seq for e in await publisher.replay("s", old[-1].id)] == [ahead, new.seq]
