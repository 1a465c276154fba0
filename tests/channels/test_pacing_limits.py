"""Every send is paced by the platform's documented per-chat and per-account limits, which each
adapter declares and SendPacing enforces."""

from __future__ import annotations

import pytest

from buzzi.broker.memory import MemoryBroker
from buzzi.channels.pacing import SendLimits, SendPacing
from buzzi.channels.registry import ChannelRegistry
from buzzi.crypto import SecretBox
from buzzi.delivery import ReplyDelivery
from buzzi.metrics import Metrics
from buzzi.models import Conversation, Message
from buzzi.store import open_store
from tests.support.channel_factories import channel_webhook, reply_target
from tests.support.fake_telegram import FakeTelegram


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
async def registry(make_settings):
    registry = ChannelRegistry(make_settings().channels)
    yield registry
    await registry.close()


@pytest.mark.parametrize(("channel", "limits"), [
    ("telegram", SendLimits(per_chat=1.0, chat_burst=3.0, per_account=30.0)),
    ("slack", SendLimits(per_chat=1.0, chat_burst=3.0)),
    ("teams", SendLimits(per_chat=2.0, chat_burst=7.0)),
    ("whatsapp", SendLimits(per_account=80.0)),
    ("messenger", SendLimits(per_account=300.0)),
    ("instagram", SendLimits(per_account=300.0)),
])
def test_documented_limits_are_declared(registry: ChannelRegistry, channel: str, limits: SendLimits):
    assert registry.adapter(channel).send_limits == limits


@pytest.mark.parametrize(("channel", "rate", "burst"), [("slack", 1.0, 3.0), ("teams", 2.0, 7.0)])
async def test_per_chat_pacing(registry: ChannelRegistry, channel: str, rate: float, burst: float):
    adapter = registry.adapter(channel)
    clock = FakeClock()
    pacing = SendPacing(clock=clock, sleep=clock.sleep)
    webhook = channel_webhook(channel)
    for _ in range(int(burst)):
        await pacing.pace(adapter, webhook, reply_target(channel, "chat-1"))
    assert clock.sleeps == []  # a burst goes out at once
    await pacing.pace(adapter, webhook, reply_target(channel, "chat-1"))
    assert clock.sleeps == [pytest.approx(1 / rate)]  # then one per 1/rate seconds
    await pacing.pace(adapter, webhook, reply_target(channel, "chat-2"))
    assert len(clock.sleeps) == 1  # another chat has its own budget


async def test_telegram_per_chat_then_bot_wide_limit(registry: ChannelRegistry):
    adapter = registry.adapter("telegram")
    clock = FakeClock()
    pacing = SendPacing(clock=clock, sleep=clock.sleep)
    webhook = channel_webhook("telegram")
    for _ in range(3):
        await pacing.pace(adapter, webhook, reply_target("telegram", "chat-0"))
    await pacing.pace(adapter, webhook, reply_target("telegram", "chat-0"))
    assert clock.sleeps == [pytest.approx(1.0)]
    clock.sleeps.clear()
    clock.now += 10  # both budgets refilled
    for i in range(31):
        await pacing.pace(adapter, webhook, reply_target("telegram", f"chat-{i}"))
    assert clock.sleeps == [pytest.approx(1 / 30)]  # 30 per second across the bot's chats


async def test_whatsapp_paces_per_business_number(registry: ChannelRegistry):
    adapter = registry.adapter("whatsapp")
    clock = FakeClock()
    pacing = SendPacing(clock=clock, sleep=clock.sleep)
    webhook = channel_webhook("whatsapp", credentials={"phoneNumberId": "1065"})
    for i in range(80):
        await pacing.pace(adapter, webhook, reply_target("whatsapp", f"chat-{i}"))
    assert clock.sleeps == []
    await pacing.pace(adapter, webhook, reply_target("whatsapp", "chat-x", meta={"phone_number_id": "2077"}))
    assert clock.sleeps == []  # another number of the same app has its own budget
    await pacing.pace(adapter, webhook, reply_target("whatsapp", "chat-y"))
    assert clock.sleeps == [pytest.approx(1 / 80)]


async def test_custom_is_not_paced(registry: ChannelRegistry):
    clock = FakeClock()
    pacing = SendPacing(clock=clock, sleep=clock.sleep)
    webhook = channel_webhook("custom")
    for _ in range(100):
        await pacing.pace(registry.adapter("custom"), webhook, reply_target("custom", "chat-1"))
    assert clock.sleeps == []


async def test_the_delivery_path_paces_every_part(make_settings, tmp_path):
    async with FakeTelegram() as telegram:
        settings = make_settings(channels={"telegram_api_base": telegram.url}).channels
        store = open_store(f"sqlite:///{tmp_path / 'pacing.sqlite3'}", SecretBox("k" * 32))
        await store.open()
        registry = ChannelRegistry(settings)
        clock = FakeClock()
        registry.pacing = SendPacing(clock=clock, sleep=clock.sleep)
        try:
            hook = channel_webhook("telegram", secret="s3cret", credentials={"botToken": "123456:ABC-DEF_ghi"})
            conversation = Conversation(id="cv_1", company_id="c_1", agent_id="a_1", channel="telegram",
                                        webhook_id=hook.id, external_chat_id="42")
            reply = Message(id="m_out", conversation_id="cv_1", company_id="c_1", agent_id="a_1", role="assistant",
                            content="\n\n".join(f"part {n} " + "word " * 600 for n in range(5)), channel="telegram")
            await store.add(hook)
            await store.add(reply)
            delivery = ReplyDelivery(store, registry, settings, Metrics(), MemoryBroker(make_settings().broker))
            assert await delivery.deliver(conversation, reply, None)
            assert len(telegram.calls("/sendMessage")) == 5
            assert clock.sleeps == [pytest.approx(1.0), pytest.approx(1.0)]  # a burst of 3, then 1 per second
        finally:
            await registry.close()
            await store.close()
