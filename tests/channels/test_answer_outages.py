"""A store or broker outage while a channel message is answered: the message waits for the
dependency and is answered once, never marked failed, and a stored reply always reaches the channel."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from buzzi.config import Settings
from tests.support.outage import Outage, broker_down, publishing, store_down, storing_a_reply
from tests.webhooks.kit import ANSWER, ChannelLab, Signed, channel_lab


@pytest.fixture
async def lab(make_settings: Callable[..., Settings]) -> AsyncIterator[ChannelLab]:
    async with channel_lab(make_settings) as running:
        yield running




def question(lab: ChannelLab) -> Signed:
    return lab.message("telegram", "Which colors does it come in?")


async def assert_answered_once(lab: ChannelLab, attempts: int) -> None:
    [reply] = await lab.replies("telegram")
    assert reply.content == ANSWER
    [user] = await lab.settled("telegram")
    assert user.state == "done" and user.attempts == attempts
    assert [sent["text"] for sent in lab.sends("telegram")] == [ANSWER]
    assert await lab.messages("telegram", role="system") == []  # no apology


async def test_a_store_outage_while_answering_is_retried_not_failed(lab: ChannelLab) -> None:
    with Outage(lab.gw.store, "add_message_once", store_down, when=storing_a_reply) as outage:
        status, _, _ = await lab.post("telegram", question(lab))
        assert status == 200
        await assert_answered_once(lab, attempts=2)
    assert outage.raised == 1


async def test_a_store_outage_longer_than_the_retry_budget_is_still_answered(lab: ChannelLab) -> None:
    budget = lab.gw.gateway.settings.inbox.max_attempts
    with Outage(lab.gw.store, "add_message_once", store_down, times=budget + 2, when=storing_a_reply) as outage:
        await lab.post("telegram", question(lab))
        await assert_answered_once(lab, attempts=budget)
    assert outage.raised == budget + 2


async def test_a_broker_outage_while_answering_is_retried_not_failed(lab: ChannelLab) -> None:
    with Outage(lab.gw.gateway.broker, "publish", broker_down, when=publishing("delta")) as outage:
        await lab.post("telegram", question(lab))
        await assert_answered_once(lab, attempts=2)
    assert outage.raised == 1


async def test_a_complete_event_the_broker_refuses_does_not_hold_back_the_channel_reply(lab: ChannelLab) -> None:
    with Outage(lab.gw.gateway.broker, "publish", broker_down, times=10**6, when=publishing("complete")) as outage:
        await lab.post("telegram", question(lab))
        # Only live viewers of the stream miss the event; the customer's answer is not retried for it.
        await assert_answered_once(lab, attempts=1)
    assert outage.raised == 1
