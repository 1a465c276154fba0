"""Instagram adapter: the docs/channels.md §4 sample, Instagram-only variants, the 1000-byte send limit."""

from __future__ import annotations

from functools import partial

import pytest

from buzzi.channels.base import CredentialsError, PayloadError, SendError
from buzzi.channels.instagram import InstagramAdapter, split_bytes
from buzzi.config import load_settings
from tests.support.channel_factories import reply_target
from tests.support.fake_meta import (
    GRAPH_PREFIX,
    Reply,
    adapter_on_server,
    messaging_envelope,
    meta_webhook,
    signed_request,
)

CREDS = {"igUserId": "17841400000000000", "accessToken": "IGQV-token-abcdef"}
SEND_PATH = f"{GRAPH_PREFIX}/me/messages"
SAMPLE = {"sender": {"id": "<IGSID>"}, "recipient": {"id": "<IGID>"}, "timestamp": 1569262485349,
          "message": {"mid": "<MESSAGE-ID>", "text": "hi",
                      "attachments": [{"type": "image", "payload": {"url": "<CDN_URL>"}}]}}


@pytest.fixture
def adapter() -> InstagramAdapter:
    return InstagramAdapter(load_settings(env={}).channels, http=None)


webhook = partial(meta_webhook, "instagram", CREDS)
target = partial(reply_target, "instagram", "IGSID-1")


def parse(adapter, *events):
    return adapter.parse(webhook(), signed_request(messaging_envelope("instagram", *events, entry_id="<IGID>")))


def test_credentials(adapter):
    assert adapter.validate_credentials(CREDS) == CREDS
    with pytest.raises(CredentialsError) as exc:
        adapter.validate_credentials({"accessToken": "IGQV-token-abcdef"})
    assert exc.value.field == "igUserId"


def test_doc_sample(adapter):
    (m,) = parse(adapter, SAMPLE).messages
    assert (m.channel, m.message_id, m.chat_id, m.text, m.kind) == (
        "instagram", "<MESSAGE-ID>", "<IGSID>", "hi", "text")
    assert m.meta["ig_user_id"] == "<IGID>" and m.attachments[0].url == "<CDN_URL>"
    assert m.timestamp == pytest.approx(1569262485.349)


def test_variants(adapter):
    base = {"sender": {"id": "S"}, "recipient": {"id": "R"}, "timestamp": 1}
    story_reply = {**base, "message": {"mid": "m.story", "text": "nice",
                                       "reply_to": {"story": {"url": "https://cdn/story", "id": "st1"}}}}
    mention = {**base, "message": {"mid": "m.mention", "attachments": [
        {"type": "story_mention", "payload": {"url": "https://cdn/mention"}}]}}
    unsupported = {**base, "message": {"mid": "m.uns", "is_unsupported": True}}
    ignored = [
        {**base, "message": {"mid": "m.echo", "text": "x", "is_echo": True}},
        {**base, "message": {"mid": "m.del", "is_deleted": True}},
        {**base, "read": {"mid": "m.story"}},  # messaging_seen
        {**base, "reaction": {"mid": "m.story", "action": "react", "reaction": "love"}},
    ]
    result = parse(adapter, story_reply, mention, unsupported, *ignored)
    story, mentioned, unreadable = result.messages
    assert story.meta["story"] == {"url": "https://cdn/story", "id": "st1"} and story.reply_to_id is None
    assert (mentioned.kind, mentioned.attachments[0].url) == ("story_mention", "https://cdn/mention")
    # what the API cannot show us is answered politely (channels.unreadable_message), not dropped
    assert (unreadable.message_id, unreadable.kind, unreadable.text) == ("m.uns", "unsupported", "")
    assert result.ignored == 4 and result.drops == {"echo": 1, "revoke": 1, "receipt": 1, "reaction": 1}
    (seen,) = result.receipts
    assert (seen.status, seen.message_ids, seen.chat_id, seen.watermark) == ("read", ["m.story"], "S", None)


def test_messenger_envelope_is_not_instagram(adapter):
    with pytest.raises(PayloadError):
        adapter.parse(webhook(), signed_request(messaging_envelope("page", SAMPLE)))


def test_split_bytes_keeps_each_part_within_1000_bytes():
    text = "é" * 900  # 900 characters, 1800 bytes
    parts = split_bytes(text)
    assert len(parts) > 1 and all(len(p.encode()) <= 1000 for p in parts) and "".join(parts) == text
    assert split_bytes("a" * 1000) == ["a" * 1000]


async def test_send_shape_and_byte_split(make_settings):
    async with adapter_on_server(InstagramAdapter, make_settings) as (adapter, graph):
        graph.always("POST", SEND_PATH, Reply(200, {"recipient_id": "IGSID-1", "message_id": "m_out"}))
        assert await adapter.send(webhook(), target(), "hello") == ["m_out"]
        first = graph.to(SEND_PATH)[0]
        assert first.headers["authorization"] == "Bearer IGQV-token-abcdef"
        assert first.json() == {"recipient": {"id": "IGSID-1"}, "message": {"text": "hello"}}
        text = "ünïcödé wörds " * 70  # 980 chars, >1000 bytes
        parts = adapter.split(text)  # the delivery path sends (and paces) each part on its own
        assert len(parts) > 1 and " ".join(parts) == text.strip()
        ids = [i for part in parts for i in await adapter.send(webhook(), target(), part)]
        sent = [r.json()["message"]["text"] for r in graph.to(SEND_PATH)[1:]]
        assert len(ids) == len(sent) > 1 and all(len(t.encode()) <= 1000 for t in sent)


async def test_permanent_error(make_settings):
    async with adapter_on_server(InstagramAdapter, make_settings) as (adapter, graph):
        graph.script("POST", SEND_PATH, Reply(400, {"error": {"code": 10, "error_subcode": 2534022,
                                                              "message": "outside of allowed window"}}))
        with pytest.raises(SendError) as exc:
            await adapter.send(webhook(), target(), "hi")
        assert not exc.value.retryable and "outside of allowed window" in str(exc.value)
