"""Tenancy: what a principal may see. Another tenant's ids answer NotFound, never Forbidden, so a
company admin cannot even learn that they exist."""

from __future__ import annotations

from buzzi.auth import Principal
from buzzi.errors import Forbidden, NotFound
from buzzi.models import Agent, Company, Conversation, Webhook
from buzzi.store.base import Store


def company_filter(principal: Principal, requested: str | None) -> dict[str, str] | None:
    """The company condition of a list query: `{}` (every company) for an owner who named none,
    `{"company_id": ...}` for the named or, for a company admin, always their own company, and None
    when a company admin named another tenant's company: that list is empty, as for an unknown id."""
    if not principal.is_owner:
        if requested and requested != principal.company_id:
            return None
        requested = principal.company_id
    return {"company_id": requested} if requested else {}


def require_owner(principal: Principal) -> None:
    if not principal.is_owner:
        raise Forbidden("Only an owner may do this")


async def company(store: Store, principal: Principal, company_id: str) -> Company:
    if not principal.can_access(company_id):
        raise NotFound()
    found = await store.get(Company, company_id)
    if found is None:
        raise NotFound()
    return found


async def agent(store: Store, principal: Principal, company_id: str, agent_id: str) -> Agent:
    await company(store, principal, company_id)
    found = await store.get(Agent, agent_id)
    if found is None or found.company_id != company_id:
        raise NotFound()
    return found


async def webhook(store: Store, principal: Principal, company_id: str, agent_id: str, webhook_id: str) -> Webhook:
    await agent(store, principal, company_id, agent_id)
    found = await store.get(Webhook, webhook_id)
    if found is None or found.agent_id != agent_id or found.company_id != company_id:
        raise NotFound()
    return found


async def webhook_by_id(store: Store, principal: Principal, webhook_id: str) -> Webhook:
    found = await store.get(Webhook, webhook_id)
    if found is None or not principal.can_access(found.company_id):
        raise NotFound()
    return found


async def conversation(store: Store, principal: Principal, conversation_id: str) -> Conversation:
    found = await store.get(Conversation, conversation_id)
    if found is None or not principal.can_access(found.company_id):
        raise NotFound()
    return found
