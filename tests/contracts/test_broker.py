"""The broker contract (buzzi/broker/base.py), every protocol checked on both backends: MemoryBroker
and RedisBroker (a real valkey/redis server). What only Redis does (one round trip per event, one
pub/sub connection per node, surviving a restart) is in tests/broker/test_redis.py.

`make_broker` opens more nodes on the same backend; memory has one node, so `peer` is the broker itself.
"""

from __future__ import annotations

import ast
import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from buzzi.broker import open_broker
from buzzi.broker.base import Broker, StreamEvent, Subscription, SubscriptionClosed, wake_inboxes
from buzzi.broker.memory import MemoryBroker
from buzzi.broker.redis import INBOX_CHANNEL, RedisBroker
from tests.support.brokers import broker_settings, live
from tests.support.waiting import wait_until

MakeBroker = Callable[..., Awaitable[Broker]]
GET_TIMEOUT = 5.0
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def make_broker(backend: str, request: pytest.FixtureRequest) -> AsyncIterator[MakeBroker]:
    """Opens brokers (nodes) on the test's backend; closes them all afterwards."""
    url = "memory://" if backend == "memory" else request.getfixturevalue("redis_url")
    opened: list[Broker] = []

    async def make(node_id: str = "node-a", **settings: Any) -> Broker:
        broker = open_broker(url, broker_settings(url=url, **settings), node_id)
        await broker.open()
        opened.append(broker)
        return broker

    yield make
    for broker in reversed(opened):
        await broker.close()


@pytest.fixture
async def broker(make_broker: MakeBroker) -> Broker:
    return await make_broker()


@pytest.fixture
async def peer(backend: str, broker: Broker, make_broker: MakeBroker) -> Broker:
    """Another node: a second RedisBroker on the same server; memory has one node, so itself."""
    return broker if backend == "memory" else await make_broker("node-b")


@pytest.fixture
async def redis_admin(backend: str, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A plain redis-py client on the test's server to look behind the broker (None for memory)."""
    if backend != "redis":
        yield None
        return
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(request.getfixturevalue("redis_url"))
    yield client
    await client.aclose()


async def get(sub: Subscription, timeout: float = GET_TIMEOUT) -> StreamEvent:
    return await asyncio.wait_for(sub.get(), timeout)


def test_open_broker_picks_the_implementation_by_scheme() -> None:
    settings = broker_settings()
    assert isinstance(open_broker("memory://", settings, "n"), MemoryBroker)
    assert isinstance(open_broker("redis://127.0.0.1:1/0", settings, "n"), RedisBroker)
    assert isinstance(open_broker("rediss://127.0.0.1:1/0", settings, "n"), RedisBroker)
    with pytest.raises(ValueError, match="unsupported broker URL"):
        open_broker("kafka://x", settings, "n")


def test_only_the_composition_root_and_the_backends_name_the_whole_broker() -> None:
    """Every other module depends on the protocol(s) it uses (StreamLog, KeyValue, RateCounters,
    Presence, WakeUps), read from the syntax trees of the application's modules."""
    allowed = {ROOT / "buzzi" / "runtime.py", *(ROOT / "buzzi" / "broker").glob("*.py")}
    offenders = []
    for path in sorted([*(ROOT / "buzzi").rglob("*.py"), *(ROOT / "handlers").rglob("*.py")]):
        if path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("buzzi.broker"):
                if any(alias.name == "Broker" for alias in node.names):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


async def test_ping(broker: Broker) -> None:
    await broker.ping()


# ---- StreamLog


async def test_publish_ids_are_strictly_increasing_per_stream_and_above_the_epoch(broker: Broker) -> None:
    events = [await broker.publish("s1", "message", {"n": n}) for n in range(20)]
    seqs = [e.seq for e in events]
    assert all(a < b for a, b in itertools.pairwise(seqs))
    assert [e.data for e in events] == [{"n": n} for n in range(20)]
    # One log, one epoch; its ids count up from just above it, and stay exact as doubles.
    assert {e.epoch for e in events} == {events[0].epoch}
    assert seqs == list(range(events[0].epoch + 1, events[0].epoch + 21))
    assert seqs[-1] < 2**53
    assert await broker.last_id("s1") == events[-1].id
    other = await broker.publish("s2", "message", {})
    assert other.seq == other.epoch + 1  # streams count independently, each in its own log
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


async def test_a_lost_log_is_replaced_by_a_new_epoch_above_every_old_id(make_broker: MakeBroker, redis_admin) -> None:
    broker = await make_broker(event_log_ttl_seconds=1)
    old = [await broker.publish("s", "message", {"n": n}) for n in range(3)]

    async def gone() -> bool:
        return await broker.replay("s", None) == [] and await broker.last_id("s") is None

    await wait_until(gone, 5)  # the log expired: nothing is read from it any more
    if redis_admin is not None:  # the head and the log are both gone, not just unreadable
        assert await redis_admin.exists("buzzi:{s}:head", "buzzi:{s}:log") == 0
    new = [await broker.publish("s", "message", {"n": n}) for n in range(2)]
    assert new[0].epoch >= old[-1].seq and new[0].seq == new[0].epoch + 1
    # A client at the old log's last id gets the new log whole, each event naming the new epoch.
    assert await broker.replay("s", old[-1].id) == new
    assert await broker.replay("s", "0") == new


async def test_memory_reclaims_expired_entries_nobody_reads() -> None:
    broker = MemoryBroker(broker_settings(event_log_ttl_seconds=1), reap_interval=0.05)
    await broker.open()
    try:
        for i in range(20):
            await broker.publish(f"s{i}", "message", {})
            await broker.kv_set(f"k{i}", "v", ttl=0.1)
            await broker.hit(f"h{i}", limit=5, window=0.1)
            await broker.node_heartbeat(f"n{i}", {}, ttl=0.1)
            await broker.set_sessions(f"n{i}", [{"sessionId": "x"}], ttl=0.1)

        def reclaimed() -> bool:
            return not any((broker._logs, broker._kv, broker._windows, broker._nodes, broker._sessions))

        await wait_until(reclaimed, 5)
    finally:
        await broker.close()
    assert broker._reaper is None


async def test_subscribe_sees_only_later_events_in_order(broker: Broker) -> None:
    await broker.publish("s", "message", {"n": "before"})
    sub = broker.subscribe("s")
    await live(broker, "s")
    published = [await broker.publish("s", "message", {"n": n}) for n in range(5)]
    assert [await get(sub) for _ in range(5)] == published  # the epoch included
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


async def test_overflow_cuts_off_the_slow_subscriber_only(broker: Broker) -> None:
    slow = broker.subscribe("s", maxsize=3)
    fast = broker.subscribe("s", maxsize=100)
    await live(broker, "s")
    published = [await broker.publish("s", "message", {"n": n}) for n in range(5)]
    # Each event reaches every local subscriber at once: once `fast` has the fifth, `slow` had it
    # offered too, with three still unread.
    assert [await get(fast) for _ in range(5)] == published
    with pytest.raises(SubscriptionClosed):
        await get(slow)
    assert broker.registry.by_stream["s"] == {fast}


async def test_subscribe_close_cycles_leave_nothing_behind(broker: Broker, redis_admin) -> None:
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
    await wait_until(lambda: len(asyncio.all_tasks()) <= tasks_before, 5)
    if isinstance(broker, RedisBroker):
        await wait_until(lambda: broker.listener_channels == {INBOX_CHANNEL}, 5)
        assert broker._in_flight == {} and broker._ready_waiters == {}
        channels = [f"buzzi:ch:cycle-{n}" for n in range(7)]
        counts = await redis_admin.pubsub_numsub(*channels)
        assert all(count == 0 for _, count in counts)


# ---- KeyValue


async def test_kv_set_get_overwrite(broker: Broker) -> None:
    assert await broker.kv_get("k") is None
    await broker.kv_set("k", "v1", ttl=30)
    assert await broker.kv_get("k") == "v1"
    await broker.kv_set("k", "v2", ttl=30)
    assert await broker.kv_get("k") == "v2"


async def test_kv_expires_and_touch_slides_the_expiry(broker: Broker) -> None:
    await broker.kv_set("plain", "a", ttl=0.3)
    await broker.kv_set("touched", "b", ttl=0.3)
    assert await broker.kv_get("touched", touch_ttl=30) == "b"

    async def plain_gone() -> bool:
        return await broker.kv_get("plain") is None

    await wait_until(plain_gone, 5)
    assert await broker.kv_get("touched") == "b"
    if isinstance(broker, MemoryBroker):
        await wait_until(lambda: "plain" not in broker._kv, 5)


# ---- RateCounters


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

    await wait_until(reset, 5)


# ---- Presence


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

    await wait_until(n1_gone, 5)
    assert sorted(s["sessionId"] for s in await broker.list_sessions()) == ["b", "c"]

    await broker.set_sessions("n2", [{"sessionId": "d"}], ttl=30)  # replaces the list
    assert [s["sessionId"] for s in await broker.list_sessions()] == ["d"]
    await broker.node_leave("n2")
    assert await broker.list_nodes() == [] and await broker.list_sessions() == []
    if isinstance(broker, MemoryBroker):
        await wait_until(lambda: not broker._nodes, 5)


# ---- WakeUps


async def test_notify_inbox_wakes_a_waiter_on_another_node(broker: Broker, peer: Broker) -> None:
    assert await peer.wait_inbox(0.05) is False
    waiter = asyncio.create_task(peer.wait_inbox(GET_TIMEOUT))
    await asyncio.sleep(0)
    assert await wake_inboxes(broker) is True
    assert await waiter is True
    assert await peer.wait_inbox(0.05) is False  # one wake-up, consumed
