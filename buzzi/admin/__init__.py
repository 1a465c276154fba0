"""Admin services (docs/contract.md §4): users, companies, agents, webhooks, conversations and monitoring,
with tenancy enforced here rather than in handlers, so every front end gets the same rules.
Services take a Principal and return domain objects; buzzi.admin.render turns them into the API's JSON."""

from __future__ import annotations

from dataclasses import dataclass

from buzzi.admin.agents import AgentService
from buzzi.admin.auth import AdminAuth
from buzzi.admin.companies import CompanyService
from buzzi.admin.conversations import AdminConversations
from buzzi.admin.live import LiveViews
from buzzi.admin.monitoring import Monitoring
from buzzi.admin.samples import SampleSender
from buzzi.admin.users import UserService
from buzzi.admin.webhooks import WebhookAdmin


@dataclass(frozen=True)
class AdminServices:
    """The admin services, built once by the Gateway (buzzi.runtime)."""

    auth: AdminAuth
    users: UserService
    companies: CompanyService
    agents: AgentService
    webhooks: WebhookAdmin
    conversations: AdminConversations
    monitoring: Monitoring
    live: LiveViews
    samples: SampleSender
