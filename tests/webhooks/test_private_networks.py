"""The SSRF guard end to end over real HTTP, with `security.allow_private_networks` off: tenant URLs
(agent services, custom callbacks, payload media) that point at the gateway's own network are
refused at connect time, while the operator's platform API bases (fakes on 127.0.0.1 here) keep
working. The URLs are written straight to the store, as if saved before the policy or through a
name that resolves privately: the admin API's save-time check is tested in tests/admin/."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from buzzi import clock
from buzzi.config import Settings
from buzzi.ids import new_id
from buzzi.models import Agent, Company, Media, Message
from buzzi.signing import new_standard_secret
from tests.support.fake_custom import CALLBACK_PATH
from tests.support.fake_llm import FakeServices
from tests.support.fake_meta import WA_CONTACT, WA_METADATA, Reply, wa_envelope
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.sse import collect_until_terminal
from tests.support.waiting import wait_until
from tests.webhooks.kit import GRAPH_PREFIX, WA_USER, ChannelLab, channel_lab

STRICT: dict[str, Any] = {"allow_private_networks": False}
PICTURE = b"\x89PNG tiny picture"


@pytest.fixture
async def strict_lab(make_settings: Callable[..., Settings]) -> AsyncIterator[ChannelLab]:
    async with channel_lab(make_settings, security=STRICT) as lab:
        yield lab


@pytest.fixture
async def services() -> AsyncIterator[FakeServices]:
    async with FakeServices() as fake:
        yield fake


def agent_settings(kind: str, fake: FakeServices, host: str) -> dict[str, Any]:
    base = fake.url.replace("127.0.0.1", host)
    if kind == "http":
        return {"url": base + "/agent", "secret": new_standard_secret()}
    return {"baseUrl": base + "/v1", "model": "gpt-test", "apiKey": "sk-test-key-0123456789"}


async def ask_over_web_chat(gw: RunningGateway, agent: Agent, question: str) -> list[Any]:
    status, session, _ = await gw.request("POST", "/api/chat/sessions",
                                          json_body={"companyId": agent.company_id, "agentId": agent.id})
    assert status == 201, session
    sid = session["sessionId"]
    async with gw.http.get(f"{gw.base_url}/api/chat/{sid}/stream") as resp:
        status, _, _ = await gw.request("POST", f"/api/chat/{sid}/message", json_body={"content": question})
        assert status == 202
        return await asyncio.wait_for(collect_until_terminal(resp), 10)


# ---------------------------------------------------------------------------- agents

@pytest.mark.parametrize("kind", ["http", "openai"])
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])  # an IP literal, and a name resolving to loopback
async def test_an_agent_service_on_loopback_is_never_called(make_settings: Callable[..., Settings],
                                                            services: FakeServices, kind: str, host: str) -> None:
    async with running_gateway(make_settings, security=STRICT) as gw:
        company = await gw.store.add(Company(id=new_id("company"), name="Acme"))
        agent = await gw.store.add(Agent(id=new_id("agent"), company_id=company.id, name="Service", kind=kind,
                                         settings=agent_settings(kind, services, host)))
        events = await ask_over_web_chat(gw, agent, "What is in your metadata service?")
        [user] = await wait_until(lambda: _failed(gw, agent))
    assert services.requests == []
    last = events[-1]
    assert last.event == "error" and last.data["code"] == "upstream_blocked" and last.data["retryable"] is False
    # The customer is told nothing of the network (buzzi/agents/public_error.py); the admin is.
    assert "blocked" not in last.data["message"] and host not in last.data["message"]
    assert "blocked:" in user.metadata["error"] and "loopback" in user.metadata["error"]
    assert "security.allow_private_networks" in user.metadata["error"]


async def _failed(gw: RunningGateway, agent: Agent) -> list[Message]:
    users = await gw.store.find(Message, agent_id=agent.id, role="user")
    return users if [m.state for m in users] == ["failed"] else []


async def test_a_blocked_agent_is_not_retried_and_the_customer_is_told(strict_lab: ChannelLab,
                                                                       services: FakeServices) -> None:
    lab = strict_lab
    await lab.gw.store.update(Agent, lab.agent.id, {"kind": "http",
                                                   "settings": agent_settings("http", services, "127.0.0.1")})
    await lab.post("telegram", lab.message("telegram", "Blue?"))
    [user] = await lab.settled("telegram")
    assert user.state == "failed" and user.attempts == 1
    assert services.requests == []
    apology = lab.gw.gateway.settings.agents.failure_message
    # Telegram's API base is operator config on 127.0.0.1 too: it stays reachable.
    await wait_until(lambda: [s for s in lab.sends("telegram") if s["text"] == apology])


async def test_an_allowed_cidr_lets_one_internal_service_through(make_settings: Callable[..., Settings],
                                                                 services: FakeServices) -> None:
    services.agent.json = {"content": "Our internal service says hello."}
    security = {**STRICT, "allowed_private_cidrs": ["127.0.0.1/32"]}
    async with running_gateway(make_settings, security=security) as gw:
        company = await gw.store.add(Company(id=new_id("company"), name="Acme"))
        agent = await gw.store.add(Agent(id=new_id("agent"), company_id=company.id, name="Service", kind="http",
                                         settings=agent_settings("http", services, "127.0.0.1")))
        events = await ask_over_web_chat(gw, agent, "Hello?")
    assert events[-1].event == "complete" and events[-1].data["content"] == "Our internal service says hello."
    assert len(services.requests) == 1


# ---------------------------------------------------------------------------- custom channel

async def test_a_custom_reply_to_loopback_is_recorded_as_blocked(strict_lab: ChannelLab) -> None:
    lab = strict_lab
    assert lab.hooks["custom"].credentials["callbackUrl"].startswith("http://127.0.0.1:")
    assert (await lab.post("custom", lab.message("custom")))[0] == 200
    [reply] = await lab.replies("custom", state="failed")
    delivery = reply.delivery
    assert delivery["error"]["code"] == "blocked" and delivery["attempts"] == 1  # permanent: not retried
    assert delivery["error"]["title"].startswith("custom: callbackUrl blocked: 127.0.0.1 is a loopback address")
    assert lab.callback.to(CALLBACK_PATH) == []


def custom_with_attachment(lab: ChannelLab, url: str) -> bytes:
    body = {"type": "message.created", "timestamp": clock.iso(time.time()),
            "data": {"message_id": f"ext-{lab.next_id()}", "chat_id": "chat-9", "sender": {"id": "u-7"},
                     "text": "see attached",
                     "attachments": [{"url": url, "mime_type": "image/png", "name": "a.png"}]}}
    return json.dumps(body).encode()


async def downloaded(lab: ChannelLab, channel: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        messages = await lab.messages(channel, role="user")
        return messages[0].attachments[0] if messages and "download" in messages[0].attachments[0] else None

    return await wait_until(check)


async def test_payload_media_on_a_private_address_is_not_downloaded(strict_lab: ChannelLab,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    lab = strict_lab
    caplog.set_level(logging.INFO)
    lab.callback.always("GET", "/files/a.png", Reply(200, body=PICTURE, headers={"Content-Type": "image/png"}))
    url = lab.callback.url + "/files/a.png?sig=media-url-secret"
    assert (await lab.post("custom", lab.sign("custom", custom_with_attachment(lab, url))))[0] == 200
    attachment = await downloaded(lab, "custom")
    assert attachment["download"]["status"] == "failed"
    assert attachment["download"]["error"].startswith("media download blocked: 127.0.0.1 is a loopback address")
    assert lab.callback.to("/files/a.png") == []
    assert await lab.gw.store.count(Media) == 0
    logged = "\n".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records
                       if r.name.startswith("buzzi"))
    assert "outbound connection blocked" in logged and "media download failed" in logged
    assert "media-url-secret" not in logged and "/files/a.png" not in logged


async def test_platform_api_bases_stay_trusted(strict_lab: ChannelLab) -> None:
    """WhatsApp's media URL comes from the Graph (operator config), not from the payload."""
    lab = strict_lab
    media_id = "1234567890123"
    lab.graph.script("GET", f"{GRAPH_PREFIX}/{media_id}", Reply(200, {
        "messaging_product": "whatsapp", "url": lab.graph.url + "/cdn/image.png", "mime_type": "image/png",
        "sha256": hashlib.sha256(PICTURE).hexdigest(), "file_size": len(PICTURE), "id": media_id}))
    lab.graph.script("GET", "/cdn/image.png", Reply(200, body=PICTURE, headers={"Content-Type": "image/png"}))
    item = {"from": WA_USER, "id": "wamid.IMAGE1", "timestamp": str(int(time.time())), "type": "image",
            "image": {"caption": "Does it come in another color?", "mime_type": "image/png", "id": media_id}}
    body = wa_envelope({"metadata": WA_METADATA, "contacts": [WA_CONTACT], "messages": [item]})
    assert (await lab.post("whatsapp", lab.sign("whatsapp", body)))[0] == 200
    assert (await downloaded(lab, "whatsapp"))["download"]["status"] == "stored"
    [reply] = await lab.replies("whatsapp")
    assert reply.delivery["status"] == "sent"

