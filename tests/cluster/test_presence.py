"""Live sessions across nodes: every node publishes its open streams; a dead node's vanish with it."""

from __future__ import annotations

import contextlib

import pytest

from buzzi.broker.redis import RedisBroker
from buzzi.config import load_settings
from tests.cluster.conftest import READ_TIMEOUT, faq_agent, new_session, open_stream, opened
from tests.support.waiting import wait_until

pytestmark = pytest.mark.cluster


@contextlib.asynccontextmanager
async def observer(url: str):
    """A broker client of our own, as the admin API of any node would read the cluster's state."""
    broker = RedisBroker(url, load_settings(env={}).broker, "observer")
    await broker.open()
    try:
        yield broker
    finally:
        await broker.close()


async def test_sessions_of_all_nodes_are_listed_and_a_killed_node_drops_out(make_cluster, http):
    cluster = make_cluster()
    await cluster.start_async("node-a", "node-c")
    a, c = cluster["node-a"], cluster["node-c"]
    async with opened(cluster) as store, observer(cluster.broker_url) as broker:
        agent = await faq_agent(store)
        sid_a, sid_c = await new_session(http, a, agent), await new_session(http, c, agent)
        # A new session stores nothing (buzzi/chat.py); any node tells its conversation id.
        conversations = {sid: await conversation_of(http, c, sid) for sid in (sid_a, sid_c)}
        assert len(set(conversations.values())) == 2

        async def live() -> dict[str, str]:
            return {s["conversationId"]: s["nodeId"] for s in await broker.list_sessions()}

        async with open_stream(http, a, sid_a, None), open_stream(http, c, sid_c, None):
            both = await wait_until(lambda: _when(live, lambda got: len(got) == 2), READ_TIMEOUT)
            assert sorted(both.values()) == ["node-a", "node-c"]
            assert set(both) == set(conversations.values())
            assert sorted(n["nodeId"] for n in await broker.list_nodes()) == ["node-a", "node-c"]
            c.kill()
            # No node says goodbye for C: its entries expire with its heartbeat (node TTL 2 s).
            after = await wait_until(lambda: _when(live, lambda got: len(got) == 1), READ_TIMEOUT)
            assert list(after.values()) == ["node-a"]
            assert [n["nodeId"] for n in await broker.list_nodes()] == ["node-a"]


async def conversation_of(http, node, sid: str) -> str:
    async with http.get(f"{node.base_url}/api/chat/{sid}/messages") as resp:
        assert resp.status == 200
        return (await resp.json())["conversationId"]


async def _when(fetch, accept):
    value = await fetch()
    return value if accept(value) else None
