"""Dashboard pages for companies, agents, webhooks and their delivery log.

Handlers turn forms into the JSON-shaped input of the buzzi.admin services (which enforce tenancy and
validate) and render the answers. A validation error re-renders the form with the message next to
the field it names. Secrets are rendered only in the answer to create and rotate-secret; every
other page shows them through buzzi.admin.render's redaction.
"""

from __future__ import annotations

import re
from typing import Any

from buzzi import clock
from buzzi.admin import scope
from buzzi.admin.errors import Invalid, NotFound, UpstreamFailed
from buzzi.admin.monitoring import OUTCOMES
from buzzi.admin.render import render_agent, render_company, render_event, render_webhook
from buzzi.models import AGENT_KINDS, CHANNELS, SUBSCRIPTION_STATUSES, Agent, Company, Webhook, WebhookEvent
from handlers.dashboard_samples import CannotSimulate, TestResult, build_test_event, send_test_event
from handlers.dashboard_shell import DashboardHandler

ID = r"([A-Za-z0-9_\-]{1,100})"
EXPIRY_WARNING_DAYS = 14

# Credentials per channel (SPEC §2): (field, label, is_secret, required).
CREDENTIAL_FIELDS: dict[str, list[tuple[str, str, bool, bool]]] = {
    "whatsapp": [("phoneNumberId", "Phone number ID", False, True), ("accessToken", "Access token", True, True)],
    "messenger": [("pageId", "Page ID", False, True), ("pageAccessToken", "Page access token", True, True)],
    "instagram": [("igUserId", "Instagram account ID", False, True), ("accessToken", "Access token", True, True)],
    "telegram": [("botToken", "Bot token (from BotFather)", True, True)],
    "slack": [("botToken", "Bot User OAuth Token (xoxb-...)", True, True)],
    "teams": [("appId", "Microsoft App ID", False, True), ("appPassword", "App password (client secret)", True, True),
              ("tenantId", "Tenant ID (single-tenant bots)", False, False)],
    "custom": [("callbackUrl", "Callback URL (replies are POSTed here)", False, True)],
}
SECRET_HINTS = {
    "whatsapp": "The Meta App Secret (App Dashboard > Basic settings). Required.",
    "messenger": "The Meta App Secret (App Dashboard > Basic settings). Required.",
    "instagram": "The Meta App Secret (App Dashboard > Basic settings). Required.",
    "slack": "The app's Signing Secret (Basic Information). Required.",
    "telegram": "Leave empty: a secret_token is generated and registered with setWebhook.",
    "custom": "Leave empty: a whsec_ Standard Webhooks secret is generated.",
    "teams": "None: Teams requests are authenticated by Microsoft's JWT.",
}
HAS_VERIFY_TOKEN = ("whatsapp", "messenger", "instagram")
GIVEN_SECRET = ("whatsapp", "messenger", "instagram", "slack")  # rotation takes the platform's new one
AGENT_SECRET_SETTINGS = {"openai": ("apiKey",), "http": ("secret",)}  # never shown again, blank keeps


# --- form helpers ---------------------------------------------------------------------------------


def lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]


_INDEX = re.compile(r"\[\d+\]$")


def field_errors(exc: Invalid) -> dict[str, str]:
    """{field: message} for the form, also under the list's own name (allowedOrigins[2] -> allowedOrigins)."""
    field = exc.field or "form"
    message = exc.message.removeprefix(f"{field}: ")
    errors = {field: message}
    base = _INDEX.sub("", field)
    if base != field:
        errors.setdefault(base, f"{field.removeprefix(base)} {message}".strip())
    return errors


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


def short_time(iso: str | None) -> str:
    """"2026-11-27 00:02:09 UTC" from the views' ISO-8601 times."""
    return f"{iso.replace('T', ' ')[:19]} UTC" if iso else ""


CHANNEL_NAMES = {"whatsapp": "WhatsApp", "messenger": "Messenger", "instagram": "Instagram",
                 "telegram": "Telegram", "slack": "Slack", "teams": "Teams", "custom": "Custom"}


# --- base for these pages -----------------------------------------------------------------------------


class Page(DashboardHandler):
    nav = "companies"

    @property
    def public_url(self) -> str:
        return self.gateway.settings.server.public_url

    def render_page(self, name: str, status: int = 200, **context: Any) -> None:
        context.setdefault("errors", {})
        context.setdefault("short_time", short_time)
        context.setdefault("channel_names", CHANNEL_NAMES)
        super().render_page(name, status, **context)

    def form_error(self, template: str, exc: Invalid | UpstreamFailed, **context: Any) -> None:
        if isinstance(exc, Invalid):
            errors = field_errors(exc)
        else:
            errors = {exc.field: exc.message} if exc.field else {}
        message = "Please correct the highlighted field." if isinstance(exc, Invalid) else exc.message
        self.render_page(template, status=exc.status, errors=errors, error=message, **context)


# --- companies ------------------------------------------------------------------------------------------


def company_form(handler: DashboardHandler, *, with_subscription: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"name": handler.field("name")}
    if with_subscription:
        expires = handler.field("expiresAt")
        data["subscription"] = {"status": handler.field("status", "active"), "expiresAt": expires or None}
    return data


class CompaniesPage(Page):
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


class NewCompanyPage(Page):
    async def get(self) -> None:
        scope.require_owner(self.principal)
        self.render_page("companies_form.html", title="New company", company=None,
                         form={"name": "", "status": "active", "expiresDate": ""}, statuses=SUBSCRIPTION_STATUSES)


class CompanyPage(Page):
    async def get(self, cid: str) -> None:
        company = await self.admin.companies.get(self.principal, cid)
        agents = await self.admin.agents.list(self.principal, cid)
        agents.sort(key=lambda a: a.name.lower())
        counts = {a.id: len(await self.gateway.store.find(Webhook, agent_id=a.id)) for a in agents}
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


class EditCompanyPage(Page):
    async def get(self, cid: str) -> None:
        company = company_view(await self.admin.companies.get(self.principal, cid))
        form = {"name": company["name"], "status": company["subscription"]["status"],
                "expiresDate": company["expiresDate"]}
        self.render_page("companies_form.html", title=f"Edit {company['name']}", company=company, form=form,
                         statuses=SUBSCRIPTION_STATUSES)


class DeleteCompanyPage(Page):
    async def post(self, cid: str) -> None:
        await self.admin.companies.delete(self.principal, cid)
        self.redirect_to("/admin/companies", "deleted")


# --- agents -------------------------------------------------------------------------------------------


def documents_from_form(handler: DashboardHandler) -> list[dict[str, str]]:
    """doc-<i>-title / doc-<i>-content pairs in index order; rows left wholly empty are dropped."""
    indexes = sorted({int(m.group(1)) for name in handler.request.body_arguments
                      if (m := re.fullmatch(r"doc-(\d{1,4})-(title|content)", name))})
    docs = []
    for i in indexes:
        title = handler.get_body_argument(f"doc-{i}-title", "") or ""
        content = handler.get_body_argument(f"doc-{i}-content", "") or ""
        if title.strip() or content.strip():
            docs.append({"title": title.strip(), "content": content.strip()})
    return docs


def agent_form(handler: DashboardHandler, current: Agent | None) -> dict[str, Any]:
    kind = handler.field("kind", current.kind if current else "faq")
    docs = documents_from_form(handler)
    settings: dict[str, Any]
    if kind == "openai":
        settings = {"baseUrl": handler.field("baseUrl"), "model": handler.field("model"),
                    "apiKey": handler.field("apiKey")}
        if handler.field("systemPrompt"):
            settings["systemPrompt"] = handler.field("systemPrompt")
        if docs:
            settings["documents"] = docs
        temperature = handler.field("temperature")
        if temperature:
            try:
                settings["temperature"] = float(temperature)
            except ValueError:
                settings["temperature"] = temperature  # the validator names the field
    elif kind == "http":
        settings = {"url": handler.field("url"), "secret": handler.field("secret")}
    else:
        settings = {"documents": docs}
        if handler.field("fallback"):
            settings["fallback"] = handler.field("fallback")
    # Secret settings are never sent back to the browser: left blank on an edit, the stored one stays.
    if current is not None and current.kind == kind:
        for key in AGENT_SECRET_SETTINGS.get(kind, ()):
            if not settings.get(key) and current.settings.get(key):
                settings[key] = current.settings[key]
    return {"name": handler.field("name"), "status": handler.field("status", "active"), "kind": kind,
            "settings": settings, "allowedOrigins": lines(handler.field("allowedOrigins"))}


def agent_form_view(data: dict[str, Any]) -> dict[str, Any]:
    """What the agent form shows: the settings without their secrets."""
    settings = dict(data.get("settings") or {})
    secrets_set = {key: bool(settings.pop(key, None)) for key in ("apiKey", "secret")}
    return {"name": data.get("name", ""), "status": data.get("status", "active"), "kind": data.get("kind", "faq"),
            "settings": settings, "documents": settings.get("documents") or [],
            "allowedOrigins": "\n".join(data.get("allowedOrigins") or []), "secretsSet": secrets_set}


class AgentFormMixin(Page):
    def show_form(self, company: Company, agent: Agent | None, form: dict[str, Any], status: int = 200,
                  **extra: Any) -> None:
        title = f"Edit {agent.name}" if agent else "New agent"
        self.render_page("agents_form.html", status=status, title=title, company=company_view(company),
                         agent=render_agent(agent) if agent else None, form=agent_form_view(form),
                         kinds=AGENT_KINDS, **extra)

    def invalid(self, exc: Invalid, company: Company, agent: Agent | None, form: dict[str, Any]) -> None:
        self.show_form(company, agent, form, status=exc.status, errors=field_errors(exc),
                       error="Please correct the highlighted field.")


class NewAgentPage(AgentFormMixin):
    async def get(self, cid: str) -> None:
        company = await self.admin.companies.get(self.principal, cid)
        self.show_form(company, None, {"kind": "faq", "settings": {"documents": [{"title": "", "content": ""}]}})


class AgentsPage(AgentFormMixin):
    async def post(self, cid: str) -> None:
        company = await self.admin.companies.get(self.principal, cid)
        data = agent_form(self, None)
        try:
            agent = await self.admin.agents.create(self.principal, cid, data)
        except Invalid as exc:
            self.invalid(exc, company, None, data)
            return
        self.redirect_to(f"/admin/companies/{cid}/agents/{agent.id}", "created")


class AgentPage(AgentFormMixin):
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


class EditAgentPage(AgentFormMixin):
    async def get(self, cid: str, aid: str) -> None:
        company = await self.admin.companies.get(self.principal, cid)
        agent = await self.admin.agents.get(self.principal, cid, aid)
        self.show_form(company, agent, render_agent(agent))


class DeleteAgentPage(Page):
    async def post(self, cid: str, aid: str) -> None:
        await self.admin.agents.delete(self.principal, cid, aid)
        self.redirect_to(f"/admin/companies/{cid}", "deleted")


# --- webhooks -------------------------------------------------------------------------------------------


def credentials_from_form(handler: DashboardHandler, channel: str, current: dict[str, Any] | None = None
                          ) -> dict[str, Any]:
    """The channel's credential fields (`cred-<channel>-<field>`); blank ones keep the current value."""
    out: dict[str, Any] = {}
    for name, _label, _secret, _required in CREDENTIAL_FIELDS.get(channel, []):
        value = handler.field(f"cred-{channel}-{name}")
        if value:
            out[name] = value
        elif current and current.get(name):
            out[name] = current[name]
    return out


class WebhookBase(Page):
    """Shared by the webhook pages: the page with optional one-time secrets or a test result."""

    async def load(self, cid: str, aid: str, wid: str) -> tuple[Company, Agent, Webhook]:
        company = await self.admin.companies.get(self.principal, cid)
        agent = await self.admin.agents.get(self.principal, cid, aid)
        webhook = await self.admin.webhooks.get(self.principal, cid, aid, wid)
        return company, agent, webhook

    def show(self, company: Company, agent: Agent, webhook: Webhook, status: int = 200, **extra: Any) -> None:
        name = CHANNEL_NAMES.get(webhook.channel, webhook.channel)
        self.render_page("webhooks_detail.html", status=status, title=f"{name} webhook",
                         company=company_view(company), agent=render_agent(agent),
                         webhook=render_webhook(webhook, self.public_url),
                         fields=CREDENTIAL_FIELDS.get(webhook.channel, []),
                         has_verify_token=webhook.channel in HAS_VERIFY_TOKEN,
                         given_secret=webhook.channel in GIVEN_SECRET,
                         can_rotate=webhook.channel != "teams",
                         can_test=webhook.channel != "teams", **extra)



class WebhookPage(WebhookBase):
    async def get(self, cid: str, aid: str, wid: str) -> None:
        self.show(*await self.load(cid, aid, wid))

    async def post(self, cid: str, aid: str, wid: str) -> None:
        """Credentials, verify token and IP allowlist."""
        company, agent, webhook = await self.load(cid, aid, wid)
        data: dict[str, Any] = {
            "credentials": credentials_from_form(self, webhook.channel, webhook.credentials),
            "ipAllowlist": lines(self.field("ipAllowlist")),
        }
        if webhook.channel in HAS_VERIFY_TOKEN and self.field("verifyToken"):
            data["verifyToken"] = self.field("verifyToken")
        try:
            await self.admin.webhooks.update(self.principal, cid, aid, wid, data)
        except Invalid as exc:
            self.show(company, agent, webhook, status=exc.status, errors=field_errors(exc),
                      error="Please correct the highlighted field.", allowlist=self.field("ipAllowlist"))
            return
        self.redirect_to(self.request.path, "saved")


class NewWebhookPage(Page):
    async def get(self, cid: str, aid: str) -> None:
        company = await self.admin.companies.get(self.principal, cid)
        agent = await self.admin.agents.get(self.principal, cid, aid)
        self.show_form(company, agent, {"channel": "whatsapp", "ipAllowlist": ""})

    def show_form(self, company: Company, agent: Agent, form: dict[str, Any], status: int = 200, **extra: Any) -> None:
        self.render_page("webhooks_form.html", status=status, title="New webhook", company=company_view(company),
                         agent=render_agent(agent), form=form, channels=CHANNELS,
                         available=self.gateway.channels.channels,
                         fields=CREDENTIAL_FIELDS, secret_hints=SECRET_HINTS, verify_channels=HAS_VERIFY_TOKEN,
                         **extra)


class WebhooksPage(NewWebhookPage, WebhookBase):
    async def get(self, cid: str, aid: str) -> None:
        self.redirect(f"/admin/companies/{cid}/agents/{aid}")

    async def post(self, cid: str, aid: str) -> None:
        company = await self.admin.companies.get(self.principal, cid)
        agent = await self.admin.agents.get(self.principal, cid, aid)
        channel = self.field("channel")
        data: dict[str, Any] = {"channel": channel, "credentials": credentials_from_form(self, channel),
                                "ipAllowlist": lines(self.field("ipAllowlist"))}
        # Each channel's fieldset has its own inputs (secret-<channel>): only the chosen one counts.
        if self.field(f"secret-{channel}"):
            data["secret"] = self.field(f"secret-{channel}")
        if channel in HAS_VERIFY_TOKEN and self.field(f"verifyToken-{channel}"):
            data["verifyToken"] = self.field(f"verifyToken-{channel}")
        try:
            webhook = await self.admin.webhooks.create(self.principal, cid, aid, data)
        except (Invalid, UpstreamFailed) as exc:
            # Secrets typed into the form are not echoed back: only the non-secret fields are kept.
            form = {"channel": channel, "ipAllowlist": self.field("ipAllowlist"),
                    "credentials": {name: self.field(f"cred-{channel}-{name}")
                                    for name, _l, secret, _r in CREDENTIAL_FIELDS.get(channel, []) if not secret}}
            errors = field_errors(exc) if isinstance(exc, Invalid) else (
                {exc.field: exc.message} if exc.field else {})
            self.show_form(company, agent, form, status=exc.status, errors=errors,
                           error="Please correct the highlighted field." if isinstance(exc, Invalid) else exc.message)
            return
        # The one answer that shows the secrets: rendered here, not after a redirect, so they are
        # never reachable again by URL.
        self.show(company, agent, webhook, status=201, flash="Webhook created.",
                  revealed=render_webhook(webhook, self.public_url, reveal=True))


class WebhookStatusPage(WebhookBase):
    async def post(self, cid: str, aid: str, wid: str) -> None:
        status = "active" if self.field("status") == "active" else "disabled"
        await self.admin.webhooks.update(self.principal, cid, aid, wid, {"status": status})
        base = f"/admin/companies/{cid}/agents/{aid}/webhooks/{wid}"
        self.redirect_to(base, "enabled" if status == "active" else "disabled")


class RotateSecretPage(WebhookBase):
    async def post(self, cid: str, aid: str, wid: str) -> None:
        company, agent, webhook = await self.load(cid, aid, wid)
        data = {"secret": self.field("secret")} if self.field("secret") else {}
        try:
            rotated = await self.admin.webhooks.rotate_secret(self.principal, cid, aid, wid, data)
        except (Invalid, UpstreamFailed) as exc:
            errors = field_errors(exc) if isinstance(exc, Invalid) else {}
            self.show(company, agent, webhook, status=exc.status, errors={f"rotate.{k}": v for k, v in errors.items()},
                      error=exc.message)
            return
        self.show(company, agent, rotated, flash="Secret rotated: the old one no longer works.",
                  revealed=render_webhook(rotated, self.public_url, reveal=True))


class DeleteWebhookPage(WebhookBase):
    async def post(self, cid: str, aid: str, wid: str) -> None:
        await self.admin.webhooks.delete(self.principal, cid, aid, wid)
        self.redirect_to(f"/admin/companies/{cid}/agents/{aid}", "deleted")


class TestEventPage(WebhookBase):
    async def post(self, cid: str, aid: str, wid: str) -> None:
        company, agent, webhook = await self.load(cid, aid, wid)
        try:
            event = build_test_event(webhook)
        except CannotSimulate as exc:
            result = TestResult(None, "", error=str(exc))
        else:
            result = await send_test_event(self.admin.webhooks.url(webhook), event)
        self.show(company, agent, webhook, test=result)


# --- delivery log -----------------------------------------------------------------------------------------


async def webhook_event(handler: Page, cid: str, aid: str, wid: str, eid: str) -> WebhookEvent:
    """One delivery of a webhook the principal may see (the services list deliveries but have no
    get-by-id): another webhook's or tenant's event id is NotFound."""
    await handler.admin.webhooks.get(handler.principal, cid, aid, wid)
    event = await handler.gateway.store.get(WebhookEvent, eid)
    if event is None or event.webhook_id != wid or event.company_id != cid:
        raise NotFound()
    return event


class DeliveriesPage(WebhookBase):
    async def get(self, cid: str, aid: str, wid: str) -> None:
        company, agent, webhook = await self.load(cid, aid, wid)
        outcome = self.get_query_argument("outcome", "") or ""
        if outcome not in OUTCOMES:
            outcome = ""
        events = await self.admin.monitoring.webhook_events(
            self.principal, {"webhookId": wid, "companyId": cid, "outcome": outcome or None, "limit": "200"})
        self.render_page("deliveries.html", title="Delivery log", company=company_view(company),
                         agent=render_agent(agent), webhook=render_webhook(webhook, self.public_url),
                         events=[render_event(e) for e in events], outcome=outcome, outcomes=OUTCOMES)


class DeliveryPage(WebhookBase):
    async def get(self, cid: str, aid: str, wid: str, eid: str) -> None:
        company, agent, webhook = await self.load(cid, aid, wid)
        event = await webhook_event(self, cid, aid, wid, eid)
        self.render_page("deliveries_detail.html", title="Delivery", company=company_view(company),
                         agent=render_agent(agent), webhook=render_webhook(webhook, self.public_url),
                         event=render_event(event))


C = rf"/admin/companies/{ID}"
A = rf"{C}/agents/{ID}"
W = rf"{A}/webhooks/{ID}"

ROUTES: list[tuple] = [
    (r"/admin/companies/?", CompaniesPage),
    (r"/admin/companies/new", NewCompanyPage),
    (C, CompanyPage),
    (rf"{C}/edit", EditCompanyPage),
    (rf"{C}/delete", DeleteCompanyPage),
    (rf"{C}/agents/new", NewAgentPage),
    (rf"{C}/agents", AgentsPage),
    (A, AgentPage),
    (rf"{A}/edit", EditAgentPage),
    (rf"{A}/delete", DeleteAgentPage),
    (rf"{A}/webhooks/new", NewWebhookPage),
    (rf"{A}/webhooks", WebhooksPage),
    (W, WebhookPage),
    (rf"{W}/status", WebhookStatusPage),
    (rf"{W}/rotate", RotateSecretPage),
    (rf"{W}/delete", DeleteWebhookPage),
    (rf"{W}/test", TestEventPage),
    (rf"{W}/deliveries", DeliveriesPage),
    (rf"{W}/deliveries/{ID}", DeliveryPage),
]
