"""Three nodes, one store, one Redis: any node serves any request of any session."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from buzzi.models import Conversation, Message
from tests.cluster.conftest import (
    answer_text,
    assert_consecutive,
    faq_agent,
    new_session,
    open_stream,
    post_message,
    read_events,
    stream_events,
)

pytestmark = pytest.mark.cluster


async def test_message_posted_on_b_is_answered_on_the_stream_held_by_a(cluster3, store3, http):
    a, b = cluster3["node-a"], cluster3["node-b"]
    agent = await faq_agent(store3)
    sid = await new_session(http, a, agent)
    async with open_stream(http, a, sid, "0") as resp:
        status, body = await post_message(http, b, sid, "How do returns work?")
        assert status == 202, body
        events = await read_events(resp)
    assert events[-1].event == "complete", events
    assert_consecutive(events)
    complete = events[-1].data
    assert "30 days" in complete["content"]
    assert complete["content"] == answer_text(events)
    # One stored answer, the one the stream announced, written by a node of this cluster.
    conversation = await store3.find_one(Conversation, agent_id=agent.id)
    answers = await store3.find(Message, conversation_id=conversation.id, role="assistant")
    assert [m.id for m in answers] == [complete["metadata"]["messageId"]]
    question = await store3.get(Message, body["messageId"])
    assert question.state == "done" and question.lease_owner in cluster3.nodes


async def test_resume_on_another_node_gets_every_later_event_once(cluster3, store3, http):
    a, b, c = cluster3["node-a"], cluster3["node-b"], cluster3["node-c"]
    agent = await faq_agent(store3)
    sid = await new_session(http, b, agent)
    async with open_stream(http, a, sid, "0") as resp:
        assert (await post_message(http, b, sid, "What are your opening hours?"))[0] == 202
        full = await read_events(resp)
    assert full[-1].event == "complete" and len(full) >= 4
    # The connection to A broke after the second event; the browser reconnects through the balancer to C.
    resumed = await stream_events(http, c, sid, full[1].id)
    assert [(e.id, e.event, e.data) for e in resumed] == [(e.id, e.event, e.data) for e in full[2:]]
    # Reading A's stream only up to the 2nd event, then resuming on C while the answer is produced.
    async with open_stream(http, a, sid, full[-1].id) as resp:
        assert (await post_message(http, c, sid, "How do returns work?"))[0] == 202
        head = await read_events(resp, until=lambda evs: len(evs) >= 2)
    tail = await stream_events(http, c, sid, head[-1].id)
    second = head + tail
    assert second[0].id == str(int(full[-1].id) + 1)
    assert_consecutive(second)
    assert second[-1].event == "complete" and second[-1].data["content"] == answer_text(second)


async def test_session_rate_limit_is_shared_by_all_nodes(cluster3, store3, http):
    nodes = [cluster3["node-a"], cluster3["node-b"], cluster3["node-c"]]
    agent = await faq_agent(store3)
    sid = await new_session(http, nodes[0], agent)
    targets = list(itertools.islice(itertools.cycle(nodes), 45))
    results = await asyncio.gather(*(post_message(http, node, sid, f"question {i}")
                                     for i, node in enumerate(targets)))
    statuses = [status for status, _ in results]
    assert statuses.count(202) == 30 and statuses.count(429) == 15, statuses
    refused = next(body for status, body in results if status == 429)
    assert refused["error"] == "Rate limit exceeded" and refused["retryAfter"] > 0
    # Exactly the accepted messages were stored, whichever node took them.
    conversation = await store3.find_one(Conversation, agent_id=agent.id)
    assert await store3.count(Message, conversation_id=conversation.id, role="user") == 30
