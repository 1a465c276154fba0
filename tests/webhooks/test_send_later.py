"""Retry honestly, over real HTTP: a Telegram 429 whose `parameters.retry_after` is longer than
`channels.send_inline_wait_seconds` is not slept on. The reply is stored pending with its
notBefore, the inbox sends it after that time and never before (the fake's request log says when
each call arrived), and a restart in between does not lose it."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from buzzi.config import Settings
from buzzi.models import Agent, Company, Message, Webhook
from tests.support.fake_telegram import Answer, FakeTelegram, Recorded
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.waiting import wait_until
from tests.webhooks.kit import FAQ_SETTINGS, TG_CHAT, TG_SECRET, TG_TOKEN

INLINE_WAIT = 0.5
RETRY_AFTER = 2  # Telegram gives whole seconds; longer than the inline wait


def flood_limited(seconds: int) -> Answer:
    """The Bot API's flood-control answer (ResponseParameters.retry_after)."""
    return Answer(429, {"ok": False, "error_code": 429, "description": f"Too Many Requests: retry after {seconds}",
                        "parameters": {"retry_after": seconds}})


@contextlib.asynccontextmanager
async def telegram_node(make_settings: Callable[..., Settings], tg: FakeTelegram) -> AsyncIterator[RunningGateway]:
    """A gateway on the test's SQLite file, sending to the fake Bot API; every node started this
    way in one test shares the store, like a node restarted on the same database."""
    channels = {"telegram_api_base": tg.url, "send_backoff_base_seconds": 0.01, "send_backoff_max_seconds": 0.05,
                "send_inline_wait_seconds": INLINE_WAIT}
    inbox = {"poll_seconds": 0.05, "retry_base_seconds": 0.05}
    async with running_gateway(make_settings, channels=channels, inbox=inbox) as gw:
        yield gw


async def seed(gw: RunningGateway) -> Webhook:
    company = await gw.store.add(Company(id="c_tg", name="Flood Co"))
    agent = await gw.store.add(Agent(id="a_tg", company_id=company.id, name="FAQ", kind="faq", settings=FAQ_SETTINGS))
    return await gw.store.add(Webhook(id="wh_tg", company_id=company.id, agent_id=agent.id, channel="telegram",
                                      secret=TG_SECRET, credentials={"botToken": TG_TOKEN}))


async def post_message(gw: RunningGateway, hook: Webhook, text: str = "Does it come in another color?") -> None:
    update = {"update_id": 20001, "message": {
        "message_id": 20001, "date": int(time.time()), "text": text,
        "from": {"id": TG_CHAT, "is_bot": False, "first_name": "Ann"},
        "chat": {"id": TG_CHAT, "type": "private", "first_name": "Ann"}}}
    status, body, _ = await gw.request(
        "POST", f"/api/webhooks/{hook.company_id}/{hook.agent_id}/telegram/{hook.id}",
        data=json.dumps(update).encode(),
        headers={"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": TG_SECRET})
    assert status == 200, body


async def the_reply(gw: RunningGateway, check: Callable[[Message], Any], timeout: float = 10.0) -> Message:
    async def found() -> Message | None:
        replies = await gw.store.find(Message, role="assistant")
        return replies[0] if len(replies) == 1 and check(replies[0]) else None
    return await wait_until(found, timeout=timeout)


def scheduled(reply: Message) -> bool:
    return reply.delivery.get("status") == "pending" and reply.delivery.get("notBefore") is not None


def sent(reply: Message) -> bool:
    return reply.delivery.get("status") == "sent"


def sends(tg: FakeTelegram) -> list[Recorded]:
    return tg.calls("/sendMessage")


async def test_a_long_retry_after_is_rescheduled_and_sent_after_it_never_before(make_settings) -> None:
    async with FakeTelegram() as tg, telegram_node(make_settings, tg) as gw:
        hook = await seed(gw)
        tg.script("/sendMessage", flood_limited(RETRY_AFTER))
        await post_message(gw, hook)

        waiting = await the_reply(gw, scheduled)
        not_before = waiting.delivery["notBefore"]
        assert waiting.state == "processing" and waiting.lease_owner is None and waiting.lease_until == not_before
        assert len(sends(tg)) == 1  # the refused call; nothing was slept on inline
        assert not_before >= sends(tg)[0].at + RETRY_AFTER - 0.05
        [question] = await gw.store.find(Message, role="user")
        assert question.state == "done"  # the answer exists; only its send waits

        done = await the_reply(gw, sent)
        first, second = sends(tg)
        assert second.at >= not_before and second.at - first.at >= RETRY_AFTER
        assert second.json["text"] == done.content == first.json["text"] and second.json["chat_id"] == TG_CHAT
        assert done.delivery["ids"] and "notBefore" not in done.delivery
        settled = await wait_until(lambda: _stored(gw, done.id))
        assert settled.lease_until is None


async def test_a_rescheduled_reply_survives_a_restart(make_settings) -> None:
    async with FakeTelegram() as tg:
        async with telegram_node(make_settings, tg) as first_node:
            hook = await seed(first_node)
            tg.script("/sendMessage", flood_limited(RETRY_AFTER + 1))
            await post_message(first_node, hook)
            not_before = (await the_reply(first_node, scheduled)).delivery["notBefore"]
        # the node is gone before the reply's time came
        assert time.time() < not_before and len(sends(tg)) == 1

        async with telegram_node(make_settings, tg) as second_node:
            done = await the_reply(second_node, sent)
            assert len(sends(tg)) == 2 and sends(tg)[1].at >= not_before
            assert sends(tg)[1].json["text"] == done.content == sends(tg)[0].json["text"]
            assert done.delivery["ids"] == ["501"]  # the fake numbers its accepted messages from 501
            await wait_until(lambda: _stored(second_node, done.id))


async def _stored(gw: RunningGateway, message_id: str) -> Message | None:
    message = await gw.store.get(Message, message_id)
    return message if message is not None and message.state == "stored" else None
