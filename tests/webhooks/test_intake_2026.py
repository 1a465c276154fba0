"""Issue 11, the intake: receipts, chat moves, chats known by two ids, edits, drops and the body limit,
over HTTP against a running gateway with payloads signed and shaped as the platforms send them.

Platform facts (docs/channels.md): WhatsApp username users and BSUIDs (Meta: business-scoped-user-ids),
edit webhooks (Meta: webhooks/reference/messages/edit), statuses[] (webhooks/reference/messages/status),
payloads up to 3 MB (Meta: WhatsApp webhooks overview, "payload size"); Telegram
migrate_to_chat_id / migrate_from_chat_id (core.telegram.org/bots/api#message).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import pytest

from buzzi import clock
from buzzi.metrics import DROP_REASONS_MAX, Metrics, drop_reason
from buzzi.models import Agent, ChatAlias, Company, Conversation, Message
from tests.support.fake_meta import WA_BSUID, WA_CONTACT, WA_METADATA, WA_USERNAME_CONTACT, wa_envelope, wa_status
from tests.webhooks.kit import TG_CHAT, WA_USER, ChannelLab, Signed, channel_lab, meta_wire

MIB = 1024 * 1024


# ---------------------------------------------------------------------------- payloads

def wa_item(wamid: str, text: str, *, phone: str | None = WA_USER, bsuid: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"id": wamid, "timestamp": str(int(time.time())), "type": "text", "text": {"body": text}}
    if phone:
        item["from"] = phone
    if bsuid:
        item["from_user_id"] = bsuid
    return item


def wa_contact(*, phone: str | None, bsuid: str | None) -> dict[str, Any]:
    if phone is None:
        return WA_USERNAME_CONTACT
    return {**WA_CONTACT, "wa_id": phone, **({"user_id": bsuid} if bsuid else {})}


def wa_signed(lab: ChannelLab, *values: dict[str, Any]) -> Signed:
    return lab.sign("whatsapp", meta_wire(wa_envelope(*values)))


def wa_text(lab: ChannelLab, wamid: str, text: str, *, phone: str | None = WA_USER, bsuid: str | None = None
            ) -> Signed:
    return wa_signed(lab, {"metadata": WA_METADATA, "contacts": [wa_contact(phone=phone, bsuid=bsuid)],
                           "messages": [wa_item(wamid, text, phone=phone, bsuid=bsuid)]})


def wa_edit(lab: ChannelLab, wamid: str, original: str, text: str) -> Signed:
    """An edit webhook as Meta's edit reference shows it (type "edit", edit.original_message_id)."""
    item = {"from": WA_USER, "id": wamid, "timestamp": str(int(time.time())), "type": "edit",
            "edit": {"original_message_id": original, "message": {"type": "text", "text": {"body": text}}}}
    return wa_signed(lab, {"metadata": WA_METADATA, "contacts": [WA_CONTACT], "messages": [item]})


def tg_update(update_id: int, message: dict[str, Any]) -> bytes:
    return json.dumps({"update_id": update_id, "message": {"date": int(time.time()), **message}}).encode()


def tg_group_message(update_id: int, chat_id: int, text: str, *, chat_type: str = "group") -> bytes:
    return tg_update(update_id, {
        "message_id": update_id, "text": text,
        "from": {"id": TG_CHAT, "is_bot": False, "first_name": "Ann"},
        "chat": {"id": chat_id, "type": chat_type, "title": "Support group"}})


async def drops_metric(lab: ChannelLab, channel: str, reason: str) -> float:
    _, text, _ = await lab.gw.request("GET", "/metrics")
    pattern = rf'^buzzi_webhook_drops_total{{channel="{channel}",reason="{reason}"}} (\S+)$'
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


async def last_event_detail(lab: ChannelLab, channel: str) -> str:
    return (await lab.events(channel))[-1].detail


async def user_messages(lab: ChannelLab, channel: str) -> list[Message]:
    return await lab.messages(channel, role="user")


# ---------------------------------------------------------------------------- edits

async def test_an_edit_is_recorded_on_the_original_and_not_answered_again(lab: ChannelLab) -> None:
    original = "wamid.EDIT-ORIGINAL-1"
    assert (await lab.post("whatsapp", wa_text(lab, original, "Does it come in red?")))[:2] == (200, {"status": "ok"})
    await lab.replies("whatsapp")

    edit = wa_edit(lab, "wamid.EDIT-1", original, "Does it come in another color?")
    assert (await lab.post("whatsapp", edit))[:2] == (200, {"status": "ok"})
    (stored,) = await user_messages(lab, "whatsapp")  # nothing new stored
    assert stored.channel_message_id == original and stored.content == "Does it come in red?"
    (recorded,) = stored.metadata["edits"]
    assert recorded["id"] == "wamid.EDIT-1" and recorded["text"] == "Does it come in another color?"
    assert isinstance(recorded["at"], float)
    assert "dropped: edit_recorded=1" in await last_event_detail(lab, "whatsapp")
    assert (await lab.events("whatsapp"))[-1].outcome == "ok"
    assert await drops_metric(lab, "whatsapp", "edit_recorded") == 1

    # Meta redelivers the same edit: recorded once, answered as a duplicate.
    assert (await lab.post("whatsapp", edit))[:2] == (200, {"status": "duplicate"})
    assert len((await lab.gw.store.get(Message, stored.id)).metadata["edits"]) == 1
    # A later question is answered after anything stored before it: still one answer per question.
    assert (await lab.post("whatsapp", wa_text(lab, "wamid.EDIT-AFTER", "Do you ship?")))[0] == 200
    await lab.replies("whatsapp", 2)
    assert len(lab.sends("whatsapp")) == 2 and len(await user_messages(lab, "whatsapp")) == 2


async def test_an_edit_recorded_while_its_message_is_answered_survives_the_outcome(lab: ChannelLab) -> None:
    """The processor finishes a message with a note (here a failure) from the copy it claimed; an
    edit recorded meanwhile must still be on the message afterwards."""
    from buzzi.processing import Outcome
    original = "wamid.EDIT-RACE-1"
    await lab.gw.gateway.inbox.stop(0)  # this test answers the message itself, as a node would
    assert (await lab.post("whatsapp", wa_text(lab, original, "Is it in stock?")))[0] == 200
    (stored,) = await user_messages(lab, "whatsapp")
    processor = lab.gw.gateway.processor
    claimed = await lab.gw.store.claim_message(stored.id, processor.node_id, 30)
    assert claimed is not None

    edit = wa_edit(lab, "wamid.EDIT-RACE-2", original, "Is it in stock in blue?")
    assert (await lab.post("whatsapp", edit))[0] == 200
    await processor._finish(claimed, Outcome.failed("agent error: test"))

    finished = await lab.gw.store.get(Message, stored.id)
    assert finished.state == "failed" and finished.metadata["error"] == "agent error: test"
    assert [e["id"] for e in finished.metadata["edits"]] == ["wamid.EDIT-RACE-2"]


def tg_edit(original: dict[str, Any], update_id: int, text: str) -> bytes:
    edited = {**original, "text": text, "edit_date": int(time.time())}
    return json.dumps({"update_id": update_id, "edited_message": edited}).encode()


def slack_edit(channel: str, ts: str, old: str, new: str) -> bytes:
    """message_changed as Slack sends it (docs.slack.dev/reference/events/message/message_changed)."""
    user = "W021FGA1Z"
    event = {"type": "message", "subtype": "message_changed", "channel": channel, "channel_type": "channel",
             "hidden": True, "ts": "1515449999.000200", "event_ts": "1515449999.000200",
             "message": {"type": "message", "user": user, "text": new, "ts": ts,
                         "edited": {"user": user, "ts": "1515449999.000000"}},
             "previous_message": {"type": "message", "user": user, "text": old, "ts": ts}}
    return json.dumps({"token": "ZZZZZZWSxiZZZ2yIvs3peJ", "team_id": "T061EG9R6", "api_app_id": "A0MDYCDME",
                       "event": event, "type": "event_callback", "event_id": "Ev0EDIT0001",
                       "event_time": 1515449999}).encode()


@pytest.mark.parametrize("channel", ["telegram", "slack"])
async def test_edits_on_other_channels_are_recorded_not_answered(lab: ChannelLab, channel: str) -> None:
    original = lab.message(channel, "Does it come in red?")
    assert (await lab.post(channel, original))[:2] == (200, {"status": "ok"})
    await lab.replies(channel)
    if channel == "telegram":
        sent = json.loads(original.body)["message"]
        edit = tg_edit(sent, sent["message_id"] + 50_000, "Does it come in another color?")
    else:
        channel_id, ts = original.message_id.split(":", 1)
        edit = slack_edit(channel_id, ts, "<@U0LAN0Z89> Does it come in red?",
                          "<@U0LAN0Z89> Does it come in another color?")
    assert (await lab.post(channel, lab.sign(channel, edit)))[:2] == (200, {"status": "ok"})
    (stored,) = await user_messages(lab, channel)
    assert stored.channel_message_id == original.message_id and stored.content == "Does it come in red?"
    (recorded,) = stored.metadata["edits"]
    assert recorded["text"].endswith("Does it come in another color?")  # Slack may keep the mention
    assert await drops_metric(lab, channel, "edit_recorded") == 1


async def test_an_edit_of_an_unknown_message_is_answered_as_a_new_one(lab: ChannelLab) -> None:
    edit = wa_edit(lab, "wamid.EDIT-2", "wamid.NEVER-SEEN", "Does it come in another color?")
    assert (await lab.post("whatsapp", edit))[:2] == (200, {"status": "ok"})
    (stored,) = await user_messages(lab, "whatsapp")
    assert stored.channel_message_id == "wamid.EDIT-2" and stored.metadata["editOf"] == "wamid.NEVER-SEEN"
    (reply,) = await lab.replies("whatsapp")
    assert reply.content and await drops_metric(lab, "whatsapp", "edit_recorded") == 0


async def test_answer_edits_is_an_agent_setting_that_answers_edits_again(lab: ChannelLab) -> None:
    token = await lab.gw.login()
    path = f"/api/admin/companies/{lab.company.id}/agents/{lab.agent.id}"
    settings = {**lab.agent.settings, "answerEdits": "yes"}
    status, body, _ = await lab.gw.request("PATCH", path, json_body={"settings": settings}, token=token)
    assert (status, body.get("field")) == (400, "settings.answerEdits")
    status, body, _ = await lab.gw.request("PATCH", path, json_body={"settings": {**settings, "answerEdits": True}},
                                           token=token)
    assert status == 200 and body["settings"]["answerEdits"] is True
    assert (await lab.gw.store.get(Agent, lab.agent.id)).settings["answerEdits"] is True

    # Telegram: an edited_message names its original by the same (chat, message_id) key.
    original = tg_update(20001, {"message_id": 77, "text": "Does it come in red?",
                                 "from": {"id": TG_CHAT, "is_bot": False, "first_name": "Ann"},
                                 "chat": {"id": TG_CHAT, "type": "private"}})
    edited = json.dumps({"update_id": 20002, "edited_message": {
        "message_id": 77, "date": int(time.time()) - 5, "edit_date": int(time.time()),
        "text": "Does it come in another color?", "from": {"id": TG_CHAT, "is_bot": False, "first_name": "Ann"},
        "chat": {"id": TG_CHAT, "type": "private"}}}).encode()
    assert (await lab.post("telegram", lab.sign("telegram", original)))[:2] == (200, {"status": "ok"})
    await lab.replies("telegram")
    assert (await lab.post("telegram", lab.sign("telegram", edited)))[:2] == (200, {"status": "ok"})
    await lab.replies("telegram", 2)
    stored = await user_messages(lab, "telegram")
    assert [m.content for m in stored] == ["Does it come in red?", "Does it come in another color?"]
    assert stored[1].metadata["editOf"] == stored[0].channel_message_id and "edits" not in stored[0].metadata
    assert len(lab.sends("telegram")) == 2


# ---------------------------------------------------------------------------- one customer, two ids

@pytest.mark.parametrize("order", ["phone_disappears", "phone_appears"])
async def test_a_whatsapp_customer_keeps_one_conversation_when_the_phone_number_comes_or_goes(
        lab_on_each_store: ChannelLab, order: str) -> None:
    lab = lab_on_each_store
    with_phone = {"phone": WA_USER, "bsuid": WA_BSUID}
    without = {"phone": None, "bsuid": WA_BSUID}
    steps = [with_phone, without, with_phone] if order == "phone_disappears" else [without, with_phone, without]
    for n, who in enumerate(steps, start=1):
        signed = wa_text(lab, f"wamid.ALIAS-{order}-{n}", "Does it come in another color?", **who)
        assert (await lab.post("whatsapp", signed))[:2] == (200, {"status": "ok"})
        await lab.replies("whatsapp", n)
        conversation = await lab.conversation("whatsapp")  # asserts there is exactly one
        # Replies go to the id the latest message came from: the phone when shown, else the BSUID.
        assert conversation.external_chat_id == (who["phone"] or WA_BSUID)
        sent = lab.sends("whatsapp")[-1]
        assert (sent.get("to"), sent.get("recipient")) == ((WA_USER, None) if who["phone"] else (None, WA_BSUID))
    assert conversation.message_count == 6  # three questions, three answers
    assert conversation.last_inbound_at is not None and conversation.last_inbound_at <= clock.now()
    other = WA_BSUID if conversation.chat_key == f"{lab.hooks['whatsapp'].id}:{WA_USER}" else WA_USER
    alias = await lab.gw.store.get(ChatAlias, f"{lab.hooks['whatsapp'].id}:{other}")
    assert alias is not None and alias.conversation_id == conversation.id


async def test_last_inbound_at_follows_every_stored_customer_message(lab: ChannelLab) -> None:
    before = clock.now()
    assert (await lab.post("custom", lab.message("custom")))[:2] == (200, {"status": "ok"})
    first = (await lab.conversation("custom")).last_inbound_at
    assert first is not None and first >= before
    await lab.replies("custom")
    assert (await lab.conversation("custom")).last_inbound_at == first  # our reply is not the customer's
    assert (await lab.post("custom", lab.message("custom")))[:2] == (200, {"status": "ok"})
    conversation = await lab.conversation("custom")
    assert conversation.last_inbound_at > first and conversation.last_inbound_at == conversation.last_message_at


# ---------------------------------------------------------------------------- Telegram chat moves

async def test_a_telegram_group_that_becomes_a_supergroup_keeps_its_conversation(lab_on_each_store: ChannelLab
                                                                                 ) -> None:
    lab = lab_on_each_store
    old, new = -4001234567, -1004001234567
    assert (await lab.post("telegram", lab.sign("telegram", tg_group_message(30001, old, "Hello"))))[0] == 200
    await lab.replies("telegram")
    before = await lab.conversation("telegram")

    # The old group announces the move (migrate_to_chat_id), then the supergroup does (migrate_from_chat_id).
    moved = tg_update(30002, {"message_id": 30002, "chat": {"id": old, "type": "group", "title": "Support group"},
                              "from": {"id": TG_CHAT, "is_bot": False, "first_name": "Ann"},
                              "migrate_to_chat_id": new})
    assert (await lab.post("telegram", lab.sign("telegram", moved)))[:2] == (200, {"status": "ok"})
    again = tg_update(30003, {"message_id": 1, "chat": {"id": new, "type": "supergroup", "title": "Support group"},
                              "from": {"id": TG_CHAT, "is_bot": False, "first_name": "Ann"},
                              "migrate_from_chat_id": old})
    assert (await lab.post("telegram", lab.sign("telegram", again)))[:2] == (200, {"status": "ok"})
    conversation = await lab.conversation("telegram")
    assert conversation.id == before.id
    assert (conversation.chat_key, conversation.external_chat_id) == (f"{lab.hooks['telegram'].id}:{new}", str(new))
    assert conversation.meta["migratedFrom"] == str(old)
    details = [e.detail for e in await lab.events("telegram")]
    assert f"chat moved: {old} -> {new}" in details[1] and "dropped: chat_migrated=1" in details[1]

    # The supergroup's messages join the same conversation and are answered there.
    signed = lab.sign("telegram", tg_group_message(30004, new, "Still there?", chat_type="supergroup"))
    assert (await lab.post("telegram", signed))[:2] == (200, {"status": "ok"})
    await lab.replies("telegram", 2)
    assert (await lab.conversation("telegram")).id == before.id
    assert lab.sends("telegram")[-1]["chat_id"] in (new, str(new))


# ---------------------------------------------------------------------------- receipts

async def _answered_on_whatsapp(lab: ChannelLab) -> Message:
    assert (await lab.post("whatsapp", lab.message("whatsapp")))[:2] == (200, {"status": "ok"})
    (reply,) = await lab.replies("whatsapp")
    assert reply.delivery["ids"] == ["wamid.OUTBOUND"]
    return reply


async def test_a_delivery_of_receipts_only_is_applied_before_the_200(lab: ChannelLab) -> None:
    reply = await _answered_on_whatsapp(lab)
    receipts = wa_signed(lab, {"metadata": WA_METADATA, "statuses": [wa_status("wamid.OUTBOUND", "delivered"),
                                                                      wa_status("wamid.SOMEONE-ELSES", "read")]})
    assert (await lab.post("whatsapp", receipts))[:2] == (200, {"status": "ok"})
    # Applied before the answer: no waiting needed.
    assert (await lab.gw.store.get(Message, reply.id)).delivery["status"] == "delivered"
    detail = await last_event_detail(lab, "whatsapp")
    assert "receipts: 2 (1 applied)" in detail and "dropped: receipt=2" in detail
    assert await drops_metric(lab, "whatsapp", "receipt") == 2
    assert await lab.gw.store.count(Message, role="user") == 1


async def test_receipts_during_a_store_outage_get_503_and_apply_on_redelivery(lab: ChannelLab) -> None:
    reply = await _answered_on_whatsapp(lab)
    receipts = wa_signed(lab, {"metadata": WA_METADATA, "statuses": [wa_status("wamid.OUTBOUND", "read")]})
    await lab.gw.store.close()
    try:
        assert (await lab.post("whatsapp", receipts))[:2] == (503, {"error": "Unavailable"})
    finally:
        await lab.gw.store.open()
    assert (await lab.gw.store.get(Message, reply.id)).delivery["status"] == "sent"
    assert (await lab.post("whatsapp", receipts))[:2] == (200, {"status": "ok"})
    assert (await lab.gw.store.get(Message, reply.id)).delivery["status"] == "read"


# ---------------------------------------------------------------------------- drops

async def test_every_dropped_event_is_named_in_the_log_and_counted(lab: ChannelLab) -> None:
    reaction = {"from": WA_USER, "id": "wamid.REACTION-1", "timestamp": str(int(time.time())), "type": "reaction",
                "reaction": {"message_id": "wamid.X", "emoji": "\U0001f44d"}}
    batch = wa_signed(
        lab,
        {"metadata": WA_METADATA, "contacts": [WA_CONTACT],
         "messages": [reaction, wa_item("wamid.DROPS-1", "Does it come in another color?")]},
        {"metadata": WA_METADATA, "statuses": [wa_status("wamid.A", "sent"), wa_status("wamid.B", "delivered")]},
    )
    assert (await lab.post("whatsapp", batch))[:2] == (200, {"status": "ok"})
    (event,) = await lab.events("whatsapp")
    assert event.outcome == "ok" and len(event.message_ids) == 1
    assert event.detail.endswith("dropped: reaction=1, receipt=2")
    assert await drops_metric(lab, "whatsapp", "reaction") == 1
    assert await drops_metric(lab, "whatsapp", "receipt") == 2


async def test_an_inactive_subscription_is_a_counted_drop(lab: ChannelLab) -> None:
    await lab.gw.store.update(Company, lab.company.id, {"subscription_status": "past_due"})
    assert (await lab.post("custom", lab.message("custom")))[:2] == (200, {"status": "ignored"})
    (event,) = await lab.events("custom")
    assert event.outcome == "ignored" and "dropped: subscription_inactive=1" in event.detail
    assert await drops_metric(lab, "custom", "subscription_inactive") == 1
    assert await lab.gw.store.count(Message) == 0


def test_drop_reasons_become_bounded_labels() -> None:
    assert drop_reason("bot_message") == "bot_message"
    for bad in ("Receipt", "has space", "x" * 41, "émoji", "", "1st", None, 3):
        assert drop_reason(bad) == "other"
    metrics = Metrics()
    metrics.count_drops("slack", {f"reason_{n}": 1 for n in range(DROP_REASONS_MAX + 10)})
    metrics.count_drops("slack", {"Not A Reason": 2})
    labels = {s.labels["reason"]: s.value for m in metrics.webhook_drops.collect() for s in m.samples
              if s.name.endswith("_total")}
    assert len(labels) == DROP_REASONS_MAX + 1  # the first ones seen, then "other"
    assert labels["other"] == 10 + 2 and labels["reason_0"] == 1


# ---------------------------------------------------------------------------- body limit

async def test_a_3_5_mb_whatsapp_batch_is_stored_by_default(make_settings) -> None:
    async with channel_lab(make_settings) as lab:
        assert lab.gw.gateway.settings.webhooks.max_body_bytes == 4 * MIB
        text = "Does it come in another color? " * 11_300  # ~350 KB each: ten make one Meta-sized batch
        items = [wa_item(f"wamid.BIG-{n}", text) for n in range(10)]
        signed = wa_signed(lab, {"metadata": WA_METADATA, "contacts": [WA_CONTACT], "messages": items})
        assert 3.4 * 10**6 < len(signed.body) < 4 * MIB
        assert (await lab.post("whatsapp", signed))[:2] == (200, {"status": "ok"})
        stored = await user_messages(lab, "whatsapp")
        assert sorted(m.channel_message_id for m in stored) == sorted(f"wamid.BIG-{n}" for n in range(10))
        assert all(m.content == text for m in stored)


async def test_a_body_over_the_limit_gets_413(lab: ChannelLab) -> None:
    # Just over the limit (within the transport's headroom): the intake refuses it and logs it.
    body = b'{"object":"whatsapp_business_account","entry":[]}'.ljust(4 * MIB + 1, b" ")
    assert (await lab.post("whatsapp", lab.sign("whatsapp", body)))[:2] == (413, {"error": "Payload too large"})
    (event,) = await lab.events("whatsapp")
    assert (event.outcome, event.status_code) == ("rejected", 413)

    # Far over it: refused on the declared length, before the body is sent at all.
    host, port = lab.gw.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        head = (f"POST {lab.path('whatsapp')} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {8 * MIB}\r\n\r\n")
        writer.write(head.encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=10)
        assert status_line.startswith(b"HTTP/1.1 413")
    finally:
        writer.close()
    assert await lab.gw.store.count(Message) == 0 and await lab.gw.store.count(Conversation) == 0
