"""SSE semantics: gap-free resume, heartbeats, clean disconnects, slow clients, handover, retries."""

from __future__ import annotations

import asyncio

from buzzi import clock
from buzzi.chat import conversation_stream
from buzzi.ids import new_id
from buzzi.models import PROCESSING, Conversation, Message
from tests.chat.conftest import new_session
from tests.support.gateway import running_gateway
from tests.support.sse import collect_until_terminal, read_sse
from tests.support.waiting import wait_until
from tests.support.web_sessions import store_conversation


async def ask(gw, sid: str, content: str, last_event_id: str | None = None) -> list:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    async with gw.http.get(f"{gw.base_url}/api/chat/{sid}/stream", headers=headers) as resp:
        status, _, _ = await gw.request("POST", f"/api/chat/{sid}/message", json_body={"content": content})
        assert status == 202
        return await asyncio.wait_for(collect_until_terminal(resp), 10)


async def stream_from(gw, sid: str, last_event_id: str) -> list:
    async with gw.http.get(f"{gw.base_url}/api/chat/{sid}/stream",
                           headers={"Last-Event-ID": last_event_id}) as resp:
        return await asyncio.wait_for(collect_until_terminal(resp), 10)


async def test_last_event_id_replays_every_later_event_exactly_once(gw, faq_agent):
    sid = (await new_session(gw, faq_agent))["sessionId"]
    first = await ask(gw, sid, "How do returns work?")
    assert first[-1].event == "complete"
    # Reconnect as if the connection broke after the second event.
    resumed = await stream_from(gw, sid, first[1].id)
    assert [(e.id, e.event, e.data) for e in resumed] == [(e.id, e.event, e.data) for e in first[2:]]
    # The ?lastEventId= form (a widget after a reload) is the same.
    async with gw.http.get(f"{gw.base_url}/api/chat/{sid}/stream?lastEventId={first[3].id}") as resp:
        again = await asyncio.wait_for(collect_until_terminal(resp), 10)
    assert [e.id for e in again] == [e.id for e in first[4:]]
    # Resuming after the terminal event waits for new events only.
    second = await ask(gw, sid, "What are your opening hours?", last_event_id=first[-1].id)
    assert int(second[0].id) == int(first[-1].id) + 1
    assert "Monday" in second[-1].data["content"]


async def test_heartbeat_and_retry_hint(make_settings):
    async with running_gateway(make_settings, chat={"heartbeat_seconds": 0.05}) as gw:
        from tests.chat.conftest import create_faq_agent

        agent = await create_faq_agent(gw)
        sid = (await new_session(gw, agent))["sessionId"]
        async with gw.http.get(f"{gw.base_url}/api/chat/{sid}/stream") as resp:
            first_line = await resp.content.readline()
            assert first_line == b"retry: 2000\n"
            comments = []
            async for ev in read_sse(resp):
                if ev.event == "comment":
                    comments.append(ev.comment)
                if len(comments) == 2:
                    break
        assert comments == ["heartbeat", "heartbeat"]


async def test_disconnects_leave_nothing_behind(gw, faq_agent):
    sid = (await new_session(gw, faq_agent))["sessionId"]
    broker, hub = gw.gateway.broker, gw.gateway.streams
    tasks_before = len(asyncio.all_tasks())
    for _ in range(1000):
        async with gw.http.get(f"{gw.base_url}/api/chat/{sid}/stream") as resp:
            assert await resp.content.readline() == b"retry: 2000\n"
    await wait_until(lambda: not hub.live and not broker.registry.by_stream, 5)
    assert len(asyncio.all_tasks()) <= tasks_before + 2  # the test's own helpers at most


async def test_slow_client_is_cut_off_and_resumes_from_the_log(make_settings):
    async with running_gateway(make_settings, chat={"stream_buffer_events": 5}) as gw:
        hub, broker = gw.gateway.streams, gw.gateway.broker
        stream = conversation_stream("cv_slow")
        live = hub.open(stream, "cv_slow", "c_x", "a_x")
        events = hub.events(live, "0")
        first = asyncio.ensure_future(events.__anext__())
        await wait_until(lambda: broker.registry.by_stream)  # it has subscribed
        published = [await broker.publish(stream, "delta", {"content": "0"})]
        assert (await first).id == published[0].id
        # The client stops reading while 19 more events arrive: more than its buffer of 5.
        published += [await broker.publish(stream, "delta", {"content": str(i)}) for i in range(1, 20)]
        received = [ev async for ev in events]  # ends by itself: the subscription overflowed
        hub.close(live)
        assert len(received) < 19
        # The client reconnects with its last id and gets the rest from the log, nothing twice.
        last = received[-1].id if received else published[0].id
        replay = await broker.replay(stream, last)
        got = [published[0].id, *[e.id for e in received], *[e.id for e in replay]]
        assert got == [e.id for e in published]


async def test_handover_keeps_the_bot_silent_until_released(gw, faq_agent):
    sid = (await new_session(gw, faq_agent))["sessionId"]
    events = await ask_until(gw, sid, "Can I talk to a person?", "notification")
    assert events[-1].data["type"] == "handover" and events[-1].data["data"]["owner"] == "human"
    conversation = await gw.store.find_one(Conversation, agent_id=faq_agent.id)
    assert conversation.owner == "human"
    status, _, _ = await gw.request("POST", f"/api/chat/{sid}/message", json_body={"content": "Opening hours?"})
    assert status == 202
    message = await wait_for_state(gw, conversation.id, "Opening hours?", "skipped")
    assert message.state == "skipped"
    assert await gw.store.count(Message, conversation_id=conversation.id, role="assistant") == 0
    await gw.gateway.conversations.handover(conversation, "release", "admin@localhost")
    answered = await ask(gw, sid, "What are your opening hours?")
    assert answered[-1].event == "complete"


async def test_interrupted_attempt_is_announced_then_answered_once(gw, faq_agent):
    session = await new_session(gw, faq_agent)
    sid = session["sessionId"]
    conversation = await store_conversation(gw, session, faq_agent.company_id, faq_agent.id)
    # A message a dead node claimed: its lease ran out.
    message = Message(id=new_id("message"), conversation_id=conversation.id, company_id=faq_agent.company_id,
                      agent_id=faq_agent.id, role="user", content="How do returns work?", state=PROCESSING,
                      lease_owner="dead-node", lease_until=clock.now() - 1, attempts=1)
    async with gw.http.get(f"{gw.base_url}/api/chat/{sid}/stream") as resp:
        await gw.store.add(message)
        gw.gateway.inbox.kick()
        first = await asyncio.wait_for(collect_until_terminal(resp), 10)
    assert first[-1].event == "error"
    assert first[-1].data["code"] == "interrupted" and first[-1].data["retryable"] is True
    rest = await stream_from(gw, sid, first[-1].id)
    assert rest[-1].event == "complete" and "30 days" in rest[-1].data["content"]
    stored = await wait_for_state(gw, conversation.id, "How do returns work?", "done")
    assert stored.attempts == 2
    assert await gw.store.count(Message, conversation_id=conversation.id, role="assistant") == 1


async def test_drain_ends_open_streams(gw, faq_agent):
    sid = (await new_session(gw, faq_agent))["sessionId"]
    async with gw.http.get(f"{gw.base_url}/api/chat/{sid}/stream") as resp:
        assert await resp.content.readline() == b"retry: 2000\n"
        await gw.gateway.drain()
        rest = await asyncio.wait_for(resp.content.read(), 5)  # EOF: the server ended the stream
        assert b"event:" not in rest
    status, _, _ = await gw.request("GET", f"/api/chat/{sid}/stream")
    assert status == 503


async def ask_until(gw, sid: str, content: str, event_name: str) -> list:
    events = []
    async with gw.http.get(f"{gw.base_url}/api/chat/{sid}/stream") as resp:
        await gw.request("POST", f"/api/chat/{sid}/message", json_body={"content": content})

        async def read() -> None:
            async for ev in read_sse(resp):
                if ev.event != "comment":
                    events.append(ev)
                    if ev.event == event_name:
                        return

        await asyncio.wait_for(read(), 10)
    return events


async def wait_for_state(gw, conversation_id: str, content: str, state: str) -> Message:
    async def found() -> Message | None:
        for m in await gw.store.find(Message, conversation_id=conversation_id, role="user"):
            if m.content == content and m.state == state:
                return m
        return None

    return await wait_until(found)


async def test_two_quick_messages_are_answered_in_order_without_interleaving(gw, faq_agent):
    sid = (await new_session(gw, faq_agent))["sessionId"]
    events = []
    async with gw.http.get(f"{gw.base_url}/api/chat/{sid}/stream") as resp:
        for question in ("How do returns work?", "What are your opening hours?"):
            status, _, _ = await gw.request("POST", f"/api/chat/{sid}/message", json_body={"content": question})
            assert status == 202
        events += await asyncio.wait_for(collect_until_terminal(resp), 10)
    events += await stream_from(gw, sid, events[-1].id)
    completes = [i for i, e in enumerate(events) if e.event == "complete"]
    assert len(completes) == 2
    first = "".join(e.data["content"] for e in events[: completes[0]] if e.event == "delta")
    second = "".join(e.data["content"] for e in events[completes[0] + 1: completes[1]] if e.event == "delta")
    assert first == events[completes[0]].data["content"] and "30 days" in first
    assert second == events[completes[1]].data["content"] and "Monday" in second
