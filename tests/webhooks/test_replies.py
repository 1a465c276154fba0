"""Every channel end to end over real HTTP: a signed doc-shaped message is acknowledged, stored,
answered by the FAQ agent, and the reply reaches the fake platform's send API with the right
shape and target; handshakes and the Slack challenge; the delivery log with secrets redacted."""

from __future__ import annotations

import json
from urllib.parse import unquote

import pytest

from buzzi.signing import hub_signature, new_standard_secret
from tests.support.fake_custom import CALLBACK_PATH, delivery_is_signed
from tests.support.fake_meta import APP_SECRET, VERIFY_TOKEN, WA_TEXT_SAMPLE
from tests.support.waiting import wait_until
from tests.webhooks.kit import (
    CHANNELS,
    IG_ID,
    IGSID,
    META,
    PSID,
    SLACK_CHANNEL,
    TEAMS_CONVERSATION,
    TG_CHAT,
    WA_USER,
    ChannelLab,
    Signed,
)

SECRET_HEADERS = ("x-hub-signature-256", "x-telegram-bot-api-secret-token", "x-slack-signature",
                  "authorization", "webhook-signature")


def assert_target(lab: ChannelLab, channel: str, sent: dict, inbound_id: str) -> None:
    """The reply goes where the channel expects it (docs/channels.md, per channel 'Outbound')."""
    if channel == "whatsapp":
        assert sent["to"] == WA_USER and sent["messaging_product"] == "whatsapp"
        assert sent["context"] == {"message_id": inbound_id}  # quotes the message it answers
    elif channel == "messenger":
        assert sent["recipient"] == {"id": PSID}
    elif channel == "instagram":
        assert sent["recipient"] == {"id": IGSID}
    elif channel == "telegram":
        assert sent["chat_id"] == TG_CHAT and sent["parse_mode"] == "HTML"
    elif channel == "slack":
        assert sent["channel"] == SLACK_CHANNEL
        assert sent["thread_ts"] == inbound_id.split(":", 1)[1]  # in the mention's thread
    elif channel == "teams":
        assert sent["conversation"] == {"id": TEAMS_CONVERSATION}
        assert sent["replyToId"] == inbound_id
        (call,) = [r for r in lab.teams.requests if "/v3/conversations/" in r.path and r.json["type"] == "message"]
        assert unquote(call.path).endswith(f"/v3/conversations/{TEAMS_CONVERSATION}/activities/{inbound_id}")
        assert call.headers["authorization"].startswith("Bearer bf-token-")
    elif channel == "custom":
        assert sent["type"] == "message.reply"
        assert sent["data"]["chat_id"] == "chat-9" and sent["data"]["reply_to_id"] == inbound_id


def assert_custom_signed(lab: ChannelLab) -> None:
    """The callback delivery verifies as Standard Webhooks with the webhook's secret (and only it)."""
    (delivery,) = lab.callback.to(CALLBACK_PATH)
    sent_at = float(delivery.headers["webhook-timestamp"])
    assert delivery_is_signed(delivery, lab.hooks["custom"].secret or "", now=sent_at)
    assert not delivery_is_signed(delivery, new_standard_secret(), now=sent_at)


@pytest.mark.parametrize("channel", CHANNELS)
async def test_message_is_answered_on_its_channel(lab: ChannelLab, channel: str) -> None:
    signed = lab.message(channel)
    status, body, _ = await lab.post(channel, signed)
    assert (status, body) == (200, {"status": "ok"})

    (reply,) = await lab.replies(channel)
    (inbound,) = await lab.messages(channel, role="user")
    assert inbound.channel_message_id == signed.message_id
    assert inbound.content.endswith("Does it come in another color?")
    assert reply.reply_to == inbound.id and reply.content
    assert reply.delivery["attempts"] == 1 and reply.delivery["ids"]

    (sent,) = lab.sends(channel)
    text = lab.sent_text(channel, sent)
    assert text == reply.content
    assert_target(lab, channel, sent, signed.message_id)
    if channel == "custom":
        assert_custom_signed(lab)
    if channel in ("whatsapp", "telegram", "messenger", "instagram", "teams"):
        assert lab.typings(channel), f"no typing indicator on {channel}"
    await lab.settled(channel)
    assert len(lab.sends(channel)) == 1


@pytest.mark.parametrize("channel", CHANNELS)
async def test_delivery_log_records_every_request_with_secrets_redacted(lab: ChannelLab, channel: str) -> None:
    good = lab.message(channel)
    bad = Signed(good.body, {k: (v[:-4] + "AAAA" if k.lower() in SECRET_HEADERS else v)
                             for k, v in good.headers.items()}, good.message_id)
    assert (await lab.post(channel, bad))[0] == 401
    assert (await lab.post(channel, good))[0] == 200
    assert (await lab.post(channel, good))[1] == {"status": "duplicate"}
    await lab.replies(channel)

    events = await lab.events(channel)
    assert [(e.outcome, e.status_code) for e in events] == [("rejected", 401), ("ok", 200), ("duplicate", 200)]
    assert all(e.latency_ms > 0 for e in events)
    assert events[1].message_ids and events[0].detail
    stored = json.dumps([e.to_doc() for e in events])
    secrets = [v for k, v in {**good.headers, **bad.headers}.items() if k.lower() in SECRET_HEADERS]
    secrets += [v.split(" ", 1)[-1] for v in secrets]  # a bearer token without its scheme
    assert secrets
    for value in secrets:
        assert value not in stored
    assert "[redacted]" in stored


async def test_whatsapp_doc_sample_byte_for_byte(lab: ChannelLab) -> None:
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": hub_signature(APP_SECRET, WA_TEXT_SAMPLE)}
    status, body, _ = await lab.post("whatsapp", Signed(WA_TEXT_SAMPLE, headers, ""))
    assert (status, body) == (200, {"status": "ok"})
    (reply,) = await lab.replies("whatsapp")
    conversation = await lab.conversation("whatsapp")
    assert conversation.customer == {"id": WA_USER, "name": "Sheena Nelson"}
    (sent,) = lab.sends("whatsapp")
    assert sent["to"] == WA_USER and sent["text"]["body"] == reply.content


async def test_telegram_button_press_is_answered_and_acknowledged(lab: ChannelLab) -> None:
    update = {"update_id": 10002, "callback_query": {
        "id": "4382bfdwdsb323b2d9", "chat_instance": "-8211", "data": "approve:42",
        "from": {"id": TG_CHAT, "is_bot": False, "first_name": "Ann"},
        "message": {"message_id": 1366, "date": 1441645700, "chat": {"id": TG_CHAT, "type": "private"},
                    "text": "Approve?"}}}
    status, body, _ = await lab.post("telegram", lab.sign("telegram", json.dumps(update).encode()))
    assert (status, body) == (200, {"status": "ok"})
    await wait_until(lambda: lab.tg.calls("/answerCallbackQuery"))
    assert lab.tg.calls("/answerCallbackQuery")[0].json == {"callback_query_id": "4382bfdwdsb323b2d9"}
    (reply,) = await lab.replies("telegram")
    (sent,) = lab.sends("telegram")
    assert sent["chat_id"] == TG_CHAT and sent["text"] == reply.content


@pytest.mark.parametrize("channel", META)
async def test_meta_handshake(lab: ChannelLab, channel: str) -> None:
    query = f"hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444"
    status, body, headers = await lab.get(channel, query)
    assert (status, body) == (200, 1158201444) and headers["Content-Type"].startswith("text/plain")
    raw = await lab.gw.http.get(lab.gw.base_url + lab.path(channel) + "?" + query)
    assert await raw.text() == "1158201444"  # the raw challenge, not JSON
    status, body, _ = await lab.get(channel, "hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1")
    assert status == 403
    events = await lab.events(channel)
    assert [(e.outcome, e.status_code) for e in events] == [("verified", 200), ("verified", 200), ("rejected", 403)]


@pytest.mark.parametrize("channel", ["telegram", "slack", "teams", "custom"])
async def test_get_without_handshake_is_405(lab: ChannelLab, channel: str) -> None:
    status, body, _ = await lab.get(channel, "hub.mode=subscribe&hub.challenge=1")
    assert (status, body) == (405, {"error": "Not supported"})


async def test_slack_url_verification(lab: ChannelLab) -> None:
    body = json.dumps({"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "type": "url_verification",
                       "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}).encode()
    status, answer, _ = await lab.post("slack", lab.sign("slack", body))
    assert (status, answer) == (200, {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    unsigned = lab.sign("slack", body)
    unsigned.headers["X-Slack-Signature"] = "v0=" + "0" * 64
    assert (await lab.post("slack", unsigned))[0] == 401  # the challenge is signed too
    assert await lab.messages("slack") == []


async def test_instagram_sender_is_not_the_page(lab: ChannelLab) -> None:
    # Instagram replies go from the IG account to the IGSID; the account id is kept for routing.
    await lab.post("instagram", lab.message("instagram"))
    await lab.replies("instagram")
    conversation = await lab.conversation("instagram")
    assert conversation.external_chat_id == IGSID and conversation.meta.get("ig_user_id") == IG_ID
