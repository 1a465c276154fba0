"""TelegramAdapter against a local fake Bot API (tests/support/fake_telegram.py)."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest

from buzzi.channels.base import (
    Attachment,
    CredentialsError,
    PayloadError,
    SendError,
    VerificationError,
)
from buzzi.channels.outbound import MediaTooLargeError, OutboundHttp, with_retry
from buzzi.channels.telegram import TelegramAdapter
from tests.support.channel_factories import channel_webhook, inbound_request, reply_target
from tests.support.fake_telegram import Answer, FakeTelegram

TOKEN = "123456:ABC-DEF_ghi"
SECRET = "s3cret_Token-value"


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def adapter(make_settings, tg: FakeTelegram) -> AsyncIterator[TelegramAdapter]:
    settings = make_settings(channels={"telegram_api_base": tg.url, "media_max_bytes": 1000})
    http = OutboundHttp(settings.channels)
    yield TelegramAdapter(settings.channels, http)
    await http.close()


webhook = partial(channel_webhook, "telegram", secret=SECRET, credentials={"botToken": TOKEN})
request = partial(inbound_request, remote_ip="149.154.160.1")
target = partial(reply_target, "telegram", chat_id="1111111")


USER = {"id": 1111111, "is_bot": False, "first_name": "Ann", "last_name": "Lee", "username": "ann"}
CHAT = {"id": 1111111, "type": "private"}


def update(update_id: int = 10000, **message: Any) -> dict[str, Any]:
    return {"update_id": update_id,
            "message": {"message_id": 1365, "date": 1441645532, "from": USER, "chat": CHAT, **message}}


def parse_one(adapter: TelegramAdapter, body: Any):
    result = adapter.parse(webhook(), request(body))
    assert result.ignored == 0 and len(result.messages) == 1
    return result.messages[0]


# ---- configuration

def test_credentials_are_checked(adapter: TelegramAdapter) -> None:
    assert adapter.validate_credentials({"botToken": f" {TOKEN} "}) == {"botToken": TOKEN}
    for bad in ({}, {"botToken": ""}, {"botToken": "123/../x"}, {"botToken": "nocolon"}):
        with pytest.raises(CredentialsError) as info:
            adapter.validate_credentials(bad)
        assert info.value.field == "botToken"


def test_generated_secret_token_fits_telegram_alphabet(adapter: TelegramAdapter) -> None:
    secret, verify_token = adapter.generate_secrets(None, None)
    assert verify_token is None
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret) and len(secret) >= 32
    assert adapter.generate_secrets(None, None)[0] != secret
    assert adapter.generate_secrets("given_ok-1", None) == ("given_ok-1", None)
    with pytest.raises(CredentialsError) as info:
        adapter.generate_secrets("has space!", None)
    assert info.value.field == "secret"


async def test_on_created_registers_webhook(adapter: TelegramAdapter, tg: FakeTelegram) -> None:
    state = await adapter.on_created(webhook(), "https://gw.example.com/api/webhooks/c1/a1/telegram/wh_tg")
    assert state["registered"] is True and state["botId"] == 123456
    [call] = tg.calls("setWebhook")
    assert call.path == f"/bot{TOKEN}/setWebhook"
    assert call.json["url"] == "https://gw.example.com/api/webhooks/c1/a1/telegram/wh_tg"
    assert call.json["secret_token"] == SECRET
    assert {"message", "edited_message", "callback_query"} <= set(call.json["allowed_updates"])


@pytest.mark.parametrize(("status", "description", "field"), [
    (400, "Bad Request: bad webhook: HTTPS url must be provided for webhook", "url"),
    (401, "Unauthorized", "botToken"),
])
async def test_on_created_refusal_is_a_clear_error(adapter: TelegramAdapter, tg: FakeTelegram, status: int,
                                                   description: str, field: str) -> None:
    tg.script("setWebhook", Answer(status, {"ok": False, "error_code": status, "description": description}))
    with pytest.raises(CredentialsError) as info:
        await adapter.on_created(webhook(), "http://127.0.0.1:8888/x")
    assert info.value.field == field and description in str(info.value)


# ---- verification

async def test_secret_token_header(adapter: TelegramAdapter) -> None:
    await adapter.verify(webhook(), request(update(), {"x-telegram-bot-api-secret-token": SECRET}))
    for headers in ({}, {"x-telegram-bot-api-secret-token": SECRET + "x"},
                    {"x-telegram-bot-api-secret-token": ""}, {"x-telegram-bot-api-secret-token": "é"}):
        with pytest.raises(VerificationError):
            await adapter.verify(webhook(), request(update(), headers))
    no_secret = webhook()
    no_secret.secret = None
    with pytest.raises(VerificationError):
        await adapter.verify(no_secret, request(update(), {"x-telegram-bot-api-secret-token": ""}))


# ---- parsing

def test_parse_text_with_reply(adapter: TelegramAdapter) -> None:
    msg = parse_one(adapter, update(text="hello", reply_to_message={"message_id": 1360, "text": "earlier"}))
    # The dedupe id is (chat, message_id): message_id is unique per chat only (docs/channels.md §10.14).
    assert (msg.message_id, msg.chat_id, msg.sender_id) == ("1111111:1365", "1111111", "1111111")
    assert (msg.text, msg.kind, msg.sender_name, msg.reply_to_id) == ("hello", "text", "Ann Lee", "1360")
    assert msg.timestamp == 1441645532.0
    assert msg.meta["message_id"] == 1365 and msg.meta["update_id"] == 10000


def test_parse_edited_message(adapter: TelegramAdapter) -> None:
    body = {"update_id": 10001, "edited_message": {"message_id": 1365, "date": 1441645532, "edit_date": 1441645600,
                                                   "from": USER, "chat": CHAT, "text": "hello (fixed)"}}
    msg = parse_one(adapter, body)
    assert (msg.message_id, msg.kind, msg.text, msg.timestamp) == (
        "1111111:1365:edit:10001", "edit", "hello (fixed)", 1441645600.0)
    assert msg.edit_of == "1111111:1365"


def test_parse_photo_takes_largest_size_and_caption(adapter: TelegramAdapter) -> None:
    photo = [{"file_id": "small", "file_unique_id": "u1", "width": 90, "height": 60, "file_size": 1200},
             {"file_id": "large", "file_unique_id": "u2", "width": 1280, "height": 853, "file_size": 98000}]
    msg = parse_one(adapter, update(photo=photo, caption="look"))
    assert (msg.text, msg.kind) == ("look", "image")
    [att] = msg.attachments
    assert (att.kind, att.media_id, att.size, att.extra["width"]) == ("image", "large", 98000, 1280)


@pytest.mark.parametrize(("key", "media", "kind"), [
    ("voice", {"file_id": "AwAD", "duration": 2, "mime_type": "audio/ogg", "file_size": 17746}, "voice"),
    ("audio", {"file_id": "CQAC", "duration": 180, "mime_type": "audio/mpeg", "file_name": "song.mp3"}, "audio"),
    ("video", {"file_id": "BAAC", "duration": 5, "mime_type": "video/mp4", "width": 640, "height": 480}, "video"),
    ("document", {"file_id": "BQAC", "file_name": "report.pdf", "mime_type": "application/pdf",
                  "file_size": 52000}, "document"),
    ("sticker", {"file_id": "CAAC", "emoji": "👍", "width": 512, "height": 512}, "sticker"),
])
def test_parse_media(adapter: TelegramAdapter, key: str, media: dict[str, Any], kind: str) -> None:
    msg = parse_one(adapter, update(**{key: media}))
    assert (msg.kind, msg.text) == (kind, "")
    [att] = msg.attachments
    assert (att.kind, att.media_id, att.mime_type, att.name) == (
        kind, media["file_id"], media.get("mime_type"), media.get("file_name"))


def test_parse_location_and_contact(adapter: TelegramAdapter) -> None:
    msg = parse_one(adapter, update(location={"latitude": 52.52, "longitude": 13.405}))
    assert msg.kind == "location"
    assert msg.attachments[0].extra == {"latitude": 52.52, "longitude": 13.405}
    msg = parse_one(adapter, update(contact={"phone_number": "+4912345", "first_name": "Bob", "user_id": 42}))
    assert msg.kind == "contact"
    assert msg.attachments[0].extra == {"phone_number": "+4912345", "first_name": "Bob", "user_id": 42}


def test_parse_callback_query(adapter: TelegramAdapter) -> None:
    body = {"update_id": 10002, "callback_query": {
        "id": "4382bfdwdsb323b2d9", "chat_instance": "-8211", "from": USER, "data": "approve:42",
        "message": {"message_id": 1366, "date": 1441645700, "chat": CHAT, "text": "Approve?"}}}
    msg = parse_one(adapter, body)
    assert (msg.message_id, msg.kind, msg.text, msg.chat_id) == (
        "callback:4382bfdwdsb323b2d9", "interactive", "approve:42", "1111111")
    assert msg.meta["callback_query_id"] == "4382bfdwdsb323b2d9"
    assert msg.reply_to_id == "1366"


@pytest.mark.parametrize("body", [
    {"update_id": 1, "channel_post": {"message_id": 1, "date": 1, "chat": {"id": -100, "type": "channel"},
                                      "sender_chat": {"id": -100}, "text": "news"}},
    {"update_id": 2, "my_chat_member": {"chat": CHAT, "from": USER}},
    {"update_id": 3, "message_reaction": {"chat": CHAT}},
    update(4, text="beep", **{"from": {"id": 999, "is_bot": True, "first_name": "OtherBot"}}),
    update(5, text="echo", **{"from": {"id": 123456, "is_bot": False, "first_name": "Self"}}),
    update(6, new_chat_members=[USER]),
    {"update_id": 7, "callback_query": {"id": "q", "from": USER, "data": "x", "inline_message_id": "i"}},
])
def test_parse_ignores_non_messages_bots_and_service_messages(adapter: TelegramAdapter, body: Any) -> None:
    result = adapter.parse(webhook(), request(body))
    assert (result.messages, result.ignored) == ([], 1)


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b'{"message": {}}', b'{"update_id": "1"}'])
def test_parse_rejects_malformed(adapter: TelegramAdapter, raw: bytes) -> None:
    with pytest.raises(PayloadError):
        adapter.parse(webhook(), request(raw))


# ---- sending

async def test_send_html_escaped_reply(adapter: TelegramAdapter, tg: FakeTelegram) -> None:
    plain = "if a < b && c > d: use snake_case and *stars* <b>not bold</b>"
    text = adapter.format(plain)
    ids = await adapter.send(webhook(), target(inbound={"metadata": {"channel": {"message_id": 1365}}}), text)
    assert ids == ["501"]
    [call] = tg.calls("sendMessage")
    assert call.path == f"/bot{TOKEN}/sendMessage"
    body = call.json
    assert body["parse_mode"] == "HTML" and body["chat_id"] == 1111111
    assert body["reply_parameters"]["message_id"] == 1365
    assert "<" not in body["text"] and ">" not in body["text"]
    assert html.unescape(body["text"]) == plain  # what Telegram shows after entity parsing


def test_parse_forum_topic(adapter: TelegramAdapter) -> None:
    msg = parse_one(adapter, update(text="in topic", is_topic_message=True, message_thread_id=7,
                                    chat={"id": -100200, "type": "supergroup", "is_forum": True}))
    assert (msg.thread_id, msg.meta["message_thread_id"]) == ("7", 7)
    plain = parse_one(adapter, update(text="no topic", message_thread_id=3))  # a reply thread, not a topic
    assert plain.thread_id is None and plain.meta["message_thread_id"] is None


async def test_send_without_reply_keeps_topic(adapter: TelegramAdapter, tg: FakeTelegram) -> None:
    await adapter.send(webhook(), target(chat_id="-100200", meta={"message_thread_id": 7}), "hi")
    body = tg.calls("sendMessage")[0].json
    assert body["chat_id"] == -100200 and body["message_thread_id"] == 7 and "reply_parameters" not in body


async def test_send_falls_back_to_plain_when_entities_do_not_parse(adapter: TelegramAdapter, tg: FakeTelegram) -> None:
    tg.script("sendMessage", Answer(400, {"ok": False, "error_code": 400,
                                          "description": "Bad Request: can't parse entities: unexpected end tag"}))
    await adapter.send(webhook(), target(), adapter.format("1 < 2"))
    first, second = tg.calls("sendMessage")
    assert first.json["parse_mode"] == "HTML"
    assert "parse_mode" not in second.json and second.json["text"] == "1 < 2"


async def test_send_follows_supergroup_migration(adapter: TelegramAdapter, tg: FakeTelegram) -> None:
    tg.script("sendMessage", Answer(400, {"ok": False, "error_code": 400, "description": "Bad Request: group chat "
                                          "was upgraded to a supergroup chat", "parameters": {"migrate_to_chat_id":
                                                                                             -1001234}}))
    assert await adapter.send(webhook(), target(chat_id="-42"), "hi") == ["501"]
    assert [c.json["chat_id"] for c in tg.calls("sendMessage")] == [-42, -1001234]


@pytest.mark.parametrize(("status", "body", "retryable", "retry_after"), [
    (429, {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 7",
           "parameters": {"retry_after": 7}}, True, 7.0),
    (500, {"ok": False, "error_code": 500, "description": "Internal Server Error"}, True, None),
    (502, None, True, None),
    (400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}, False, None),
    (403, {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}, False, None),
    (401, {"ok": False, "error_code": 401, "description": "Unauthorized"}, False, None),
])
async def test_send_error_classification(adapter: TelegramAdapter, tg: FakeTelegram, status: int, body: Any,
                                         retryable: bool, retry_after: float | None) -> None:
    tg.script("sendMessage", Answer(status, body) if body else Answer(status, body=b"<html>bad gateway</html>",
                                                                       content_type="text/html"))
    with pytest.raises(SendError) as info:
        await adapter.send(webhook(), target(), "hi")
    assert (info.value.retryable, info.value.retry_after, info.value.status) == (retryable, retry_after, status)
    assert TOKEN not in str(info.value)


async def test_with_retry_honours_retry_after_then_succeeds(adapter: TelegramAdapter, tg: FakeTelegram) -> None:
    tg.script("sendMessage",
              Answer(429, {"ok": False, "error_code": 429, "description": "Too Many Requests",
                           "parameters": {"retry_after": 3}}),
              Answer(502, {"ok": False, "error_code": 502, "description": "Bad Gateway"}))
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    ids = await with_retry(lambda: adapter.send(webhook(), target(), "hi"), max_attempts=5, base=1, cap=60,
                           sleep=sleep)
    assert ids == ["501"] and len(tg.calls("sendMessage")) == 3
    assert slept[0] == 3 and 0 <= slept[1] <= 2


async def test_with_retry_stops_at_permanent_error(adapter: TelegramAdapter, tg: FakeTelegram) -> None:
    tg.script("sendMessage", Answer(403, {"ok": False, "error_code": 403, "description": "Forbidden"}))
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    with pytest.raises(SendError):
        await with_retry(lambda: adapter.send(webhook(), target(), "hi"), max_attempts=5, base=1, cap=60, sleep=sleep)
    assert slept == [] and len(tg.calls("sendMessage")) == 1


async def test_network_error_is_retryable_and_hides_token(make_settings) -> None:
    settings = make_settings(channels={"telegram_api_base": "http://127.0.0.1:1"})
    http = OutboundHttp(settings.channels)
    try:
        with pytest.raises(SendError) as info:
            await TelegramAdapter(settings.channels, http).send(webhook(), target(), "hi")
    finally:
        await http.close()
    assert info.value.retryable and TOKEN not in str(info.value) and "ABC-DEF" not in str(info.value)


# ---- typing, acknowledge, media

async def test_typing_and_acknowledge(adapter: TelegramAdapter, tg: FakeTelegram) -> None:
    await adapter.typing(webhook(), target())
    assert tg.calls("sendChatAction")[0].json == {"chat_id": 1111111, "action": "typing"}
    tg.script("sendChatAction", Answer(500, {"ok": False, "error_code": 500, "description": "oops"}))
    await adapter.typing(webhook(), target())  # best effort: no exception

    body = {"update_id": 9, "callback_query": {"id": "cbq-1", "from": USER, "data": "yes",
                                               "message": {"message_id": 5, "date": 1, "chat": CHAT}}}
    await adapter.acknowledge(webhook(), parse_one(adapter, body))
    assert tg.calls("answerCallbackQuery")[0].json == {"callback_query_id": "cbq-1"}
    await adapter.acknowledge(webhook(), parse_one(adapter, update(text="plain")))
    assert len(tg.calls("answerCallbackQuery")) == 1


async def test_download_media(adapter: TelegramAdapter, tg: FakeTelegram) -> None:
    tg.files["files/AwAD.bin"] = b"OggS-voice"
    data, mime = await adapter.download_media(webhook(), Attachment(kind="voice", media_id="AwAD",
                                                                    mime_type="audio/ogg"))
    assert (data, mime) == (b"OggS-voice", "audio/ogg")
    assert tg.calls("getFile")[0].json == {"file_id": "AwAD"}
    assert tg.requests[-1].path == f"/file/bot{TOKEN}/files/AwAD.bin"


async def test_download_media_is_size_limited(adapter: TelegramAdapter, tg: FakeTelegram) -> None:
    tg.files["files/big.bin"] = b"x" * 2000  # media_max_bytes is 1000 in this module
    with pytest.raises(MediaTooLargeError):
        await adapter.download_media(webhook(), Attachment(kind="document", media_id="big"))
    with pytest.raises(MediaTooLargeError):
        await adapter.download_media(webhook(), Attachment(kind="document", media_id="big", size=5000))
    assert len(tg.calls("getFile")) == 1  # the declared size refused the second without a call
