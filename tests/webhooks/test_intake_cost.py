"""The cheap intake path (issue 12) keeps the behaviour of the slow one: the redaction fast path
proves a body clean without parsing it and never skips a credential, the delivery log stays
bounded under a flood, orjson reads channel bodies as json did, and documents copy as asdict did."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from buzzi import delivery_log
from buzzi.channels.base import Attachment, InboundMessage, WebhookRequest
from buzzi.channels.payload import MAX_JSON_DEPTH, PayloadError, json_object
from buzzi.config import WebhookSettings
from buzzi.crypto import SecretBox
from buzzi.delivery_log import DeliveryLog
from buzzi.ids import POOL_IDS, new_id
from buzzi.metrics import Metrics
from buzzi.models import Message, Webhook, WebhookEvent
from buzzi.redaction import clean_excerpt, redact_body
from buzzi.store.sqlite import SQLiteStore
from buzzi.webhooks import _admitted

WHATSAPP_BODY = json.dumps({
    "object": "whatsapp_business_account",
    "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881",
                                                      "phone_number_id": "106540352242922"},
        "contacts": [{"profile": {"name": "Ann"}, "wa_id": "491555000007"}],
        "messages": [{"from": "491555000007", "id": "wamid.BENCH00000007", "timestamp": "1764300000",
                      "type": "text", "text": {"body": "When are you open on Saturday? Café ☕"}}]}}]}],
}, ensure_ascii=False).encode()

INBOUND = {"channel": "whatsapp", "message_id": "wamid.1", "chat_id": "491555000007", "sender_id": "491555000007",
           "text": "hi", "kind": "text"}


def test_a_body_without_credentials_is_kept_byte_for_byte() -> None:
    assert clean_excerpt(WHATSAPP_BODY) == WHATSAPP_BODY.decode()
    assert redact_body(WHATSAPP_BODY) == WHATSAPP_BODY.decode()


@pytest.mark.parametrize("body", [
    b'{"event": {"token": "hunter2-secret-value"}}',
    b'{"auth": {"Api_Key": "hunter2-secret-value"}}',
    b'{"p\\u0061ssword": "hunter2-secret-value"}',
    b"client_secret=hunter2-secret-value&x=1",
])
def test_a_body_naming_a_credential_is_still_redacted(body: bytes) -> None:
    assert clean_excerpt(body) is None  # the fast path hands it to the parser
    assert "hunter2" not in redact_body(body)


@pytest.mark.parametrize("token", [
    "Bearer abcdefghijklmnop", "BEARER abcdefghijklmnop", "ba\u017fic QUFBQUFBQUFBQUFBQUFBQUFB",  # long s
    "bas\u0131c QUFBQUFBQUFBQUFBQUFBQUFB", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln", "xoxb-123456789012-abcdef",
    "sk-abcdefghijklmnopqrstuvwx", "ghp_" + "a" * 30, "EAAG" + "b" * 40, "123456789:" + "A" * 35,
])
def test_token_shapes_in_free_text_are_still_masked(token: str) -> None:
    body = json.dumps({"text": f"here: {token} ok", "ü": "non-ASCII too"}, ensure_ascii=False).encode()
    redacted = redact_body(body)
    assert "[redacted]" in redacted and token not in redacted and redacted.endswith(' ok", "ü": "non-ASCII too"}')


def _request(body: bytes, i: int) -> WebhookRequest:
    headers = {"content-type": "application/json", "x-hub-signature-256": "sha256=ff"}
    return WebhookRequest(method="POST", headers=headers, body=body, query={}, remote_ip="127.0.0.1",
                          now=1_700_000_000.0 + i)


async def test_a_flood_drops_the_oldest_entries_counted_and_warned(tmp_path: Path, secret_key: str,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    store = SQLiteStore(tmp_path / "store.sqlite3", SecretBox(secret_key))
    await store.open()
    try:
        metrics = Metrics()
        log = DeliveryLog(store, WebhookSettings(max_body_bytes=4_194_304, replay_window_seconds=300,
                                                 event_retention=100_000, max_attachments=10), metrics)
        webhook = Webhook(id="wh_1", company_id="c_1", agent_id="a_1", channel="whatsapp")
        extra = 25
        total = delivery_log.PENDING_MAX + extra
        secret = b'{"token": "hunter2-secret-value"}'
        with caplog.at_level(logging.WARNING, logger="buzzi.delivery_log"):
            for i in range(total):  # no await: the writer gets no turn, as under a flood
                log.record(webhook, _request(secret if i == total - 1 else WHATSAPP_BODY, i), outcome="ok",
                           status=200, detail=str(i), message_ids=[], latency_ms=1.0)
        assert metrics.registry.get_sample_value("buzzi_delivery_log_dropped_total") == extra
        warnings = [r for r in caplog.records if "dropped" in r.getMessage()]
        assert len(warnings) == 1  # one warning per DROP_WARNING_SECONDS, not one per entry
        await log.wait_idle()
        events = await store.find(WebhookEvent, order_by="received_at", webhook_id="wh_1")
        assert len(events) == delivery_log.PENDING_MAX
        assert [e.detail for e in events[:2]] == [str(extra), str(extra + 1)]  # the oldest went
        assert events[-1].headers["x-hub-signature-256"] == "[redacted]"
        assert "hunter2" not in events[-1].body and events[0].body == WHATSAPP_BODY.decode()
    finally:
        await store.close()


async def test_large_bodies_are_bounded_by_bytes_too(tmp_path: Path, secret_key: str) -> None:
    store = SQLiteStore(tmp_path / "store.sqlite3", SecretBox(secret_key))
    await store.open()
    try:
        metrics = Metrics()
        log = DeliveryLog(store, WebhookSettings(max_body_bytes=4_194_304, replay_window_seconds=300,
                                                 event_retention=100_000, max_attachments=10), metrics)
        webhook = Webhook(id="wh_1", company_id="c_1", agent_id="a_1", channel="whatsapp")
        big = b'{"text": "' + b"x" * 4_000_000 + b'"}'
        kept = delivery_log.PENDING_BYTES_MAX // (delivery_log.PARSE_LIMIT + 1)
        for i in range(kept + 10):
            log.record(webhook, _request(big, i), outcome="rejected", status=401, detail=str(i), message_ids=[],
                       latency_ms=1.0)
        assert metrics.registry.get_sample_value("buzzi_delivery_log_dropped_total") == 10
        await log.wait_idle()
        events = await store.find(WebhookEvent, order_by="received_at", webhook_id="wh_1")
        assert len(events) == kept and events[0].detail == "10"
        assert events[0].body == big[:4096].decode()  # the excerpt, as before
    finally:
        await store.close()


@pytest.mark.parametrize("body", [
    b'\xef\xbb\xbf{"a": 1}',  # a BOM, tolerated as json.loads did
    b'{"a": "\\ud800", "b": "x"}',  # a lone surrogate escape: kept for valid_unicode to replace
    b'{"a": NaN}', b'{"a": 1, "a": 2}', b'  {"a": [1, 2.5, "\\u00e9", null, true]}\n',
    b'{"id": -53172513304820432896, "b": [1, 99999999999999999999999]}',  # beyond 64 bits: still ints
    b'{"chat": {"id": \n 18446744073709551616}, "bsuid": "US.13491208655302741918"}',
])
def test_channel_json_reads_as_json_did(body: bytes) -> None:
    value = json_object(body)
    expected = json.loads(body.decode("utf-8-sig"))
    assert json.dumps(value) == json.dumps(expected)


@pytest.mark.parametrize(("body", "error"), [
    (b'{"a": "\xed\xa0\x80"}', "not UTF-8"),  # CESU-8 surrogate bytes
    (b'{"a": "\xff"}', "not UTF-8"),
    (b"[1, 2]", "expected a JSON object"),
    (b'{"a": ' + b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH + b"}", "nested deeper"),
    (b'{"a": 1', "malformed JSON"),
])
def test_channel_json_refusals_are_unchanged(body: bytes, error: str) -> None:
    with pytest.raises(PayloadError, match=error):
        json_object(body)


def test_to_doc_is_asdict_and_a_copy_at_every_depth() -> None:
    message = Message(id="m_1", conversation_id="cv_1", company_id="c_1", agent_id="a_1", role="user", content="hi",
                      attachments=[{"kind": "image", "extra": {"sizes": [1, 2]}}],
                      metadata={"sender": {"id": "491555000007"}, "pair": (1, [2])})
    doc = message.to_doc()
    assert doc == dataclasses.asdict(message) and list(doc) == list(dataclasses.asdict(message))
    doc["metadata"]["sender"]["id"] = "changed"
    doc["attachments"][0]["extra"]["sizes"].append(3)
    assert message.metadata["sender"]["id"] == "491555000007"
    assert message.attachments[0]["extra"]["sizes"] == [1, 2]
    assert Message.from_doc({**doc, "a_field_since_removed": 1}).metadata["sender"]["id"] == "changed"


def test_cached_metric_children_count_like_labels() -> None:
    metrics = Metrics()
    for _ in range(3):
        metrics.labelled(metrics.webhooks, "whatsapp", "ok").inc()
    metrics.webhooks.labels("whatsapp", "ok").inc()
    value = metrics.registry.get_sample_value("buzzi_webhook_requests_total",
                                              {"channel": "whatsapp", "outcome": "ok"})
    assert value == 4


@pytest.mark.parametrize("bad", [
    {"text": "a\ud800"}, {"sender_name": "a\x00b"}, {"meta": {"k\udfff": "v"}}, {"meta": {"k": ["x", {"y": "\x00"}]}},
    {"attachments": [Attachment(kind="image", name="\udc00.png", extra={"caption": "\ud83d"})]},
])
def test_lone_surrogates_and_nuls_are_still_replaced_everywhere(bad: dict[str, Any]) -> None:
    inbound = _admitted(InboundMessage(**{**INBOUND, **bad}), max_attachments=10)
    assert "\ufffd" in json.dumps(dataclasses.asdict(inbound), ensure_ascii=False)
    json.dumps(dataclasses.asdict(inbound), ensure_ascii=False).encode()  # encodable now
    assert "\x00" not in json.dumps(dataclasses.asdict(inbound), ensure_ascii=False)


def test_a_clean_message_is_admitted_unchanged() -> None:
    inbound = InboundMessage(**{**INBOUND, "text": "Café ☕ \\u0000 is not a NUL", "meta": {"k": ["x", {"y": 1}]}})
    before = dataclasses.asdict(inbound)
    assert dataclasses.asdict(_admitted(inbound, max_attachments=10)) == before


def test_ids_stay_unique_and_a_forked_child_draws_its_own() -> None:
    ids = {new_id("message") for _ in range(3 * POOL_IDS)}  # across several refills of the pool
    assert len(ids) == 3 * POOL_IDS and all(len(i) == len("m_") + 24 for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the next id from its copy of the parent's pool would equal the parent's
        os.write(write, new_id("message").encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    os.close(read)
    os.close(write)
    assert child.startswith("m_") and child != new_id("message") and child not in ids
