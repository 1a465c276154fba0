"""Agents of a company. Settings are checked by the agent kind's own validator (AgentRegistry)."""

from __future__ import annotations

from typing import Any

from buzzi.admin import scope
from buzzi.admin import validation as v
from buzzi.admin.render import ELLIPSIS
from buzzi.agents.base import SettingsError
from buzzi.agents.registry import AgentRegistry
from buzzi.auth import Principal
from buzzi.errors import Invalid
from buzzi.ids import new_id
from buzzi.models import AGENT_KINDS, Agent, Webhook
from buzzi.store.base import Store

FIELDS = ("name", "status", "kind", "settings", "allowedOrigins")
STATUSES = ("active", "inactive")


class AgentService:
    def __init__(self, store: Store, agents: AgentRegistry) -> None:
        self.store = store
        self.agents = agents

    async def list(self, principal: Principal, company_id: str) -> list[Agent]:
        await scope.company(self.store, principal, company_id)
        return await self.store.find(Agent, company_id=company_id)

    async def get(self, principal: Principal, company_id: str, agent_id: str) -> Agent:
        return await scope.agent(self.store, principal, company_id, agent_id)

    async def create(self, principal: Principal, company_id: str, data: Any) -> Agent:
        await scope.company(self.store, principal, company_id)
        data = v.body_object(data)
        v.only(data, FIELDS)
        name = v.string(v.require(data, "name"), "name")
        kind = v.choice(data.get("kind", "faq"), "kind", AGENT_KINDS)
        settings = self._settings(kind, data.get("settings", {}))
        return await self.store.add(Agent(
            id=new_id("agent"), company_id=company_id, name=name, kind=kind,
            status=v.choice(data.get("status", "active"), "status", STATUSES),
            settings=settings, allowed_origins=v.origins(data.get("allowedOrigins", [])),
        ))

    async def update(self, principal: Principal, company_id: str, agent_id: str, data: Any) -> Agent:
        agent = await scope.agent(self.store, principal, company_id, agent_id)
        data = v.body_object(data)
        v.only(data, FIELDS)
        changes: dict[str, Any] = {}
        if "name" in data:
            changes["name"] = v.string(data["name"], "name")
        if "status" in data:
            changes["status"] = v.choice(data["status"], "status", STATUSES)
        if "allowedOrigins" in data:
            changes["allowed_origins"] = v.origins(data["allowedOrigins"])
        if "kind" in data or "settings" in data:
            # A new kind is checked against the settings it will run with (given or current).
            kind = v.choice(data.get("kind", agent.kind), "kind", AGENT_KINDS)
            changes["kind"] = kind
            given = data.get("settings", agent.settings)
            settings = self._settings(kind, keep_unchanged_secrets(given, agent.settings))
            self._secrets_follow_urls(kind, settings, agent.settings, fresh_secrets(data.get("settings")))
            changes["settings"] = settings
        if not changes:
            return agent
        updated = await self.store.update(Agent, agent.id, changes)
        return updated or agent

    async def delete(self, principal: Principal, company_id: str, agent_id: str) -> None:
        """The agent and its webhooks (their credentials must not outlive it); conversations stay as history."""
        agent = await scope.agent(self.store, principal, company_id, agent_id)
        await self.store.delete_where(Webhook, agent_id=agent.id)
        await self.store.delete(Agent, agent.id)

    def _secrets_follow_urls(self, kind: str, settings: dict[str, Any], current: dict[str, Any],
                             fresh: set[str]) -> None:
        """A stored secret may only go on to a URL it was entered for: when a URL it is sent to
        changes, every secret must be typed again in the same request. Otherwise a company admin
        could point an owner-set OpenAI key at their own host and read it there."""
        url_keys = self.agents.runner(kind).url_settings
        if all(settings.get(key) == current.get(key) for key in url_keys):
            return
        for key in Agent.SECRET_SETTINGS:
            if settings.get(key) and key not in fresh:
                urls = " or ".join(f"settings.{k}" for k in url_keys)
                raise Invalid(f"settings.{key}", f"must be entered again when {urls} changes")

    def _settings(self, kind: str, settings: Any) -> dict[str, Any]:
        if settings is None:
            settings = {}
        try:
            return self.agents.validate_settings(kind, settings)
        except SettingsError as exc:
            field = exc.field if exc.field.startswith(("settings", "kind")) else f"settings.{exc.field}"
            message = str(exc).removeprefix(f"{exc.field}: ")
            raise Invalid(field, message) from None


def fresh_secrets(given: Any) -> set[str]:
    """The secret settings this request typed in (not a redacted value sent back, not left out)."""
    if not isinstance(given, dict):
        return set()
    return {key for key in Agent.SECRET_SETTINGS
            if isinstance(given.get(key), str) and given[key] and ELLIPSIS not in given[key]}


def keep_unchanged_secrets(given: Any, current: dict[str, Any]) -> Any:
    """A client that read redacted settings and sends them back (e.g. "sk-…abcd") keeps the stored
    secret; any other value replaces it."""
    if not isinstance(given, dict):
        return given
    merged = dict(given)
    for key in Agent.SECRET_SETTINGS:
        value = merged.get(key)
        if isinstance(value, str) and ELLIPSIS in value and key in current:
            merged[key] = current[key]
    return merged
