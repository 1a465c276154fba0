"""A backlog of many messages per conversation is answered in order, each once, without the
claim -> defer -> claim churn: the inbox parks a follow-up of a conversation it is answering and
takes it back by id when the answer before it ends (buzzi/inbox.py)."""

from __future__ import annotations

from collections import defaultdict

from buzzi import clock
from buzzi.ids import new_id
from buzzi.models import DONE, PENDING, WEB_CHANNEL, Conversation, Message
from tests.chat.conftest import create_faq_agent
from tests.support.gateway import running_gateway
from tests.support.waiting import wait_until

CONVERSATIONS = 5
PER_CONVERSATION = 20
QUESTIONS = ("What are your opening hours?", "Can I return items?")


async def test_a_queued_backlog_is_answered_in_order_once_with_bounded_claims(make_settings) -> None:
    # No poll during the test: only the one kick below (and the worker's own kicks) start claims.
    async with running_gateway(make_settings, inbox={"poll_seconds": 600}) as gw:
        agent = await create_faq_agent(gw)
        conversations = [
            await gw.store.add(Conversation(id=new_id("conversation"), company_id=agent.company_id,
                                            agent_id=agent.id, channel=WEB_CHANNEL))
            for _ in range(CONVERSATIONS)
        ]
        start = clock.now()
        queued: dict[str, list[str]] = defaultdict(list)
        for k in range(PER_CONVERSATION):  # interleaved, as customers write: c1 m1, c2 m1, ..., c1 m2
            for i, conversation in enumerate(conversations):
                message = Message(
                    id=new_id("message"), conversation_id=conversation.id, company_id=agent.company_id,
                    agent_id=agent.id, role="user", content=QUESTIONS[k % 2], state=PENDING,
                    created_at=start + (k * CONVERSATIONS + i) * 0.001,
                )
                await gw.store.add_user_message(message)
                queued[conversation.id].append(message.id)
        inbox = gw.gateway.inbox
        inbox.kick()

        async def all_done() -> list[Message] | None:
            users = await gw.store.find(Message, role="user")
            return users if all(m.state == DONE for m in users) else None

        users = await wait_until(all_done, timeout=60)
        assert len(users) == CONVERSATIONS * PER_CONVERSATION
        assert all(m.attempts == 1 for m in users)  # parking never counts an attempt

        replies = await gw.store.find(Message, role="assistant", order_by="created_at")
        assert sorted(r.reply_to for r in replies) == sorted(m.id for m in users)  # each answered once
        for conversation_id, ids in queued.items():
            answered = [r.reply_to for r in replies if r.conversation_id == conversation_id]
            assert answered == ids  # in the order the customer wrote

        total = CONVERSATIONS * PER_CONVERSATION
        counts = inbox.counts
        # Each message is claimed from the store about once: the churn claimed every queued
        # follow-up again every ORDER_DEFER_SECONDS while the answer before it ran.
        assert counts["claims"] <= total + 5, counts
        assert counts["parked"] <= total - CONVERSATIONS, counts
        assert counts["taken_back"] == counts["parked"], counts  # each parked one taken back here
        assert counts["order_defers"] <= 5, counts


async def test_a_refused_message_gives_its_reserved_answer_slot_back(make_settings, monkeypatch) -> None:
    # Two answer slots, no poll and no kick: only a slot reserved at POST time answers a message.
    async with running_gateway(make_settings, inbox={"poll_seconds": 600, "concurrency": 2}) as gw:
        monkeypatch.setattr(gw.gateway.inbox, "kick", lambda: None)
        agent = await create_faq_agent(gw)
        status, body, _ = await gw.request(
            "POST", "/api/chat/sessions", json_body={"companyId": agent.company_id, "agentId": agent.id})
        assert status == 201, body
        sid = body["sessionId"]
        for bad in ({"content": ""}, {"content": 5}, {"attachments": "x"}, {"content": "  "}):
            status, _, _ = await gw.request("POST", f"/api/chat/{sid}/message", json_body=bad)
            assert status == 400
        status, body, _ = await gw.request("POST", f"/api/chat/{sid}/message", json_body={"content": QUESTIONS[0]})
        assert status == 202, body

        async def answered() -> Message | None:
            stored = await gw.store.get(Message, body["messageId"])
            return stored if stored is not None and stored.state == DONE else None

        done = await wait_until(answered, timeout=10)
        assert done.attempts == 1 and done.lease_owner == gw.gateway.node_id
        assert gw.gateway.inbox.counts["claims"] == 1  # claimed when stored: no claim round trip
