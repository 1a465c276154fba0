"""Hostile channel input over real HTTP (issue 10): correctly signed payloads whose content is the
attack. Lone surrogates are replaced on arrival from every channel, so the dashboard can always list
what was stored; absurd nesting is a 4xx on every channel, before or after authentication, never a
500 or a traceback; a message's attachments are capped and their download results written once."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import pytest

from buzzi.models import Conversation, Message
from tests.dashboard.client import DashboardClient, new_http
from tests.support.fake_meta import GRAPH_PREFIX, Reply
from tests.support.waiting import wait_until
from tests.webhooks.kit import (
    BODIES,
    CHANNELS,
    IGSID,
    META,
    PSID,
    SLACK_CHANNEL,
    ChannelLab,
    Signed,
    channel_lab,
    meta_wire,
)

BAD_TEXT = b"is it \\ud800 red?"  # a JSON escape of a lone surrogate: valid JSON, not valid Unicode
FIXED_TEXT = "is it \ufffd red?"
# Where each channel's sample carries the sender's name (json.dumps' spacing), and its surrogate form.
NAMES = {"whatsapp": b'"Sheena Nelson"', "telegram": b'"Ann"', "teams": b'"Megan Bowen"', "custom": b'"Ada"'}
BAD_NAME = b'"Bad \\udc00 Name"'
FIXED_NAME = "Bad \ufffd Name"
GRAPH_PROFILES = {"messenger": (PSID, {"first_name": "Bad \udc00", "last_name": "Name", "id": PSID}),
                  "instagram": (IGSID, {"username": "Bad \udc00 Name", "id": IGSID})}


def surrogate_message(lab: ChannelLab, channel: str) -> Signed:
    """The channel's sample text message with a lone surrogate in the text and the sender's name,
    correctly signed over those bytes."""
    if channel == "slack":
        return slack_button(lab, value=BAD_TEXT.decode(), user_name=BAD_NAME.decode().strip('"'))
    body, message_id = BODIES[channel](lab, "PLACEHOLDER", str(lab.next_id()))
    if channel in META:
        body = meta_wire(body)
    body = body.replace(b"PLACEHOLDER", BAD_TEXT)
    if channel in NAMES:
        assert NAMES[channel] in body
        body = body.replace(NAMES[channel], BAD_NAME)
    return lab.sign(channel, body, message_id)


def slack_button(lab: ChannelLab, *, value: str, user_name: str) -> Signed:
    """A block_actions interactivity request: form-encoded, its JSON in the `payload` field."""
    payload = ('{"type":"block_actions","trigger_id":"13345224609.738474920.8088930838d88f008e0",'
               f'"user":{{"id":"U045VRZFT","name":"{user_name}"}},"channel":{{"id":"{SLACK_CHANNEL}"}},'
               '"container":{"type":"message","message_ts":"1548426417.840180"},'
               f'"actions":[{{"action_id":"color","action_ts":"1548426417.{lab.next_id():06d}","value":"{value}"}}]}}')
    signed = lab.sign("slack", urlencode({"payload": payload}).encode())
    signed.headers["Content-Type"] = "application/x-www-form-urlencoded"
    return signed


@asynccontextmanager
async def owner_client(lab: ChannelLab) -> AsyncIterator[DashboardClient]:
    async with new_http() as http:
        client = DashboardClient(lab.gw, http)
        await client.login()
        yield client


@pytest.mark.parametrize("channel", CHANNELS)
async def test_lone_surrogates_are_replaced_and_the_dashboard_still_lists(lab: ChannelLab, channel: str) -> None:
    if channel in GRAPH_PROFILES:  # these channels learn the name from the Graph: channel input too
        sender, profile = GRAPH_PROFILES[channel]
        lab.graph.always("GET", f"{GRAPH_PREFIX}/{sender}", Reply(200, profile))
    status, body, _ = await lab.post(channel, surrogate_message(lab, channel))
    assert (status, body) == (200, {"status": "ok"})

    (message,) = await lab.messages(channel, role="user")
    assert message.content == FIXED_TEXT

    async def named() -> Conversation | None:
        conversation = await lab.conversation(channel)
        return conversation if conversation.customer.get("name") else None

    conversation = await wait_until(named)
    assert "\ufffd" in conversation.customer["name"] and FIXED_NAME.split()[0] in conversation.customer["name"]
    stored = json.dumps([conversation.to_doc(), (await lab.gw.store.get(Message, message.id)).to_doc()],
                        ensure_ascii=False)
    stored.encode("utf-8")  # no lone surrogate anywhere: this would raise

    token = await lab.gw.login()
    status, listing, _ = await lab.gw.request("GET", "/api/admin/conversations", token=token)
    assert status == 200 and conversation.customer["name"] in json.dumps(listing, ensure_ascii=False)
    async with owner_client(lab) as owner:
        assert (await owner.get("/admin/conversations.json")).status == 200
        page = await owner.get("/admin/conversations")
        assert page.status == 200


# ---- absurd nesting: 4xx before and after authentication, never a 500, never a traceback

DEEP = 100_000


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def deep_bodies(lab: ChannelLab, channel: str, depth: int) -> list[tuple[bytes, str]]:
    """(body, content type) pairs: a bare nested list, and the channel's real sample message with a
    nested field added (for Teams, as the `value` of a card submit, which is kept on the message)."""
    sample, _ = BODIES[channel](lab, "" if channel == "teams" else "hello", str(lab.next_id()))
    field = b'"value"' if channel == "teams" else b'"extra"'
    bodies = [(nested(depth), "application/json"),
              (b"{" + field + b":" + nested(depth) + b"," + sample[1:], "application/json")]
    if channel == "slack":
        bodies.append((b"payload=" + b"%5B" * depth + b"%5D" * depth, "application/x-www-form-urlencoded"))
    return bodies


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [f"{r.name}: {r.getMessage()}" for r in bad]


@pytest.mark.parametrize("depth", [DEEP, 5_000, 101])
@pytest.mark.parametrize("channel", CHANNELS)
async def test_deep_nesting_is_a_4xx_on_every_channel(lab: ChannelLab, caplog: pytest.LogCaptureFixture,
                                                       channel: str, depth: int) -> None:
    caplog.set_level(logging.INFO)
    for body, content_type in deep_bodies(lab, channel, depth):
        signed = lab.sign(channel, body)
        signed.headers["Content-Type"] = content_type
        status, answer, _ = await lab.post(channel, signed)
        assert 400 <= status < 500, (status, answer)
        unsigned = Signed(body, {"Content-Type": content_type}, "")
        assert 400 <= (await lab.post(channel, unsigned))[0] < 500
    assert await lab.gw.store.count(Message) == 0
    status, _, _ = await lab.post(channel, lab.message(channel))  # the channel still works
    assert status == 200
    no_traceback(caplog)


async def test_nesting_within_the_bound_is_accepted(lab: ChannelLab) -> None:
    """A Teams card submit whose `value` nests 90 levels is a message like any other."""
    body, message_id = BODIES["teams"](lab, "", str(lab.next_id()))
    activity = json.loads(body)
    activity["value"] = json.loads(nested(90))
    status, _, _ = await lab.post("teams", lab.sign("teams", json.dumps(activity).encode(), message_id))
    assert status == 200
    (message,) = await lab.messages("teams", role="user")
    assert message.metadata["kind"] == "interactive"


# ---- attachments: capped per message, download results written once

class CountingWrites:
    """Counts the message-attachment updates that go through the real store (a thin subclass
    swapped in for the test)."""

    def __init__(self, lab: ChannelLab) -> None:
        self.store = lab.gw.store
        self.original = type(self.store)
        self.writes: list[int] = []  # bytes of each attachments update
        writes = self.writes

        class Counting(self.original):  # type: ignore[misc, valid-type]
            async def update(self, cls: type, id: str, fields: dict[str, Any], *args: Any, **kw: Any) -> Any:
                if cls is Message and "attachments" in fields:
                    writes.append(len(json.dumps(fields["attachments"])))
                return await super().update(cls, id, fields, *args, **kw)

        self.counting = Counting

    def __enter__(self) -> CountingWrites:
        self.store.__class__ = self.counting
        return self

    def __exit__(self, *exc: object) -> None:
        self.store.__class__ = self.original


def custom_with_attachments(lab: ChannelLab, count: int) -> Signed:
    files = [{"url": f"{lab.callback.url}/files/{i}.png", "mime_type": "image/png", "name": f"p{i}.png"}
             for i in range(count)]
    body = {"type": "message.created", "timestamp": 1_700_000_000,
            "data": {"message_id": f"ext-files-{count}", "chat_id": "chat-9", "sender": {"id": "u-7", "name": "Ada"},
                     "text": "here are my photos", "attachments": files}}
    return lab.sign("custom", json.dumps(body).encode())


async def test_attachments_are_capped_and_written_once(lab: ChannelLab) -> None:
    for i in range(40):
        lab.callback.always("GET", f"/files/{i}.png", Reply(200, body=b"\x89PNG" + bytes([i]),
                                                            headers={"Content-Type": "image/png"}))
    signed = custom_with_attachments(lab, 40)
    with CountingWrites(lab) as counting:
        assert (await lab.post("custom", signed))[:2] == (200, {"status": "ok"})

        async def downloaded() -> Message | None:
            (message,) = await lab.messages("custom", role="user")
            return message if message.attachments and all("download" in a for a in message.attachments) else None

        message = await wait_until(downloaded)
        await lab.gw.gateway.webhooks.wait_idle()
    assert len(message.attachments) == 10  # webhooks.max_attachments' default
    assert message.metadata["attachmentsDropped"] == 30
    assert [a["name"] for a in message.attachments] == [f"p{i}.png" for i in range(10)]
    assert all(a["download"]["status"] == "stored" for a in message.attachments)
    assert len(counting.writes) == 1, counting.writes  # one write, not one per download
    assert counting.writes[0] < 10_000
    fetched = [r.path for r in lab.callback.requests if r.path.startswith("/files/")]
    assert sorted(fetched) == sorted(f"/files/{i}.png" for i in range(10))  # the dropped ones never fetched


async def test_the_attachment_cap_is_a_setting(make_settings) -> None:
    async with channel_lab(make_settings, webhooks={"max_attachments": 2}) as lab:
        for i in range(3):
            lab.callback.always("GET", f"/files/{i}.png", Reply(200, body=b"x", headers={"Content-Type": "image/png"}))
        assert (await lab.post("custom", custom_with_attachments(lab, 3)))[0] == 200
        (message,) = await lab.messages("custom", role="user")
        assert len(message.attachments) == 2 and message.metadata["attachmentsDropped"] == 1
