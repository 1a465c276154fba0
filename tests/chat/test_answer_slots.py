"""Answering yields to intake: while the event loop is saturated the inbox runs fewer answers at
once (never none) and goes back to its concurrency when the loop is idle (buzzi/answer_slots.py).
The lag signal is fed by hand here: no test depends on how fast this machine is."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from buzzi import answer_slots, clock
from buzzi.answer_slots import AnswerSlots, LoopLagGovernor
from buzzi.ids import new_id
from buzzi.models import DONE, PENDING, WEB_CHANNEL, Conversation, Message
from tests.chat.conftest import create_faq_agent, new_session
from tests.support.gateway import running_gateway
from tests.support.waiting import wait_until

BUSY = 0.2    # seconds of lag fed as "saturated" (far above the 5 ms threshold)
IDLE = 0.0


def governor(ceiling: int = 16, floor: int = 1, busy_lag: float = 0.005) -> LoopLagGovernor:
    return LoopLagGovernor(AnswerSlots(ceiling), ceiling, floor, busy_lag)


def test_saturation_lowers_the_limit_to_the_floor_and_never_to_zero() -> None:
    gov = governor()
    limits = [gov.observe(BUSY) for _ in range(12)]
    assert limits[0] < 16 and limits == sorted(limits, reverse=True)  # only goes down while busy
    assert limits[-1] == 1 and gov.slots.limit == 1
    assert gov.lowered == 4  # 16 -> 8 -> 4 -> 2 -> 1, then it stays at the floor


def test_a_floor_of_zero_is_still_one_answer_at_a_time() -> None:
    gov = governor(floor=0)
    for _ in range(12):
        gov.observe(BUSY)
    assert gov.slots.limit == 1


def test_an_idle_loop_raises_the_limit_back_to_the_concurrency() -> None:
    gov = governor(floor=2)
    for _ in range(12):
        gov.observe(BUSY)
    assert gov.slots.limit == 2
    limits = [gov.observe(IDLE) for _ in range(20)]
    assert limits == sorted(limits) and limits[-1] == 16
    assert gov.observe(IDLE) == 16  # never above the configured concurrency


def test_normal_load_and_single_spikes_leave_the_limit_alone() -> None:
    gov = governor()
    for lag in [0.001, 0.002, 0.0005] * 10 + [0.012] + [0.001] * 5:  # one slow callback among quiet ones
        assert gov.observe(lag) == 16
    assert gov.lowered == 0


def test_a_lag_between_idle_and_busy_holds_the_limit() -> None:
    gov = governor()
    for _ in range(12):
        gov.observe(BUSY)
    for _ in range(30):
        gov.observe(0.004)  # under the 5 ms threshold but above the idle half of it
    assert gov.slots.limit == 1


async def test_lowering_holds_back_new_answers_without_interrupting_running_ones() -> None:
    slots = AnswerSlots(4)
    for _ in range(4):
        assert slots.try_acquire()
    slots.set_limit(1)
    assert slots.in_use == 4 and slots.locked()
    waiter = asyncio.create_task(slots.acquire())
    for _ in range(3):
        slots.release()
        await asyncio.sleep(0)
    assert not waiter.done() and slots.in_use == 1  # three ended, still the one limit held
    slots.release()
    await waiter
    assert slots.in_use == 1


async def test_raising_wakes_waiters_in_order_and_a_cancelled_waiter_keeps_no_slot() -> None:
    slots = AnswerSlots(1)
    assert slots.try_acquire()
    order: list[int] = []

    async def take(i: int) -> None:
        await slots.acquire()
        order.append(i)

    waiters = [asyncio.create_task(take(i)) for i in range(4)]
    await asyncio.sleep(0)
    waiters[1].cancel()
    slots.set_limit(3)
    await asyncio.gather(*waiters[:3], return_exceptions=True)
    assert order == [0, 2] and not waiters[3].done()
    assert slots.in_use == 3 and not slots.try_acquire()  # nobody jumps the queue either
    slots.release()
    await waiters[3]
    assert order == [0, 2, 3] and slots.in_use == 3
    for _ in range(3):
        slots.release()
    assert slots.in_use == 0 and slots.try_acquire()


CONVERSATIONS = 8
PER_CONVERSATION = 5


async def test_a_saturated_node_answers_one_at_a_time_then_everything_once(make_settings, monkeypatch) -> None:
    monkeypatch.setattr(answer_slots, "LAG_SAMPLE_SECONDS", 3600.0)  # the test feeds the lag itself
    async with running_gateway(make_settings, inbox={"poll_seconds": 600, "concurrency": 8}) as gw:
        inbox = gw.gateway.inbox
        gov = inbox.governor
        running = 0
        most: dict[str, int] = defaultdict(int)
        phase = "saturated"
        process = gw.gateway.processor.process

        async def counted(message: Message) -> bool:  # counts answers at once; the real processor answers
            nonlocal running
            running += 1
            most[phase] = max(most[phase], running)
            try:
                return await process(message)
            finally:
                running -= 1

        monkeypatch.setattr(gw.gateway.processor, "process", counted)
        for _ in range(10):
            gov.observe(BUSY)
        assert gov.slots.limit == 1

        agent = await create_faq_agent(gw)
        conversations = [
            await gw.store.add(Conversation(id=new_id("conversation"), company_id=agent.company_id,
                                            agent_id=agent.id, channel=WEB_CHANNEL))
            for _ in range(CONVERSATIONS)
        ]
        start = clock.now()
        for k in range(PER_CONVERSATION):
            for i, conversation in enumerate(conversations):
                await gw.store.add_user_message(Message(
                    id=new_id("message"), conversation_id=conversation.id, company_id=agent.company_id,
                    agent_id=agent.id, role="user", content="What are your opening hours?", state=PENDING,
                    created_at=start + (k * CONVERSATIONS + i) * 0.001))
        # A chat message over HTTP while saturated is accepted and queued behind the one slot.
        session = await new_session(gw, agent)
        status, body, _ = await gw.request("POST", f"/api/chat/{session['sessionId']}/message",
                                           json_body={"content": "Can I return items?"})
        assert status == 202, body
        inbox.kick()

        async def answered(count: int) -> list[Message] | None:
            users = await gw.store.find(Message, role="user")
            return users if sum(m.state == DONE for m in users) >= count else None

        await wait_until(lambda: answered(CONVERSATIONS), timeout=60)  # answers progress at the floor
        assert most["saturated"] == 1 and gov.slots.limit == 1

        phase = "idle"
        for _ in range(30):
            gov.observe(IDLE)
        assert gov.slots.limit == 8
        total = CONVERSATIONS * PER_CONVERSATION + 1
        users = await wait_until(lambda: answered(total), timeout=60)
        assert len(users) == total and all(m.attempts == 1 for m in users)
        replies = await gw.store.find(Message, role="assistant")
        assert sorted(r.reply_to for r in replies) == sorted(m.id for m in users)  # each answered once
        assert most["idle"] > 1  # back to several conversations at once
