"""Nobody watches a stream on a channel: a failing agent is retried, then the customer is told;
asking for a person is acknowledged on the channel."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from buzzi.models import Agent, Message
from buzzi.signing import new_standard_secret
from tests.support.local_server import serve_app
from tests.support.waiting import wait_until
from tests.webhooks.kit import ChannelLab


@contextlib.asynccontextmanager
async def company_service(statuses: list[int]) -> AsyncIterator[tuple[str, list[int]]]:
    """The company's own agent service: answers with the scripted statuses, then 200."""
    seen: list[int] = []

    async def answer(request: web.Request) -> web.Response:
        status = statuses[len(seen)] if len(seen) < len(statuses) else 200
        seen.append(status)
        if status != 200:
            return web.json_response({"error": "busy"}, status=status)
        return web.json_response({"content": "Yes, it also comes in blue."})

    app = web.Application()
    app.router.add_post("/agent", answer)
    async with serve_app(app) as port:
        yield f"http://127.0.0.1:{port}/agent", seen



async def use_http_agent(lab: ChannelLab, url: str) -> None:
    await lab.gw.store.update(Agent, lab.agent.id, {"kind": "http",
                                                   "settings": {"url": url, "secret": new_standard_secret()}})


async def test_a_retryable_agent_failure_is_retried_then_answered_once(lab: ChannelLab) -> None:
    async with company_service([503, 503]) as (url, seen):
        await use_http_agent(lab, url)
        status, _, _ = await lab.post("telegram", lab.message("telegram", "Blue?"))
        assert status == 200
        [reply] = await lab.replies("telegram")
    assert seen == [503, 503, 200]
    assert reply.content == "Yes, it also comes in blue."
    [sent] = lab.sends("telegram")
    assert sent["text"] == "Yes, it also comes in blue."
    [user] = await lab.settled("telegram")
    assert user.state == "done" and user.attempts == 3


async def test_an_agent_that_keeps_failing_ends_with_an_apology(lab: ChannelLab) -> None:
    async with company_service([503] * 10) as (url, seen):
        await use_http_agent(lab, url)
        await lab.post("telegram", lab.message("telegram", "Blue?"))
        [user] = await lab.settled("telegram")
    assert user.state == "failed" and len(seen) == lab.gw.gateway.settings.inbox.max_attempts
    apology = lab.gw.gateway.settings.agents.failure_message
    await wait_until(lambda: [s for s in lab.sends("telegram") if s["text"] == apology])
    [note] = await lab.messages("telegram", role="system")
    assert note.content == apology and note.delivery["status"] == "sent"


async def test_a_permanent_agent_failure_is_not_retried(lab: ChannelLab) -> None:
    async with company_service([401]) as (url, seen):
        await use_http_agent(lab, url)
        await lab.post("telegram", lab.message("telegram", "Blue?"))
        [user] = await lab.settled("telegram")
    assert seen == [401] and user.state == "failed"
    assert await lab.gw.store.count(Message, role="system") == 1  # the apology


async def test_asking_for_a_person_is_acknowledged_on_the_channel(lab: ChannelLab) -> None:
    await lab.post("telegram", lab.message("telegram", "I want to talk to a person"))
    note = lab.gw.gateway.settings.chat.handover_message
    await wait_until(lambda: [s for s in lab.sends("telegram") if s["text"] == note])
    conversation = await lab.conversation("telegram")
    assert conversation.owner == "human"
    assert await lab.gw.store.count(Message, role="assistant") == 0
