"""An agent's pages: create, its page with its webhooks, edit and delete."""

from __future__ import annotations

from typing import Any

from buzzi.admin.render import render_agent, render_webhook
from buzzi.errors import Invalid
from buzzi.models import AGENT_KINDS, Agent, Company
from handlers.dashboard.companies import C, CompanyAreaPage, company_view
from handlers.dashboard.forms import CORRECT_FIELD, agent_form, agent_form_view, field_errors
from handlers.dashboard.shell import ID

A = rf"{C}/agents/{ID}"


class AgentFormPage(CompanyAreaPage):
    def show_form(self, company: Company, agent: Agent | None, form: dict[str, Any], status: int = 200,
                  **extra: Any) -> None:
        title = f"Edit {agent.name}" if agent else "New agent"
        self.render_page("agents_form.html", status=status, title=title, company=company_view(company),
                         agent=render_agent(agent) if agent else None, form=agent_form_view(form),
                         kinds=AGENT_KINDS, **extra)

    def invalid(self, exc: Invalid, company: Company, agent: Agent | None, form: dict[str, Any]) -> None:
        self.show_form(company, agent, form, status=exc.status, errors=field_errors(exc), error=CORRECT_FIELD)


class NewAgentPage(AgentFormPage):
    async def get(self, cid: str) -> None:
        company = await self.admin.companies.get(self.principal, cid)
        self.show_form(company, None, {"kind": "faq", "settings": {"documents": [{"title": "", "content": ""}]}})


class AgentsPage(AgentFormPage):
    async def post(self, cid: str) -> None:
        company = await self.admin.companies.get(self.principal, cid)
        data = agent_form(self, None)
        try:
            agent = await self.admin.agents.create(self.principal, cid, data)
        except Invalid as exc:
            self.invalid(exc, company, None, data)
            return
        self.redirect_to(f"/admin/companies/{cid}/agents/{agent.id}", "created")


class AgentPage(AgentFormPage):
    async def get(self, cid: str, aid: str) -> None:
        company = await self.admin.companies.get(self.principal, cid)
        agent = await self.admin.agents.get(self.principal, cid, aid)
        hooks = await self.admin.webhooks.list(self.principal, cid, aid)
        hooks.sort(key=lambda w: w.created_at)
        view = agent_form_view(render_agent(agent))
        self.render_page("agents_detail.html", title=agent.name, company=company_view(company),
                         agent=render_agent(agent), settings=view["settings"], secrets_set=view["secretsSet"],
                         webhooks=[render_webhook(w, self.public_url) for w in hooks])

    async def post(self, cid: str, aid: str) -> None:
        company = await self.admin.companies.get(self.principal, cid)
        agent = await self.admin.agents.get(self.principal, cid, aid)
        data = agent_form(self, agent)
        try:
            await self.admin.agents.update(self.principal, cid, aid, data)
        except Invalid as exc:
            self.invalid(exc, company, agent, data)
            return
        self.redirect_to(f"/admin/companies/{cid}/agents/{aid}", "saved")


class EditAgentPage(AgentFormPage):
    async def get(self, cid: str, aid: str) -> None:
        company = await self.admin.companies.get(self.principal, cid)
        agent = await self.admin.agents.get(self.principal, cid, aid)
        self.show_form(company, agent, render_agent(agent))


class DeleteAgentPage(CompanyAreaPage):
    async def post(self, cid: str, aid: str) -> None:
        await self.admin.agents.delete(self.principal, cid, aid)
        self.redirect_to(f"/admin/companies/{cid}", "deleted")


ROUTES: list[tuple] = [
    (rf"{C}/agents/new", NewAgentPage),  # before A: "new" would match an id
    (rf"{C}/agents", AgentsPage),
    (A, AgentPage),
    (rf"{A}/edit", EditAgentPage),
    (rf"{A}/delete", DeleteAgentPage),
]
