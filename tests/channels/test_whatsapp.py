"""WhatsApp Cloud API adapter: handshake, signature, parsing of docs/channels.md samples, send, typing,
error classes and two-step media download against a local fake Graph server."""

from __future__ import annotations

import hashlib
import json
from functools import partial

import pytest

from buzzi.channels.base import (
    Attachment,
    CredentialsError,
    PayloadError,
    SendError,
    VerificationError,
)
from buzzi.channels.outbound import USER_AGENT, MediaTooLargeError, with_retry
from buzzi.channels.whatsapp import WhatsAppAdapter
from buzzi.config import load_settings
from buzzi.signing import hub_signature
from tests.support.channel_factories import reply_target
from tests.support.fake_meta import (
    APP_SECRET,
    GRAPH_PREFIX,
    VERIFY_TOKEN,
    WA_CONTACT,
    WA_METADATA,
    WA_STATUS_SAMPLE,
    WA_TEXT_SAMPLE,
    Reply,
    adapter_on_server,
    handshake_request,
    meta_webhook,
    signed_request,
    wa_envelope,
    wa_message,
)

CREDS = {"phoneNumberId": "106540352242922", "accessToken": "EAAG-test-token-123"}
WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
SEND_PATH = f"{GRAPH_PREFIX}/106540352242922/messages"


@pytest.fixture
def adapter() -> WhatsAppAdapter:
    return WhatsAppAdapter(load_settings(env={}).channels, http=None)


webhook = partial(meta_webhook, "whatsapp", CREDS)
target = partial(reply_target, "whatsapp", "16505551234", meta={"phone_number_id": "106540352242922"},
                 inbound={"channel_message_id": WAMID})


class RecordedSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


# ---------------------------------------------------------------------------- configuration

def test_credentials_are_normalised_and_bad_fields_named(adapter):
    assert adapter.validate_credentials({**CREDS, "phoneNumberId": " 106540352242922 ", "x": 1}) == CREDS
    with pytest.raises(CredentialsError) as missing:
        adapter.validate_credentials({"phoneNumberId": "1"})
    assert missing.value.field == "accessToken"
    with pytest.raises(CredentialsError) as path:
        adapter.validate_credentials({**CREDS, "phoneNumberId": "12/../me"})
    assert path.value.field == "phoneNumberId"
    with pytest.raises(CredentialsError):
        adapter.validate_credentials("nope")


def test_app_secret_is_required_and_verify_token_generated(adapter):
    with pytest.raises(CredentialsError) as exc:
        adapter.generate_secrets(None, None)
    assert exc.value.field == "secret"
    secret, token = adapter.generate_secrets("app-secret", None)
    assert secret == "app-secret" and token and len(token) >= 20
    assert adapter.generate_secrets("app-secret", "mine") == ("app-secret", "mine")


def test_handshake_echoes_challenge_only_for_the_right_token(adapter):
    ok = adapter.handshake(webhook(), handshake_request(
        {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}))
    assert (ok.status, ok.body, ok.content_type) == (200, "1158201444", "text/plain")
    for query in ({"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
                  {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
                  {}):
        assert adapter.handshake(webhook(), handshake_request(query)).status == 403
    no_token = meta_webhook("whatsapp", CREDS, verify_token="")
    assert adapter.handshake(no_token, handshake_request(
        {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"})).status == 403


# ---------------------------------------------------------------------------- signature

def test_g1_vector():
    # docs/channels.md §9 G1 (GitHub's published X-Hub-Signature-256 example)
    assert hub_signature("It's a Secret to Everybody", b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")


async def test_g1_vector_through_the_adapter(adapter):
    hook = meta_webhook("whatsapp", CREDS, secret="It's a Secret to Everybody")
    request = signed_request(b"Hello, World!", signature=(
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"))
    await adapter.verify(hook, request)


async def test_signature_over_raw_non_ascii_bytes(adapter):
    raw = wa_message({"from": "16505551234", "id": "wamid.X", "timestamp": "1", "type": "text",
                      "text": {"body": "Café ☕ @home"}}).replace(b"\\u00e9", "é".encode())
    assert "é".encode() in raw
    request = signed_request(raw)
    await adapter.verify(webhook(), request)
    assert adapter.parse(webhook(), request).messages[0].text == "Café ☕ @home"
    # the same JSON re-serialised (escaped unicode, other spacing) is different bytes: rejected
    reserialised = json.dumps(json.loads(raw)).encode()
    with pytest.raises(VerificationError):
        await adapter.verify(webhook(), signed_request(reserialised, signature=hub_signature(APP_SECRET, raw)))


async def test_missing_or_wrong_signature_rejected(adapter):
    body = WA_TEXT_SAMPLE
    with pytest.raises(VerificationError):
        await adapter.verify(webhook(), signed_request(body, signature=""))
    with pytest.raises(VerificationError):
        await adapter.verify(webhook(), signed_request(body, secret="another-secret"))
    with pytest.raises(VerificationError):
        await adapter.verify(meta_webhook("whatsapp", CREDS, secret=""), signed_request(body, secret=""))


# ---------------------------------------------------------------------------- parsing

def test_doc_text_sample(adapter):
    result = adapter.parse(webhook(), signed_request(WA_TEXT_SAMPLE))
    assert result.ignored == 0 and len(result.messages) == 1
    m = result.messages[0]
    assert (m.channel, m.message_id, m.chat_id, m.sender_id, m.sender_name) == (
        "whatsapp", WAMID, "16505551234", "16505551234", "Sheena Nelson")
    assert (m.text, m.kind, m.timestamp) == ("Does it come in another color?", "text", 1749416383.0)
    assert m.meta["phone_number_id"] == "106540352242922" and m.meta["wamid"] == WAMID


def test_status_receipts_and_errors_only_are_not_answered(adapter):
    result = adapter.parse(webhook(), signed_request(WA_STATUS_SAMPLE))
    assert result.messages == [] and result.drops == {"receipt": 1}
    (receipt,) = result.receipts
    assert (receipt.status, receipt.error["code"], receipt.retryable) == ("failed", 131049, False)
    errors_only = wa_envelope({"metadata": WA_METADATA, "errors": [{"code": 131000, "title": "x"}]})
    result = adapter.parse(webhook(), signed_request(errors_only))
    assert result.messages == [] and result.receipts == [] and result.drops == {"async_error": 1}


def item(kind: str, body: dict, **extra) -> dict:
    return {"from": "16505551234", "id": f"wamid.{kind}", "timestamp": "1749416383", "type": kind,
            kind: body, **extra}


@pytest.mark.parametrize(("message", "kind", "text", "attachment"), [
    (item("image", {"caption": "This is a caption", "mime_type": "image/jpeg", "sha256": "81d3",
                    "id": "2754859441498128"}),
     "image", "This is a caption", {"kind": "image", "media_id": "2754859441498128", "mime_type": "image/jpeg"}),
    (item("audio", {"mime_type": "audio/ogg; codecs=opus", "sha256": "h", "id": "55", "voice": True}),
     "audio", "", {"kind": "voice", "media_id": "55"}),
    (item("audio", {"mime_type": "audio/mpeg", "id": "56"}), "audio", "", {"kind": "audio", "media_id": "56"}),
    (item("video", {"mime_type": "video/mp4", "id": "57"}), "video", "", {"kind": "video", "media_id": "57"}),
    (item("document", {"caption": "invoice", "filename": "inv-42.pdf", "mime_type": "application/pdf", "id": "58"}),
     "document", "invoice", {"kind": "document", "name": "inv-42.pdf", "media_id": "58"}),
    (item("sticker", {"mime_type": "image/webp", "id": "59"}), "sticker", "", {"kind": "sticker", "media_id": "59"}),
    (item("location", {"latitude": 37.483, "longitude": -122.148, "name": "Meta HQ",
                       "address": "1 Hacker Way, Menlo Park, CA 94025"}),
     "location", "Meta HQ, 1 Hacker Way, Menlo Park, CA 94025 (37.483, -122.148)", {"kind": "location"}),
])
def test_media_and_location_messages(adapter, message, kind, text, attachment):
    m = adapter.parse(webhook(), signed_request(wa_message(message))).messages[0]
    assert (m.kind, m.text) == (kind, text)
    assert {k: getattr(m.attachments[0], k) for k in attachment} == attachment


def test_interactive_template_button_and_context(adapter):
    context = {"from": "15550783881", "id": "wamid.buttons"}
    button = item("interactive", {"type": "button_reply", "button_reply": {"id": "cancel-button", "title": "Cancel"}},
                  context=context)
    listed = item("interactive", {"type": "list_reply", "list_reply": {"id": "row-2", "title": "Blue",
                                                                       "description": "d"}})
    template = item("button", {"payload": "approve_67", "text": "Approve"}, context=context)
    body = wa_envelope({"metadata": WA_METADATA, "contacts": [WA_CONTACT], "messages": [button, listed]},
                       {"metadata": WA_METADATA, "contacts": [WA_CONTACT], "messages": [template]})
    first, second, third = adapter.parse(webhook(), signed_request(body)).messages
    assert (first.kind, first.text, first.meta["payload"], first.reply_to_id) == (
        "interactive", "Cancel", "cancel-button", "wamid.buttons")
    assert (second.text, second.meta["payload"], second.meta["interactive_type"]) == ("Blue", "row-2", "list_reply")
    assert (third.kind, third.text, third.meta["payload"], third.reply_to_id) == (
        "button", "Approve", "approve_67", "wamid.buttons")


def test_edit_is_its_own_message_pointing_at_the_original(adapter):
    edit = {"from": "16505551234", "id": "wamid.EDIT", "timestamp": "1749854575", "type": "edit",
            "edit": {"original_message_id": "wamid.ORIG", "message": {"type": "image", "image": {
                "caption": "Updated image caption", "mime_type": "image/jpeg", "sha256": "a1b2", "id": "1234567890"}}}}
    m = adapter.parse(webhook(), signed_request(wa_message(edit))).messages[0]
    assert (m.message_id, m.kind, m.text, m.reply_to_id) == (
        "wamid.EDIT", "edit", "Updated image caption", "wamid.ORIG")
    assert m.attachments[0].media_id == "1234567890" and m.meta["original_message_id"] == "wamid.ORIG"


def test_reactions_are_dropped_and_unsupported_kept_for_a_polite_answer(adapter):
    reaction = item("reaction", {"message_id": "wamid.X", "emoji": "👍"})
    unsupported = item("unsupported", {"type": "poll_creation"})
    result = adapter.parse(webhook(), signed_request(
        wa_envelope({"metadata": WA_METADATA, "messages": [reaction, unsupported]})))
    assert result.ignored == 1 and result.drops == {"reaction": 1}
    (m,) = result.messages
    assert (m.kind, m.text, m.meta["unsupported_type"]) == ("unsupported", "", "poll_creation")


def test_batches_across_entries_and_changes(adapter):
    def text(n: int, sender: str) -> dict:
        return {"from": sender, "id": f"wamid.{n}", "timestamp": "1", "type": "text", "text": {"body": f"m{n}"}}

    contacts = [WA_CONTACT, {"profile": {"name": "Bo"}, "wa_id": "4915112345"}]
    change_a = {"value": {"metadata": WA_METADATA, "contacts": contacts,
                          "messages": [text(1, "16505551234"), text(2, "4915112345")]}, "field": "messages"}
    change_b = {"value": {"metadata": WA_METADATA, "statuses": [{"id": "wamid.s", "status": "read"}]},
                "field": "messages"}
    other = {"value": {"event": "x"}, "field": "account_update"}
    entry2 = {"id": "2", "changes": [{"value": {"metadata": WA_METADATA, "messages": [text(3, "1")]},
                                      "field": "messages"}]}
    body = json.dumps({"object": "whatsapp_business_account",
                       "entry": [{"id": "1", "changes": [change_a, change_b, other]}, entry2]}).encode()
    result = adapter.parse(webhook(), signed_request(body))
    assert [(m.message_id, m.sender_name) for m in result.messages] == [
        ("wamid.1", "Sheena Nelson"), ("wamid.2", "Bo"), ("wamid.3", None)]
    assert result.ignored == 2


@pytest.mark.parametrize(("body", "fragment"), [
    (b"{not json", "malformed JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"object": "page", "entry": []}', "whatsapp_business_account"),
    (b'{"object": "whatsapp_business_account"}', "entry"),
    (b'{"object": "whatsapp_business_account", "entry": [{"changes": "x"}]}', "changes"),
    (b'\xff\xfe{', "malformed JSON"),
])
def test_malformed_payloads(adapter, body, fragment):
    with pytest.raises(PayloadError) as exc:
        adapter.parse(webhook(), signed_request(body))
    assert fragment in str(exc.value)


# ---------------------------------------------------------------------------- send

async def test_send_request_shape(make_settings):
    async with adapter_on_server(WhatsAppAdapter, make_settings) as (adapter, graph):
        graph.script("POST", SEND_PATH, Reply(200, {"messaging_product": "whatsapp",
                                                    "contacts": [{"input": "16505551234", "wa_id": "16505551234"}],
                                                    "messages": [{"id": "wamid.OUT"}]}))
        assert await adapter.send(webhook(), target(), "Hello *there* é") == ["wamid.OUT"]
        (request,) = graph.to(SEND_PATH)
        assert request.headers["authorization"] == "Bearer EAAG-test-token-123"
        assert "access_token" not in request.query
        assert request.json() == {
            "messaging_product": "whatsapp", "recipient_type": "individual", "to": "16505551234", "type": "text",
            "text": {"preview_url": False, "body": "Hello *there* é"}, "context": {"message_id": WAMID}}


async def test_send_without_inbound_message_has_no_context(make_settings):
    async with adapter_on_server(WhatsAppAdapter, make_settings) as (adapter, graph):
        graph.always("POST", SEND_PATH, Reply(200, {"messages": [{"id": "wamid.OUT"}]}))
        await adapter.send(webhook(), target(inbound=None), "hi")
        assert "context" not in graph.to(SEND_PATH)[0].json()


async def test_typing_marks_read_with_indicator_and_swallows_errors(make_settings):
    async with adapter_on_server(WhatsAppAdapter, make_settings) as (adapter, graph):
        graph.script("POST", SEND_PATH, Reply(200, {"success": True}),
                     Reply(400, {"error": {"code": 100, "message": "bad"}}))
        await adapter.typing(webhook(), target())
        await adapter.typing(webhook(), target())  # a 400 must not raise
        await adapter.typing(webhook(), target(inbound=None))  # nothing to mark: no call
        calls = graph.to(SEND_PATH)
        assert len(calls) == 2
        assert calls[0].json() == {"messaging_product": "whatsapp", "status": "read", "message_id": WAMID,
                                   "typing_indicator": {"type": "text"}}


def graph_error(code: int, status: int = 400, headers: dict | None = None) -> Reply:
    return Reply(status, {"error": {"message": f"(#{code}) x", "type": "OAuthException", "code": code,
                                    "fbtrace_id": "A"}}, headers=headers or {})


@pytest.mark.parametrize(("code", "status", "retryable"), [
    (130429, 400, True), (131056, 400, True), (80007, 400, True), (4, 400, True), (131000, 500, True),
    (131016, 503, True), (2, 400, True), (131057, 400, True), (133016, 400, True),
    (131047, 400, False), (131026, 400, False), (131050, 400, False), (131049, 400, False), (131051, 400, False),
    (100, 400, False), (131008, 400, False), (131009, 400, False), (33, 400, False), (190, 401, False),
    (0, 401, False), (10, 403, False), (200, 403, False), (131005, 403, False), (368, 400, False),
    (131031, 400, False), (130497, 400, False), (132000, 400, False), (132001, 400, False), (131052, 400, False),
    (999999, 500, True), (999999, 429, True), (999999, 400, False), (131047, 500, False),
])
async def test_error_classes(make_settings, code, status, retryable):
    async with adapter_on_server(WhatsAppAdapter, make_settings) as (adapter, graph):
        graph.script("POST", SEND_PATH, graph_error(code, status))
        with pytest.raises(SendError) as exc:
            await adapter.send(webhook(), target(), "hi")
        assert (exc.value.retryable, exc.value.code, exc.value.status) == (retryable, code, status)


async def test_with_retry_honours_retry_after_then_succeeds(make_settings):
    async with adapter_on_server(WhatsAppAdapter, make_settings) as (adapter, graph):
        graph.script("POST", SEND_PATH, graph_error(130429, 429, {"Retry-After": "7"}),
                     Reply(200, {"messages": [{"id": "wamid.OK"}]}))
        sleep = RecordedSleep()
        ids = await with_retry(lambda: adapter.send(webhook(), target(), "hi"), max_attempts=5, base=1, cap=60,
                               sleep=sleep)
        assert ids == ["wamid.OK"] and sleep.delays == [7.0] and len(graph.to(SEND_PATH)) == 2


async def test_with_retry_stops_at_once_on_a_permanent_code(make_settings):
    async with adapter_on_server(WhatsAppAdapter, make_settings) as (adapter, graph):
        graph.always("POST", SEND_PATH, graph_error(131047))
        sleep = RecordedSleep()
        with pytest.raises(SendError) as exc:
            await with_retry(lambda: adapter.send(webhook(), target(), "hi"), max_attempts=5, base=1, cap=60,
                             sleep=sleep)
        assert exc.value.code == 131047 and not exc.value.retryable
        assert sleep.delays == [] and len(graph.to(SEND_PATH)) == 1


# ---------------------------------------------------------------------------- media

async def test_media_two_step_download(make_settings):
    data = b"\x89PNG" + bytes(range(256)) * 40
    async with adapter_on_server(WhatsAppAdapter, make_settings) as (adapter, graph):
        graph.always("GET", f"{GRAPH_PREFIX}/2754859441498128", Reply(200, {
            "url": f"{graph.url}/whatsapp_business/attachments/?mid=2754859441498128",
            "mime_type": "image/png", "sha256": hashlib.sha256(data).hexdigest(), "file_size": str(len(data)),
            "id": "2754859441498128", "messaging_product": "whatsapp"}))
        graph.always("GET", "/whatsapp_business/attachments/",
                      Reply(200, body=data, headers={"Content-Type": "application/octet-stream"}))
        got, mime = await adapter.download_media(webhook(), Attachment(kind="image", media_id="2754859441498128"))
        assert (got, mime) == (data, "image/png")
        lookup, fetch = graph.requests
        assert lookup.headers["authorization"] == fetch.headers["authorization"] == "Bearer EAAG-test-token-123"
        assert fetch.headers["user-agent"] == USER_AGENT and fetch.query == {"mid": "2754859441498128"}


async def test_media_size_limit_stops_reading(make_settings):
    big = b"x" * 5000
    async with adapter_on_server(WhatsAppAdapter, make_settings, media_max_bytes=1000) as (adapter, graph):
        # announced too large in the metadata: no download at all
        graph.script("GET", f"{GRAPH_PREFIX}/1", Reply(200, {"url": f"{graph.url}/cdn/1", "file_size": "5000"}))
        with pytest.raises(MediaTooLargeError):
            await adapter.download_media(webhook(), Attachment(kind="image", media_id="1"))
        assert graph.to("/cdn/1") == []
        # size not announced anywhere (chunked): reading stops past the limit
        graph.script("GET", f"{GRAPH_PREFIX}/2", Reply(200, {"url": f"{graph.url}/cdn/2"}))
        graph.script("GET", "/cdn/2", Reply(200, body=big, stream=True))
        with pytest.raises(MediaTooLargeError):
            await adapter.download_media(webhook(), Attachment(kind="image", media_id="2"))
        # Content-Length over the limit
        graph.script("GET", f"{GRAPH_PREFIX}/3", Reply(200, {"url": f"{graph.url}/cdn/3"}))
        graph.script("GET", "/cdn/3", Reply(200, body=big))
        with pytest.raises(MediaTooLargeError):
            await adapter.download_media(webhook(), Attachment(kind="image", media_id="3"))


async def test_media_checksum_mismatch_and_expired_url(make_settings):
    async with adapter_on_server(WhatsAppAdapter, make_settings) as (adapter, graph):
        graph.script("GET", f"{GRAPH_PREFIX}/4", Reply(200, {"url": f"{graph.url}/cdn/4", "sha256": "00" * 32}))
        graph.script("GET", "/cdn/4", Reply(200, body=b"data"))
        with pytest.raises(SendError, match="sha256"):
            await adapter.download_media(webhook(), Attachment(kind="image", media_id="4"))
        graph.script("GET", f"{GRAPH_PREFIX}/5", Reply(200, {"url": f"{graph.url}/cdn/5"}))
        graph.script("GET", "/cdn/5", Reply(404, body=b"gone"))
        with pytest.raises(SendError) as exc:
            await adapter.download_media(webhook(), Attachment(kind="image", media_id="5"))
        assert exc.value.status == 404 and not exc.value.retryable
