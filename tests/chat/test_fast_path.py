"""A chat message is answered by the node that stored it at once (InboxWorker.take), without
waiting for a wake-up or the poll of the claim loop."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from buzzi.broker.base import BrokerUnavailable
from buzzi.models import DONE, Message
from tests.chat.conftest import create_faq_agent, new_session
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.waiting import wait_until


@pytest.fixture
async def sleepy(make_settings, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningGateway]:
    # The claim loop would only look again after ten minutes, and no wake-up ever reaches it.
    async with running_gateway(make_settings, inbox={"poll_seconds": 600}) as running:
        async def no_wakeup() -> None:
            raise BrokerUnavailable("wake-ups lost")

        monkeypatch.setattr(running.gateway.broker, "notify_inbox", no_wakeup)
        monkeypatch.setattr(running.gateway.inbox, "kick", lambda: None)
        yield running


async def test_the_storing_node_answers_at_once(sleepy: RunningGateway) -> None:
    agent = await create_faq_agent(sleepy)
    sid = (await new_session(sleepy, agent))["sessionId"]
    for question in ("What are your opening hours?", "Can I return items?"):
        status, body, _ = await sleepy.request("POST", f"/api/chat/{sid}/message", json_body={"content": question})
        assert status == 202, body

        async def answered(message_id: str = body["messageId"]) -> Message | None:
            stored = await sleepy.store.get(Message, message_id)
            return stored if stored is not None and stored.state == DONE else None

        done = await wait_until(answered, timeout=5)
        assert done.attempts == 1 and done.lease_until is None
    replies = await sleepy.store.find(Message, role="assistant", order_by="created_at")
    assert ["Monday to Friday" in replies[0].content, "30 days" in replies[1].content] == [True, True]
