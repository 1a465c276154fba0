"""Live sessions, cluster nodes and the webhook delivery log, filtered by tenant."""

from __future__ import annotations

from typing import Any

from buzzi.admin import scope
from buzzi.admin import validation as v
from buzzi.auth import Principal
from buzzi.broker.base import Broker
from buzzi.models import WebhookEvent
from buzzi.store.base import Store

OUTCOMES = ("ok", "duplicate", "ignored", "rejected", "error", "verified")


class Monitoring:
    def __init__(self, store: Store, broker: Broker) -> None:
        self.store = store
        self.broker = broker

    async def sessions(self, principal: Principal, query: dict[str, str | None]) -> list[dict[str, Any]]:
        sessions = await self.broker.list_sessions()
        company_id = query.get("companyId") or None
        if not principal.is_owner:
            if company_id not in (None, principal.company_id):
                return []
            company_id = principal.company_id
        if company_id is not None:
            sessions = [s for s in sessions if s.get("companyId") == company_id]
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
        company_id = query.get("companyId") or None
        if not principal.is_owner:
            if company_id not in (None, principal.company_id):
                return []
            company_id = principal.company_id
        if company_id is not None:
            where["company_id"] = company_id
        if query.get("outcome"):
            where["outcome"] = v.choice(query["outcome"], "outcome", OUTCOMES)
        count = v.limit(query.get("limit"), default=50, maximum=500)
        return await self.store.find(WebhookEvent, order_by="received_at", descending=True, limit=count, **where)
