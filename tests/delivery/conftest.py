"""A delivery bench: ReplyDelivery and ReceiptBook on a real store (SQLite and MongoDB), a memory
broker, and a fake Graph API that answers each WhatsApp send with a fresh wamid, as Graph does."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from buzzi import ids
from buzzi.broker.memory import MemoryBroker
from buzzi.channels.base import Receipt
from buzzi.channels.registry import ChannelRegistry
from buzzi.chat import conversation_stream
from buzzi.crypto import SecretBox
from buzzi.delivery import ReplyDelivery
from buzzi.metrics import Metrics
from buzzi.models import Conversation, Message, Webhook
from buzzi.netguard import NetPolicy
from buzzi.receipts import ReceiptBook
from buzzi.store import Store, open_store
from tests.support.fake_meta import APP_SECRET, GRAPH_PREFIX, WA_METADATA, Recorded, Reply, ScriptedServer
from tests.webhooks.kit import ChannelLab, channel_lab

WA_NUMBER = WA_METADATA["phone_number_id"]
WA_SEND = f"{GRAPH_PREFIX}/{WA_NUMBER}/messages"
WA_USER = "16505551234"
LONG = ("word " * 900).strip()  # 4499 characters: two WhatsApp parts (4096 each at most)


@dataclass
class Bench:
    store: Store
    broker: MemoryBroker
    graph: ScriptedServer
    delivery: ReplyDelivery
    receipts: ReceiptBook
    metrics: Metrics
    webhook: Webhook
    conversation: Conversation
    _wamids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def answer_sends(self, request: Recorded) -> Reply:
        """Graph's answer to a send: a new wamid each time (docs/channels.md §2.2)."""
        wamid = f"wamid.OUT{next(self._wamids)}"
        return Reply(200, {"messaging_product": "whatsapp", "contacts": [{"input": WA_USER, "wa_id": WA_USER}],
                           "messages": [{"id": wamid}]})

    def sends(self) -> list[dict[str, Any]]:
        return [r.json() for r in self.graph.to(WA_SEND)]

    async def reply(self, content: str = "It comes in red.", *, role: str = "assistant",
                    conversation: Conversation | None = None) -> Message:
        conversation = conversation or self.conversation
        message = Message(id=ids.new_id("message"), conversation_id=conversation.id, company_id="c_1",
                          agent_id="a_1", role=role, content=content, channel=conversation.channel,
                          webhook_id=conversation.webhook_id)
        return await self.store.add(message)

    async def sent(self, content: str = "It comes in red.") -> Message:
        """A reply delivered through the fake Graph API, as stored after the send."""
        reply = await self.reply(content)
        assert await self.delivery.deliver(self.conversation, reply, None)
        return await self.get(reply)

    async def get(self, message: Message) -> Message:
        found = await self.store.get(Message, message.id)
        assert found is not None
        return found

    async def apply(self, *receipts: Receipt) -> int:
        return await self.receipts.apply(self.webhook, list(receipts))

    async def notifications(self) -> list[dict[str, Any]]:
        events = await self.broker.replay(conversation_stream(self.conversation.id), None)
        return [e.data for e in events if e.event == "notification"]


@pytest.fixture(params=["sqlite", "mongo"])
def delivery_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'delivery.sqlite3'}"
    return request.getfixturevalue("mongo_db_url")


@pytest.fixture
async def bench(delivery_store_url: str, box: SecretBox, make_settings) -> AsyncIterator[Bench]:
    async with ScriptedServer() as graph:
        settings = make_settings(channels={
            "whatsapp_api_base": graph.url + GRAPH_PREFIX, "messenger_api_base": graph.url + GRAPH_PREFIX,
            "send_backoff_base_seconds": 0.01, "send_backoff_max_seconds": 0.05,
            "send_inline_wait_seconds": 1.0, "send_max_attempts": 3,
        })
        store = open_store(delivery_store_url, box)
        await store.open()
        broker = MemoryBroker(settings.broker)
        await broker.open()
        registry = ChannelRegistry(settings.channels, net_policy=NetPolicy.from_settings(settings.security))
        metrics = Metrics()
        delivery = ReplyDelivery(store, registry, settings.channels, metrics, broker)
        webhook = await store.add(Webhook(
            id="wh_wa", company_id="c_1", agent_id="a_1", channel="whatsapp", secret=APP_SECRET,
            credentials={"phoneNumberId": WA_NUMBER, "accessToken": "EAAG-token"}))
        conversation = await store.add(Conversation(
            id="cv_wa", company_id="c_1", agent_id="a_1", channel="whatsapp", webhook_id=webhook.id,
            external_chat_id=WA_USER, chat_key=f"{webhook.id}:{WA_USER}", last_inbound_at=time.time()))
        bench = Bench(store, broker, graph, delivery, ReceiptBook(store, delivery, metrics), metrics,
                      webhook, conversation)
        graph.always("POST", WA_SEND, bench.answer_sends)
        try:
            yield bench
        finally:
            await registry.close()
            await broker.close()
            await store.close()


@pytest.fixture
async def lab(make_settings) -> AsyncIterator[ChannelLab]:
    """A running gateway wired to every fake platform (tests/webhooks/kit.py)."""
    async with channel_lab(make_settings) as running:
        yield running
