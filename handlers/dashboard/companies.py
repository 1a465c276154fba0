"""Companies: the list, create, edit and delete, and a company's page with its agents."""

from __future__ import annotations

from typing import Any

from buzzi import clock
from buzzi.admin import scope
from buzzi.admin.render import render_agent, render_company
from buzzi.errors import Invalid, ServiceError
from buzzi.models import SUBSCRIPTION_STATUSES, Company
from handlers.dashboard.forms import company_form, form_errors
from handlers.dashboard.shell import ID, DashboardHandler

EXPIRY_WARNING_DAYS = 14
C = rf"/admin/companies/{ID}"


def subscription_badge(company: Company) -> dict[str, str]:
    """The expiry badge: expired, expiring within two weeks, or the expiry date."""
    expires = company.subscription_expires_at
    if expires is None:
        return {"label": "no expiry", "kind": "none"}
    left = expires - clock.now()
    date = (clock.iso(expires) or "")[:10]
    if left <= 0:
        return {"label": f"expired {date}", "kind": "expired"}
    if left < EXPIRY_WARNING_DAYS * 86400:
        return {"label": f"expires {date}", "kind": "expiring"}
    return {"label": f"until {date}", "kind": "none"}


def company_view(company: Company) -> dict[str, Any]:
    return {**render_company(company), "badge": subscription_badge(company),
            "expiresDate": (clock.iso(company.subscription_expires_at) or "")[:10]}


class CompanyAreaPage(DashboardHandler):
    """The pages under Companies: a company, its agents and their webhooks."""

    nav = "companies"

    @property
    def public_url(self) -> str:
        return self.gateway.settings.server.public_url

    def form_error(self, template: str, exc: ServiceError, **context: Any) -> None:
        errors, message = form_errors(exc)
        self.render_page(template, status=exc.status, errors=errors, error=message, **context)


class CompaniesPage(CompanyAreaPage):
    async def get(self) -> None:
        companies = await self.admin.companies.list(self.principal)
        companies.sort(key=lambda c: c.name.lower())
        self.render_page("companies.html", title="Companies", companies=[company_view(c) for c in companies])

    async def post(self) -> None:
        try:
            company = await self.admin.companies.create(self.principal, company_form(self, with_subscription=True))
        except Invalid as exc:
            self.form_error("companies_form.html", exc, title="New company", company=None,
                            form=self._echo(), statuses=SUBSCRIPTION_STATUSES)
            return
        self.redirect_to(f"/admin/companies/{company.id}", "created")

    def _echo(self) -> dict[str, Any]:
        return {"name": self.field("name"), "status": self.field("status", "active"),
                "expiresDate": self.field("expiresAt")}


class NewCompanyPage(CompanyAreaPage):
    async def get(self) -> None:
        scope.require_owner(self.principal)
        self.render_page("companies_form.html", title="New company", company=None,
                         form={"name": "", "status": "active", "expiresDate": ""}, statuses=SUBSCRIPTION_STATUSES)


class CompanyPage(CompanyAreaPage):
    async def get(self, cid: str) -> None:
        company = await self.admin.companies.get(self.principal, cid)
        agents = await self.admin.agents.list(self.principal, cid)
        agents.sort(key=lambda a: a.name.lower())
        counts = await self.admin.webhooks.count_by_agent(self.principal, cid, [a.id for a in agents])
        self.render_page("companies_detail.html", title=company.name, company=company_view(company),
                         agents=[{**render_agent(a), "webhooks": counts[a.id]} for a in agents])

    async def post(self, cid: str) -> None:
        company = await self.admin.companies.get(self.principal, cid)
        data = company_form(self, with_subscription=self.principal.is_owner)
        try:
            await self.admin.companies.update(self.principal, cid, data)
        except Invalid as exc:
            form = {"name": self.field("name"), "status": self.field("status", company.subscription_status),
                    "expiresDate": self.field("expiresAt")}
            self.form_error("companies_form.html", exc, title=f"Edit {company.name}", company=company_view(company),
                            form=form, statuses=SUBSCRIPTION_STATUSES)
            return
        self.redirect_to(f"/admin/companies/{cid}", "saved")


class EditCompanyPage(CompanyAreaPage):
    async def get(self, cid: str) -> None:
        company = company_view(await self.admin.companies.get(self.principal, cid))
        form = {"name": company["name"], "status": company["subscription"]["status"],
                "expiresDate": company["expiresDate"]}
        self.render_page("companies_form.html", title=f"Edit {company['name']}", company=company, form=form,
                         statuses=SUBSCRIPTION_STATUSES)


class DeleteCompanyPage(CompanyAreaPage):
    async def post(self, cid: str) -> None:
        await self.admin.companies.delete(self.principal, cid)
        self.redirect_to("/admin/companies", "deleted")


ROUTES: list[tuple] = [
    (r"/admin/companies/?", CompaniesPage),
    (r"/admin/companies/new", NewCompanyPage),  # before C: "new" would match an id
    (C, CompanyPage),
    (rf"{C}/edit", EditCompanyPage),
    (rf"{C}/delete", DeleteCompanyPage),
]
