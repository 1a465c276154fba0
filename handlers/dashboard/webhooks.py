"""An agent's channel webhooks: create, settings, enable/disable, rotate the secret, delete, send a
signed test event, and the delivery log. What each channel asks for (credentials, secret, verify
token) comes from its adapter's metadata, so a new channel needs nothing here.

Secrets are rendered only in the answer to create and rotate-secret; every other page shows them
through buzzi.admin.render's redaction."""

from __future__ import annotations

from typing import Any

from buzzi.admin.monitoring import OUTCOMES
from buzzi.admin.render import render_agent, render_event, render_webhook
from buzzi.channels.base import ChannelAdapter
from buzzi.errors import Invalid, UpstreamFailed
from buzzi.models import Agent, Company, Webhook
from handlers.dashboard.agents import A
from handlers.dashboard.companies import CompanyAreaPage, company_view
from handlers.dashboard.forms import (
    CORRECT_FIELD,
    credentials_from_form,
    field_errors,
    flat_settings,
    form_errors,
    lines,
    setting_input,
    settings_from_form,
)
from handlers.dashboard.shell import ID

W = rf"{A}/webhooks/{ID}"


def channel_form(adapter: ChannelAdapter) -> dict[str, Any]:
    """What the new-webhook form asks for a channel."""
    return {"id": adapter.channel, "name": adapter.display_name, "secretHint": adapter.secret_hint,
            "takesSecret": adapter.secret_source != "none", "hasVerifyToken": adapter.has_verify_token,
            "fields": adapter.credential_fields,
            "settings": [{"name": f.name, "label": f.label, "input": setting_input(adapter.channel, f.name)}
                         for f in adapter.setting_fields]}


class WebhookBase(CompanyAreaPage):
    """Shared by the webhook pages: the page with optional one-time secrets or a test result."""

    def adapter(self, channel: str) -> ChannelAdapter | None:
        try:
            return self.gateway.channels.adapter(channel)
        except KeyError:
            return None  # not a channel of this gateway: the service says so

    async def load(self, cid: str, aid: str, wid: str) -> tuple[Company, Agent, Webhook]:
        company = await self.admin.companies.get(self.principal, cid)
        agent = await self.admin.agents.get(self.principal, cid, aid)
        webhook = await self.admin.webhooks.get(self.principal, cid, aid, wid)
        return company, agent, webhook

    def show(self, company: Company, agent: Agent, webhook: Webhook, status: int = 200, **extra: Any) -> None:
        adapter = self.gateway.channels.adapter(webhook.channel)
        # What the admin typed when the save was refused, else the stored settings.
        stored = flat_settings(adapter, webhook.settings)
        values = extra.pop("settings_values", None) or stored
        self.render_page("webhooks_detail.html", status=status, title=f"{adapter.display_name} webhook",
                         company=company_view(company), agent=render_agent(agent),
                         webhook=render_webhook(webhook, self.public_url),
                         fields=adapter.credential_fields,
                         setting_fields=channel_form(adapter)["settings"],
                         settings_values=values, stored_settings=stored,
                         has_verify_token=adapter.has_verify_token,
                         given_secret=adapter.secret_source == "given",
                         can_rotate=adapter.secret_source != "none",
                         registers_with=adapter.display_name if adapter.registers_webhook else "",
                         cannot_test=self.admin.samples.cannot_send(webhook), **extra)


class WebhookPage(WebhookBase):
    async def get(self, cid: str, aid: str, wid: str) -> None:
        self.show(*await self.load(cid, aid, wid))

    async def post(self, cid: str, aid: str, wid: str) -> None:
        """Credentials, verify token and IP allowlist."""
        company, agent, webhook = await self.load(cid, aid, wid)
        adapter = self.gateway.channels.adapter(webhook.channel)
        data: dict[str, Any] = {
            "credentials": credentials_from_form(self, adapter, webhook.credentials),
            "ipAllowlist": lines(self.field("ipAllowlist")),
        }
        if adapter.has_verify_token and self.field("verifyToken"):
            data["verifyToken"] = self.field("verifyToken")
        if adapter.setting_fields:
            data["settings"] = settings_from_form(self, adapter)  # all empty: the settings are removed
        try:
            await self.admin.webhooks.update(self.principal, cid, aid, wid, data)
        except Invalid as exc:
            typed = {f.name: self.field(setting_input(adapter.channel, f.name)) for f in adapter.setting_fields}
            self.show(company, agent, webhook, status=exc.status, errors=field_errors(exc),
                      error=CORRECT_FIELD, allowlist=self.field("ipAllowlist"), settings_values=typed)
            return
        self.redirect_to(self.request.path, "saved")


class NewWebhookPage(WebhookBase):
    async def get(self, cid: str, aid: str) -> None:
        company = await self.admin.companies.get(self.principal, cid)
        agent = await self.admin.agents.get(self.principal, cid, aid)
        first = self.gateway.channels.channels[0]  # the first registered channel is the usual choice
        self.show_form(company, agent, {"channel": first, "ipAllowlist": ""})

    def show_form(self, company: Company, agent: Agent, form: dict[str, Any], status: int = 200, **extra: Any) -> None:
        channels = self.gateway.channels
        self.render_page("webhooks_form.html", status=status, title="New webhook", company=company_view(company),
                         agent=render_agent(agent), form=form,
                         channels=[channel_form(channels.adapter(ch)) for ch in channels.channels], **extra)


class WebhooksPage(NewWebhookPage):
    async def get(self, cid: str, aid: str) -> None:
        self.redirect(f"/admin/companies/{cid}/agents/{aid}")

    async def post(self, cid: str, aid: str) -> None:
        company = await self.admin.companies.get(self.principal, cid)
        agent = await self.admin.agents.get(self.principal, cid, aid)
        channel = self.field("channel")
        adapter = self.adapter(channel)
        data: dict[str, Any] = {"channel": channel, "ipAllowlist": lines(self.field("ipAllowlist")),
                                "credentials": credentials_from_form(self, adapter) if adapter else {}}
        # Each channel's fieldset has its own inputs (secret-<channel>): only the chosen one counts.
        if self.field(f"secret-{channel}"):
            data["secret"] = self.field(f"secret-{channel}")
        if adapter and adapter.has_verify_token and self.field(f"verifyToken-{channel}"):
            data["verifyToken"] = self.field(f"verifyToken-{channel}")
        if adapter and settings_from_form(self, adapter):
            data["settings"] = settings_from_form(self, adapter)
        try:
            webhook = await self.admin.webhooks.create(self.principal, cid, aid, data)
        except (Invalid, UpstreamFailed) as exc:
            # Secrets typed into the form are not echoed back: only the non-secret fields are kept.
            kept = [f.name for f in adapter.credential_fields if not f.secret] if adapter else []
            form = {"channel": channel, "ipAllowlist": self.field("ipAllowlist"),
                    "credentials": {name: self.field(f"cred-{channel}-{name}") for name in kept},
                    "settings": {f.name: self.field(setting_input(channel, f.name))
                                 for f in (adapter.setting_fields if adapter else ())}}
            errors, message = form_errors(exc)
            self.show_form(company, agent, form, status=exc.status, errors=errors, error=message)
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
        self.show(company, agent, webhook, test=await self.admin.samples.send(self.principal, cid, aid, wid))


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
        event = await self.admin.monitoring.webhook_event(self.principal, cid, aid, wid, eid)
        self.render_page("deliveries_detail.html", title="Delivery", company=company_view(company),
                         agent=render_agent(agent), webhook=render_webhook(webhook, self.public_url),
                         event=render_event(event))


ROUTES: list[tuple] = [
    (rf"{A}/webhooks/new", NewWebhookPage),  # before W: "new" would match an id
    (rf"{A}/webhooks", WebhooksPage),
    (W, WebhookPage),
    (rf"{W}/status", WebhookStatusPage),
    (rf"{W}/rotate", RotateSecretPage),
    (rf"{W}/delete", DeleteWebhookPage),
    (rf"{W}/test", TestEventPage),
    (rf"{W}/deliveries", DeliveriesPage),
    (rf"{W}/deliveries/{ID}", DeliveryPage),
]
