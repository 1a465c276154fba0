"""Agent secrets (an LLM apiKey, an http agent's signing secret): sealed at rest, shown once, kept
when a client sends the redacted value back."""

from __future__ import annotations

from buzzi.models import Agent
from tests.admin.helpers import call, create_company
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
