"""Nodes dying (SIGKILL) or leaving (SIGTERM) mid-answer: streams resume elsewhere, answers happen once.

The agent is the slow `http` service of conftest: it sends two deltas, then waits for the test. The
node running the agent is the one holding the message's lease; the stream is opened on another
node, so each test decides exactly which role the node it stops plays.
"""

from __future__ import annotations

import aiohttp
import pytest

from buzzi.models import Conversation, Message
from tests.cluster.conftest import (
    READ_TIMEOUT,
    answer_text,
    assert_consecutive,
    deltas,
    http_agent,
    message_owner,
    new_session,
    open_stream,
    opened,
    post_message,
    read_events,
    stream_events,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.cluster


async def _start_answer(cluster, store, http, slow, entry):
    """A session and a question posted on `entry`; returns (sid, message id, node running the agent)."""
    agent = await http_agent(store, slow)
    sid = await new_session(http, entry, agent)
    status, body = await post_message(http, entry, sid, "Tell me something")
    assert status == 202, body
    request = await slow.wait_request()
    assert request["data"]["message"]["id"] == body["messageId"]
    owner = await message_owner(store, body["messageId"])
    return sid, body["messageId"], cluster[owner]


async def wait_for_state(store, message_id: str, state: str) -> Message:
    async def reached() -> Message | None:
        message = await store.get(Message, message_id)
        return message if message and message.state == state else None

    return await wait_until(reached, READ_TIMEOUT)


async def test_sigkill_of_the_streaming_node_resume_on_another(make_cluster, slow_agent, http):
    cluster = make_cluster()
    await cluster.start_async("node-a", "node-b", "node-c")
    async with opened(cluster) as store:
        sid, message_id, runner = await _start_answer(cluster, store, http, slow_agent, cluster["node-a"])
        streaming, other = [n for n in cluster.nodes.values() if n is not runner]
        async with open_stream(http, streaming, sid, "0") as resp:
            head = await read_events(resp, until=deltas(2))
            streaming.kill()
            with pytest.raises((aiohttp.ClientError, TimeoutError)):
                await read_events(resp, timeout=READ_TIMEOUT)  # the connection died with the node
        async with open_stream(http, other, sid, head[-1].id) as resp:
            slow_agent.gate.set()
            tail = await read_events(resp)
        events = head + tail
        assert_consecutive(events)
        assert events[-1].event == "complete"
        assert answer_text(events) == events[-1].data["content"] == slow_agent.answer
        # Nothing was interrupted: the agent's node lived, so the agent ran once.
        assert len(slow_agent.requests) == 1
        assert "interrupted" not in [e.data.get("code") for e in events]
        assert (await wait_for_state(store, message_id, "done")).attempts == 1


async def test_sigkill_of_the_agent_node_another_answers_once(make_cluster, slow_agent, http):
    cluster = make_cluster()
    await cluster.start_async("node-a", "node-b")
    async with opened(cluster) as store:
        sid, message_id, runner = await _start_answer(cluster, store, http, slow_agent, cluster["node-a"])
        survivor = next(n for n in cluster.nodes.values() if n is not runner)
        async with open_stream(http, survivor, sid, "0") as resp:
            head = await read_events(resp, until=deltas(2))
            runner.kill()
            # After the lease runs out the survivor claims the message again and says so first.
            head += await read_events(resp)
        interrupted = head[-1]
        assert interrupted.event == "error", head
        assert interrupted.data["code"] == "interrupted" and interrupted.data["retryable"] is True
        # The stream ends at the error (a terminal event); the browser reconnects and gets the fresh answer.
        tail = await stream_events(http, survivor, sid, interrupted.id)
        assert_consecutive(head + tail)
        assert tail[-1].event == "complete"
        assert answer_text(tail) == tail[-1].data["content"] == slow_agent.answer
        assert len(slow_agent.requests) == 2
        assert slow_agent.requests[1]["data"]["message"]["id"] == message_id

        # `complete` goes out before the claim is finished: wait for the message's final state.
        question = await wait_for_state(store, message_id, "done")
        assert question.attempts == 2 and question.lease_owner == survivor.name
        conversation = await store.find_one(Conversation, id=question.conversation_id)
        answers = await store.find(Message, conversation_id=conversation.id, role="assistant")
        assert [(m.id, m.content, m.reply_to) for m in answers] == [
            (tail[-1].data["metadata"]["messageId"], slow_agent.answer, message_id)]


async def test_sigterm_ends_streams_cleanly_and_exits_zero(make_cluster, slow_agent, http):
    cluster = make_cluster()
    await cluster.start_async("node-a", "node-b")
    async with opened(cluster) as store:
        sid, message_id, runner = await _start_answer(cluster, store, http, slow_agent, cluster["node-a"])
        leaving = next(n for n in cluster.nodes.values() if n is not runner)
        async with open_stream(http, leaving, sid, "0") as resp:
            head = await read_events(resp, until=deltas(2))
            leaving.terminate()
            # The server ends the response properly: a clean end of stream, no event, no error.
            rest = await read_events(resp)
            assert rest == []
            assert resp.content.at_eof()
        assert await leaving.wait_exit(timeout=15) == 0
        assert f"node {leaving.name} stopped" in leaving.log()
        # The client reconnects (to the node still up) and continues where it was.
        async with open_stream(http, runner, sid, head[-1].id) as resp:
            slow_agent.gate.set()
            tail = await read_events(resp)
        events = head + tail
        assert_consecutive(events)
        assert answer_text(events) == events[-1].data["content"] == slow_agent.answer
        assert len(slow_agent.requests) == 1

        await wait_for_state(store, message_id, "done")
