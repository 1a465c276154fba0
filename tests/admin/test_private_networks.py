"""Saving a tenant URL that points at the gateway's own network (`localhost`, or an IP literal in a
loopback, private, link-local... range) is refused with 400 naming the field, unless the operator
allows it (security.allow_private_networks / allowed_private_cidrs)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from buzzi.config import Settings
from tests.admin.helpers import call, create_agent, create_company, create_webhook
from tests.support.gateway import RunningGateway, running_gateway

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BLOCKED_URLS = ["http://127.0.0.1:8080/answer", "http://localhost:8080/answer", "http://[::1]/answer",
                "http://[::ffff:127.0.0.1]/answer", "http://169.254.169.254/latest/meta-data",
                "http://10.0.0.5/answer", "https://192.168.1.20/answer", "http://[fd00::1]/answer",
                "http://0.0.0.0:8080/answer", "http://127.1/answer"]


@pytest.fixture
async def strict_gw(make_settings: Callable[..., Settings]) -> AsyncIterator[RunningGateway]:
    security = {"allow_private_networks": False, "allowed_private_cidrs": ["10.20.0.0/16"]}
    async with running_gateway(make_settings, security=security) as running:
        yield running


def http_agent(url: str) -> dict[str, Any]:
    return {"name": "Service", "kind": "http", "settings": {"url": url, "secret": SECRET}}


def openai_agent(base_url: str) -> dict[str, Any]:
    return {"name": "LLM", "kind": "openai",
            "settings": {"baseUrl": base_url, "model": "gpt-test", "apiKey": "sk-test-key-0123456789"}}


@pytest.mark.parametrize("url", BLOCKED_URLS)
async def test_agent_urls_into_private_networks_are_refused(strict_gw: RunningGateway, url: str) -> None:
    gw = strict_gw
    owner = await gw.login()
    cid = (await create_company(gw, owner))["id"]
    path = f"/api/admin/companies/{cid}/agents"
    answer = await call(gw, "POST", path, owner, http_agent(url), 400)
    assert answer["field"] == "settings.url"
    assert "blocked:" in answer["error"] and "security.allow_private_networks" in answer["error"]
    answer = await call(gw, "POST", path, owner, openai_agent(url.removesuffix("/answer") + "/v1"), 400)
    assert answer["field"] == "settings.baseUrl"
    assert await call(gw, "GET", path, owner) == []


async def test_public_names_and_allowed_cidrs_are_accepted_and_updates_are_checked(strict_gw: RunningGateway) -> None:
    gw = strict_gw
    owner = await gw.login()
    cid = (await create_company(gw, owner))["id"]
    path = f"/api/admin/companies/{cid}/agents"
    # A name is not resolved when saving: it is judged by its addresses when the agent is called.
    agent = await call(gw, "POST", path, owner, http_agent("https://svc.example.com/answer"), 201)
    await call(gw, "POST", path, owner, http_agent("http://10.20.3.4:8080/answer"), 201)  # allowed_private_cidrs
    await call(gw, "POST", path, owner, openai_agent("https://api.openai.com/v1"), 201)
    changed = {"settings": {"url": "http://169.254.169.254/latest", "secret": SECRET}}
    answer = await call(gw, "PATCH", f"{path}/{agent['id']}", owner, changed, 400)
    assert answer["field"] == "settings.url" and "link-local" in answer["error"]


async def test_a_custom_callback_into_loopback_is_refused(strict_gw: RunningGateway) -> None:
    gw = strict_gw
    owner = await gw.login()
    cid = (await create_company(gw, owner))["id"]
    aid = (await create_agent(gw, owner, cid))["id"]
    path = f"/api/admin/companies/{cid}/agents/{aid}/webhooks"
    answer = await call(gw, "POST", path, owner,
                        {"channel": "custom", "credentials": {"callbackUrl": "http://127.0.0.1:9000/hooks"}}, 400)
    assert answer["field"] == "credentials.callbackUrl"
    assert "blocked: 127.0.0.1 is a loopback address" in answer["error"]
    assert await call(gw, "GET", path, owner) == []

    hook = await create_webhook(gw, owner, cid, aid,
                                {"channel": "custom", "credentials": {"callbackUrl": "https://crm.example.com/hooks"}})
    answer = await call(gw, "PATCH", f"{path}/{hook['id']}", owner,
                        {"credentials": {"callbackUrl": "http://localhost/hooks"}}, 400)
    assert answer["field"] == "credentials.callbackUrl"


async def test_allow_private_networks_accepts_them(gw: RunningGateway, owner: str) -> None:
    """The shared test settings allow private networks (every fake runs on 127.0.0.1)."""
    cid = (await create_company(gw, owner))["id"]
    await call(gw, "POST", f"/api/admin/companies/{cid}/agents", owner, http_agent("http://127.0.0.1:8080/a"), 201)
    aid = (await create_agent(gw, owner, cid))["id"]
    await create_webhook(gw, owner, cid, aid, {"channel": "custom", "credentials": {"callbackUrl": "http://localhost/h"}})
