"""Custom channel (Standard Webhooks): W1 vector, replay window, docs/contract.md §2 payloads, signed replies."""

from __future__ import annotations

import json
from functools import partial

import pytest

from buzzi.channels.base import Attachment, CredentialsError, PayloadError, SendError, VerificationError
from buzzi.channels.custom import CustomAdapter
from buzzi.channels.outbound import MediaTooLargeError, OutboundHttp, with_retry
from buzzi.config import load_settings
from buzzi.netguard import NetPolicy
from buzzi.signing import new_standard_secret, standard_sign
from tests.support.channel_factories import reply_target
from tests.support.fake_custom import (
    CALLBACK_PATH,
    NOW,
    Reply,
    ScriptedServer,
    custom_request,
    custom_webhook,
    delivery_is_signed,
    message_created,
)

W1_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def adapter() -> CustomAdapter:
    return CustomAdapter(load_settings(env={}).channels, http=None)


@pytest.fixture
def secret() -> str:
    return new_standard_secret()


target = partial(reply_target, "custom", "chat-9", inbound={"content": "hello", "channel_message_id": "ext-1"},
                 reply_id="m_reply")


# ---------------------------------------------------------------------------- configuration

def test_credentials(adapter):
    assert adapter.validate_credentials({"callbackUrl": " https://example.com/hook "}) == {
        "callbackUrl": "https://example.com/hook"}
    for bad in ({}, {"callbackUrl": "ftp://x"}, {"callbackUrl": "https://"}, {"callbackUrl": 3}):
        with pytest.raises(CredentialsError) as exc:
            adapter.validate_credentials(bad)
        assert exc.value.field == "callbackUrl"


def test_secrets_generated_or_validated(adapter):
    secret, token = adapter.generate_secrets(None, None)
    assert secret.startswith("whsec_") and token is None
    assert adapter.generate_secrets(secret, None)[0] == secret
    assert adapter.generate_secrets(W1_SECRET, None)[0] == W1_SECRET
    with pytest.raises(CredentialsError) as exc:
        adapter.generate_secrets("not-a-secret", None)
    assert exc.value.field == "secret"


# ---------------------------------------------------------------------------- verification

def test_w1_vector():
    # docs/channels.md §9 W1 (standard-webhooks reference test)
    assert standard_sign(W1_SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}') == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")


async def test_w1_vector_through_the_adapter(adapter):
    request = custom_request(b'{"test": 2432232314}', W1_SECRET, msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
                             timestamp=1614265330, now=1614265330 + 10,
                             signature="v1,bad v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v2,zzz")
    await adapter.verify(custom_webhook(W1_SECRET), request)


async def test_replay_window(adapter, secret):
    body = message_created()
    hook = custom_webhook(secret)
    await adapter.verify(hook, custom_request(body, secret, timestamp=NOW - 300, now=NOW))
    for skew in (-301, 301):
        with pytest.raises(VerificationError):
            await adapter.verify(hook, custom_request(body, secret, timestamp=NOW + skew, now=NOW))
    adapter = CustomAdapter(adapter.settings, http=None, replay_window=30)
    with pytest.raises(VerificationError):
        await adapter.verify(hook, custom_request(body, secret, timestamp=NOW - 31, now=NOW))


async def test_bad_signatures(adapter, secret):
    body = message_created(text="Grüße 👋")
    hook = custom_webhook(secret)
    await adapter.verify(hook, custom_request(body, secret))
    good = custom_request(body, secret)
    reserialised = json.dumps(json.loads(body)).encode()
    assert reserialised != body
    with pytest.raises(VerificationError):
        await adapter.verify(hook, custom_request(reserialised, secret,
                                                  signature=good.headers["webhook-signature"]))
    with pytest.raises(VerificationError):
        await adapter.verify(hook, custom_request(body, new_standard_secret()))
    missing = custom_request(body, secret)
    del missing.headers["webhook-id"]
    with pytest.raises(VerificationError):
        await adapter.verify(hook, missing)


# ---------------------------------------------------------------------------- parsing

def test_message_created(adapter, secret):
    body = message_created(text="Grüße 👋", reply_to_id="ext-0", attachments=[
        {"url": "https://files.example/a.png", "mime_type": "image/png", "name": "a.png"},
        {"url": "https://files.example/r.pdf"}])
    (m,) = adapter.parse(custom_webhook(secret), custom_request(body, secret, msg_id="msg_abc")).messages
    assert (m.channel, m.message_id, m.chat_id, m.sender_id, m.sender_name, m.text, m.kind, m.reply_to_id) == (
        "custom", "ext-1", "chat-9", "u-7", "Ada", "Grüße 👋", "text", "ext-0")
    assert [(a.kind, a.url, a.name) for a in m.attachments] == [
        ("image", "https://files.example/a.png", "a.png"), ("file", "https://files.example/r.pdf", None)]
    assert m.timestamp == 1750000000.0 and m.meta == {"webhook_message_id": "msg_abc"}


def test_attachment_only_and_other_types(adapter, secret):
    body = message_created(text=None, attachments=[{"url": "https://f/x.ogg", "mime_type": "audio/ogg"}])
    (m,) = adapter.parse(custom_webhook(secret), custom_request(body, secret)).messages
    assert (m.text, m.kind) == ("", "audio")
    other = json.dumps({"type": "message.read", "timestamp": "x", "data": {}}).encode()
    result = adapter.parse(custom_webhook(secret), custom_request(other, secret))
    assert result.messages == [] and result.ignored == 1


@pytest.mark.parametrize(("body", "fragment"), [
    (b"{", "malformed JSON"),
    (b'{"data": {}}', "type"),
    (b'{"type": "message.created", "data": []}', "data"),
    (message_created(message_id=None), "message_id"),
    (message_created(chat_id=None), "chat_id"),
    (message_created(text=None), "text"),
    (message_created(text=5), "text"),
    (message_created(sender="bob"), "sender"),
    (message_created(attachments=[{"url": "file:///etc/passwd"}]), "attachments[0]"),
    (message_created(attachments={"url": "x"}), "attachments"),
])
def test_malformed(adapter, secret, body, fragment):
    with pytest.raises(PayloadError) as exc:
        adapter.parse(custom_webhook(secret), custom_request(body, secret))
    assert fragment in str(exc.value)


# ---------------------------------------------------------------------------- send

class Env:
    def __init__(self, make_settings, **channels):
        settings = make_settings(channels=channels) if channels else make_settings()
        self.settings = settings.channels
        self.policy = NetPolicy.from_settings(settings.security)

    async def __aenter__(self):
        self.server = await ScriptedServer().__aenter__()
        self.http = OutboundHttp(self.settings, self.policy)
        self.adapter = CustomAdapter(self.settings, self.http)
        self.adapter.time_source = lambda: float(NOW)
        return self

    async def __aexit__(self, *exc):
        await self.http.close()
        await self.server.__aexit__(*exc)


async def test_send_is_signed_and_shaped(make_settings, secret):
    async with Env(make_settings) as env:
        env.server.script("POST", CALLBACK_PATH, Reply(200, {"message_id": "their-42"}), Reply(204))
        hook = custom_webhook(secret, env.server.url + CALLBACK_PATH)
        assert await env.adapter.send(hook, target(), "Hi Ada ✓") == ["their-42"]
        ids = await env.adapter.send(hook, target(), "second part")
        first, second = env.server.to(CALLBACK_PATH)
        assert delivery_is_signed(first, secret, NOW) and delivery_is_signed(second, secret, NOW)
        assert first.json() == {"type": "message.reply", "timestamp": "2025-06-15T15:06:40Z",
                                "data": {"chat_id": "chat-9", "reply_to_id": "ext-1", "text": "Hi Ada ✓"}}
        assert "✓".encode() in first.body  # UTF-8 as signed, not re-escaped
        assert first.headers["content-type"] == "application/json"
        assert ids == [second.headers["webhook-id"]] and first.headers["webhook-id"] != ids[0]


async def test_webhook_id_is_stable_across_retries(make_settings, secret):
    async with Env(make_settings) as env:
        env.server.script("POST", CALLBACK_PATH, Reply(503, headers={"Retry-After": "3"}),
                          Reply(429, headers={"Retry-After": "120"}), Reply(200))
        hook = custom_webhook(secret, env.server.url + CALLBACK_PATH)
        delays: list[float] = []

        async def sleep(delay: float) -> None:
            delays.append(delay)
            env.adapter.time_source = lambda: float(NOW + 5)  # a later attempt, a later timestamp

        await with_retry(lambda: env.adapter.send(hook, target(), "hi"), max_attempts=5, base=1, cap=60,
                         sleep=sleep)
        attempts = env.server.to(CALLBACK_PATH)
        assert delays == [3.0, 120.0]  # Retry-After honoured as a "not before", even past the cap
        assert len({a.headers["webhook-id"] for a in attempts}) == 1
        assert [a.headers["webhook-timestamp"] for a in attempts] == [str(NOW), str(NOW + 5), str(NOW + 5)]
        other = CustomAdapter.reply_event_id(hook, target(reply_id="m_other"), "hi")
        assert other != attempts[0].headers["webhook-id"]


@pytest.mark.parametrize(("status", "retryable", "code"), [
    (410, False, "gone"), (301, False, "redirect"), (302, False, "redirect"), (400, False, None),
    (401, False, None), (408, True, None), (429, True, None), (500, True, None), (502, True, None),
])
async def test_status_classes(make_settings, secret, status, retryable, code):
    async with Env(make_settings) as env:
        env.server.script("POST", CALLBACK_PATH, Reply(status, headers={"Location": "https://elsewhere/"}))
        hook = custom_webhook(secret, env.server.url + CALLBACK_PATH)
        with pytest.raises(SendError) as exc:
            await env.adapter.send(hook, target(), "hi")
        assert (exc.value.retryable, exc.value.status, exc.value.code) == (retryable, status, code)
        assert len(env.server.requests) == 1  # a redirect is not followed


async def test_unreachable_callback_is_retryable(make_settings, secret):
    async with Env(make_settings) as env:
        url = env.server.url + CALLBACK_PATH
    hook = custom_webhook(secret, url)  # the server is gone now: connection refused
    async with Env(make_settings) as env:
        calls = 0

        async def call():
            nonlocal calls
            calls += 1
            return await env.adapter.send(hook, target(inbound=None), "hi")

        async def sleep(delay: float) -> None:
            pass

        with pytest.raises(SendError) as exc:
            await with_retry(call, max_attempts=2, base=0.01, cap=0.01, sleep=sleep)
        assert exc.value.retryable and calls == 2


async def test_download_attachment(make_settings, secret):
    async with Env(make_settings, media_max_bytes=10) as env:
        env.server.always("GET", "/f/ok.txt", Reply(200, body=b"0123456789", headers={"Content-Type": "text/plain"}))
        env.server.always("GET", "/f/big.bin", Reply(200, body=b"0" * 11, stream=True))
        hook = custom_webhook(secret)
        got = await env.adapter.download_media(hook, Attachment(kind="file", url=env.server.url + "/f/ok.txt"))
        assert got == (b"0123456789", "text/plain")
        with pytest.raises(MediaTooLargeError):
            await env.adapter.download_media(hook, Attachment(kind="file", url=env.server.url + "/f/big.bin"))
