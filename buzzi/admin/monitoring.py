"""Live sessions, cluster nodes and the webhook delivery log, filtered by tenant."""

from __future__ import annotations

from typing import Any

from buzzi.admin import scope
from buzzi.admin import validation as v
from buzzi.auth import Principal
from buzzi.broker.base import Presence
from buzzi.errors import NotFound
from buzzi.models import WebhookEvent
from buzzi.store.base import Store

OUTCOMES = ("ok", "duplicate", "ignored", "rejected", "error", "verified")


class Monitoring:
    def __init__(self, store: Store, broker: Presence) -> None:
        self.store = store
        self.broker = broker

    async def sessions(self, principal: Principal, query: dict[str, str | None]) -> list[dict[str, Any]]:
        company = scope.company_filter(principal, query.get("companyId"))
        if company is None:
            return []
        sessions = await self.broker.list_sessions()
        if company:
            sessions = [s for s in sessions if s.get("companyId") == company["company_id"]]
        return sessions

    async def nodes(self, principal: Principal) -> list[dict[str, Any]]:
        """The cluster is the operator's business: owners only."""
        scope.require_owner(principal)
        return await self.broker.list_nodes()

    async def webhook_events(self, principal: Principal, query: dict[str, str | None]) -> list[WebhookEvent]:
        where: dict[str, Any] = {}
        if query.get("webhookId"):
            webhook = await scope.webhook_by_id(self.store, principal, query["webhookId"] or "")
            where["webhook_id"] = webhook.id
        company = scope.company_filter(principal, query.get("companyId"))
        if company is None:
            return []
        where.update(company)
        if query.get("outcome"):
            where["outcome"] = v.choice(query["outcome"], "outcome", OUTCOMES)
        count = v.limit(query.get("limit"), default=50, maximum=500)
        return await self.store.find(WebhookEvent, order_by="received_at", descending=True, limit=count, **where)

    async def webhook_event(self, principal: Principal, company_id: str, agent_id: str, webhook_id: str,
                            event_id: str) -> WebhookEvent:
        """One delivery of a webhook the principal may see: another webhook's or tenant's event is NotFound."""
        webhook = await scope.webhook(self.store, principal, company_id, agent_id, webhook_id)
        event = await self.store.get(WebhookEvent, event_id)
        if event is None or event.webhook_id != webhook.id or event.company_id != webhook.company_id:
            raise NotFound()
        return event
