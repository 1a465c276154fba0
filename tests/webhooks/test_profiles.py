"""Messenger and Instagram webhooks carry only a page-scoped id: the customer's name is looked up
once from the Graph and put on the conversation, without holding up the answer."""

from __future__ import annotations

import pytest

from tests.support.fake_meta import GRAPH_PREFIX, Reply
from tests.support.waiting import wait_until
from tests.webhooks.kit import IGSID, PSID, ChannelLab

PROFILES = {
    "messenger": (PSID, "first_name,last_name", {"first_name": "Ana", "last_name": "Lee", "id": PSID},
                  {"id": PSID, "name": "Ana Lee"}),
    "instagram": (IGSID, "name,username", {"username": "ana.shop", "id": IGSID},
                  {"id": IGSID, "name": "ana.shop", "username": "ana.shop"}),
}


@pytest.mark.parametrize("channel", sorted(PROFILES))
async def test_the_customer_name_is_looked_up_once(lab: ChannelLab, channel: str) -> None:
    sender, fields, answer, customer = PROFILES[channel]
    path = f"{GRAPH_PREFIX}/{sender}"
    lab.graph.always("GET", path, Reply(200, answer))
    assert (await lab.post(channel, lab.message(channel, "hello")))[:2] == (200, {"status": "ok"})

    async def named() -> dict | None:
        conversation = await lab.conversation(channel)
        return conversation.customer if conversation.customer.get("name") else None

    assert await wait_until(named) == customer
    (asked,) = lab.graph.to(path)
    assert asked.method == "GET" and asked.query == {"fields": fields}
    assert asked.headers["authorization"].startswith("Bearer ") and "access_token" not in asked.query

    assert (await lab.post(channel, lab.message(channel, "again")))[:2] == (200, {"status": "ok"})
    await lab.replies(channel, 2)
    assert len(lab.graph.to(path)) == 1  # the name is known: not asked again
    assert (await lab.conversation(channel)).customer == customer


async def test_a_failed_lookup_neither_blocks_the_answer_nor_repeats(lab: ChannelLab) -> None:
    path = f"{GRAPH_PREFIX}/{PSID}"
    lab.graph.always("GET", path, Reply(400, {"error": {"message": "no permission", "code": 10}}))
    for text in ("hello", "anyone?"):
        assert (await lab.post("messenger", lab.message("messenger", text)))[:2] == (200, {"status": "ok"})
    await lab.replies("messenger", 2)
    await wait_until(lambda: lab.graph.to(path))
    assert len(lab.graph.to(path)) == 1  # not asked again for an hour
    assert "name" not in (await lab.conversation("messenger")).customer


async def test_channels_with_names_in_the_webhook_ask_nobody(lab: ChannelLab) -> None:
    assert (await lab.post("whatsapp", lab.message("whatsapp", "hi")))[:2] == (200, {"status": "ok"})
    await lab.replies("whatsapp")
    assert [r for r in lab.graph.requests if r.method == "GET"] == []
    assert (await lab.conversation("whatsapp")).customer.get("name")
