"""Typing indicators refreshed at each channel's own interval while a slow model answers, over real
HTTP against the fake platforms: Telegram's sendChatAction fades after 5 s, so it is repeated;
Messenger's read receipt (mark_seen) goes once, only the typing_on is refreshed; a channel without
an interval shows it once. Intervals are shortened on the adapter classes so the test takes
seconds; the counts have loose bounds."""

from __future__ import annotations

import asyncio

import pytest

from buzzi.channels.messenger import MessengerAdapter
from buzzi.channels.telegram import TelegramAdapter
from buzzi.models import Agent
from tests.support.fake_llm import FakeServices
from tests.webhooks.kit import ME_SEND, TOKENS, ChannelLab

SLOW = 1.6  # seconds the fake model takes before answering
INTERVAL = 0.3


async def use_slow_model(lab: ChannelLab, fake: FakeServices) -> None:
    fake.llm.delay = SLOW
    fake.llm.chunks = ["It comes in ", "red and blue."]
    await lab.gw.store.update(Agent, lab.agent.id, {
        "kind": "openai", "settings": {"baseUrl": fake.llm_base_url, "model": "gpt-test", "apiKey": "sk-test"}})


def sender_actions(lab: ChannelLab, action: str) -> list[dict]:
    token = TOKENS["messenger"]
    return [r.json() for r in lab.graph.to(ME_SEND)
            if r.json().get("sender_action") == action and r.headers.get("authorization") == f"Bearer {token}"]


def test_channels_declare_their_platform_intervals() -> None:
    # docs/channels.md §5.3 (Telegram: "5 seconds or less"), §3.3 (Messenger typing_on: 20 s)
    assert 3 <= TelegramAdapter.typing_interval < 5
    assert MessengerAdapter.typing_interval is not None and 10 <= MessengerAdapter.typing_interval < 20


async def test_telegram_typing_is_refreshed_while_the_model_works(lab: ChannelLab, fake: FakeServices,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TelegramAdapter, "typing_interval", INTERVAL)
    await use_slow_model(lab, fake)
    await lab.post("telegram", lab.message("telegram"))
    [reply] = await lab.replies("telegram")
    assert reply.content == "It comes in red and blue."
    actions = lab.tg.calls("/sendChatAction")
    # about SLOW / INTERVAL + 1 = 6; generous both ways for a loaded machine
    assert 3 <= len(actions) <= 9, len(actions)
    assert all(a.json == {"chat_id": actions[0].json["chat_id"], "action": "typing"} for a in actions)
    [sent] = lab.tg.calls("/sendMessage")
    assert all(a.at <= sent.at for a in actions)  # no "typing..." left under the answer


async def test_telegram_typing_stops_with_the_answer(lab: ChannelLab, fake: FakeServices,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TelegramAdapter, "typing_interval", INTERVAL)
    await use_slow_model(lab, fake)
    await lab.post("telegram", lab.message("telegram"))
    await lab.replies("telegram")
    await lab.settled("telegram")
    count = len(lab.tg.calls("/sendChatAction"))
    await asyncio.sleep(4 * INTERVAL)  # an absence: give a stray refresh the time to show up
    assert len(lab.tg.calls("/sendChatAction")) == count


async def test_messenger_marks_seen_once_and_refreshes_typing(lab: ChannelLab, fake: FakeServices,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(MessengerAdapter, "typing_interval", INTERVAL)
    await use_slow_model(lab, fake)
    await lab.post("messenger", lab.message("messenger"))
    await lab.replies("messenger")
    assert len(sender_actions(lab, "mark_seen")) == 1
    assert 3 <= len(sender_actions(lab, "typing_on")) <= 9


async def test_without_an_interval_typing_is_shown_once(lab: ChannelLab, fake: FakeServices,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TelegramAdapter, "typing_interval", None)
    await use_slow_model(lab, fake)
    await lab.post("telegram", lab.message("telegram"))
    await lab.replies("telegram")
    assert len(lab.tg.calls("/sendChatAction")) == 1
