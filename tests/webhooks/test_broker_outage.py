"""A broker outage after a message is stored must not turn the acknowledgement into an error:
the channel (or browser) would retry and the message would be stored twice. The inbox's poll
answers it instead of the lost wake-up."""

from __future__ import annotations

import pytest

from buzzi.broker.base import BrokerUnavailable
from tests.support.waiting import wait_until
from tests.webhooks.kit import ChannelLab


@pytest.fixture
def broken_wakeups(lab: ChannelLab, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    failures: list[int] = []

    async def notify_inbox() -> None:
        failures.append(1)
        raise BrokerUnavailable("redis down")

    monkeypatch.setattr(lab.gw.gateway.broker, "notify_inbox", notify_inbox)
    return failures


async def test_a_stored_webhook_message_is_acknowledged_and_answered(lab: ChannelLab,
                                                                      broken_wakeups: list[int]) -> None:
    signed = lab.message("telegram")
    assert (await lab.post("telegram", signed))[:2] == (200, {"status": "ok"})
    assert broken_wakeups  # the wake-up really failed
    (reply,) = await lab.replies("telegram")
    (inbound,) = await lab.settled("telegram")
    assert reply.reply_to == inbound.id and len(lab.sends("telegram")) == 1
    assert [e.outcome for e in await lab.events("telegram")] == ["ok"]


async def test_a_stored_chat_message_is_accepted_and_answered(lab: ChannelLab, broken_wakeups: list[int],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_free_slot() -> None:  # stored pending, as when every answer slot here is busy,
        return None  # so the message goes out with a wake-up (one stored claimed here needs none)

    monkeypatch.setattr(lab.gw.gateway.inbox, "reserve", no_free_slot)
    status, session, _ = await lab.gw.request(
        "POST", "/api/chat/sessions", json_body={"companyId": lab.company.id, "agentId": lab.agent.id})
    assert status == 201, session
    sid = session["sessionId"]
    status, body, _ = await lab.gw.request("POST", f"/api/chat/{sid}/message", json_body={"content": "Hello?"})
    assert status == 202, body
    assert broken_wakeups

    async def answered() -> list | None:
        _, history, _ = await lab.gw.request("GET", f"/api/chat/{sid}/messages")
        roles = [m["role"] for m in history["messages"]]
        return roles if roles == ["user", "assistant"] else None

    assert await wait_until(answered) == ["user", "assistant"]
