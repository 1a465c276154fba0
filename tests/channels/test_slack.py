"""SlackAdapter: v0 signatures (vector S1 of docs/channels.md §9), event parsing, and chat.postMessage
against a local fake Slack API (tests/support/fake_slack.py)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Any
from urllib.parse import urlencode

import pytest

from buzzi.channels.base import (
    Attachment,
    CredentialsError,
    PayloadError,
    ReplyTarget,
    SendError,
    VerificationError,
)
from buzzi.channels.outbound import OutboundHttp, with_retry
from buzzi.channels.slack import SlackAdapter
from buzzi.models import Conversation, Message, Webhook
from buzzi.signing import slack_signature
from tests.support.channel_factories import channel_webhook, inbound_request, reply_target
from tests.support.fake_slack import FakeSlack
from tests.support.fake_telegram import Answer

BOT_TOKEN = "xoxb-test-token"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
S1_TS = "1531420618"
S1_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
S1_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
BOT_USER = "U0LAN0Z89"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(BOT_TOKEN) as fake:
        yield fake


@pytest.fixture
async def adapter(make_settings, slack: FakeSlack) -> AsyncIterator[SlackAdapter]:
    settings = make_settings(channels={"slack_api_base": slack.url})
    http = OutboundHttp(settings.channels)
    yield SlackAdapter(settings.channels, http)
    await http.close()


webhook = partial(channel_webhook, "slack", secret=SIGNING_SECRET, credentials={"botToken": BOT_TOKEN})
request = partial(inbound_request, remote_ip="3.1.2.3")


def signed(body: bytes, ts: int, secret: str = SIGNING_SECRET) -> dict[str, str]:
    return {"x-slack-request-timestamp": str(ts), "x-slack-signature": slack_signature(secret, str(ts), body)}


def envelope(event: dict[str, Any], event_id: str = "Ev0MDYHUEL") -> dict[str, Any]:
    return {"token": "ZZZ", "team_id": "T061EG9R6", "api_app_id": "A0MDYCDME", "type": "event_callback",
            "event_id": event_id, "event_time": 1515449483, "event": event,
            "authorizations": [{"team_id": "T061EG9R6", "user_id": BOT_USER, "is_bot": True}]}


def parse(adapter: SlackAdapter, body: Any, hook: Webhook | None = None):
    return adapter.parse(hook or webhook(), request(body, {"content-type": "application/json"}))


target = partial(reply_target, "slack", chat_id="C0LAN2Q65", inbound={})


# ---- configuration

def test_credentials_and_signing_secret(adapter: SlackAdapter) -> None:
    assert adapter.validate_credentials({"botToken": BOT_TOKEN}) == {"botToken": BOT_TOKEN}
    for bad in ({}, {"botToken": ""}, {"botToken": "xoxp-user-token"}, {"botToken": "xoxb-a b"}):
        with pytest.raises(CredentialsError) as info:
            adapter.validate_credentials(bad)
        assert info.value.field == "botToken"
    assert adapter.generate_secrets(SIGNING_SECRET, "ignored") == (SIGNING_SECRET, None)
    for missing in (None, "", "  "):
        with pytest.raises(CredentialsError) as info:
            adapter.generate_secrets(missing, None)
        assert info.value.field == "secret"


# ---- verification

async def test_vector_s1_with_injected_now(adapter: SlackAdapter) -> None:
    assert slack_signature(SIGNING_SECRET, S1_TS, S1_BODY) == S1_SIGNATURE
    headers = {"x-slack-request-timestamp": S1_TS, "x-slack-signature": S1_SIGNATURE}
    await adapter.verify(webhook(), request(S1_BODY, headers, now=1531420618))
    with pytest.raises(VerificationError):  # the same request checked with the real clock is years stale
        await adapter.verify(webhook(), request(S1_BODY, headers))


@pytest.mark.parametrize(("skew", "ok"), [(0, True), (299, True), (-299, True), (301, False), (-301, False)])
async def test_timestamp_window(adapter: SlackAdapter, skew: int, ok: bool) -> None:
    now = 1_700_000_000
    body = json.dumps(envelope({"type": "message"})).encode()
    req = request(body, signed(body, now - skew), now=now)
    if ok:
        await adapter.verify(webhook(), req)
    else:
        with pytest.raises(VerificationError):
            await adapter.verify(webhook(), req)


async def test_raw_non_ascii_body_verifies_and_reserialised_fails(adapter: SlackAdapter) -> None:
    now = int(time.time())
    raw = '{"type":"event_callback","event":{"type":"message","text":"Café ☕ @ 5€"}}'.encode()
    await adapter.verify(webhook(), request(raw, signed(raw, now), now=now))
    reserialised = json.dumps(json.loads(raw)).encode()  # spacing and \u escapes change the bytes
    assert reserialised != raw
    with pytest.raises(VerificationError):
        await adapter.verify(webhook(), request(reserialised, signed(raw, now), now=now))


@pytest.mark.parametrize("headers", [
    {},
    {"x-slack-signature": S1_SIGNATURE},
    {"x-slack-request-timestamp": S1_TS},
    {"x-slack-request-timestamp": "not-a-number", "x-slack-signature": S1_SIGNATURE},
    {"x-slack-request-timestamp": S1_TS, "x-slack-signature": S1_SIGNATURE.upper()},
])
async def test_missing_or_wrong_signature(adapter: SlackAdapter, headers: dict[str, str]) -> None:
    with pytest.raises(VerificationError):
        await adapter.verify(webhook(), request(S1_BODY, headers, now=1531420618))


async def test_wrong_secret_fails(adapter: SlackAdapter) -> None:
    now = int(time.time())
    body = b'{"type":"event_callback"}'
    with pytest.raises(VerificationError):
        await adapter.verify(webhook(), request(body, signed(body, now, secret="other-secret"), now=now))


# ---- parsing

def test_url_verification_answers_challenge(adapter: SlackAdapter) -> None:
    result = parse(adapter, {"token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
                             "type": "url_verification"})
    assert result.response == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
    assert result.messages == []


def test_direct_message(adapter: SlackAdapter) -> None:
    event = {"type": "message", "channel": "D0L4B9P0Q", "user": "U061F7AUR", "text": "Hello world",
             "ts": "1355517523.000005", "channel_type": "im"}
    [msg] = parse(adapter, envelope(event)).messages
    assert (msg.message_id, msg.chat_id, msg.sender_id, msg.text) == (
        "D0L4B9P0Q:1355517523.000005", "D0L4B9P0Q", "U061F7AUR", "Hello world")
    assert msg.timestamp == 1355517523.000005 and msg.thread_id == "1355517523.000005"
    assert msg.meta["event_id"] == "Ev0MDYHUEL" and msg.meta["thread_ts"] is None  # DMs answer in the channel


def test_channel_messages_answer_in_thread(adapter: SlackAdapter) -> None:
    top = {"type": "message", "channel": "C1", "user": "U1", "text": "question", "ts": "100.000001",
           "channel_type": "channel"}
    [msg] = parse(adapter, envelope(top)).messages
    assert msg.meta["thread_ts"] == "100.000001" and msg.reply_to_id is None
    reply = {**top, "ts": "105.000002", "thread_ts": "100.000001"}
    [msg] = parse(adapter, envelope(reply, "Ev2")).messages
    assert (msg.meta["thread_ts"], msg.thread_id, msg.reply_to_id) == ("100.000001", "100.000001", "100.000001")
    dm_thread = {**reply, "channel": "D1", "channel_type": "im"}
    assert parse(adapter, envelope(dm_thread, "Ev3")).messages[0].meta["thread_ts"] == "100.000001"


def test_app_mention_and_message_share_one_dedupe_id(adapter: SlackAdapter) -> None:
    common = {"user": "W021FGA1Z", "text": f"<@{BOT_USER}> what are your hours?", "ts": "1515449483.000108",
              "channel": "C0LAN2Q65", "event_ts": "1515449483.000108"}
    [mention] = parse(adapter, envelope({"type": "app_mention", **common}, "Ev1")).messages
    [message] = parse(adapter, envelope({"type": "message", "channel_type": "channel", **common}, "Ev2")).messages
    assert mention.message_id == message.message_id == "C0LAN2Q65:1515449483.000108"
    assert mention.text == message.text == "what are your hours?"
    [retry] = parse(adapter, envelope({"type": "app_mention", **common}, "Ev1")).messages  # X-Slack-Retry-Num
    assert retry.message_id == mention.message_id


def test_mention_stripping_keeps_other_people(adapter: SlackAdapter) -> None:
    event = {"type": "app_mention", "user": "U9", "channel": "C1", "ts": "1.2",
             "text": f"<@{BOT_USER}> ask <@U777> about <https://example.com|the docs> &amp; &lt;stuff&gt;"}
    [msg] = parse(adapter, envelope(event)).messages
    assert msg.text == "ask <@U777> about the docs (https://example.com) & <stuff>"
    no_auth = envelope({**event, "text": "<@UOTHERBOT> hi there"})
    no_auth.pop("authorizations")
    assert parse(adapter, no_auth).messages[0].text == "hi there"  # app_mention: the leading mention is ours


def test_file_share(adapter: SlackAdapter) -> None:
    event = {"type": "message", "subtype": "file_share", "text": "We got one!", "user": "U061F7AUR",
             "files": [{"id": "F0RDC39U1", "name": "ghostrap.png", "mimetype": "image/png", "filetype": "png",
                        "size": 196920,
                        "url_private": "https://files.slack.com/files-pri/T061EG9R6-F0RDC39U1/ghostrap.png",
                        "url_private_download":
                            "https://files.slack.com/files-pri/T061EG9R6-F0RDC39U1/download/ghostrap.png"},
                       {"id": "F2", "mode": "tombstone"}],
             "ts": "1529342088.000086", "channel": "D0L4B9P0Q", "channel_type": "im"}
    [msg] = parse(adapter, envelope(event)).messages
    assert (msg.text, msg.kind) == ("We got one!", "image")
    [att] = msg.attachments
    assert (att.kind, att.mime_type, att.name, att.media_id, att.size) == (
        "image", "image/png", "ghostrap.png", "F0RDC39U1", 196920)
    assert att.url.endswith("/download/ghostrap.png")


@pytest.mark.parametrize("event", [
    {"type": "message", "subtype": "bot_message", "bot_id": "BB12033", "text": "beep", "ts": "1.1", "channel": "C1"},
    {"type": "message", "bot_id": "B1", "bot_profile": {"id": "B1"}, "user": "U5", "text": "hi", "ts": "1.1",
     "channel": "C1"},
    {"type": "message", "user": BOT_USER, "text": "my own post", "ts": "1.1", "channel": "C1"},
    {"type": "message", "subtype": "message_deleted", "hidden": True, "channel": "C1", "ts": "1.2"},
    {"type": "message", "subtype": "channel_join", "user": "U1", "text": "<@U1> has joined", "ts": "1.1",
     "channel": "C1"},
    {"type": "reaction_added", "user": "U1", "reaction": "thumbsup", "item": {"type": "message"}},
    {"type": "message", "user": "U1", "text": f"<@{BOT_USER}>", "ts": "1.1", "channel": "C1"},
])
def test_ignored_events(adapter: SlackAdapter, event: dict[str, Any]) -> None:
    result = parse(adapter, envelope(event))
    assert (result.messages, result.ignored) == ([], 1)


def test_bot_user_from_webhook_state(adapter: SlackAdapter) -> None:
    body = envelope({"type": "message", "user": "UBOTSTATE", "text": "loop?", "ts": "1.1", "channel": "C1"})
    body.pop("authorizations")
    assert parse(adapter, body, webhook(state={"botUserId": "UBOTSTATE"})).ignored == 1
    assert len(parse(adapter, body).messages) == 1


def test_other_envelopes_ignored_and_malformed_rejected(adapter: SlackAdapter) -> None:
    assert parse(adapter, {"type": "app_rate_limited", "minute_rate_limited": 1518467820}).ignored == 1
    for raw in (b"{oops", b"[]", b'{"type": "event_callback"}', b'{"type": "url_verification"}'):
        with pytest.raises(PayloadError):
            parse(adapter, raw)


def test_block_actions_button(adapter: SlackAdapter) -> None:
    payload = {"type": "block_actions", "user": {"id": "U1", "username": "ann"}, "trigger_id": "t1",
               "container": {"type": "message", "message_ts": "50.5", "channel_id": "C1"},
               "channel": {"id": "C1"}, "message": {"ts": "50.5", "thread_ts": "40.4"},
               "response_url": "https://hooks.slack.com/actions/T/1/secret",
               "actions": [{"action_id": "approve", "value": "approve:42", "action_ts": "51.0"}]}
    body = urlencode({"payload": json.dumps(payload)}).encode()
    result = adapter.parse(webhook(), request(body, {"content-type": "application/x-www-form-urlencoded"}))
    [msg] = result.messages
    assert (msg.kind, msg.text, msg.chat_id, msg.sender_id) == ("interactive", "approve:42", "C1", "U1")
    assert msg.meta["thread_ts"] == "40.4" and "response_url" not in msg.meta
    s1 = adapter.parse(webhook(), request(S1_BODY, {"content-type": "application/x-www-form-urlencoded"}))
    assert s1.ignored == 1  # a slash command is not a conversation message


# ---- sending

def test_format_escapes_mrkdwn_control_characters(adapter: SlackAdapter) -> None:
    assert adapter.format("a < b & c > d <@U1> *bold*") == "a &lt; b &amp; c &gt; d &lt;@U1&gt; *bold*"


async def test_send_posts_in_thread(adapter: SlackAdapter, slack: FakeSlack) -> None:
    in_thread = target(inbound={"metadata": {"channel": {"thread_ts": "100.000001"}}})
    ids = await adapter.send(webhook(), in_thread, adapter.format("1 < 2 & 3"))
    assert ids == ["1700000001.000100"]
    [call] = slack.calls("/chat.postMessage")
    assert call.headers["authorization"] == f"Bearer {BOT_TOKEN}"
    assert call.headers["content-type"].startswith("application/json")
    assert call.json == {"channel": "C0LAN2Q65", "text": "1 &lt; 2 &amp; 3", "thread_ts": "100.000001"}
    await adapter.send(webhook(), target(chat_id="D1"), "dm")
    assert slack.calls("/chat.postMessage")[1].json == {"channel": "D1", "text": "dm"}


async def test_later_top_level_dm_is_not_answered_in_an_old_thread(adapter: SlackAdapter, slack: FakeSlack) -> None:
    base = {"type": "message", "channel": "D1", "user": "U1", "channel_type": "im"}
    old = parse(adapter, envelope({**base, "text": "a", "ts": "5.1", "thread_ts": "1.1"}, "Ev1")).messages[0]
    new = parse(adapter, envelope({**base, "text": "b", "ts": "9.1"}, "Ev2")).messages[0]
    conversation = Conversation(id="cv1", company_id="c1", agent_id="a1", channel="slack", external_chat_id="D1",
                                meta={**old.meta, **new.meta})  # how the gateway merges conversation meta
    message = Message(id="m2", conversation_id="cv1", company_id="c1", agent_id="a1", role="user", content="b",
                      channel="slack", metadata={"channel": new.meta})
    await adapter.send(webhook(), ReplyTarget(conversation, message), "answer")
    assert "thread_ts" not in slack.calls("/chat.postMessage")[0].json


async def test_replay_window_follows_registry_setting(adapter: SlackAdapter) -> None:
    now = 1_700_000_000
    body = b'{"type":"event_callback"}'
    adapter = SlackAdapter(adapter.settings, adapter.http, replay_window=60)
    with pytest.raises(VerificationError):
        await adapter.verify(webhook(), request(body, signed(body, now - 61), now=now))
    await adapter.verify(webhook(), request(body, signed(body, now - 59), now=now))


@pytest.mark.parametrize(("answer", "retryable", "retry_after", "code"), [
    (Answer(429, {"ok": False, "error": "ratelimited"}, headers={"Retry-After": "30"}), True, 30.0, "ratelimited"),
    (Answer(200, {"ok": False, "error": "ratelimited"}), True, None, "ratelimited"),
    (Answer(200, {"ok": False, "error": "internal_error"}), True, None, "internal_error"),
    (Answer(200, {"ok": False, "error": "fatal_error"}), True, None, "fatal_error"),
    (Answer(503, body=b"upstream down", content_type="text/plain"), True, None, None),
    (Answer(200, {"ok": False, "error": "channel_not_found"}), False, None, "channel_not_found"),
    (Answer(200, {"ok": False, "error": "not_in_channel"}), False, None, "not_in_channel"),
    (Answer(200, {"ok": False, "error": "invalid_auth"}), False, None, "invalid_auth"),
    (Answer(200, {"ok": False, "error": "account_inactive"}), False, None, "account_inactive"),
    (Answer(200, {"ok": False, "error": "msg_too_long"}), False, None, "msg_too_long"),
    (Answer(200, {"ok": False, "error": "is_archived"}), False, None, "is_archived"),
])
async def test_send_error_classification(adapter: SlackAdapter, slack: FakeSlack, answer: Answer, retryable: bool,
                                         retry_after: float | None, code: str | None) -> None:
    slack.script("/chat.postMessage", answer)
    with pytest.raises(SendError) as info:
        await adapter.send(webhook(), target(), "hi")
    assert (info.value.retryable, info.value.retry_after, info.value.code) == (retryable, retry_after, code)


async def test_with_retry_honours_retry_after(adapter: SlackAdapter, slack: FakeSlack) -> None:
    slack.script("/chat.postMessage", Answer(429, {"ok": False, "error": "ratelimited"}, headers={"Retry-After": "2"}),
                 Answer(200, {"ok": False, "error": "internal_error"}))
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    ids = await with_retry(lambda: adapter.send(webhook(), target(), "hi"), max_attempts=4, base=0.5, cap=60,
                           sleep=sleep)
    assert ids and len(slack.calls("/chat.postMessage")) == 3
    assert slept[0] == 2 and 0 <= slept[1] <= 1


async def test_no_typing_indicator(adapter: SlackAdapter, slack: FakeSlack) -> None:
    await adapter.typing(webhook(), target())
    assert slack.requests == []


# ---- media

async def test_download_media_with_bot_token(adapter: SlackAdapter, slack: FakeSlack) -> None:
    slack.files["/files-pri/T1-F1/download/a.png"] = b"\x89PNG..."
    att = Attachment(kind="image", mime_type="image/png", url=f"{slack.url}/files-pri/T1-F1/download/a.png")
    assert await adapter.download_media(webhook(), att) == (b"\x89PNG...", "image/png")
    assert slack.requests[-1].headers["authorization"] == f"Bearer {BOT_TOKEN}"


async def test_download_media_refuses_login_page(adapter: SlackAdapter, slack: FakeSlack) -> None:
    slack.files["/files-pri/T1-F1/download/a.png"] = b"\x89PNG..."
    att = Attachment(kind="image", mime_type="image/png", url=f"{slack.url}/files-pri/T1-F1/download/a.png")
    with pytest.raises(SendError, match="HTML") as info:
        await adapter.download_media(webhook(credentials={"botToken": "xoxb-no-files-read"}), att)
    assert not info.value.retryable


async def test_download_media_sends_token_only_to_slack(adapter: SlackAdapter, slack: FakeSlack) -> None:
    with pytest.raises(SendError):
        await adapter.download_media(webhook(), Attachment(kind="image", url="https://evil.example.com/a.png"))
    with pytest.raises(SendError):
        await adapter.download_media(webhook(), Attachment(kind="image", url="http://files.slack.com/a.png"))
    assert slack.requests == []
