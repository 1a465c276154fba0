"""Telegram as the Bot API is in 2026 (issue 11): group -> supergroup migration, edits that name
their original, a drop reason for every update that is not answered, typing every 4 s.

Adapter-level cases post the Bot API's own Update shapes (core.telegram.org/bots/api#update,
#message); the migration also runs end to end through a running gateway against FakeTelegram.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest

from buzzi.channels.base import ChatMove, InboundMessage, ParseResult
from buzzi.channels.outbound import OutboundHttp
from buzzi.channels.telegram import TelegramAdapter
from buzzi.models import Conversation
from tests.support.channel_factories import channel_webhook, inbound_request, reply_target
from tests.support.fake_telegram import FakeTelegram
from tests.webhooks.kit import TG_CHAT, ChannelLab, channel_lab

TOKEN = "123456:ABC-DEF_ghi"
SECRET = "s3cret_Token-value"
BOT = {"id": 123456, "is_bot": True, "first_name": "Buzzi", "username": "buzzi_bot"}
USER = {"id": 1111111, "is_bot": False, "first_name": "Ann", "last_name": "Lee", "username": "ann"}
PRIVATE = {"id": 1111111, "type": "private", "first_name": "Ann"}
GROUP_ID, SUPERGROUP_ID = -4001234, -1004001234567
GROUP = {"id": GROUP_ID, "type": "group", "title": "Support", "all_members_are_administrators": True}
SUPERGROUP = {"id": SUPERGROUP_ID, "type": "supergroup", "title": "Support"}
PRIVATE_LAB = {"id": TG_CHAT, "type": "private", "first_name": "Ann"}


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def adapter(make_settings, tg: FakeTelegram) -> AsyncIterator[TelegramAdapter]:
    settings = make_settings(channels={"telegram_api_base": tg.url})
    http = OutboundHttp(settings.channels)
    yield TelegramAdapter(settings.channels, http)
    await http.close()


webhook = partial(channel_webhook, "telegram", secret=SECRET, credentials={"botToken": TOKEN})


def parse(adapter: TelegramAdapter, body: dict[str, Any]) -> ParseResult:
    return adapter.parse(webhook(), inbound_request(body, remote_ip="149.154.160.1"))


def message(update_id: int, message_id: int, chat: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"update_id": update_id, "message": {"message_id": message_id, "date": 1760000000, "chat": chat,
                                                "from": USER, **fields}}


def only(result: ParseResult) -> InboundMessage:
    assert result.drops == {} and result.ignored == 0 and len(result.messages) == 1
    return result.messages[0]


# ---- migration (Message.migrate_to_chat_id / migrate_from_chat_id)

def test_migrate_to_chat_id_in_the_old_group_moves_the_chat(adapter: TelegramAdapter) -> None:
    result = parse(adapter, message(501, 77, GROUP, migrate_to_chat_id=SUPERGROUP_ID))
    assert result.messages == []
    assert result.moves == [ChatMove(old_chat_id=str(GROUP_ID), new_chat_id=str(SUPERGROUP_ID))]
    assert (result.drops, result.ignored) == ({"chat_migrated": 1}, 1)


def test_migrate_from_chat_id_in_the_supergroup_names_the_same_move(adapter: TelegramAdapter) -> None:
    # The supergroup's first message; Telegram sends it with the group's creator as `from`.
    result = parse(adapter, message(502, 1, SUPERGROUP, migrate_from_chat_id=GROUP_ID))
    assert result.messages == []
    assert result.moves == [ChatMove(old_chat_id=str(GROUP_ID), new_chat_id=str(SUPERGROUP_ID))]
    assert result.drops == {"chat_migrated": 1}


@pytest.mark.parametrize("bad", [None, "-100123", True, [1]])
def test_a_migration_id_that_is_not_a_number_moves_nothing(adapter: TelegramAdapter, bad: Any) -> None:
    result = parse(adapter, message(503, 78, GROUP, migrate_to_chat_id=bad))
    assert result.moves == [] and result.drops == {"service_message": 1}


# ---- edits

def test_an_edit_names_the_original_by_its_dedupe_id(adapter: TelegramAdapter) -> None:
    original = only(parse(adapter, message(600, 1365, PRIVATE, text="helo")))
    body = {"update_id": 601, "edited_message": {"message_id": 1365, "date": 1760000000, "edit_date": 1760000060,
                                                 "chat": PRIVATE, "from": USER, "text": "hello"}}
    edit = only(parse(adapter, body))
    assert (edit.kind, edit.text, edit.edit_of) == ("edit", "hello", original.message_id)
    assert edit.message_id != original.message_id  # the edit is its own delivery, deduplicated on its own
    again = {**body, "update_id": 602, "edited_message": {**body["edited_message"], "text": "hello!"}}
    assert only(parse(adapter, again)).message_id not in (edit.message_id, original.message_id)
    assert original.edit_of is None


def test_the_same_message_id_in_two_chats_is_two_messages(adapter: TelegramAdapter) -> None:
    # message_id is unique per chat only: the dedupe id must include the chat.
    first = only(parse(adapter, message(700, 5, PRIVATE, text="a")))
    second = only(parse(adapter, message(701, 5, GROUP, text="b")))
    assert first.message_id != second.message_id


def test_a_redelivered_update_keeps_its_dedupe_id(adapter: TelegramAdapter) -> None:
    body = message(800, 9, PRIVATE, text="once")
    assert only(parse(adapter, body)).message_id == only(parse(adapter, body)).message_id
    press = {"update_id": 801, "callback_query": {"id": "cbq-9", "from": USER, "chat_instance": "1", "data": "yes",
                                                  "message": {"message_id": 8, "date": 1, "chat": PRIVATE}}}
    assert only(parse(adapter, press)).message_id == only(parse(adapter, press)).message_id == "callback:cbq-9"


# ---- drops: every update that is not answered says why

DROPS = [
    ({"update_id": 1, "channel_post": {"message_id": 1, "date": 1, "chat": {"id": -100, "type": "channel"},
                                       "sender_chat": {"id": -100, "type": "channel"}, "text": "news"}},
     "channel_post"),
    ({"update_id": 2, "edited_channel_post": {"message_id": 1, "date": 1, "chat": {"id": -100, "type": "channel"},
                                              "text": "news!"}}, "channel_post"),
    ({"update_id": 3, "my_chat_member": {"chat": GROUP, "from": USER, "date": 1,
                                         "old_chat_member": {"status": "left", "user": BOT},
                                         "new_chat_member": {"status": "member", "user": BOT}}}, "membership"),
    ({"update_id": 4, "chat_member": {"chat": GROUP, "from": USER, "date": 1}}, "membership"),
    ({"update_id": 5, "message_reaction": {"chat": PRIVATE, "message_id": 1, "date": 1, "user": USER,
                                           "old_reaction": [], "new_reaction": [{"type": "emoji", "emoji": "👍"}]}},
     "reaction"),
    ({"update_id": 6, "poll_answer": {"poll_id": "1", "user": USER, "option_ids": [0]}}, "poll"),
    ({"update_id": 7, "inline_query": {"id": "q", "from": USER, "query": "x", "offset": ""}}, "inline_query"),
    ({"update_id": 8, "business_connection": {"id": "b", "user": USER}}, "unsupported_event"),
    (message(9, 1, PRIVATE, text="beep", **{"from": {"id": 999, "is_bot": True, "first_name": "OtherBot"}}),
     "bot_message"),
    (message(10, 1, GROUP, text="my own reply", **{"from": BOT}), "own_message"),
    (message(11, 1, GROUP, new_chat_members=[USER]), "service_message"),
    (message(12, 1, GROUP, pinned_message={"message_id": 1, "date": 1, "chat": GROUP}), "service_message"),
    (message(13, 1, {"id": -100777, "type": "supergroup"}, text="post", is_automatic_forward=True,
             sender_chat={"id": -100888, "type": "channel"}, **{"from": {"id": 777000, "is_bot": False,
                                                                          "first_name": "Telegram"}}),
     "channel_post"),
    ({"update_id": 14, "message": {"message_id": 1, "date": 1, "from": USER, "text": "no chat"}},
     "incomplete_event"),
    ({"update_id": 15, "callback_query": {"id": "q", "from": USER, "chat_instance": "1", "data": "x",
                                          "inline_message_id": "i"}}, "inline_callback"),
    ({"update_id": 16, "callback_query": {"id": "q", "from": USER, "chat_instance": "1", "game_short_name": "g",
                                          "message": {"message_id": 2, "date": 1, "chat": PRIVATE}}},
     "callback_without_data"),
]


@pytest.mark.parametrize(("body", "reason"), DROPS, ids=[f"{reason}-{body['update_id']}" for body, reason in DROPS])
def test_every_unanswered_update_has_a_reason(adapter: TelegramAdapter, body: dict[str, Any], reason: str) -> None:
    result = parse(adapter, body)
    assert result.messages == [] and result.moves == []
    assert (result.drops, result.ignored) == ({reason: 1}, 1)


# ---- typing

async def test_typing_is_refreshed_every_four_seconds_with_one_call(adapter: TelegramAdapter,
                                                                     tg: FakeTelegram) -> None:
    # sendChatAction: "The status is set for 5 seconds or less" -> refresh before it lapses.
    assert adapter.typing_interval is not None and 0 < adapter.typing_interval < 5
    target = reply_target("telegram", chat_id=str(GROUP_ID))
    await adapter.typing(webhook(), target)
    await adapter.typing(webhook(), target, first=False)
    assert [c.json for c in tg.calls("sendChatAction")] == [{"chat_id": GROUP_ID, "action": "typing"}] * 2


# ---- end to end: one conversation across the migration, replies to the new id

def group_update(lab: ChannelLab, update_id: int, message_id: int, chat: dict[str, Any], **fields: Any) -> bytes:
    body = {"update_id": update_id, "message": {"message_id": message_id, "date": 1760000000, "chat": chat,
                                                "from": {**USER, "id": TG_CHAT}, **fields}}
    return json.dumps(body).encode()


async def test_migrated_group_keeps_one_conversation_and_replies_go_to_the_supergroup(make_settings) -> None:
    async with channel_lab(make_settings) as lab:
        status, _, _ = await lab.post("telegram", lab.sign("telegram", group_update(
            lab, 90001, 10, GROUP, text="Does it come in another color?")))
        assert status == 200
        await lab.replies("telegram", 1)
        assert [s["chat_id"] for s in lab.sends("telegram")] == [GROUP_ID]

        # The group becomes a supergroup: the old id is refused from now on, as by the Bot API.
        lab.tg.migrated[GROUP_ID] = SUPERGROUP_ID
        for body in (group_update(lab, 90002, 11, GROUP, migrate_to_chat_id=SUPERGROUP_ID),
                     group_update(lab, 90003, 1, SUPERGROUP, migrate_from_chat_id=GROUP_ID)):
            status, _, _ = await lab.post("telegram", lab.sign("telegram", body))
            assert status == 200

        status, _, _ = await lab.post("telegram", lab.sign("telegram", group_update(
            lab, 90004, 2, SUPERGROUP, text="Does it come in another color, again?")))
        assert status == 200
        await lab.replies("telegram", 2)

        conversations = await lab.gw.store.find(Conversation, webhook_id=lab.hooks["telegram"].id)
        assert len(conversations) == 1
        assert conversations[0].external_chat_id == str(SUPERGROUP_ID)
        # The second reply went straight to the supergroup: no refused send to the old id first.
        assert [s["chat_id"] for s in lab.sends("telegram")] == [GROUP_ID, SUPERGROUP_ID]
        users = await lab.messages("telegram", role="user")
        assert {m.conversation_id for m in users} == {conversations[0].id} and len(users) == 2
        events = await lab.events("telegram")
        assert sum("chat_migrated" in e.detail for e in events) == 2
        _, metrics, _ = await lab.gw.request("GET", "/metrics")
        assert re.search(r'^buzzi_webhook_drops_total\{channel="telegram",reason="chat_migrated"\} 2\.0$',
                         metrics, re.M)


async def test_an_edit_is_recorded_on_the_original_and_not_answered_again(make_settings) -> None:
    async with channel_lab(make_settings) as lab:
        status, _, _ = await lab.post("telegram", lab.sign("telegram", group_update(
            lab, 91001, 40, PRIVATE_LAB, text="Does it come in another colr?")))
        assert status == 200
        await lab.replies("telegram", 1)
        edited = {"update_id": 91002, "edited_message": {
            "message_id": 40, "date": 1760000000, "edit_date": 1760000030, "chat": PRIVATE_LAB,
            "from": {**USER, "id": TG_CHAT}, "text": "Does it come in another color?"}}
        status, _, _ = await lab.post("telegram", lab.sign("telegram", json.dumps(edited).encode()))
        assert status == 200
        (original,) = await lab.messages("telegram", role="user")
        assert [e["text"] for e in original.metadata.get("edits", [])] == ["Does it come in another color?"]
        assert original.content == "Does it come in another colr?"
        events = await lab.events("telegram")
        assert "edit_recorded" in events[-1].detail
        assert len(lab.sends("telegram")) == 1  # the edit was not answered a second time
