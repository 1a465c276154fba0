"""Exactly-once resume by Last-Event-ID with events crossing Redis at about 1,000 a second.

A real gateway node (node A, on Redis) holds the chat stream; "node B" is a RedisBroker in this
process publishing into the conversation's stream, as another node's message processor does, in
batches that the broker coalesces. The client drops its stream several times mid-flow and resumes
with the id of the last event it parsed: every event must arrive exactly once, in order. No timing
is asserted: the rate only makes the drops land among batches in flight.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from buzzi.broker.redis import RedisBroker
from buzzi.chat import conversation_stream

# The cluster fixtures (a real node on its own Redis, an HTTP client), imported to be used here.
from tests.cluster.conftest import READ_TIMEOUT, faq_agent, http, make_cluster, open_stream, opened  # noqa: F401
from tests.support.brokers import broker_settings
from tests.support.cluster import Node
from tests.support.sse import read_sse

pytestmark = pytest.mark.cluster

TOTAL = 3000  # events published
RATE = 1000  # per second, in bursts of BURST every BURST/RATE seconds
BURST = 10
DROPS = 6  # the client drops its stream after each ~TOTAL/(DROPS+1) events


async def _session(client: aiohttp.ClientSession, node: Node, company_id: str, agent_id: str) -> tuple[str, str]:
    async with client.post(f"{node.base_url}/api/chat/sessions",
                         json={"companyId": company_id, "agentId": agent_id}) as resp:
        body = await resp.json()
        assert resp.status == 201, body
        return body["sessionId"], body["conversationId"]


async def _publish(node_b: RedisBroker, stream: str, started: asyncio.Event) -> None:
    """TOTAL events at about RATE per second; each burst is published concurrently (one batch)."""
    await started.wait()
    for first in range(0, TOTAL, BURST):
        await asyncio.gather(*(node_b.publish(stream, "delta", {"n": n})
                               for n in range(first, min(first + BURST, TOTAL))))
        await asyncio.sleep(BURST / RATE)


async def _read_with_drops(client: aiohttp.ClientSession, node: Node, sid: str, started: asyncio.Event
                           ) -> tuple[list[tuple[int, Any]], int]:
    """Every (id, n) parsed, over DROPS+1 connections, each resuming after the last id parsed."""
    got: list[tuple[int, Any]] = []
    last_id = "0"  # the stream was created with the session: everything after its start
    connections = 0
    per_connection = TOTAL // (DROPS + 1)
    while len(got) < TOTAL:
        connections += 1
        async with open_stream(client, node, sid, last_event_id=last_id) as resp:
            started.set()  # the publisher starts once the first stream is live
            quota = len(got) + per_connection if connections <= DROPS else TOTAL
            async for event in read_sse(resp):
                if event.event == "comment":
                    continue
                got.append((int(event.id), event.data["n"]))
                last_id = event.id
                if len(got) >= quota:
                    break  # drop the connection mid-flow, with events still coming
    return got, connections


async def test_every_event_exactly_once_in_order_across_drops_at_1000_per_second(make_cluster, http):  # noqa: F811
    cluster = make_cluster()
    await cluster.start_async("node-a")
    node_a = cluster["node-a"]
    async with opened(cluster) as store:
        agent = await faq_agent(store)
    sid, conversation_id = await _session(http, node_a, agent.company_id, agent.id)
    node_b = RedisBroker(cluster.broker_url, broker_settings(url=cluster.broker_url, event_log_size=TOTAL), "node-b")
    await node_b.open()
    started = asyncio.Event()
    try:
        publisher = asyncio.create_task(_publish(node_b, conversation_stream(conversation_id), started))
        got, connections = await asyncio.wait_for(_read_with_drops(http, node_a, sid, started), READ_TIMEOUT * 4)
        await publisher
    finally:
        await node_b.close()
    assert connections == DROPS + 1
    assert [n for _, n in got] == list(range(TOTAL))  # each event once, in publish order
    ids = [i for i, _ in got]
    assert ids == list(range(ids[0], ids[0] + TOTAL))  # ids count up by one: nothing skipped or repeated
