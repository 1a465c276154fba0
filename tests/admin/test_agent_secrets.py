"""Agent secrets (an LLM apiKey, an http agent's signing secret): sealed at rest, shown once, kept
when a client sends the redacted value back, but only as long as the URL they are sent to stays."""

from __future__ import annotations

from buzzi.models import Agent
from tests.admin.helpers import call, company_admin, create_company
from tests.support.gateway import RunningGateway

OPENAI = {"baseUrl": "https://llm.example.com/v1", "model": "gpt-test", "apiKey": "sk-live-0123456789abcdefWXYZ"}


async def test_api_key_is_sealed_redacted_and_kept(gw: RunningGateway, owner: str) -> None:
    company = await create_company(gw, owner)
    path = f"/api/admin/companies/{company['id']}/agents"
    created = await call(gw, "POST", path, owner, {"name": "LLM", "kind": "openai", "settings": OPENAI}, 201)
    assert created["settings"]["apiKey"] == OPENAI["apiKey"]  # the one time it is shown

    raw = await gw.store._get("agents", created["id"])
    assert OPENAI["apiKey"] not in str(raw)

    read = await call(gw, "GET", f"{path}/{created['id']}", owner)
    assert read["settings"]["apiKey"] == "sk-\u2026WXYZ"
    listed = await call(gw, "GET", path, owner)
    assert OPENAI["apiKey"] not in str(listed)

    # Sending the redacted settings back (e.g. to change the model) keeps the stored key.
    changed = {**read["settings"], "model": "gpt-other"}
    await call(gw, "PATCH", f"{path}/{created['id']}", owner, {"settings": changed})
    agent = await gw.store.get(Agent, created["id"])
    assert agent.settings["apiKey"] == OPENAI["apiKey"] and agent.settings["model"] == "gpt-other"
    # A new value replaces it.
    replaced = {**changed, "apiKey": "sk-new-key-1234567890"}
    await call(gw, "PATCH", f"{path}/{created['id']}", owner, {"settings": replaced})
    assert (await gw.store.get(Agent, created["id"])).settings["apiKey"] == "sk-new-key-1234567890"


async def test_a_new_url_needs_the_secret_again(gw: RunningGateway, owner: str) -> None:
    """Issue 10 item 9: a company admin must not send the owner-set key to a host of their choosing."""
    company = await create_company(gw, owner)
    path = f"/api/admin/companies/{company['id']}/agents"
    created = await call(gw, "POST", path, owner, {"name": "LLM", "kind": "openai", "settings": OPENAI}, 201)
    agent_path = f"{path}/{created['id']}"
    admin = await company_admin(gw, owner, company["id"], "tenant@example.com")
    redacted = (await call(gw, "GET", agent_path, admin))["settings"]
    for settings in ({**redacted, "baseUrl": "https://attacker.example.net/v1"},
                     {**redacted, "baseUrl": "https://llm.example.com/v2"}):
        refused = await call(gw, "PATCH", agent_path, admin, {"settings": settings}, 400)
        assert refused["field"] == "settings.apiKey" and "baseUrl" in refused["error"]
    assert (await gw.store.get(Agent, created["id"])).settings == OPENAI  # nothing changed
    # Leaving the key out entirely keeps nothing either.
    without_key = {k: v for k, v in redacted.items() if k != "apiKey"}
    await call(gw, "PATCH", agent_path, admin, {"settings": {**without_key, "baseUrl": "https://x.example.net"}},
               400)
    # The same URL with the redacted key is fine; a new URL with a key typed in is fine.
    await call(gw, "PATCH", agent_path, admin, {"settings": {**redacted, "model": "gpt-2"}})
    moved = {**redacted, "baseUrl": "https://own.example.net/v1", "apiKey": "sk-tenant-own-key-9876"}
    await call(gw, "PATCH", agent_path, admin, {"settings": moved})
    stored = (await gw.store.get(Agent, created["id"])).settings
    assert stored["baseUrl"] == "https://own.example.net/v1" and stored["apiKey"] == "sk-tenant-own-key-9876"


async def test_a_new_http_agent_url_needs_the_signing_secret_again(gw: RunningGateway, owner: str) -> None:
    company = await create_company(gw, owner)
    path = f"/api/admin/companies/{company['id']}/agents"
    settings = {"url": "https://agent.example.com/reply", "secret": "whsec_" + "A" * 32}
    created = await call(gw, "POST", path, owner, {"name": "Svc", "kind": "http", "settings": settings}, 201)
    redacted = (await call(gw, "GET", f"{path}/{created['id']}", owner))["settings"]
    refused = await call(gw, "PATCH", f"{path}/{created['id']}", owner,
                         {"settings": {**redacted, "url": "https://other.example.net/hook"}}, 400)
    assert refused["field"] == "settings.secret"
    assert (await gw.store.get(Agent, created["id"])).settings["url"] == settings["url"]
