"""Adapters pace sends to the platforms' documented per-chat and per-bot limits."""

from __future__ import annotations

import pytest

from buzzi.channels.base import ReplyTarget
from buzzi.channels.pacing import Pacer
from buzzi.channels.registry import ChannelRegistry
from buzzi.models import Conversation, Webhook


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def target(chat: str) -> ReplyTarget:
    return ReplyTarget(Conversation(id="cv", company_id="c", agent_id="a", channel="telegram", external_chat_id=chat))


@pytest.mark.parametrize(("channel", "rate", "burst"), [("telegram", 1.0, 3.0), ("slack", 1.0, 3.0),
                                                         ("teams", 2.0, 7.0)])
async def test_per_chat_pacing(make_settings, channel: str, rate: float, burst: float):
    registry = ChannelRegistry(make_settings().channels)
    adapter = registry.adapter(channel)
    clock = FakeClock()
    adapter.chat_pacer = Pacer(adapter.chat_rate, adapter.chat_burst, clock=clock, sleep=clock.sleep)
    adapter.bot_pacer = None
    webhook = Webhook(id="wh_1", company_id="c", agent_id="a", channel=channel)
    assert (adapter.chat_rate, adapter.chat_burst) == (rate, burst)
    for _ in range(int(burst)):
        await adapter.pace(webhook, target("chat-1"))
    assert clock.sleeps == []  # a burst goes out at once
    await adapter.pace(webhook, target("chat-1"))
    assert clock.sleeps == [pytest.approx(1 / rate)]  # then one per 1/rate seconds
    await adapter.pace(webhook, target("chat-2"))
    assert len(clock.sleeps) == 1  # another chat has its own budget
    await registry.close()


async def test_telegram_bot_wide_limit(make_settings):
    registry = ChannelRegistry(make_settings().channels)
    adapter = registry.adapter("telegram")
    clock = FakeClock()
    adapter.chat_pacer = None
    adapter.bot_pacer = Pacer(adapter.bot_rate, clock=clock, sleep=clock.sleep)
    webhook = Webhook(id="wh_1", company_id="c", agent_id="a", channel="telegram")
    for i in range(31):
        await adapter.pace(webhook, target(f"chat-{i}"))
    assert clock.sleeps == [pytest.approx(1 / 30)]
    await registry.close()
