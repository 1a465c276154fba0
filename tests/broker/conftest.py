"""Brokers for the contract suite: every test using `broker` runs once per implementation."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

import tests.conftest as root_conftest
from buzzi.broker import open_broker
from buzzi.broker.base import Broker
from buzzi.config import BrokerSettings
from tests.support.waiting import wait_until

if "tests.support.redis_server" not in getattr(root_conftest, "pytest_plugins", ()):
    # Until tests/conftest.py registers the plugin, bring its fixtures in here.
    from tests.support.redis_server import redis_server, redis_url  # noqa: F401

MakeBroker = Callable[..., Awaitable[Broker]]


def broker_settings(**changes: Any) -> BrokerSettings:
    values: dict[str, Any] = {
        "url": "memory://",
        "event_log_size": 50,
        "event_log_ttl_seconds": 60,
        "max_connections": 10,
        "node_ttl_seconds": 5.0,
    }
    values.update(changes)
    return BrokerSettings(**values)


async def eventually(condition: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll `condition` (sync or async) until truthy; fail after `timeout` seconds."""
    try:
        await wait_until(condition, timeout)
    except AssertionError:
        raise AssertionError(f"timed out waiting for {what}") from None


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def broker_url(backend: str, request: pytest.FixtureRequest) -> str:
    return "memory://" if backend == "memory" else request.getfixturevalue("redis_url")


@pytest.fixture
async def make_broker(broker_url: str) -> AsyncIterator[MakeBroker]:
    """Opens brokers (nodes) on the test's backend; closes them all afterwards."""
    opened: list[Broker] = []

    async def make(node_id: str = "node-a", **settings: Any) -> Broker:
        broker = open_broker(broker_url, broker_settings(url=broker_url, **settings), node_id)
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


async def live(broker: Broker, stream: str) -> None:
    """Barrier: after it, the node's subscriptions to `stream` receive every later publish from any
    node. (A replay waits for the node's channel subscription; memory is live at once.)"""
    await broker.replay(stream, None)


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
