"""The Broker contract (buzzi/broker/base.py), run against MemoryBroker and RedisBroker alike."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from buzzi.broker import open_broker
from buzzi.broker.base import Broker, SubscriptionClosed
from buzzi.broker.memory import MemoryBroker
from buzzi.broker.redis import INBOX_CHANNEL, RedisBroker
from tests.broker.conftest import MakeBroker, broker_settings, eventually, live

GET_TIMEOUT = 5.0


async def get(sub, timeout: float = GET_TIMEOUT):
    return await asyncio.wait_for(sub.get(), timeout)


def test_open_broker_picks_the_implementation_by_scheme() -> None:
    settings = broker_settings()
    assert isinstance(open_broker("memory://", settings, "n"), MemoryBroker)
    assert isinstance(open_broker("redis://127.0.0.1:1/0", settings, "n"), RedisBroker)
    assert isinstance(open_broker("rediss://127.0.0.1:1/0", settings, "n"), RedisBroker)
    with pytest.raises(ValueError, match="unsupported broker URL"):
        open_broker("kafka://x", settings, "n")


async def test_ping(broker: Broker) -> None:
    await broker.ping()


# ---- streams


async def test_publish_ids_are_strictly_increasing_per_stream(broker: Broker) -> None:
    events = [await broker.publish("s1", "message", {"n": n}) for n in range(20)]
    seqs = [e.seq for e in events]
    assert all(a < b for a, b in itertools.pairwise(seqs))
    assert [e.data for e in events] == [{"n": n} for n in range(20)]
    assert await broker.last_id("s1") == events[-1].id
    other = await broker.publish("s2", "message", {})
    assert other.seq == 1  # streams count independently
    assert await broker.last_id("never-published") is None


async def test_replay_after_id_returns_exactly_the_later_events_once(broker: Broker) -> None:
    published = [await broker.publish("s", "message", {"n": n}) for n in range(10)]
    assert await broker.replay("s", None) == published
    assert await broker.replay("s", published[3].id) == published[4:]
    assert await broker.replay("s", published[-1].id) == []
    assert await broker.replay("unknown", None) == []


async def test_log_is_capped(make_broker: MakeBroker) -> None:
    broker = await make_broker(event_log_size=5)
    published = [await broker.publish("s", "message", {"n": n}) for n in range(8)]
    assert await broker.replay("s", None) == published[-5:]
    assert await broker.replay("s", published[0].id) == published[-5:]
    assert await broker.last_id("s") == published[-1].id


async def test_log_expires_after_ttl_without_events(make_broker: MakeBroker, redis_admin) -> None:
    broker = await make_broker(event_log_ttl_seconds=1)
    await broker.publish("s", "message", {})
    assert len(await broker.replay("s", None)) == 1

    async def gone() -> bool:
        return await broker.replay("s", None) == [] and await broker.last_id("s") is None

    await eventually(gone, timeout=5, what="log expiry")
    if redis_admin is not None:  # the counter and the log are both gone, not just unreadable
        assert await redis_admin.exists("buzzi:{s}:seq", "buzzi:{s}:log") == 0


async def test_memory_reclaims_expired_entries_nobody_reads() -> None:
    broker = MemoryBroker(broker_settings(event_log_ttl_seconds=1), reap_interval=0.05)
    await broker.open()
    try:
        for i in range(20):
            await broker.publish(f"s{i}", "message", {})
            await broker.kv_set(f"k{i}", "v", ttl=0.1)
            await broker.incr(f"c{i}", ttl=0.1)
            await broker.hit(f"h{i}", limit=5, window=0.1)
            await broker.node_heartbeat(f"n{i}", {}, ttl=0.1)
            await broker.set_sessions(f"n{i}", [{"sessionId": "x"}], ttl=0.1)
        await broker.incr("forever")

        def reclaimed() -> bool:
            tables = (broker._logs, broker._kv, broker._windows, broker._nodes, broker._sessions)
            return all(not t for t in tables) and list(broker._counters) == ["forever"]

        await eventually(reclaimed, what="the reaper to drop expired entries")
    finally:
        await broker.close()
    assert broker._reaper is None


async def test_subscribe_sees_only_later_events_in_order(broker: Broker) -> None:
    await broker.publish("s", "message", {"n": "before"})
    sub = broker.subscribe("s")
    await live(broker, "s")
    published = [await broker.publish("s", "message", {"n": n}) for n in range(5)]
    assert [await get(sub) for _ in range(5)] == published
    sub.close()


async def test_two_subscribers_of_one_stream_each_get_every_event(broker: Broker) -> None:
    first, second = broker.subscribe("s"), broker.subscribe("s")
    other_stream = broker.subscribe("other")
    await live(broker, "s")
    published = [await broker.publish("s", "message", {"n": n}) for n in range(3)]
    assert [await get(first) for _ in range(3)] == published
    assert [await get(second) for _ in range(3)] == published
    marker = await broker.publish("other", "marker", {})
    assert await get(other_stream) == marker  # nothing of "s" leaked into "other"


async def test_subscriber_on_another_node_receives_events(broker: Broker, peer: Broker) -> None:
    sub = peer.subscribe("s")
    await live(peer, "s")
    published = [await broker.publish("s", "message", {"n": n}) for n in range(5)]
    assert [await get(sub) for _ in range(5)] == published
    # The resume pattern from the other node: replay after an id, then live.
    assert await peer.replay("s", published[1].id) == published[2:]


async def test_close_wakes_a_waiting_get(broker: Broker) -> None:
    sub = broker.subscribe("s")
    waiter = asyncio.create_task(sub.get())
    await asyncio.sleep(0)  # let the getter start waiting
    sub.close()
    with pytest.raises(SubscriptionClosed):
        await asyncio.wait_for(waiter, GET_TIMEOUT)
    sub.close()  # idempotent
    assert not sub.overflowed


async def test_overflow_cuts_off_the_slow_subscriber_only(broker: Broker) -> None:
    slow = broker.subscribe("s", maxsize=3)
    fast = broker.subscribe("s", maxsize=100)
    await live(broker, "s")
    published = [await broker.publish("s", "message", {"n": n}) for n in range(5)]
    assert [await get(fast) for _ in range(5)] == published
    await eventually(lambda: slow.overflowed, what="overflow")
    with pytest.raises(SubscriptionClosed):
        await get(slow)
    assert broker.registry.by_stream["s"] == {fast}


async def test_subscribe_close_cycles_leave_nothing_behind(backend: str, broker: Broker, redis_admin) -> None:
    tasks_before = len(asyncio.all_tasks())
    for i in range(1000):
        stream = f"cycle-{i % 7}"
        sub = broker.subscribe(stream)
        if i % 100 == 0:  # now and then go all the way: a real channel subscription and a delivery
            await live(broker, stream)
            event = await broker.publish(stream, "message", {"i": i})
            assert await get(sub) == event
        sub.close()
        with pytest.raises(SubscriptionClosed):
            await sub.get()
    assert broker.registry.by_stream == {}
    await eventually(lambda: len(asyncio.all_tasks()) <= tasks_before, what="tasks to finish")
    if isinstance(broker, RedisBroker):
        await eventually(lambda: broker.listener_channels == {INBOX_CHANNEL}, what="channels unsubscribed")
        assert broker._in_flight == {} and broker._ready_waiters == {}
        channels = [f"buzzi:ch:cycle-{n}" for n in range(7)]
        counts = await redis_admin.pubsub_numsub(*channels)
        assert all(count == 0 for _, count in counts)


# ---- key/value


async def test_kv_set_get_delete(broker: Broker) -> None:
    assert await broker.kv_get("k") is None
    await broker.kv_set("k", "v1", ttl=30)
    assert await broker.kv_get("k") == "v1"
    await broker.kv_set("k", "v2", ttl=30)
    assert await broker.kv_get("k") == "v2"
    await broker.kv_delete("k")
    assert await broker.kv_get("k") is None
    await broker.kv_delete("k")  # deleting a missing key is fine


async def test_kv_expires_and_touch_slides_the_expiry(broker: Broker) -> None:
    await broker.kv_set("plain", "a", ttl=0.3)
    await broker.kv_set("touched", "b", ttl=0.3)
    assert await broker.kv_get("touched", touch_ttl=30) == "b"

    async def plain_gone() -> bool:
        return await broker.kv_get("plain") is None

    await eventually(plain_gone, what="kv expiry")
    assert await broker.kv_get("touched") == "b"
    if isinstance(broker, MemoryBroker):
        await eventually(lambda: "plain" not in broker._kv, what="memory kv reclaimed")


# ---- counters


async def test_hit_is_atomic_under_concurrency_across_nodes(broker: Broker, peer: Broker) -> None:
    nodes = (broker, peer)
    decisions = await asyncio.gather(*(nodes[i % 2].hit("ip:1", limit=30, window=10) for i in range(45)))
    allowed = [d for d in decisions if d.allowed]
    denied = [d for d in decisions if not d.allowed]
    assert len(allowed) == 30 and len(denied) == 15
    assert sorted(d.count for d in decisions) == list(range(1, 46))
    assert all(d.retry_after == 0 for d in allowed)
    assert all(0 < d.retry_after <= 10 for d in denied)
    assert all(d.limit == 30 for d in decisions)
    assert (await broker.hit("ip:2", limit=30, window=10)).allowed  # keys count separately


async def test_hit_window_resets(broker: Broker) -> None:
    assert (await broker.hit("k", limit=1, window=0.2)).allowed
    assert not (await broker.hit("k", limit=1, window=0.2)).allowed

    async def reset() -> bool:
        # Probing counts as a hit, so probe with a fresh limit check on the same key.
        return (await broker.hit("k", limit=1, window=0.2)).count == 1

    await eventually(reset, what="window reset")


async def test_incr(broker: Broker) -> None:
    assert await broker.incr("c") == 1
    assert await broker.incr("c", by=5) == 6
    assert await broker.incr("t", ttl=0.2) == 1
    assert await broker.incr("t", ttl=0.2) == 2

    async def expired() -> bool:
        return await broker.incr("t", ttl=30) == 1

    await eventually(expired, what="counter expiry")
    assert await broker.incr("c") == 7  # no ttl: never expires


# ---- presence


async def test_presence_nodes_and_sessions_expire_with_their_node(broker: Broker) -> None:
    await broker.node_heartbeat("n1", {"version": "1"}, ttl=0.3)
    await broker.node_heartbeat("n2", {"version": "2"}, ttl=30)
    await broker.set_sessions("n1", [{"sessionId": "a"}], ttl=30)
    await broker.set_sessions("n2", [{"sessionId": "b"}, {"sessionId": "c"}], ttl=30)

    nodes = {n["nodeId"]: n for n in await broker.list_nodes()}
    assert set(nodes) == {"n1", "n2"}
    assert nodes["n2"]["version"] == "2" and nodes["n2"]["lastSeen"] > 0
    sessions = sorted((s["nodeId"], s["sessionId"]) for s in await broker.list_sessions())
    assert sessions == [("n1", "a"), ("n2", "b"), ("n2", "c")]

    async def n1_gone() -> bool:
        return [n["nodeId"] for n in await broker.list_nodes()] == ["n2"]

    await eventually(n1_gone, what="dead node to drop out")
    assert sorted(s["sessionId"] for s in await broker.list_sessions()) == ["b", "c"]

    await broker.set_sessions("n2", [{"sessionId": "d"}], ttl=30)  # replaces the list
    assert [s["sessionId"] for s in await broker.list_sessions()] == ["d"]
    await broker.node_leave("n2")
    assert await broker.list_nodes() == [] and await broker.list_sessions() == []
    if isinstance(broker, MemoryBroker):
        await eventually(lambda: not broker._nodes, what="memory node reclaimed")


# ---- inbox wake-ups


async def test_notify_inbox_wakes_a_waiter_on_another_node(broker: Broker, peer: Broker) -> None:
    assert await peer.wait_inbox(0.05) is False
    waiter = asyncio.create_task(peer.wait_inbox(GET_TIMEOUT))
    await asyncio.sleep(0)
    await broker.notify_inbox()
    assert await waiter is True
    assert await peer.wait_inbox(0.05) is False  # one wake-up, consumed
