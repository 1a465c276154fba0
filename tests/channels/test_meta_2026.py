"""Messenger and Instagram as the platforms are in 2026 (issue 11): delivery/read receipts, drops with a
reason, the 24-hour window and the HUMAN_AGENT tag, Graph rate-limit codes, typing refreshes, edits.
Payload shapes are the doc samples (tests/support/fake_meta.py names the page each comes from)."""

from __future__ import annotations

import dataclasses
import time

import pytest

from buzzi import windows
from buzzi.channels.base import SendError
from buzzi.channels.instagram import InstagramAdapter
from buzzi.channels.messenger import MessengerAdapter
from buzzi.channels.meta import MESSAGING_ERRORS, ErrorClasses, MessagingAdapter, graph_error
from buzzi.config import load_settings
from buzzi.models import Conversation, Message, Webhook
from tests.support.channel_factories import reply_target
from tests.support.fake_meta import (
    GRAPH_PREFIX,
    INSTAGRAM_SEEN,
    MESSENGER_BUC_LIMITED,
    MESSENGER_DELIVERY,
    MESSENGER_OUTSIDE_WINDOW,
    MESSENGER_RATE_LIMITED,
    MESSENGER_READ,
    Reply,
    adapter_on_server,
    graph_error_reply,
    messaging_envelope,
    meta_webhook,
    signed_request,
)
from tests.support.waiting import wait_until
from tests.webhooks.kit import ME_SEND, PSID, channel_lab

SEND_PATH = f"{GRAPH_PREFIX}/me/messages"
MESSENGER_CREDS = {"pageId": "1234567890", "pageAccessToken": "EAAB-page-token-xyz"}
INSTAGRAM_CREDS = {"igUserId": "17841400000000000", "accessToken": "IGQV-token-abcdef"}
HOUR, DAY = 3600.0, 86400.0
ADAPTERS = {"messenger": (MessengerAdapter, MESSENGER_CREDS, "page"),
            "instagram": (InstagramAdapter, INSTAGRAM_CREDS, "instagram")}


def adapter_for(channel: str) -> MessagingAdapter:
    return ADAPTERS[channel][0](load_settings(env={}).channels, http=None)


def parse(channel: str, *events: dict):
    _, creds, obj = ADAPTERS[channel]
    return adapter_for(channel).parse(meta_webhook(channel, creds), signed_request(messaging_envelope(obj, *events)))


def target(channel: str, mode: str = "standard"):
    return dataclasses.replace(reply_target(channel, "PSID-1"), mode=mode)


# ---------------------------------------------------------------------------- receipts and drops

def test_messenger_delivery_and_read_become_receipts():
    result = parse("messenger", MESSENGER_DELIVERY, MESSENGER_READ)
    assert result.messages == [] and result.drops == {"receipt": 2}
    delivered, read = result.receipts
    assert (delivered.status, delivered.message_ids, delivered.chat_id) == (
        "delivered", ["mid.1458668856218:ed81099e15d3f4f233"], "<PSID>")
    # the watermark is milliseconds on the wire, Unix seconds on the Receipt
    assert delivered.watermark == pytest.approx(1458668856.253)
    assert delivered.timestamp == pytest.approx(1458668856.253)  # no event timestamp: the watermark
    assert (read.status, read.message_ids, read.chat_id) == ("read", [], "<PSID>")
    assert read.watermark == pytest.approx(1458668856.253) and read.timestamp == pytest.approx(1458668856.463)


def test_delivery_without_mids_is_a_watermark_receipt_and_broken_receipts_are_dropped():
    base = {"sender": {"id": "P"}, "recipient": {"id": "G"}}
    older_client = {**base, "delivery": {"watermark": 1700000000000}}  # "mids ... may not be present"
    broken = [{**base, "read": {}}, {**base, "read": {"watermark": "NaN"}},
              {**base, "delivery": {"mids": "m.1", "watermark": True}}, {"recipient": {"id": "G"}, "read": {}}]
    result = parse("messenger", older_client, *broken)
    (receipt,) = result.receipts
    assert (receipt.status, receipt.message_ids, receipt.watermark) == ("delivered", [], 1700000000.0)
    assert result.drops == {"receipt": 1, "malformed_event": 4} and result.ignored == 5


def test_instagram_seen_names_the_message_read():
    result = parse("instagram", INSTAGRAM_SEEN)
    (seen,) = result.receipts
    assert (seen.status, seen.message_ids, seen.chat_id, seen.watermark) == (
        "read", ["<MESSAGE-ID>"], "<IGSID>", None)
    assert seen.timestamp == pytest.approx(1569262486.134) and result.drops == {"receipt": 1}


def test_receipt_ids_are_bounded():
    mids = [f"m.{i}" for i in range(150)] + ["x" * 600, 7]
    result = parse("messenger", {"sender": {"id": "P"}, "delivery": {"mids": mids, "watermark": 1}})
    assert result.receipts[0].message_ids == [f"m.{i}" for i in range(100)]


@pytest.mark.parametrize("channel", ["messenger", "instagram"])
def test_every_non_message_has_a_drop_reason(channel):
    base = {"sender": {"id": "P"}, "recipient": {"id": "G"}, "timestamp": 1700000000000}
    events = [
        {**base, "message": {"mid": "m.echo", "text": "our reply", "is_echo": True, "app_id": 1}},
        {**base, "message": {"mid": "m.del", "is_deleted": True}},
        {**base, "message": {"text": "no mid"}},
        {**base, "reaction": {"mid": "m.1", "action": "react", "emoji": "❤"}},
        {**base, "referral": {"ref": "spring", "source": "SHORTLINK", "type": "OPEN_THREAD"}},
        {**base, "optin": {"type": "notification_messages", "payload": "x"}},
        {**base, "pass_thread_control": {"new_owner_app_id": "123"}},
        {**base, "postback": {}},
        {**base, "something_new": {}},
    ]
    result = parse(channel, *events)
    assert result.messages == []
    assert result.drops == {"echo": 1, "revoke": 1, "malformed_event": 1, "reaction": 1, "referral": 1,
                            "optin": 1, "handover": 1, "empty_postback": 1, "unsupported_event": 1}
    assert result.ignored == sum(result.drops.values())


@pytest.mark.parametrize("channel", ["messenger", "instagram"])
def test_an_edit_names_the_original(channel):
    edit = {"sender": {"id": "P"}, "recipient": {"id": "G"}, "timestamp": 1458668856463,
            "message_edit": {"mid": "m_original", "text": "fixed typo", "num_edit": 2}}
    (message,) = parse(channel, edit).messages
    assert (message.kind, message.edit_of, message.text, message.message_id) == (
        "edit", "m_original", "fixed typo", "m_original:edit:2")


# ---------------------------------------------------------------------------- the window and sends

@pytest.mark.parametrize("channel", ["messenger", "instagram"])
def test_windows_are_24_hours_and_7_days_for_a_person(channel):
    adapter = adapter_for(channel)
    assert (adapter.service_window, adapter.human_window, adapter.template_reengagement) == (DAY, 7 * DAY, False)
    now = 1_800_000_000.0
    webhook = Webhook(id="wh_1", company_id="c_1", agent_id="a_1", channel=channel)

    def plan(age: float, role: str) -> windows.SendPlan:
        conversation = Conversation(id="cv_1", company_id="c_1", agent_id="a_1", channel=channel,
                                    last_inbound_at=now - age)
        return windows.plan(adapter, webhook, conversation, role, now)

    assert plan(23 * HOUR, "assistant") == windows.SendPlan()
    assert plan(2 * DAY, "human").mode == "human_agent"
    assert plan(2 * DAY, "assistant").refusal is not None
    assert plan(8 * DAY, "human").refusal is not None


@pytest.mark.parametrize(("channel", "standard"), [
    ("messenger", {"messaging_type": "RESPONSE"}),
    ("instagram", {}),  # the Instagram send-message doc sample names no messaging_type
])
async def test_send_body_follows_the_mode(make_settings, channel, standard):
    cls, creds, _ = ADAPTERS[channel]
    async with adapter_on_server(cls, make_settings) as (adapter, graph):
        graph.always("POST", SEND_PATH, Reply(200, {"recipient_id": "PSID-1", "message_id": "m_out"}))
        webhook = meta_webhook(channel, creds)
        assert await adapter.send(webhook, target(channel), "within the day") == ["m_out"]
        assert await adapter.send(webhook, target(channel, "human_agent"), "three days later") == ["m_out"]
        with pytest.raises(SendError) as exc:
            await adapter.send(webhook, target(channel, "template"), "no templates here")
        assert not exc.value.retryable
        first, second = (r.json() for r in graph.to(SEND_PATH))
        assert first == {"recipient": {"id": "PSID-1"}, "message": {"text": "within the day"}, **standard}
        assert second == {"recipient": {"id": "PSID-1"}, "message": {"text": "three days later"},
                          "messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"}


# ---------------------------------------------------------------------------- Graph error codes

@pytest.mark.parametrize("reply", [
    MESSENGER_RATE_LIMITED, MESSENGER_BUC_LIMITED, graph_error_reply(17, "(#17) User request limit reached"),
    graph_error_reply(32, "(#32) Page request limit reached"), graph_error_reply(80001, "(#80001) Too many calls"),
    graph_error_reply(4, "(#4) Application request limit reached", status=403),
])
@pytest.mark.parametrize("channel", ["messenger", "instagram"])
async def test_rate_limits_are_retryable_whatever_the_status(make_settings, channel, reply):
    cls, creds, _ = ADAPTERS[channel]
    async with adapter_on_server(cls, make_settings) as (adapter, graph):
        graph.script("POST", SEND_PATH, dataclasses.replace(reply, headers={"Retry-After": "7"}))
        with pytest.raises(SendError) as exc:
            await adapter.send(meta_webhook(channel, creds), target(channel), "hi")
        assert exc.value.retryable and exc.value.code == reply.json["error"]["code"]
        assert exc.value.status == reply.status and exc.value.retry_after == 7.0


async def test_outside_the_window_is_permanent_with_a_worded_title(make_settings):
    async with adapter_on_server(MessengerAdapter, make_settings) as (adapter, graph):
        graph.script("POST", SEND_PATH, MESSENGER_OUTSIDE_WINDOW)
        with pytest.raises(SendError) as exc:
            await adapter.send(meta_webhook("messenger", MESSENGER_CREDS), target("messenger"), "late")
        assert not exc.value.retryable and (exc.value.status, exc.value.code) == (400, 10)
        assert str(exc.value).startswith("Outside the messaging window: the customer's last message is more than")
        assert "code 10/2018278" in str(exc.value)
    # code 10 without the window's subcode or wording is another permission error, not the window
    other = graph_error("x", 400, {"error": {"code": 10, "message": "Application does not have permission"}},
                        None, MESSAGING_ERRORS)
    assert not other.retryable and not str(other).startswith("Outside")


def test_min_wait_is_a_floor_under_retry_after():
    classes = ErrorClasses(retryable=frozenset({131056}), permanent=frozenset(), min_wait={131056: 300.0})
    payload = {"error": {"code": 131056, "message": "pair rate limit"}}
    assert graph_error("send", 400, payload, None, classes).retry_after == 300.0
    assert graph_error("send", 400, payload, "10", classes).retry_after == 300.0
    assert graph_error("send", 400, payload, "900", classes).retry_after == 900.0
    other = {"error": {"code": 613, "message": "rate"}}
    assert graph_error("send", 400, other, None, classes).retry_after is None


# ---------------------------------------------------------------------------- typing

@pytest.mark.parametrize("channel", ["messenger", "instagram"])
async def test_typing_marks_seen_once_and_refreshes_with_one_call(make_settings, channel):
    cls, creds, _ = ADAPTERS[channel]
    assert cls.typing_interval is not None and 5 <= cls.typing_interval < 20  # the indicator lasts 20 s
    async with adapter_on_server(cls, make_settings) as (adapter, graph):
        graph.always("POST", SEND_PATH, Reply(200, {"recipient_id": "PSID-1"}))
        webhook = meta_webhook(channel, creds)
        await adapter.typing(webhook, target(channel))
        assert [r.json()["sender_action"] for r in graph.to(SEND_PATH)] == ["mark_seen", "typing_on"]
        for _ in range(3):
            await adapter.typing(webhook, target(channel), first=False)
        actions = [r.json() for r in graph.to(SEND_PATH)][2:]
        assert actions == [{"recipient": {"id": "PSID-1"}, "sender_action": "typing_on"}] * 3


async def test_a_failed_mark_seen_still_shows_typing(make_settings):
    async with adapter_on_server(MessengerAdapter, make_settings) as (adapter, graph):
        graph.script("POST", SEND_PATH, MESSENGER_OUTSIDE_WINDOW, Reply(200, {"recipient_id": "PSID-1"}))
        await adapter.typing(meta_webhook("messenger", MESSENGER_CREDS), target("messenger"))  # never raises
        assert [r.json()["sender_action"] for r in graph.to(SEND_PATH)] == ["mark_seen", "typing_on"]


# ---------------------------------------------------------------------------- over HTTP

async def test_late_human_reply_goes_with_human_agent_and_a_late_bot_reply_is_not_sent(make_settings):
    async with channel_lab(make_settings) as lab:
        status, _, _ = await lab.post("messenger", lab.message("messenger"))
        assert status == 200
        await lab.replies("messenger")  # the bot answered within the window: RESPONSE
        assert [s.get("messaging_type") for s in lab.sends("messenger")] == ["RESPONSE"]
        conversation = await lab.conversation("messenger")
        await lab.gw.store.update(Conversation, conversation.id, {"last_inbound_at": time.time() - 3 * DAY})

        token = await lab.gw.login()
        base = f"/api/admin/conversations/{conversation.id}"
        status, taken, _ = await lab.gw.request("POST", f"{base}/handover", json_body={"action": "take"}, token=token)
        assert status == 200 and taken["owner"] == "human"
        status, reply, _ = await lab.gw.request("POST", f"{base}/reply", json_body={"content": "Sorry for the wait"},
                                                token=token)
        assert status == 201, reply

        async def tagged() -> list[dict] | None:
            found = [s for s in lab.sends("messenger") if s["message"]["text"] == "Sorry for the wait"]
            return found or None

        (sent,) = await wait_until(tagged, timeout=10)
        assert sent == {"recipient": {"id": PSID}, "message": {"text": "Sorry for the wait"},
                        "messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"}

        # The bot's answer to a message it only gets to now (stored before the window closed, e.g.
        # after an agent outage) must not go out blind: it fails as window_closed, nothing is sent.
        status, _, _ = await lab.gw.request("POST", f"{base}/handover", json_body={"action": "release"}, token=token)
        assert status == 200
        sends_before = len(lab.graph.to(ME_SEND))
        await lab.gw.store.add(Message(
            id="m_late", conversation_id=conversation.id, company_id=lab.company.id, agent_id=lab.agent.id,
            role="user", content="Does it come in another color?", channel="messenger",
            webhook_id=lab.hooks["messenger"].id, state="pending", created_at=time.time() - 3 * DAY))

        async def refused() -> Message | None:
            found = [m for m in await lab.messages("messenger", role="assistant", reply_to="m_late")
                     if m.delivery.get("status") == "failed"]
            return found[0] if found else None

        late = await wait_until(refused, timeout=10)
        assert late.delivery["error"]["code"] == "window_closed"
        assert late.delivery["error"]["title"]
        assert [r for r in lab.graph.to(ME_SEND)[sends_before:] if "message" in r.json()] == []
