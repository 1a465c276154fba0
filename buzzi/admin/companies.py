"""Companies (tenants) and their subscription. Only an owner creates or deletes a company or changes
a subscription; a company admin may rename their own company."""

from __future__ import annotations

from typing import Any

from buzzi.admin import scope
from buzzi.admin import validation as v
from buzzi.auth import Principal
from buzzi.errors import Forbidden
from buzzi.ids import new_id
from buzzi.media import delete_company_media
from buzzi.models import (
    SUBSCRIPTION_STATUSES,
    Agent,
    ChatAlias,
    Company,
    Conversation,
    Message,
    SentId,
    User,
    Webhook,
    WebhookEvent,
)
from buzzi.store.base import Store

FIELDS = ("name", "subscription")
SUBSCRIPTION_FIELDS = ("status", "expiresAt")


class CompanyService:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def list(self, principal: Principal) -> list[Company]:
        if principal.is_owner:
            return await self.store.find(Company)
        own = await self.store.get(Company, principal.company_id or "")
        return [own] if own else []

    async def get(self, principal: Principal, company_id: str) -> Company:
        return await scope.company(self.store, principal, company_id)

    async def create(self, principal: Principal, data: Any) -> Company:
        scope.require_owner(principal)
        data = v.body_object(data)
        v.only(data, FIELDS)
        name = v.string(v.require(data, "name"), "name")
        status, expires = "active", None
        if data.get("subscription") is not None:
            status, expires = _subscription(data["subscription"], {})
        return await self.store.add(Company(
            id=new_id("company"), name=name, subscription_status=status, subscription_expires_at=expires,
        ))

    async def update(self, principal: Principal, company_id: str, data: Any) -> Company:
        company = await scope.company(self.store, principal, company_id)
        data = v.body_object(data)
        v.only(data, FIELDS)
        changes: dict[str, Any] = {}
        if "name" in data:
            changes["name"] = v.string(data["name"], "name")
        if "subscription" in data:
            if not principal.is_owner:
                raise Forbidden("Only an owner may change a subscription")
            current = {"status": company.subscription_status, "expiresAt": company.subscription_expires_at}
            changes["subscription_status"], changes["subscription_expires_at"] = _subscription(
                data["subscription"], current)
        if not changes:
            return company
        updated = await self.store.update(Company, company.id, changes)
        return updated or company

    async def delete(self, principal: Principal, company_id: str) -> None:
        """The company and everything it owns: a deleted tenant leaves no credentials behind."""
        company = await scope.company(self.store, principal, company_id)
        scope.require_owner(principal)
        for cls in (Webhook, Agent, User, Message, Conversation, WebhookEvent, SentId, ChatAlias):
            await self.store.delete_where(cls, company_id=company.id)
        # After the messages: a download still running sees its message gone and drops its blob.
        await delete_company_media(self.store, company.id)
        await self.store.delete(Company, company.id)


def _subscription(value: Any, current: dict[str, Any]) -> tuple[str, float | None]:
    """A partial subscription object merged over the current one."""
    data = v.body_object(value, "subscription")
    v.only(data, SUBSCRIPTION_FIELDS, "subscription.")
    status = current.get("status", "active")
    if "status" in data:
        status = v.choice(data["status"], "subscription.status", SUBSCRIPTION_STATUSES)
    expires = current.get("expiresAt")
    if "expiresAt" in data:
        expires = v.optional_time(data["expiresAt"], "subscription.expiresAt")
    return status, expires
