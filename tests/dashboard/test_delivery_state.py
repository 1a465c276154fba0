"""Issue 11 in the admin API and the dashboard over HTTP: each reply's delivery (receipts, failures
with the platform's reason, scheduled resends, template and HUMAN_AGENT sends), the conversation's
messaging window, WhatsApp's re-engagement template on the webhook pages, and a webhook the gateway
disabled itself. Deliveries and inbound times are set through the store, as the delivery and intake
services leave them."""

from __future__ import annotations

import html
import re
import time
from typing import Any

from buzzi import clock
from buzzi.chat import conversation_stream
from buzzi.ids import new_id
from buzzi.models import Conversation, Message, Webhook
from tests.admin.helpers import WHATSAPP, call
from tests.admin.helpers import create_agent as api_agent
from tests.admin.helpers import create_company as api_company
from tests.admin.helpers import create_webhook as api_webhook
from tests.dashboard.client import DashboardClient
from tests.dashboard.forms import create_agent, create_company, create_whatsapp, field_error, webhook_path
from tests.dashboard.test_live_http import next_event, sse
from tests.support.gateway import RunningGateway

HOUR = 3600.0
DAY = 24 * HOUR
MESSENGER = {"channel": "messenger", "secret": "meta-app-secret-0123456789abcdef",
             "credentials": {"pageId": "1234567890", "pageAccessToken": "EAAG-page-token-1234"}}
TEMPLATE = {"name": "order_follow_up", "language": "en_US"}


async def channel_conversation(gw: RunningGateway, token: str, webhook_body: dict[str, Any],
                               last_inbound_ago: float | None) -> Conversation:
    cid = (await api_company(gw, token))["id"]
    aid = (await api_agent(gw, token, cid))["id"]
    hook = await api_webhook(gw, token, cid, aid, webhook_body)
    now = time.time()
    last = None if last_inbound_ago is None else now - last_inbound_ago
    return await gw.store.add(Conversation(
        id=new_id("conversation"), company_id=cid, agent_id=aid, channel=hook["channel"], webhook_id=hook["id"],
        external_chat_id="15551234567", chat_key=f"{hook['id']}:15551234567", customer={"name": "Maya"},
        last_message_at=last, last_inbound_at=last, created_at=now - 30 * DAY))


async def add_reply(gw: RunningGateway, conversation: Conversation, content: str, delivery: dict[str, Any],
                    role: str = "assistant") -> Message:
    return await gw.store.add(Message(
        id=new_id("message"), conversation_id=conversation.id, company_id=conversation.company_id,
        agent_id=conversation.agent_id, role=role, content=content, channel=conversation.channel,
        webhook_id=conversation.webhook_id, delivery=delivery, created_at=time.time()))


def later(seconds: float) -> float:
    return time.time() + seconds


async def replies_in_every_state(gw: RunningGateway, conversation: Conversation) -> dict[str, Message]:
    """One reply per delivery state, as the delivery service and the receipts leave them."""
    soon = later(300)
    specs: dict[str, tuple[dict[str, Any], str]] = {
        "sent": ({"status": "sent", "attempts": 1, "ids": ["wamid.S"], "parts": 1, "sentParts": 1,
                  "updatedAt": time.time()}, "assistant"),
        "delivered": ({"status": "delivered", "attempts": 1, "ids": ["wamid.D"], "receipts": {"wamid.D": "delivered"}},
                      "assistant"),
        "read": ({"status": "read", "attempts": 1, "ids": ["wamid.R"]}, "assistant"),
        "failed": ({"status": "failed", "attempts": 1, "ids": ["wamid.F"], "error": {
            "code": 131026, "title": "Message undeliverable",
            "details": "The recipient's phone number is not a WhatsApp account"}}, "assistant"),
        "old": ({"status": "failed", "attempts": 5, "ids": [], "error": "Send failed: HTTP 500", "code": 500},
                "assistant"),
        "scheduled": ({"status": "pending", "attempts": 2, "ids": [], "notBefore": soon,
                       "error": {"code": 131056, "title": "Pair rate limit hit"}}, "assistant"),
        "template": ({"status": "delivered", "attempts": 1, "ids": ["wamid.T"], "via": "template",
                      "template": TEMPLATE}, "assistant"),
        "human_agent": ({"status": "sent", "attempts": 1, "ids": ["m_mid.H"], "via": "human_agent"}, "human"),
    }
    return {name: await add_reply(gw, conversation, f"reply {name}", delivery, role)
            for name, (delivery, role) in specs.items()}


async def test_the_api_shows_each_replys_delivery(gw: RunningGateway) -> None:
    token = await gw.login()
    conversation = await channel_conversation(gw, token, WHATSAPP, HOUR)
    replies = await replies_in_every_state(gw, conversation)
    listed = await call(gw, "GET", f"/api/admin/conversations/{conversation.id}/messages", token)
    by_id = {m["id"]: m["delivery"] for m in listed}
    shown = {name: by_id[reply.id] for name, reply in replies.items()}

    assert shown["sent"] == {"status": "sent", "attempts": 1, "ids": ["wamid.S"]}
    assert shown["delivered"] == {"status": "delivered", "attempts": 1, "ids": ["wamid.D"]}
    assert shown["read"]["status"] == "read"
    assert shown["failed"] == {"status": "failed", "attempts": 1, "ids": ["wamid.F"], "error": {
        "code": 131026, "title": "Message undeliverable",
        "details": "The recipient's phone number is not a WhatsApp account"}}
    # A row from before receipts: the plain-string error in the same shape, with its stored code.
    assert shown["old"] == {"status": "failed", "attempts": 5, "ids": [],
                            "error": {"code": 500, "title": "Send failed: HTTP 500"}}
    scheduled = shown["scheduled"]
    assert scheduled["status"] == "pending" and scheduled["error"] == {"code": 131056, "title": "Pair rate limit hit"}
    assert abs(clock.parse_iso(scheduled["notBefore"]) - replies["scheduled"].delivery["notBefore"]) < 0.01
    assert shown["template"]["via"] == "template" and shown["template"]["template"] == TEMPLATE
    assert shown["human_agent"]["via"] == "human_agent"


async def test_the_conversation_thread_words_each_state(gw: RunningGateway, owner: DashboardClient) -> None:
    token = await gw.login()
    conversation = await channel_conversation(gw, token, WHATSAPP, HOUR)
    replies = await replies_in_every_state(gw, conversation)
    page = await owner.get(f"/admin/conversations/{conversation.id}")
    assert page.status == 200

    def item(name: str) -> str:
        found = re.search(rf'<li [^>]*data-id="{replies[name].id}"[^>]*>(.*?)</li>', page.text, re.S)
        assert found, name
        return html.unescape(found.group(0))

    assert 'data-delivery="sent"' in item("sent") and "\u2713 sent" in item("sent")
    assert "\u2713\u2713 delivered" in item("delivered")
    assert "\u2713\u2713 read" in item("read")
    assert "failed: Message undeliverable (131026)" in item("failed")
    assert "The recipient's phone number is not a WhatsApp account" in item("failed")
    assert "delivery-failed" in item("failed")
    assert "failed: Send failed: HTTP 500 (500)" in item("old")
    when = time.strftime("%H:%M:%S", time.gmtime(replies["scheduled"].delivery["notBefore"]))
    assert "scheduled for " in item("scheduled") and f"{when} UTC" in item("scheduled")
    assert "Last attempt: Pair rate limit hit (131056)" in item("scheduled")
    assert "sent as template order_follow_up" in item("template")
    assert "HUMAN_AGENT" in item("human_agent") and "\u2713 sent" in item("human_agent")


async def test_the_window_is_in_the_api_and_the_page_header(gw: RunningGateway, owner: DashboardClient) -> None:
    token = await gw.login()
    cases = [  # (webhook, customer's last message this long ago, state, words)
        (MESSENGER, 2 * HOUR, "open", "Window open until "),
        (MESSENGER, 3 * DAY, "human_only", "Only a person's reply (HUMAN_AGENT) until "),
        (MESSENGER, 8 * DAY, "closed", "Window closed"),
        (WHATSAPP, 2 * HOUR, "open", "Window open until "),
        (WHATSAPP, 2 * DAY, "template_only", "Window closed, needs a template"),
    ]
    for body, ago, state, words in cases:
        conversation = await channel_conversation(gw, token, body, ago)
        shown = await call(gw, "GET", f"/api/admin/conversations/{conversation.id}", token)
        assert shown["window"]["state"] == state, (body["channel"], ago, shown["window"])
        assert abs(clock.parse_iso(shown["lastInboundAt"]) - conversation.last_inbound_at) < 0.01
        if state == "open":
            assert abs(clock.parse_iso(shown["window"]["closesAt"]) - (conversation.last_inbound_at + DAY)) < 0.01
        if state == "human_only":
            assert abs(clock.parse_iso(shown["window"]["closesAt"])
                       - (conversation.last_inbound_at + 7 * DAY)) < 0.01
        if state in ("closed", "template_only"):
            assert shown["window"]["closesAt"] is None
        page = await owner.get(f"/admin/conversations/{conversation.id}")
        header = re.search(r'<p class="window[^"]*" id="window-state"[^>]*>([^<]*)</p>', page.text)
        assert header and html.unescape(header.group(1)).startswith(words), (state, page.text[:1500])

    # With a template configured, the header says replies go out as that template.
    conversation = await channel_conversation(gw, token, {**WHATSAPP, "settings": {"reengagementTemplate": TEMPLATE}},
                                              2 * DAY)
    page = await owner.get(f"/admin/conversations/{conversation.id}")
    assert "Window closed: replies go out as template order_follow_up" in page.text

    # Web chat has no window; the listing carries the window too.
    listed = await call(gw, "GET", "/api/admin/conversations?channel=whatsapp", token)
    assert {c["window"]["state"] for c in listed} == {"open", "template_only"}


async def test_a_delivery_notification_reaches_the_live_feed_in_the_threads_words(
        gw: RunningGateway, owner: DashboardClient) -> None:
    token = await gw.login()
    conversation = await channel_conversation(gw, token, WHATSAPP, HOUR)
    reply = await add_reply(gw, conversation, "Your order ships today.",
                            {"status": "sent", "attempts": 1, "ids": ["wamid.X"]})
    async with sse(owner, f"/admin/conversations/{conversation.id}/events") as (resp, events):
        assert resp.status == 200
        first = await next_event(events, lambda e: e.event == "message" and e.data["id"] == reply.id)
        assert first.data["deliveryView"]["badges"][0]["text"] == "\u2713 sent"
        delivered = {"status": "delivered", "attempts": 1, "ids": ["wamid.X"], "receipts": {"wamid.X": "delivered"}}
        await gw.store.update(Message, reply.id, {"delivery": delivered})
        await gw.gateway.broker.publish(conversation_stream(conversation.id), "notification",
                                        {"type": "delivery", "data": {"messageId": reply.id, "delivery": delivered}})
        note = await next_event(events, lambda e: e.event == "notification")
        data = note.data["data"]
        assert data["messageId"] == reply.id
        assert data["delivery"] == {"status": "delivered", "attempts": 1, "ids": ["wamid.X"]}
        assert data["deliveryView"]["badges"][0]["text"] == "\u2713\u2713 delivered"
        again = await next_event(events, lambda e: e.event == "message" and e.data["id"] == reply.id)
        assert again.data["deliveryView"]["status"] == "delivered"


async def test_whatsapp_template_fields_on_the_webhook_pages(gw: RunningGateway, owner: DashboardClient) -> None:
    cid = await create_company(owner)
    aid = await create_agent(owner, cid)
    form = await owner.get(f"/admin/companies/{cid}/agents/{aid}/webhooks/new")
    assert 'id="set-whatsapp-reengagementTemplate-name"' in form.text
    assert 'id="set-whatsapp-reengagementTemplate-language"' in form.text
    assert 'id="set-telegram-' not in form.text  # channels without settings ask for none

    # A bad name on create: the form says which field, keeps what was typed, stores nothing.
    refused = await owner.post(f"/admin/companies/{cid}/agents/{aid}/webhooks", {
        "channel": "whatsapp", "secret-whatsapp": "meta-app-secret-0123456789abcdef",
        "cred-whatsapp-phoneNumberId": "1098765432", "cred-whatsapp-accessToken": "EAAG-access-token-secret-wxyz",
        "set-whatsapp-reengagementTemplate-name": "Bad Name!", "set-whatsapp-reengagementTemplate-language": "en_US"})
    assert refused.status == 400
    assert field_error(refused, "settings.reengagementTemplate.name")
    assert 'value="Bad Name!"' in refused.text
    assert await gw.store.find(Webhook, agent_id=aid) == []

    wid, created = await create_whatsapp(owner, cid, aid, **{
        "set-whatsapp-reengagementTemplate-name": "order_follow_up",
        "set-whatsapp-reengagementTemplate-language": "en_US"})
    assert (await gw.store.get(Webhook, wid)).settings == {"reengagementTemplate": TEMPLATE}
    assert '<dd data-setting="reengagementTemplate.name">order_follow_up</dd>' in created.text

    # Changed on the detail page; emptied, the template is removed.
    saved = await owner.post(webhook_path(cid, aid, wid), {
        "set-whatsapp-reengagementTemplate-name": "we_miss_you", "set-whatsapp-reengagementTemplate-language": "de",
        "ipAllowlist": ""})
    assert saved.status == 200 and "flash=saved" in saved.url
    assert (await gw.store.get(Webhook, wid)).settings == {
        "reengagementTemplate": {"name": "we_miss_you", "language": "de"}}
    assert 'value="we_miss_you"' in saved.text
    cleared = await owner.post(webhook_path(cid, aid, wid), {"set-whatsapp-reengagementTemplate-name": "",
                                                             "set-whatsapp-reengagementTemplate-language": "",
                                                             "ipAllowlist": ""})
    assert cleared.status == 200
    assert (await gw.store.get(Webhook, wid)).settings == {}


async def test_a_webhook_disabled_by_the_gateway_shows_why(gw: RunningGateway, owner: DashboardClient) -> None:
    cid = await create_company(owner)
    aid = await create_agent(owner, cid)
    wid, _ = await create_whatsapp(owner, cid, aid)
    reason = "The receiver answered 410 Gone"
    await gw.store.update(Webhook, wid, {"status": "disabled", "state": {"disabledReason": reason,
                                                                         "disabledAt": time.time()}})
    page = await owner.get(webhook_path(cid, aid, wid))
    banner = re.search(r'<div [^>]*id="disabled-reason"[^>]*>(.*?)</div>', page.text, re.S)
    assert banner and reason in banner.group(1) and "Disabled by the gateway" in banner.group(1)
    agent_page = await owner.get(f"/admin/companies/{cid}/agents/{aid}")
    assert "by the gateway" in agent_page.text

    enabled = await owner.post(webhook_path(cid, aid, wid) + "/status", {"status": "active"})
    assert enabled.status == 200 and 'id="disabled-reason"' not in enabled.text
