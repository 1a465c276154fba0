"""WhatsApp as the Cloud API is in 2026 (issue 11): username customers known only by their
business-scoped user id (BSUID), statuses[] as delivery receipts, the re-engagement template,
order / Flows / unsupported messages, edits, base64 or hex media digests and the rate-limit codes.
Payloads follow Meta's webhook reference pages (named per test); sends go to the local fake Graph,
and one test runs a BSUID-only customer through a running gateway."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from functools import partial

import pytest

from buzzi.channels.base import Attachment, CredentialsError, SendError
from buzzi.channels.meta import GRAPH_RATE_LIMITS
from buzzi.channels.whatsapp import WHATSAPP_ERRORS, WhatsAppAdapter
from buzzi.config import load_settings
from buzzi.models import Conversation
from tests.support.channel_factories import reply_target
from tests.support.fake_meta import (
    GRAPH_PREFIX,
    WA_BSUID,
    WA_CONTACT,
    WA_METADATA,
    WA_PAIR_LIMIT_ERROR,
    WA_PARENT_BSUID,
    WA_USERNAME_CONTACT,
    Reply,
    WhatsAppSends,
    adapter_on_server,
    meta_webhook,
    signed_request,
    wa_envelope,
    wa_status,
    wa_status_error,
)
from tests.support.waiting import wait_until
from tests.webhooks.kit import WA_SEND, ChannelLab, channel_lab

CREDS = {"phoneNumberId": "106540352242922", "accessToken": "EAAG-test-token-123"}
SEND_PATH = f"{GRAPH_PREFIX}/106540352242922/messages"
PHONE = WA_CONTACT["wa_id"]
TEMPLATE = {"name": "hello_again", "language": "en_US"}

webhook = partial(meta_webhook, "whatsapp", CREDS)


@pytest.fixture
def adapter() -> WhatsAppAdapter:
    return WhatsAppAdapter(load_settings(env={}).channels, http=None)


def parse(adapter: WhatsAppAdapter, *values: dict):
    return adapter.parse(webhook(), signed_request(wa_envelope(*values)))


def text_item(wamid: str = "wamid.BSUID1", **who) -> dict:
    return {"id": wamid, "timestamp": "1749416383", "type": "text", "text": {"body": "Hi there"}, **who}


def one(adapter: WhatsAppAdapter, item: dict, contacts: list | None = None):
    value = {"metadata": WA_METADATA, "messages": [item]}
    if contacts is not None:
        value["contacts"] = contacts
    result = parse(adapter, value)
    assert len(result.messages) == 1, result
    return result.messages[0]


# ---------------------------------------------------------------------------- BSUID
# Meta: business-scoped-user-ids

def test_a_username_customer_without_phone_is_known_by_bsuid(adapter):
    m = one(adapter, text_item(from_user_id=WA_BSUID), [WA_USERNAME_CONTACT])
    assert (m.chat_id, m.sender_id, m.chat_aliases, m.sender_name) == (WA_BSUID, WA_BSUID, [], "Sheena Nelson")
    assert (m.meta["user_id"], m.meta["username"]) == (WA_BSUID, "@sheena")
    # only contacts[].user_id names it (no from_user_id): still the BSUID
    m = one(adapter, text_item(), [WA_USERNAME_CONTACT])
    assert (m.chat_id, m.text) == (WA_BSUID, "Hi there")


def test_phone_and_bsuid_keep_the_phone_as_chat_and_the_bsuid_as_alias(adapter):
    contact = {**WA_CONTACT, "user_id": WA_BSUID, "parent_user_id": WA_PARENT_BSUID}
    m = one(adapter, text_item(**{"from": PHONE, "from_user_id": WA_BSUID}), [contact])
    assert (m.chat_id, m.sender_id, m.chat_aliases) == (PHONE, PHONE, [WA_BSUID])
    assert m.meta["parent_user_id"] == WA_PARENT_BSUID and m.sender_name == "Sheena Nelson"
    # a phone-only customer, as before BSUIDs: no alias
    assert one(adapter, text_item(**{"from": PHONE}), [WA_CONTACT]).chat_aliases == []


def test_contacts_are_matched_to_their_own_message(adapter):
    other = {"profile": {"name": "Bo"}, "user_id": "DE.77"}
    value = {"metadata": WA_METADATA, "contacts": [WA_USERNAME_CONTACT, other],
             "messages": [text_item("wamid.a", from_user_id="DE.77"), text_item("wamid.b", from_user_id=WA_BSUID)]}
    first, second = parse(adapter, value).messages
    assert (first.chat_id, first.sender_name) == ("DE.77", "Bo")
    assert (second.chat_id, second.sender_name) == (WA_BSUID, "Sheena Nelson")


@pytest.mark.parametrize("bad", ["US.13491208655302741918/../x", "us.1349", "US." + "9" * 129, "US", "",
                                 "US.1349 2", 12345, {"id": "US.1"}])
def test_a_malformed_bsuid_is_never_trusted(adapter, bad):
    result = parse(adapter, {"metadata": WA_METADATA, "contacts": [{"profile": {"name": "X"}, "user_id": bad}],
                             "messages": [text_item(from_user_id=bad)]})
    assert result.messages == [] and result.drops == {"no_sender": 1}
    m = one(adapter, text_item(**{"from": PHONE, "from_user_id": bad}), [WA_CONTACT])
    assert (m.chat_id, m.chat_aliases) == (PHONE, []) and "user_id" not in m.meta


async def test_replies_to_a_bsuid_go_in_recipient_and_to_a_phone_in_to(make_settings):
    async with adapter_on_server(WhatsAppAdapter, make_settings) as (adapter, graph):
        sends = WhatsAppSends()
        graph.always("POST", SEND_PATH, sends)
        assert await adapter.send(webhook(), reply_target("whatsapp", WA_BSUID), "hello") == ["wamid.OUT1"]
        assert await adapter.send(webhook(), reply_target("whatsapp", PHONE), "hello") == ["wamid.OUT2"]
        to_bsuid, to_phone = (r.json() for r in graph.to(SEND_PATH))
        assert to_bsuid["recipient"] == WA_BSUID and "to" not in to_bsuid
        assert to_phone["to"] == PHONE and "recipient" not in to_phone


# ---------------------------------------------------------------------------- receipts
# Meta: webhooks/reference/messages/status

def test_statuses_become_receipts_in_any_order(adapter):
    statuses = [wa_status("wamid.A", "read", timestamp=30), wa_status("wamid.A", "sent", timestamp=10),
                wa_status("wamid.B", "delivered", recipient=WA_BSUID), wa_status("wamid.C", "played"),
                wa_status("wamid.D", "deleted")]
    result = parse(adapter, {"metadata": WA_METADATA, "statuses": statuses})
    assert [(r.status, r.message_ids, r.timestamp) for r in result.receipts] == [
        ("read", ["wamid.A"], 30.0), ("sent", ["wamid.A"], 10.0), ("delivered", ["wamid.B"], 1751142888.0),
        ("read", ["wamid.C"], 1751142888.0)]  # a played voice message was displayed first: read
    assert result.messages == [] and result.drops == {"receipt": 4, "unsupported_receipt": 1}
    assert all(r.error is None and not r.retryable for r in result.receipts)


@pytest.mark.parametrize(("code", "retryable", "retry_after"), [
    (131049, False, None), (131047, False, None), (131026, False, None),
    (130429, True, None), (131000, True, None), (131016, True, None), (131057, True, None), (133016, True, None),
    (131056, True, 60.0), (80007, True, None), (4, True, None),
])
def test_failed_statuses_carry_the_error_and_whether_to_retry(adapter, code, retryable, retry_after):
    error = wa_status_error(code, "Rate limit hit", "Message failed to send because of the limit.")
    result = parse(adapter, {"metadata": WA_METADATA, "statuses": [wa_status("wamid.F", "failed", errors=[error])]})
    (receipt,) = result.receipts
    assert receipt.status == "failed" and receipt.message_ids == ["wamid.F"]
    assert receipt.error == {"code": code, "title": "Rate limit hit",
                             "details": "Message failed to send because of the limit."}
    assert (receipt.retryable, receipt.retry_after) == (retryable, retry_after)


def test_a_failed_status_without_errors_still_fails_visibly(adapter):
    (receipt,) = parse(adapter, {"metadata": WA_METADATA, "statuses": [wa_status("wamid.F", "failed")]}).receipts
    assert receipt.error == {"code": None, "title": "Message failed"} and not receipt.retryable


def test_asynchronous_errors_are_logged_and_dropped(adapter, caplog):
    caplog.set_level(logging.WARNING, "buzzi.channels")
    error = {"code": 131000, "title": "Something went wrong", "message": "Something went wrong",
             "error_data": {"details": "Unknown error."}}
    result = parse(adapter, {"metadata": WA_METADATA, "errors": [error, error]})
    assert (result.messages, result.receipts, result.drops) == ([], [], {"async_error": 2})
    assert "131000" in caplog.text and "Something went wrong" in caplog.text


# ---------------------------------------------------------------------------- what reaches the agent

@pytest.mark.parametrize(("kind", "body", "reason"), [
    ("reaction", {"message_id": "wamid.X", "emoji": "👍"}, "reaction"),
    ("revoke", {"original_message_id": "wamid.X"}, "revoke"),
    ("system", {"body": "User A changed from 1 to 2", "type": "user_changed_number"}, "system"),
    ("request_welcome", {}, "request_welcome"),
    ("ephemeral", {}, "ephemeral"),
])
def test_events_that_are_not_messages_are_dropped_with_a_reason(adapter, kind, body, reason):
    item = {"from": PHONE, "id": f"wamid.{kind}", "timestamp": "1", "type": kind, kind: body}
    result = parse(adapter, {"metadata": WA_METADATA, "contacts": [WA_CONTACT], "messages": [item]})
    assert result.messages == [] and result.drops == {reason: 1} and result.ignored == 1


def test_account_updates_and_empty_changes_are_dropped(adapter):
    body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}},
        {"field": "messages", "value": {"messaging_product": "whatsapp", "metadata": WA_METADATA}}]}]}).encode()
    assert adapter.parse(webhook(), signed_request(body)).drops == {"unsupported_event": 1, "empty_change": 1}


def test_unsupported_and_unknown_types_become_unsupported_messages(adapter):
    # Meta: webhooks/reference/messages/unsupported
    unsupported = {"from": PHONE, "id": "wamid.U1", "timestamp": "1", "type": "unsupported",
                   "unsupported": {"type": "poll_creation"},
                   "errors": [{"code": 131051, "title": "Message type unknown",
                               "message": "Message type unknown",
                               "error_data": {"details": "Message type is currently not supported."}}]}
    future = {"from": PHONE, "id": "wamid.U2", "timestamp": "1", "type": "hologram", "hologram": {"x": 1}}
    first, second = parse(adapter, {"metadata": WA_METADATA, "contacts": [WA_CONTACT],
                                    "messages": [unsupported, future]}).messages
    assert (first.kind, first.text, first.message_id, first.chat_id) == ("unsupported", "", "wamid.U1", PHONE)
    assert first.meta["unsupported_type"] == "poll_creation"
    assert first.meta["error"] == {"code": 131051, "title": "Message type unknown",
                                   "details": "Message type is currently not supported."}
    assert (second.kind, second.meta["unsupported_type"]) == ("unsupported", "hologram")


def test_an_order_reaches_the_agent_as_text(adapter):
    # Meta: webhooks/reference/messages/order
    item = {"from": PHONE, "id": "wamid.ORDER", "timestamp": "1", "type": "order", "order": {
        "catalog_id": "154345678901234", "text": "Please gift wrap",
        "product_items": [{"product_retailer_id": "sku-red-42", "quantity": 2, "item_price": 12.5, "currency": "EUR"},
                          {"product_retailer_id": "sku-cap", "quantity": "1", "item_price": 9, "currency": "EUR"}]}}
    m = one(adapter, item, [WA_CONTACT])
    assert m.kind == "order"
    assert m.text == ("Order from catalog 154345678901234:\n- sku-red-42 x 2 @ 12.5 EUR\n- sku-cap x 1 @ 9 EUR\n"
                      "Note: Please gift wrap")
    assert m.meta["order"]["items"][0] == {"product_retailer_id": "sku-red-42", "quantity": 2.0,
                                           "item_price": 12.5, "currency": "EUR"}
    many = {**item, "order": {"catalog_id": "1", "product_items": [
        {"product_retailer_id": "p" * 1000, "quantity": 1, "item_price": 1, "currency": "EUR"}] * 500}}
    bounded = one(adapter, many, [WA_CONTACT])
    assert len(bounded.text) <= 2000 and len(bounded.meta["order"]["items"]) == 30


def test_a_flow_response_reaches_the_agent_as_its_fields(adapter):
    # Meta: flows/guides/receiveflowresponse
    response = {"flow_token": "tok-123", "name": "Ann Lee", "date": "2026-07-01", "guests": 3, "empty": ""}
    item = {"from": PHONE, "id": "wamid.FLOW", "timestamp": "1", "type": "interactive",
            "context": {"from": "15550783881", "id": "wamid.SENTFLOW"},
            "interactive": {"type": "nfm_reply", "nfm_reply": {"name": "flow", "body": "Sent",
                                                               "response_json": json.dumps(response)}}}
    m = one(adapter, item, [WA_CONTACT])
    assert (m.kind, m.reply_to_id) == ("interactive", "wamid.SENTFLOW")
    assert m.text == "Form response:\nname: Ann Lee\ndate: 2026-07-01\nguests: 3"
    assert (m.meta["interactive_type"], m.meta["flow_name"], m.meta["flow_token"]) == ("nfm_reply", "flow", "tok-123")
    huge = {f"field_{n}": "v" * 5000 for n in range(200)}
    item["interactive"]["nfm_reply"]["response_json"] = json.dumps(huge)
    bounded = one(adapter, item, [WA_CONTACT])
    assert len(bounded.text) <= 2000 and bounded.text.count("\n") <= 30
    item["interactive"]["nfm_reply"]["response_json"] = "{not json"
    assert one(adapter, item, [WA_CONTACT]).text == "Sent"


def test_an_edit_names_the_message_it_changes(adapter):
    edit = {"from": PHONE, "id": "wamid.EDIT", "timestamp": "1749854575", "type": "edit",
            "edit": {"original_message_id": "wamid.ORIG", "message": {"type": "text", "text": {"body": "5 pm, not 4"}}}}
    m = one(adapter, edit, [WA_CONTACT])
    assert (m.message_id, m.kind, m.edit_of, m.text, m.chat_id) == ("wamid.EDIT", "edit", "wamid.ORIG", "5 pm, not 4",
                                                                     PHONE)
    unreadable = {**edit, "edit": {"original_message_id": "wamid.ORIG", "message": {"type": "poll"}}}
    result = parse(adapter, {"metadata": WA_METADATA, "contacts": [WA_CONTACT], "messages": [unreadable]})
    assert result.messages == [] and result.drops == {"unsupported_edit": 1}


# ---------------------------------------------------------------------------- media digests (docs/channels.md §2.4)

DATA = b"\x89PNG" + bytes(range(256)) * 8
DIGEST = hashlib.sha256(DATA).digest()


@pytest.mark.parametrize("announced", [
    DIGEST.hex(), DIGEST.hex().upper(), base64.b64encode(DIGEST).decode(),
    base64.urlsafe_b64encode(DIGEST).decode().rstrip("="),
])
async def test_media_digest_in_hex_or_base64_is_checked_as_bytes(make_settings, announced):
    async with adapter_on_server(WhatsAppAdapter, make_settings) as (adapter, graph):
        graph.always("GET", f"{GRAPH_PREFIX}/77", Reply(200, {"url": f"{graph.url}/cdn/77", "sha256": announced,
                                                             "mime_type": "image/png", "id": "77"}))
        graph.always("GET", "/cdn/77", Reply(200, body=DATA))
        assert await adapter.download_media(webhook(), Attachment(kind="image", media_id="77")) == (DATA, "image/png")
        # the webhook's own digest is used when the lookup gives none
        graph.always("GET", f"{GRAPH_PREFIX}/78", Reply(200, {"url": f"{graph.url}/cdn/77"}))
        got = await adapter.download_media(webhook(), Attachment(kind="image", media_id="78",
                                                                 extra={"sha256": announced}))
        assert got[0] == DATA


@pytest.mark.parametrize("announced", [
    base64.b64encode(hashlib.sha256(b"other").digest()).decode(), hashlib.sha256(b"other").hexdigest(),
    "not-a-digest!", base64.b64encode(DIGEST[:16]).decode(),
])
async def test_a_wrong_digest_in_either_form_fails_the_download(make_settings, announced):
    async with adapter_on_server(WhatsAppAdapter, make_settings) as (adapter, graph):
        graph.always("GET", f"{GRAPH_PREFIX}/79", Reply(200, {"url": f"{graph.url}/cdn/79", "sha256": announced}))
        graph.always("GET", "/cdn/79", Reply(200, body=DATA))
        with pytest.raises(SendError, match="sha256"):
            await adapter.download_media(webhook(), Attachment(kind="image", media_id="79"))


# ---------------------------------------------------------------------------- the 24-hour window

def test_the_channel_declares_its_window_and_typing_interval():
    assert WhatsAppAdapter.service_window == 24 * 3600 and WhatsAppAdapter.template_reengagement
    assert WhatsAppAdapter.human_window is None
    assert 0 < WhatsAppAdapter.typing_interval < 25  # the indicator fades after 25 s


async def test_a_template_send_after_the_window(make_settings):
    # Meta: send template messages
    async with adapter_on_server(WhatsAppAdapter, make_settings) as (adapter, graph):
        sends = WhatsAppSends()
        sends.closed.add(WA_BSUID)
        graph.always("POST", SEND_PATH, sends)
        target = reply_target("whatsapp", WA_BSUID, inbound={"channel_message_id": "wamid.IN"})
        with pytest.raises(SendError) as free_form:
            await adapter.send(webhook(), target, "late answer")
        assert (free_form.value.code, free_form.value.retryable, free_form.value.status) == (131047, False, 400)
        target.mode, target.template = "template", dict(TEMPLATE)
        assert await adapter.send(webhook(), target, "late answer") == ["wamid.OUT1"]
        assert graph.to(SEND_PATH)[-1].json() == {
            "messaging_product": "whatsapp", "recipient_type": "individual", "recipient": WA_BSUID,
            "type": "template", "template": {"name": "hello_again", "language": {"code": "en_US"}}}


async def test_template_mode_without_a_template_fails_before_any_request(make_settings):
    async with adapter_on_server(WhatsAppAdapter, make_settings) as (adapter, graph):
        target = reply_target("whatsapp", PHONE)
        target.mode = "template"
        with pytest.raises(SendError) as exc:
            await adapter.send(webhook(), target, "late answer")
        assert (exc.value.code, exc.value.retryable) == ("window_closed", False)
        assert graph.requests == []


def test_reengagement_template_setting_is_checked_field_by_field(adapter):
    assert adapter.validate_settings({"reengagementTemplate": {"name": " hello_again ", "language": "en_US"}}) == {
        "reengagementTemplate": TEMPLATE}
    assert adapter.validate_settings({"reengagementTemplate": {"name": "x", "language": "pt_BR"}})
    assert adapter.validate_settings(None) == adapter.validate_settings({}) == {}
    assert adapter.validate_settings({"reengagementTemplate": None}) == {}
    where = "settings.reengagementTemplate"
    cases = [({"name": "hello"}, f"{where}.language"), ({"language": "en_US"}, f"{where}.name"),
             ({"name": "Hello Again", "language": "en_US"}, f"{where}.name"),
             ({"name": "a" * 513, "language": "en_US"}, f"{where}.name"),
             ({"name": "hello", "language": "english!"}, f"{where}.language"),
             ({"name": "hello", "language": "en", "x": 1}, f"{where}.x"), ("hello", where)]
    for template, field in cases:
        with pytest.raises(CredentialsError) as exc:
            adapter.validate_settings({"reengagementTemplate": template})
        assert exc.value.field == field, template
    for settings, field in [({"greeting": "hi"}, "settings.greeting"), ("text", "settings")]:
        with pytest.raises(CredentialsError) as exc:
            adapter.validate_settings(settings)
        assert exc.value.field == field, settings


# ---------------------------------------------------------------------------- error classes and typing

@pytest.mark.parametrize("code", sorted(GRAPH_RATE_LIMITS))
async def test_graph_rate_limits_are_retryable_whatever_the_status(make_settings, code):
    async with adapter_on_server(WhatsAppAdapter, make_settings) as (adapter, graph):
        graph.script("POST", SEND_PATH, Reply(400, {"error": {"message": f"(#{code}) limit", "type": "OAuthException",
                                                              "code": code, "fbtrace_id": "A"}}))
        with pytest.raises(SendError) as exc:
            await adapter.send(webhook(), reply_target("whatsapp", PHONE), "hi")
        assert (exc.value.retryable, exc.value.code) == (True, code)


async def test_the_pair_limit_waits_minutes_not_seconds(make_settings):
    assert WHATSAPP_ERRORS.min_wait == {131056: 60.0}
    assert 131062 in WHATSAPP_ERRORS.permanent  # "BSUID recipients are not supported for this message"
    async with adapter_on_server(WhatsAppAdapter, make_settings) as (adapter, graph):
        graph.script("POST", SEND_PATH, WA_PAIR_LIMIT_ERROR)
        with pytest.raises(SendError) as exc:
            await adapter.send(webhook(), reply_target("whatsapp", PHONE), "hi")
        assert exc.value.retryable and exc.value.retry_after is not None and exc.value.retry_after >= 60


async def test_each_typing_refresh_is_one_read_and_indicator_call(make_settings):
    async with adapter_on_server(WhatsAppAdapter, make_settings) as (adapter, graph):
        graph.always("POST", SEND_PATH, WhatsAppSends())
        target = reply_target("whatsapp", WA_BSUID, inbound={"channel_message_id": "wamid.IN"})
        await adapter.typing(webhook(), target)
        await adapter.typing(webhook(), target, first=False)
        assert [r.json() for r in graph.to(SEND_PATH)] == [
            {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN",
             "typing_indicator": {"type": "text"}}] * 2


# ---------------------------------------------------------------------------- through a running gateway

@pytest.fixture
async def lab(make_settings):
    async with channel_lab(make_settings) as running:
        yield running


async def test_a_username_customer_is_stored_and_answered_by_bsuid(lab: ChannelLab) -> None:
    sends = WhatsAppSends()
    lab.graph.always("POST", WA_SEND, sends)
    item = {"from_user_id": WA_BSUID, "id": "wamid.HBgLBSUIDONLY", "timestamp": "1749416383", "type": "text",
            "text": {"body": "Does it come in another color?"}}
    body = wa_envelope({"metadata": WA_METADATA, "contacts": [WA_USERNAME_CONTACT], "messages": [item]})
    status, answer, _ = await lab.post("whatsapp", lab.sign("whatsapp", body))
    assert (status, answer) == (200, {"status": "ok"})
    (reply,) = await lab.replies("whatsapp")
    (conversation,) = await lab.gw.store.find(Conversation, webhook_id=lab.hooks["whatsapp"].id)
    assert conversation.external_chat_id == WA_BSUID
    assert conversation.customer["id"] == WA_BSUID and conversation.customer["name"] == "Sheena Nelson"
    (sent,) = lab.sends("whatsapp")
    assert sent["recipient"] == WA_BSUID and "to" not in sent
    assert sent["text"]["body"] == reply.content and sent["context"] == {"message_id": "wamid.HBgLBSUIDONLY"}
    assert reply.delivery["ids"] == ["wamid.OUT1"]


async def test_status_webhooks_move_the_reply_to_read_and_to_a_visible_failure(lab: ChannelLab) -> None:
    lab.graph.always("POST", WA_SEND, WhatsAppSends())
    for n in (1, 2):
        await lab.post("whatsapp", lab.message("whatsapp", ident=f"R{n}"))
        await lab.replies("whatsapp", n)
    statuses = [wa_status("wamid.OUT1", "delivered", recipient=WA_BSUID), wa_status("wamid.OUT1", "read"),
                wa_status("wamid.OUT1", "delivered"),  # late and out of order: never backwards
                wa_status("wamid.OUT2", "failed", errors=[wa_status_error(
                    131049, "This message was not delivered to maintain healthy ecosystem engagement.",
                    "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.")])]
    body = wa_envelope({"metadata": WA_METADATA, "statuses": statuses})
    assert (await lab.post("whatsapp", lab.sign("whatsapp", body)))[:2] == (200, {"status": "ok"})
    (read,) = await lab.replies("whatsapp", state="read")
    (failed,) = await lab.replies("whatsapp", state="failed")
    assert read.delivery["ids"] == ["wamid.OUT1"] and failed.delivery["ids"] == ["wamid.OUT2"]
    assert failed.delivery["error"]["code"] == 131049
    assert failed.delivery["error"]["details"].startswith("In order to maintain")


async def test_one_conversation_when_the_phone_number_disappears(lab: ChannelLab) -> None:
    lab.graph.always("POST", WA_SEND, WhatsAppSends())
    both = {"from": PHONE, "from_user_id": WA_BSUID, "id": "wamid.BOTH", "timestamp": "1749416383",
            "type": "text", "text": {"body": "Does it come in another color?"}}
    contact = {**WA_CONTACT, "user_id": WA_BSUID}
    only_bsuid = {**both, "id": "wamid.ONLYBSUID", "text": {"body": "And what about shipping?"}}
    del only_bsuid["from"]
    for item, who, n in ((both, contact, 1), (only_bsuid, WA_USERNAME_CONTACT, 2)):
        body = wa_envelope({"metadata": WA_METADATA, "contacts": [who], "messages": [item]})
        assert (await lab.post("whatsapp", lab.sign("whatsapp", body)))[:2] == (200, {"status": "ok"})
        await lab.replies("whatsapp", n)
    (conversation,) = await lab.gw.store.find(Conversation, webhook_id=lab.hooks["whatsapp"].id)
    assert conversation.message_count == 4  # both messages and both replies: one customer, one thread
    first, second = lab.sends("whatsapp")
    assert first["to"] == PHONE
    # the reply goes to the address the customer last wrote from, in the field that address takes
    addressed = {k: second[k] for k in ("to", "recipient") if k in second}
    assert addressed in ({"to": PHONE}, {"recipient": WA_BSUID})
    assert addressed == ({"recipient": WA_BSUID} if conversation.external_chat_id == WA_BSUID else {"to": PHONE})


async def test_an_unsupported_message_gets_a_polite_answer_not_silence(lab: ChannelLab) -> None:
    lab.graph.always("POST", WA_SEND, WhatsAppSends())
    item = {"from": PHONE, "id": "wamid.POLL", "timestamp": "1749416383", "type": "unsupported",
            "unsupported": {"type": "poll_creation"},
            "errors": [{"code": 131051, "title": "Message type unknown", "message": "Message type unknown",
                        "error_data": {"details": "Message type is currently not supported."}}]}
    body = wa_envelope({"metadata": WA_METADATA, "contacts": [WA_CONTACT], "messages": [item]})
    assert (await lab.post("whatsapp", lab.sign("whatsapp", body)))[:2] == (200, {"status": "ok"})

    async def note() -> list:  # the processor's own system message, not an agent answer
        found = [m for m in await lab.messages("whatsapp", role="system") if m.delivery.get("status") == "sent"]
        return found

    (reply,) = await wait_until(note)
    (sent,) = lab.sends("whatsapp")
    assert sent["to"] == PHONE and sent["text"]["body"] == reply.content
    assert reply.content == lab.gw.gateway.settings.channels.unreadable_message
    assert await lab.messages("whatsapp", role="assistant") == []  # the agent did not run on nothing
