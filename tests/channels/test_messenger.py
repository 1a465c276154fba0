"""Messenger adapter: docs/channels.md §3 doc samples, receipts and echoes, postbacks, send and errors."""

from __future__ import annotations

import json
from functools import partial

import pytest

from buzzi.channels.base import Attachment, CredentialsError, PayloadError, SendError, VerificationError
from buzzi.channels.messenger import MessengerAdapter
from buzzi.channels.outbound import MediaTooLargeError, with_retry
from buzzi.config import load_settings
from buzzi.signing import hub_signature
from tests.support.channel_factories import reply_target
from tests.support.fake_meta import (
    APP_SECRET,
    GRAPH_PREFIX,
    MESSENGER_EVENTS,
    VERIFY_TOKEN,
    Reply,
    adapter_on_server,
    handshake_request,
    messaging_envelope,
    meta_webhook,
    signed_request,
)

CREDS = {"pageId": "1234567890", "pageAccessToken": "EAAB-page-token-xyz"}
SEND_PATH = f"{GRAPH_PREFIX}/me/messages"


@pytest.fixture
def adapter() -> MessengerAdapter:
    return MessengerAdapter(load_settings(env={}).channels, http=None)


webhook = partial(meta_webhook, "messenger", CREDS)
target = partial(reply_target, "messenger", "PSID-1", meta={"page_id": "1234567890"})


def parse(adapter, *events):
    return adapter.parse(webhook(), signed_request(messaging_envelope("page", *events)))


def test_credentials_and_secrets(adapter):
    assert adapter.validate_credentials(CREDS) == CREDS
    with pytest.raises(CredentialsError) as exc:
        adapter.validate_credentials({"pageId": "1234567890"})
    assert exc.value.field == "pageAccessToken"
    with pytest.raises(CredentialsError) as exc:
        adapter.validate_credentials({**CREDS, "pageId": "my page"})
    assert exc.value.field == "pageId"
    with pytest.raises(CredentialsError):
        adapter.generate_secrets("", "x")


async def test_handshake_and_signature(adapter):
    ok = adapter.handshake(webhook(), handshake_request(
        {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "abc"}))
    assert (ok.status, ok.body) == (200, "abc")
    body = messaging_envelope("page", MESSENGER_EVENTS["quick_reply"])
    await adapter.verify(webhook(), signed_request(body))
    with pytest.raises(VerificationError):
        await adapter.verify(webhook(), signed_request(body + b" ", signature=hub_signature(APP_SECRET, body)))


def test_doc_samples(adapter):
    result = parse(adapter, *MESSENGER_EVENTS.values())
    quick, reply, attach, edit = result.messages
    assert result.ignored == 0
    assert (quick.message_id, quick.chat_id, quick.sender_id, quick.text, quick.kind) == (
        "mid.1457764197618:41d102a3e1ae206a38", "<PSID>", "<PSID>", "hello, world!", "interactive")
    assert quick.meta == {"page_id": "<PAGE_ID>", "payload": "<DEVELOPER_DEFINED_PAYLOAD>",
                          "mid": "mid.1457764197618:41d102a3e1ae206a38"}
    assert quick.timestamp == pytest.approx(1458692752.478)
    assert (reply.kind, reply.reply_to_id) == ("text", "m_1fTq8oLumEyIp3Q2MR-aY7IfLZDamVrALniheU")
    assert (attach.kind, attach.text, attach.attachments[0].kind, attach.attachments[0].url) == (
        "image", "", "image", "<ATTACHMENT_URL>")
    assert (edit.kind, edit.text, edit.reply_to_id, edit.message_id) == ("edit", "<TEXT>", "<MESSAGE_ID>",
                                                                         "<MESSAGE_ID>:edit:1")
    assert edit.edit_of == "<MESSAGE_ID>"


def test_attachment_kinds(adapter):
    event = {"sender": {"id": "P"}, "recipient": {"id": "G"}, "timestamp": 1, "message": {"mid": "m.1", "attachments": [
        {"type": "audio", "payload": {"url": "https://cdn/a.mp4"}},
        {"type": "file", "payload": {"url": "https://cdn/f.pdf"}},
        {"type": "image", "payload": {"url": "https://cdn/s.png", "sticker_id": 369239263222822}},
        {"type": "fallback", "payload": {"url": "https://example.com", "title": "Example"}}]}}
    (message,) = parse(adapter, event).messages
    assert [a.kind for a in message.attachments] == ["audio", "file", "sticker", "fallback"]
    assert message.kind == "audio"


def test_echoes_receipts_and_other_events_ignored(adapter):
    base = {"sender": {"id": "P"}, "recipient": {"id": "G"}, "timestamp": 1}
    events = [
        {**base, "message": {"mid": "m.echo", "text": "our reply", "is_echo": True, "app_id": 1}},
        {**base, "delivery": {"mids": ["m.1"], "watermark": 1}},
        {**base, "read": {"watermark": 1}},
        {**base, "reaction": {"mid": "m.1", "action": "react", "emoji": "❤"}},
        {**base, "message": {"mid": "m.del", "is_deleted": True}},
    ]
    result = parse(adapter, *events)
    assert result.messages == [] and result.ignored == 5
    assert result.drops == {"echo": 1, "receipt": 2, "reaction": 1, "revoke": 1}
    assert [(r.status, r.message_ids, r.chat_id) for r in result.receipts] == [
        ("delivered", ["m.1"], "P"), ("read", [], "P")]


def test_postback_with_and_without_mid(adapter):
    base = {"sender": {"id": "P"}, "recipient": {"id": "G"}, "timestamp": 1700000000000}
    with_mid = {**base, "postback": {"title": "Get Started", "payload": "GET_STARTED", "mid": "m.pb"}}
    without = {**base, "postback": {"title": "Buy", "payload": "BUY_1"}}
    first, second = parse(adapter, with_mid, without).messages
    assert (first.message_id, first.kind, first.text, first.meta["payload"]) == (
        "m.pb", "postback", "Get Started", "GET_STARTED")
    assert second.message_id.startswith("postback.")
    # the same click redelivered gets the same id; another payload or time another id
    assert parse(adapter, without).messages[0].message_id == second.message_id
    other = {**without, "timestamp": 1700000000001}
    assert parse(adapter, other).messages[0].message_id != second.message_id


def test_batches_across_entries_and_standby_ignored(adapter):
    def text(mid: str) -> dict:
        return {"sender": {"id": "P"}, "recipient": {"id": "G"}, "timestamp": 1, "message": {"mid": mid, "text": mid}}

    body = json.dumps({"object": "page", "entry": [
        {"id": "G", "time": 1, "messaging": [text("a"), text("b")]},
        {"id": "G", "time": 1, "messaging": [text("c")]},
        {"id": "G", "time": 1, "standby": [text("d")]},
    ]}).encode()
    result = adapter.parse(webhook(), signed_request(body))
    assert [m.message_id for m in result.messages] == ["a", "b", "c"] and result.ignored == 1
    assert result.drops == {"standby": 1}


@pytest.mark.parametrize("body", [b"nope", b'{"object": "instagram", "entry": []}', b'{"object": "page"}',
                                  b'{"object": "page", "entry": [{"messaging": {}}]}'])
def test_malformed(adapter, body):
    with pytest.raises(PayloadError):
        adapter.parse(webhook(), signed_request(body))


async def test_send_shape_and_typing(make_settings):
    async with adapter_on_server(MessengerAdapter, make_settings) as (adapter, graph):
        graph.script("POST", SEND_PATH, Reply(200, {"recipient_id": "PSID-1", "message_id": "m_out"}),
                     Reply(200, {"recipient_id": "PSID-1"}), Reply(200, {"recipient_id": "PSID-1"}),
                     Reply(500, {"error": {"code": 2}}))
        assert await adapter.send(webhook(), target(), "hello, world! ✓") == ["m_out"]
        await adapter.typing(webhook(), target())  # first: mark_seen, then typing_on
        await adapter.typing(webhook(), target(), first=False)  # a refresh: typing_on only (500: swallowed)
        send, seen, typing, refresh = graph.to(SEND_PATH)
        assert send.headers["authorization"] == "Bearer EAAB-page-token-xyz" and "access_token" not in send.query
        assert send.json() == {"recipient": {"id": "PSID-1"}, "messaging_type": "RESPONSE",
                               "message": {"text": "hello, world! ✓"}}
        assert seen.json() == {"recipient": {"id": "PSID-1"}, "sender_action": "mark_seen"}
        assert typing.json() == refresh.json() == {"recipient": {"id": "PSID-1"}, "sender_action": "typing_on"}


@pytest.mark.parametrize(("code", "subcode", "status", "retryable"), [
    (1200, None, 500, True), (2, None, 500, True), (4, None, 400, True), (613, None, 400, True),
    (10, 2018278, 400, False), (100, 2018001, 400, False), (551, None, 400, False), (190, None, 401, False),
    (230, None, 403, False), (None, None, 502, True), (None, None, 404, False),
])
async def test_error_classes(make_settings, code, subcode, status, retryable):
    error = {"message": "x", "code": code, "error_subcode": subcode} if code is not None else {}
    async with adapter_on_server(MessengerAdapter, make_settings) as (adapter, graph):
        graph.script("POST", SEND_PATH, Reply(status, {"error": error} if error else None, body=b"<html>"))
        with pytest.raises(SendError) as exc:
            await adapter.send(webhook(), target(), "hi")
        assert (exc.value.retryable, exc.value.code) == (retryable, code)


async def test_retry_gives_up_after_max_attempts(make_settings):
    async with adapter_on_server(MessengerAdapter, make_settings) as (adapter, graph):
        graph.always("POST", SEND_PATH, Reply(400, {"error": {"code": 613, "message": "Calls to this api have "
                                                                                    "exceeded the rate limit."}}))
        delays: list[float] = []

        async def sleep(delay: float) -> None:
            delays.append(delay)

        with pytest.raises(SendError) as exc:
            await with_retry(lambda: adapter.send(webhook(), target(), "hi"), max_attempts=3, base=1, cap=60,
                             sleep=sleep)
        assert exc.value.attempts == 3 and len(delays) == 2 and len(graph.to(SEND_PATH)) == 3
        assert all(0 <= d <= 2 for d in delays)  # full jitter: uniform(0, base * 2**(n-1))


async def test_cdn_media_download_without_graph_auth(make_settings):
    async with adapter_on_server(MessengerAdapter, make_settings, media_max_bytes=100) as (adapter, graph):
        graph.always("GET", "/cdn/pic.jpg", Reply(200, body=b"jpegdata", headers={"Content-Type": "image/jpeg"}))
        graph.always("GET", "/cdn/big.jpg", Reply(200, body=b"x" * 101))
        data, mime = await adapter.download_media(webhook(), Attachment(kind="image", url=f"{graph.url}/cdn/pic.jpg"))
        assert (data, mime) == (b"jpegdata", "image/jpeg")
        assert "authorization" not in graph.to("/cdn/pic.jpg")[0].headers
        with pytest.raises(MediaTooLargeError):
            await adapter.download_media(webhook(), Attachment(kind="image", url=f"{graph.url}/cdn/big.jpg"))
        with pytest.raises(SendError):
            await adapter.download_media(webhook(), Attachment(kind="image", url="file:///etc/passwd"))
