"""Slack as the Events API is in 2026 (issue 11): message_changed is an edit that names the original
message by its dedupe id, and every event that is not answered is dropped with a reason.

Payloads follow docs.slack.dev/reference/events/message and its subtype pages (message_changed,
message_deleted, bot_message, channel_join) and the Events API envelope.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any
from urllib.parse import urlencode

import pytest

from buzzi.channels.base import InboundMessage, ParseResult
from buzzi.channels.slack import SlackAdapter
from tests.support.channel_factories import channel_webhook, inbound_request
from tests.webhooks.kit import channel_lab

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_USER, BOT_ID = "U0LAN0Z89", "B0LAN0Z89"
CHANNEL = "C123ABC456"

webhook = partial(channel_webhook, "slack", secret=SIGNING_SECRET, credentials={"botToken": "xoxb-test-token"})


@pytest.fixture
def adapter(make_settings) -> SlackAdapter:
    return SlackAdapter(make_settings().channels, None)


def envelope(event: dict[str, Any], event_id: str = "Ev123ABC456") -> dict[str, Any]:
    return {"token": "XXYYZZ", "team_id": "T123ABC456", "api_app_id": "A123ABC456", "type": "event_callback",
            "event_id": event_id, "event_time": 1358878755, "event": event,
            "authorizations": [{"team_id": "T123ABC456", "user_id": BOT_USER, "is_bot": True}]}


def parse(adapter: SlackAdapter, body: dict[str, Any]) -> ParseResult:
    return adapter.parse(webhook(), inbound_request(body, {"content-type": "application/json"}))


def only(result: ParseResult) -> InboundMessage:
    assert result.drops == {} and result.ignored == 0 and len(result.messages) == 1
    return result.messages[0]


def posted(text: str = "Hello world", ts: str = "1355517523.000005", **extra: Any) -> dict[str, Any]:
    return {"type": "message", "channel": CHANNEL, "user": "U123ABC456", "text": text, "ts": ts,
            "channel_type": "channel", **extra}


def changed(new_text: str, old_text: str = "Hello world", ts: str = "1355517523.000005",
            edited_ts: str = "1358878755.000001", **message: Any) -> dict[str, Any]:
    """The doc sample of a message_changed event (with previous_message, as Slack sends it)."""
    return {"type": "message", "subtype": "message_changed", "hidden": True, "channel": CHANNEL,
            "channel_type": "channel", "ts": edited_ts, "event_ts": edited_ts,
            "message": {"type": "message", "user": "U123ABC456", "text": new_text, "ts": ts,
                        "edited": {"user": "U123ABC456", "ts": edited_ts}, **message},
            "previous_message": {"type": "message", "user": "U123ABC456", "text": old_text, "ts": ts}}


# ---- edits

def test_message_changed_is_an_edit_of_the_original(adapter: SlackAdapter) -> None:
    original = only(parse(adapter, envelope(posted())))
    edit = only(parse(adapter, envelope(changed("Hello, world!"), event_id="Ev999")))
    assert (edit.kind, edit.text, edit.edit_of) == ("edit", "Hello, world!", original.message_id)
    assert edit.message_id == f"{CHANNEL}:1355517523.000005:edit:1358878755.000001" != original.message_id
    # Answered (with answerEdits) in the original's thread, by the same person.
    assert (edit.chat_id, edit.sender_id, edit.thread_id) == (original.chat_id, original.sender_id, original.thread_id)
    assert edit.meta["thread_ts"] == original.meta["thread_ts"]


def test_the_mention_pair_and_its_edit_agree_on_the_original(adapter: SlackAdapter) -> None:
    # One @mention arrives as app_mention and as message (two event_ids): one dedupe id, which the edit names.
    mention = only(parse(adapter, envelope({**posted(f"<@{BOT_USER}> hi"), "type": "app_mention"}, "EvA")))
    plain = only(parse(adapter, envelope(posted(f"<@{BOT_USER}> hi"), "EvB")))
    edit = only(parse(adapter, envelope(changed(f"<@{BOT_USER}> hi there", f"<@{BOT_USER}> hi"), "EvC")))
    assert mention.message_id == plain.message_id == edit.edit_of
    assert edit.text == "hi there"


def test_two_edits_are_two_deliveries(adapter: SlackAdapter) -> None:
    first = only(parse(adapter, envelope(changed("v2"))))
    second = only(parse(adapter, envelope(changed("v3", "v2", edited_ts="1358878799.000001"))))
    assert first.edit_of == second.edit_of and first.message_id != second.message_id


def test_an_edit_in_a_direct_message_stays_out_of_threads(adapter: SlackAdapter) -> None:
    event = {**changed("fixed typo"), "channel_type": "im", "channel": "D0L4B9P0Q"}
    edit = only(parse(adapter, envelope(event)))
    assert edit.meta["thread_ts"] is None and edit.edit_of == "D0L4B9P0Q:1355517523.000005"


# ---- drops: every event that is not answered says why

DROPS = [
    (changed("Hello world", attachments=[{"from_url": "https://example.com", "is_msg_unfurl": True}]),
     "edit_unchanged"),
    (changed("This message was deleted.", subtype="tombstone"), "message_deleted"),
    (changed("edited by the bot", user=BOT_USER, bot_id=BOT_ID), "own_message"),
    ({**changed("beep!"), "message": {"type": "message", "subtype": "bot_message", "bot_id": "B999",
                                      "text": "beep!", "ts": "1355517523.000005"}}, "bot_message"),
    ({"type": "message", "subtype": "message_deleted", "hidden": True, "channel": CHANNEL, "ts": "1358878755.000001",
      "deleted_ts": "1358878749.000002"}, "message_deleted"),
    ({"type": "message", "subtype": "message_replied", "hidden": True, "channel": CHANNEL,
      "ts": "1358878755.000001", "message": {"type": "message", "user": "U1", "text": "parent", "ts": "1.1",
                                             "thread_ts": "1.1", "reply_count": 1}}, "hidden_subtype"),
    ({"type": "message", "subtype": "bot_message", "bot_id": "B999", "username": "github", "text": "PR merged",
      "ts": "1.1", "channel": CHANNEL}, "bot_message"),
    (posted("our own reply", user=BOT_USER, bot_id=BOT_ID), "own_message"),
    (posted("hi", bot_id="B555", bot_profile={"id": "B555", "name": "Other app"}), "bot_message"),
    ({"type": "message", "subtype": "channel_join", "user": "U1", "text": "<@U1> has joined the channel",
      "ts": "1.1", "channel": CHANNEL}, "membership"),
    ({"type": "message", "subtype": "channel_topic", "user": "U1", "text": "set the topic", "topic": "x",
      "ts": "1.1", "channel": CHANNEL}, "unsupported_subtype"),
    ({"type": "reaction_added", "user": "U1", "reaction": "thumbsup",
      "item": {"type": "message", "channel": CHANNEL, "ts": "1.1"}, "event_ts": "1.2"}, "reaction"),
    ({"type": "member_joined_channel", "user": "U1", "channel": CHANNEL, "event_ts": "1.2"}, "membership"),
    ({"type": "app_home_opened", "user": "U1", "channel": "D1", "tab": "home", "event_ts": "1.2"},
     "unsupported_event"),
    (posted(f"<@{BOT_USER}>"), "empty_message"),
    ({"type": "message", "text": "who wrote me?", "ts": "1.1", "channel": CHANNEL}, "incomplete_event"),
]


@pytest.mark.parametrize(("event", "reason"), DROPS, ids=[f"{r}-{i}" for i, (_, r) in enumerate(DROPS)])
def test_every_unanswered_event_has_a_reason(adapter: SlackAdapter, event: dict[str, Any], reason: str) -> None:
    result = parse(adapter, envelope(event))
    assert result.messages == []
    assert (result.drops, result.ignored) == ({reason: 1}, 1)


def test_app_rate_limited_is_its_own_reason(adapter: SlackAdapter) -> None:
    body = {"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "type": "app_rate_limited", "team_id": "T123ABC456",
            "minute_rate_limited": 1518467820, "api_app_id": "A123ABC456"}
    assert parse(adapter, body).drops == {"app_rate_limited": 1}


@pytest.mark.parametrize(("form", "reason"), [
    ({"command": "/weather", "text": "94070", "user_id": "U1", "channel_id": CHANNEL}, "slash_command"),
    ({"payload": json.dumps({"type": "view_submission", "user": {"id": "U1"}, "view": {"id": "V1"}})},
     "unsupported_interaction"),
    ({"payload": json.dumps({"type": "block_actions", "user": {"id": "U1"}, "actions": []})}, "incomplete_event"),
])
def test_interactivity_that_is_not_answered_has_a_reason(adapter: SlackAdapter, form: dict[str, str],
                                                         reason: str) -> None:
    request = inbound_request(urlencode(form).encode(), {"content-type": "application/x-www-form-urlencoded"})
    assert adapter.parse(webhook(), request).drops == {reason: 1}


async def test_an_edit_is_recorded_on_the_original_through_the_gateway(make_settings) -> None:
    async with channel_lab(make_settings) as lab:
        signed = lab.message("slack", "Does it come in another colr?")
        status, _, _ = await lab.post("slack", signed)
        assert status == 200
        await lab.replies("slack", 1)
        channel, ts = signed.message_id.split(":")
        event = {"type": "message", "subtype": "message_changed", "hidden": True, "channel": channel,
                 "channel_type": "channel", "ts": "1515449999.000001", "event_ts": "1515449999.000001",
                 "message": {"type": "message", "user": "W021FGA1Z", "ts": ts,
                             "text": "<@U0LAN0Z89> Does it come in another color?",
                             "edited": {"user": "W021FGA1Z", "ts": "1515449999.000001"}},
                 "previous_message": {"type": "message", "user": "W021FGA1Z", "ts": ts,
                                      "text": "<@U0LAN0Z89> Does it come in another colr?"}}
        body = {"type": "event_callback", "team_id": "T061EG9R6", "api_app_id": "A0MDYCDME", "event": event,
                "event_id": "Ev0EDIT1", "event_time": 1515449999,
                "authorizations": [{"team_id": "T061EG9R6", "user_id": "U0LAN0Z89", "is_bot": True}]}
        status, _, _ = await lab.post("slack", lab.sign("slack", json.dumps(body).encode()))
        assert status == 200
        (original,) = await lab.messages("slack", role="user")  # the edit is not a second message
        assert [e["text"] for e in original.metadata.get("edits", [])] == ["Does it come in another color?"]
        assert "edit_recorded" in (await lab.events("slack"))[-1].detail
