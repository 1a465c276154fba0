"""The cluster and its Redis: a restart under running nodes, and a node that cannot reach it at start."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from buzzi.chat import conversation_stream
from buzzi.models import Conversation
from tests.cluster.conftest import (
    READ_TIMEOUT,
    answer_text,
    assert_consecutive,
    faq_agent,
    new_session,
    open_stream,
    opened,
    post_message,
    read_events,
    stream_events,
)
from tests.support.redis_server import free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.cluster

RECONNECTED = "pub/sub reconnected"


async def test_open_stream_gets_answers_after_redis_restarts_empty(make_cluster, http):
    cluster = make_cluster()
    await cluster.start_async("node-a", "node-b")
    a, b = cluster["node-a"], cluster["node-b"]
    async with opened(cluster) as store:
        agent = await faq_agent(store)
        sid = await new_session(http, a, agent)
        async with open_stream(http, a, sid, "0") as resp:
            assert (await post_message(http, b, sid, "How do returns work?"))[0] == 202
            before = await read_events(resp)
        assert before[-1].event == "complete"

        # The widget reconnects after `complete` and waits; then Redis restarts with nothing in it
        # (no persistence: stream logs, counters, session cache and presence are all gone).
        async with open_stream(http, a, sid, before[-1].id) as resp:
            cluster.redis.restart()
            for node in (a, b):
                await wait_until(lambda node=node: RECONNECTED in node.log(), READ_TIMEOUT)
                await node.ready()
            status, body = await post_message(http, b, sid, "What are your opening hours?")
            assert status == 202, body
            after = await read_events(resp)
        assert after[-1].event == "complete", after
        assert "Monday" in after[-1].data["content"]
        assert answer_text(after) == after[-1].data["content"]
        # The new log's ids continue above the old one's (a new epoch): the client sees them grow and
        # gets the new log whole, from its first event on.
        assert_consecutive(after)
        conversation = await store.find_one(Conversation, agent_id=agent.id)
        epoch = await log_epoch(cluster.redis.url, conversation_stream(conversation.id))
        assert int(after[0].id) == epoch + 1 > int(before[-1].id)
        # Resuming by the new ids works from any node, as before the restart.
        resumed = await stream_events(http, b, sid, after[1].id)
        assert [(e.id, e.event, e.data) for e in resumed] == [(e.id, e.event, e.data) for e in after[2:]]


async def test_node_without_its_broker_exits_with_an_error_naming_it(make_cluster):
    cluster = make_cluster()
    dead = f"redis://127.0.0.1:{free_port()}/0"
    node = cluster.spawn("node-a", BUZZI_BROKER_URL=dead)
    code = await node.wait_exit(timeout=30)
    assert code != 0
    log = node.log()
    assert "cannot start" in log and f"Redis broker at {dead} is unreachable" in log
    assert "Traceback" not in log


async def log_epoch(redis_url: str, stream: str) -> int:
    """The epoch of the stream's current log, read behind the broker."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return int(await client.hget(f"buzzi:{{{stream}}}:head", "epoch"))
    finally:
        await client.aclose()
