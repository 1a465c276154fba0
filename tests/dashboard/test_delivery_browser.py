"""Issue 11 in real headless Chromium: an admin watching a WhatsApp conversation sees a reply's badge
go from "✓ sent" to "✓✓ delivered" to "read" as delivery notifications arrive on the conversation's
stream, without reloading the page; the header tells the window's state."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from playwright.async_api import Page, expect

from buzzi.chat import conversation_stream
from buzzi.ids import new_id
from buzzi.models import Conversation, Message
from tests.admin.helpers import WHATSAPP, create_agent, create_company, create_webhook
from tests.dashboard.test_live_browser import log_in
from tests.support.browser import browser_fixture, page_fixture  # noqa: F401 - fixtures for this module
from tests.support.gateway import RunningGateway, running_gateway

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]  # the browser's loop


@pytest_asyncio.fixture(loop_scope="module")
async def gw(make_settings) -> AsyncIterator[RunningGateway]:
    async with running_gateway(make_settings) as running:
        yield running


async def whatsapp_reply(gw: RunningGateway) -> tuple[Conversation, Message]:
    token = await gw.login()
    cid = (await create_company(gw, token))["id"]
    aid = (await create_agent(gw, token, cid))["id"]
    hook = await create_webhook(gw, token, cid, aid, WHATSAPP)
    now = time.time()
    conversation = await gw.store.add(Conversation(
        id=new_id("conversation"), company_id=cid, agent_id=aid, channel="whatsapp", webhook_id=hook["id"],
        external_chat_id="15551234567", chat_key=f"{hook['id']}:15551234567", customer={"name": "Maya"},
        last_message_at=now - 60, last_inbound_at=now - 60))
    reply = await gw.store.add(Message(
        id=new_id("message"), conversation_id=conversation.id, company_id=cid, agent_id=aid, role="assistant",
        content="Your order ships today.", channel="whatsapp", webhook_id=hook["id"],
        delivery={"status": "sent", "attempts": 1, "ids": ["wamid.HBgL"], "parts": 1, "sentParts": 1}))
    return conversation, reply


async def receipt(gw: RunningGateway, conversation: Conversation, reply: Message, status: str) -> None:
    """What the receipts service does for a WhatsApp status: store the new state, then tell watchers."""
    delivery = {**reply.delivery, "status": status, "receipts": {"wamid.HBgL": status}}
    await gw.store.update(Message, reply.id, {"delivery": delivery})
    await gw.gateway.broker.publish(conversation_stream(conversation.id), "notification",
                                    {"type": "delivery", "data": {"messageId": reply.id, "delivery": delivery}})


async def test_receipts_turn_the_badge_without_a_reload(gw: RunningGateway, page: Page) -> None:
    conversation, reply = await whatsapp_reply(gw)
    await log_in(page, gw, f"/admin/conversations/{conversation.id}")
    await expect(page.locator("[data-live-state]")).to_have_text("live")
    await expect(page.locator("#window-state")).to_contain_text("Window open until")
    badges = page.locator(f'#messages li[data-id="{reply.id}"] [data-delivery-badges]')
    await expect(badges).to_have_text("\u2713 sent")
    await page.evaluate("window.__sameLoad = true")  # gone if the page were loaded again

    await receipt(gw, conversation, reply, "delivered")
    await expect(badges).to_have_text("\u2713\u2713 delivered")
    await receipt(gw, conversation, reply, "read")
    await expect(badges).to_contain_text("read")
    await expect(page.locator(f'#messages li[data-id="{reply.id}"]')).to_have_attribute("data-delivery", "read")

    # A permanent failure reported later shows the platform's reason in place as well.
    failed = {**reply.delivery, "status": "failed", "error": {"code": 131026, "title": "Message undeliverable",
                                                              "details": "Not a WhatsApp account"}}
    await gw.store.update(Message, reply.id, {"delivery": failed})
    await gw.gateway.broker.publish(conversation_stream(conversation.id), "notification",
                                    {"type": "delivery", "data": {"messageId": reply.id, "delivery": failed}})
    await expect(badges).to_have_text("failed: Message undeliverable (131026)")
    await expect(page.locator(f'#messages li[data-id="{reply.id}"] [data-delivery-detail]')).to_have_text(
        "Not a WhatsApp account")

    assert await page.evaluate("window.__sameLoad === true")
    assert page.watch.page_errors == [] and page.watch.dialogs == []  # type: ignore[attr-defined]
