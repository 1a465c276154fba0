"""Flows across the pipeline: duplicate storms and late retries, batches, non-ASCII bytes,
outbound retries and permanent failures, and a human taking a channel conversation over."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from buzzi import clock
from buzzi.models import Message
from tests.support.fake_meta import WA_CONTACT, WA_METADATA, Reply, wa_envelope
from tests.support.fake_telegram import Answer
from tests.webhooks.kit import CHANNELS, META, WA_SEND, WA_USER, ChannelLab

TEXT = "Ça coûte combien? 🎉 naïve café, écrivez à ana@example.com — ¿sí?"


@pytest.mark.parametrize("channel", CHANNELS)
async def test_duplicate_storm_stores_and_answers_once(lab: ChannelLab, channel: str) -> None:
    signed = lab.message(channel)
    answers = await asyncio.gather(*(lab.post(channel, signed) for _ in range(6)))
    assert all(status == 200 for status, _, _ in answers)
    assert sorted(body["status"] for _, body, _ in answers) == ["duplicate"] * 5 + ["ok"]

    (reply,) = await lab.replies(channel)
    (inbound,) = await lab.settled(channel)
    assert reply.reply_to == inbound.id
    assert inbound.state == "done" and inbound.attempts == 1  # one agent run
    assert len(lab.sends(channel)) == 1

    # a channel retry that arrives after the answer went out
    assert (await lab.post(channel, signed))[:2] == (200, {"status": "duplicate"})
    assert len(await lab.messages(channel)) == 2  # the question and its one answer
    assert len(lab.sends(channel)) == 1
    outcomes = sorted(e.outcome for e in await lab.events(channel))
    assert outcomes == ["duplicate"] * 6 + ["ok"]


async def test_intake_dedupes_and_keeps_one_conversation_per_chat(lab_on_each_store: ChannelLab) -> None:
    lab = lab_on_each_store
    first = lab.message("custom", ident="1")
    answers = await asyncio.gather(*(lab.post("custom", first) for _ in range(4)))
    assert sorted(body["status"] for _, body, _ in answers) == ["duplicate"] * 3 + ["ok"]
    await lab.replies("custom")

    # The same chat again, the sender's name changed meanwhile: merged into the one conversation.
    later = {"type": "message.created", "timestamp": clock.iso(time.time()),
             "data": {"message_id": "ext-2", "chat_id": "chat-9", "sender": {"id": "u-7", "name": "Ada L."},
                      "text": "And in green?"}}
    assert (await lab.post("custom", lab.sign("custom", json.dumps(later).encode(), "ext-2")))[0] == 200
    await lab.replies("custom", 2)
    await lab.settled("custom")
    conversation = await lab.conversation("custom")
    assert conversation.customer == {"id": "u-7", "name": "Ada L."}
    assert conversation.message_count == len(await lab.messages("custom")) == 4  # two questions, two answers


@pytest.mark.parametrize("channel", CHANNELS)
async def test_non_ascii_is_verified_and_kept_intact(lab: ChannelLab, channel: str) -> None:
    signed = lab.message(channel, TEXT)
    if channel in META:  # Meta signs its escaped-unicode form (docs/channels.md §1.2)
        assert b"\\ud83c\\udf89" in signed.body and b"\\u0040" in signed.body
        decoded = json.dumps(json.loads(signed.body), ensure_ascii=False).encode()
        assert (await lab.post(channel, type(signed)(decoded, signed.headers, "")))[0] == 401
    else:
        assert "🎉".encode() in signed.body  # raw UTF-8 on the wire
    assert (await lab.post(channel, signed))[:2] == (200, {"status": "ok"})
    (inbound,) = await lab.messages(channel, role="user")
    assert inbound.content.endswith(TEXT)  # Slack keeps the text after the stripped mention
    await lab.replies(channel)


async def test_whatsapp_batch_of_two_entries_is_stored_and_answered(lab: ChannelLab) -> None:
    def item(n: int, text: str) -> dict:
        return {"from": WA_USER, "id": f"wamid.BATCH{n}", "timestamp": "1749416383", "type": "text",
                "text": {"body": text}}

    one = json.loads(wa_envelope({"metadata": WA_METADATA, "contacts": [WA_CONTACT],
                                  "messages": [item(1, "first question")]}))
    two = json.loads(wa_envelope({"metadata": WA_METADATA, "contacts": [WA_CONTACT],
                                  "messages": [item(2, "Does it come in another color?")]}))
    body = json.dumps({"object": "whatsapp_business_account",
                       "entry": [one["entry"][0], {**two["entry"][0], "id": "102290129340399"}]}).encode()
    status, answer, _ = await lab.post("whatsapp", lab.sign("whatsapp", body))
    assert (status, answer) == (200, {"status": "ok"})
    stored = await lab.messages("whatsapp", role="user")
    assert sorted(m.channel_message_id for m in stored) == ["wamid.BATCH1", "wamid.BATCH2"]
    await lab.replies("whatsapp", 2)
    await lab.settled("whatsapp")
    contexts = sorted(s["context"]["message_id"] for s in lab.sends("whatsapp"))
    assert contexts == ["wamid.BATCH1", "wamid.BATCH2"]
    (event,) = await lab.events("whatsapp")
    assert sorted(event.message_ids) == sorted(m.id for m in stored)


# ---- outbound retries

async def test_telegram_429_with_retry_after_then_delivered(lab: ChannelLab) -> None:
    limited = Answer(429, {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 1",
                           "parameters": {"retry_after": 1}})
    lab.tg.script("/sendMessage", limited, limited)
    await lab.post("telegram", lab.message("telegram"))
    (reply,) = await lab.replies("telegram")
    assert reply.delivery["attempts"] == 3 and reply.delivery["ids"]
    assert len(lab.tg.calls("/sendMessage")) == 3


async def test_whatsapp_429_then_delivered(lab: ChannelLab) -> None:
    # the typing indicator goes first on the same path; it finishes before the send starts
    lab.graph.script("POST", WA_SEND, Reply(200, {"success": True}),
                     Reply(429, {"error": {"code": 130429, "message": "Rate limit hit"}}, headers={"Retry-After": "0"}))
    await lab.post("whatsapp", lab.message("whatsapp"))
    (reply,) = await lab.replies("whatsapp")
    assert reply.delivery["attempts"] == 2 and reply.delivery["ids"] == ["wamid.OUTBOUND"]
    assert len(lab.sends("whatsapp")) == 2


async def test_whatsapp_permanent_error_is_not_retried(lab: ChannelLab) -> None:
    error = {"error": {"message": "Re-engagement message", "type": "OAuthException", "code": 131047,
                       "error_data": {"messaging_product": "whatsapp", "details": "more than 24 hours"}}}
    lab.graph.script("POST", WA_SEND, Reply(200, {"success": True}), Reply(400, error))
    await lab.post("whatsapp", lab.message("whatsapp"))
    (reply,) = await lab.replies("whatsapp", state="failed")
    assert reply.delivery["attempts"] == 1 and reply.delivery["error"]["code"] == 131047
    assert "131047" in reply.delivery["error"]["title"]
    await lab.settled("whatsapp")
    assert len(lab.sends("whatsapp")) == 1
    stored = await lab.gw.store.get(Message, reply.id)
    assert stored is not None and stored.delivery["status"] == "failed"
    await assert_admin_sees_failure(lab, reply)


async def test_telegram_blocked_bot_is_not_retried(lab: ChannelLab) -> None:
    lab.tg.script("/sendMessage", Answer(403, {"ok": False, "error_code": 403,
                                               "description": "Forbidden: bot was blocked by the user"}))
    await lab.post("telegram", lab.message("telegram"))
    (reply,) = await lab.replies("telegram", state="failed")
    assert reply.delivery["attempts"] == 1 and "blocked" in reply.delivery["error"]["title"]
    await lab.settled("telegram")
    assert len(lab.tg.calls("/sendMessage")) == 1


async def assert_admin_sees_failure(lab: ChannelLab, reply: Message) -> None:
    """What the dashboard shows: the admin API lists the reply with its failed delivery."""
    token = await lab.gw.login()
    status, body, _ = await lab.gw.request("GET", f"/api/admin/conversations/{reply.conversation_id}/messages",
                                           token=token)
    assert status == 200, body
    (shown,) = [m for m in body if m["id"] == reply.id]
    assert shown["delivery"]["status"] == "failed" and shown["delivery"]["error"]["code"] == 131047


# ---- human handover

@pytest.mark.parametrize("channel", ["telegram", "whatsapp", "teams"])
async def test_taken_over_conversation_gets_no_bot_reply_but_the_human_reply(lab: ChannelLab, channel: str) -> None:
    await lab.post(channel, lab.message(channel))
    await lab.replies(channel)
    conversation = await lab.conversation(channel)
    conversations = lab.gw.gateway.conversations
    await conversations.handover(conversation, "take", "admin")

    await lab.post(channel, lab.message(channel, "Is anyone there?"))
    users = await lab.settled(channel)
    assert [m.state for m in users] == ["done", "skipped"]
    assert len(lab.sends(channel)) == 1  # only the answer from before the takeover

    conversation = await lab.conversation(channel)
    human = await conversations.human_reply(conversation, "Hi, Lena from support here.", "admin")
    sends = lab.sends(channel)
    assert len(sends) == 2 and lab.sent_text(channel, sends[-1]) == "Hi, Lena from support here."
    stored = await lab.gw.store.get(Message, human.id)
    assert stored is not None and stored.role == "human" and stored.delivery["status"] == "sent"
