"""Admin services (SPEC §4): users, companies, agents, webhooks, conversations and monitoring,
with tenancy enforced here rather than in handlers, so every front end gets the same rules.
Services take a Principal and return domain objects; buzzi.admin.render turns them into the API's JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from buzzi.admin.agents import AgentService
from buzzi.admin.auth import AdminAuth
from buzzi.admin.companies import CompanyService
from buzzi.admin.conversations import AdminConversations
from buzzi.admin.errors import AdminError, Conflict, Forbidden, Invalid, NotFound, Unauthorized
from buzzi.admin.monitoring import Monitoring
from buzzi.admin.users import UserService
from buzzi.admin.webhooks import WebhookService

if TYPE_CHECKING:
    from buzzi.runtime import Gateway

__all__ = ["AdminError", "AdminServices", "Conflict", "Forbidden", "Invalid", "NotFound", "Unauthorized"]


@dataclass(frozen=True)
class AdminServices:
    auth: AdminAuth
    users: UserService
    companies: CompanyService
    agents: AgentService
    webhooks: WebhookService
    conversations: AdminConversations
    monitoring: Monitoring

    @classmethod
    def from_gateway(cls, gateway: Gateway) -> AdminServices:
        store, settings = gateway.store, gateway.settings
        return cls(
            auth=AdminAuth(store, gateway.broker, gateway.limiter, gateway.tokens,
                           settings.security.login_attempts_per_minute),
            users=UserService(store),
            companies=CompanyService(store),
            agents=AgentService(store, gateway.agents),
            webhooks=WebhookService(store, gateway.channels, settings.server.public_url),
            conversations=AdminConversations(store, gateway.processor.conversations),
            monitoring=Monitoring(store, gateway.broker),
        )
