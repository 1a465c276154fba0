"""Channel webhooks of an agent: credentials checked by the channel's adapter, secrets generated
where the platform lets us choose them, registration with the platform on create (Telegram)."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from buzzi.admin import scope
from buzzi.admin import validation as v
from buzzi.admin.render import webhook_url
from buzzi.auth import Principal
from buzzi.channels.base import ChannelAdapter, CredentialsError, SendError
from buzzi.channels.registry import CHANNELS, ChannelRegistry
from buzzi.errors import Invalid, UpstreamFailed
from buzzi.ids import new_id
from buzzi.models import Webhook
from buzzi.store.base import Store

log = logging.getLogger("buzzi.admin.webhooks")

FIELDS = ("channel", "status", "secret", "verifyToken", "credentials", "ipAllowlist", "settings")
UPDATABLE = ("status", "verifyToken", "credentials", "ipAllowlist", "settings")
# What the gateway writes into state when it disables a webhook itself (a receiver answered 410).
DISABLED_STATE = ("disabledReason", "disabledAt")
STATUSES = ("active", "disabled")
MAX_SECRET = 1024


class WebhookAdmin:
    def __init__(self, store: Store, channels: ChannelRegistry, public_url: str) -> None:
        self.store = store
        self.channels = channels
        self.public_url = public_url

    def url(self, webhook: Webhook) -> str:
        return webhook_url(self.public_url, webhook)

    async def list(self, principal: Principal, company_id: str, agent_id: str) -> list[Webhook]:
        await scope.agent(self.store, principal, company_id, agent_id)
        return await self.store.find(Webhook, agent_id=agent_id)

    async def count_by_agent(self, principal: Principal, company_id: str, agent_ids: list[str]) -> dict[str, int]:
        """How many webhooks each of a company's agents has (an agent of another company counts 0)."""
        await scope.company(self.store, principal, company_id)
        return {aid: await self.store.count(Webhook, agent_id=aid, company_id=company_id) for aid in agent_ids}

    async def get(self, principal: Principal, company_id: str, agent_id: str, webhook_id: str) -> Webhook:
        return await scope.webhook(self.store, principal, company_id, agent_id, webhook_id)

    async def create(self, principal: Principal, company_id: str, agent_id: str, data: Any) -> Webhook:
        """Stored, then registered with the platform; if registration fails nothing is kept (502)."""
        await scope.agent(self.store, principal, company_id, agent_id)
        data = v.body_object(data)
        v.only(data, FIELDS)
        channel = v.choice(v.require(data, "channel"), "channel", CHANNELS)
        adapter = self._adapter(channel)
        credentials = _credentials(adapter, data.get("credentials", {}))
        settings = _settings(adapter, data.get("settings"))
        given_secret = _optional_secret(data.get("secret"), "secret")
        given_verify = _optional_secret(data.get("verifyToken"), "verifyToken")
        secret, verify_token = _secrets(adapter, given_secret, given_verify)
        await _check(adapter, credentials)  # before anything is stored (Teams fetches a token)
        webhook = Webhook(
            id=new_id("webhook"), company_id=company_id, agent_id=agent_id, channel=channel,
            status=v.choice(data.get("status", "active"), "status", STATUSES),
            secret=secret, verify_token=verify_token, credentials=credentials,
            ip_allowlist=v.cidrs(data.get("ipAllowlist", [])), settings=settings,
        )
        # Stored before registering: the platform may deliver the first update at once.
        await self.store.add(webhook)
        try:
            state = await adapter.on_created(webhook, self.url(webhook))
        except Exception as exc:  # noqa: BLE001 - whatever failed, no half-registered webhook is kept
            await self.store.delete(Webhook, webhook.id)
            raise _upstream(channel, exc) from None
        if state:
            webhook = await self.store.update(Webhook, webhook.id, {"state": state}) or webhook
        return webhook

    async def update(self, principal: Principal, company_id: str, agent_id: str, webhook_id: str,
                     data: Any) -> Webhook:
        webhook = await scope.webhook(self.store, principal, company_id, agent_id, webhook_id)
        data = v.body_object(data)
        for key in ("channel", "secret"):
            if key in data:
                hint = "use rotate-secret" if key == "secret" else "create a new webhook"
                raise Invalid(key, f"cannot be changed here ({hint})")
        v.only(data, UPDATABLE)
        changes: dict[str, Any] = {}
        if "status" in data:
            changes["status"] = v.choice(data["status"], "status", STATUSES)
            if changes["status"] == "active" and any(key in webhook.state for key in DISABLED_STATE):
                # Enabled again by a person: the platform's old reason no longer describes it.
                changes["state"] = {k: val for k, val in webhook.state.items() if k not in DISABLED_STATE}
        if "settings" in data:
            changes["settings"] = _settings(self._adapter(webhook.channel), data["settings"])
        if "ipAllowlist" in data:
            changes["ip_allowlist"] = v.cidrs(data["ipAllowlist"] or [])
        if "credentials" in data:
            adapter = self._adapter(webhook.channel)
            changes["credentials"] = _credentials(adapter, data["credentials"])
            if changes["credentials"] != webhook.credentials:
                await _check(adapter, changes["credentials"])
        if "verifyToken" in data:
            if webhook.verify_token is None:
                raise Invalid("verifyToken", f"{webhook.channel} webhooks have no verify token")
            changes["verify_token"] = v.string(data["verifyToken"], "verifyToken", max_len=MAX_SECRET)
        if not changes:
            return webhook
        return await self.store.update(Webhook, webhook.id, changes) or webhook

    async def rotate_secret(self, principal: Principal, company_id: str, agent_id: str, webhook_id: str,
                            data: Any) -> Webhook:
        """A new secret: generated where we choose it (telegram, custom; Telegram re-registered with
        it), else the one the platform gave, from the body. The old one stops working at once."""
        webhook = await scope.webhook(self.store, principal, company_id, agent_id, webhook_id)
        data = v.body_object(data or {})
        v.only(data, ("secret",))
        adapter = self._adapter(webhook.channel)
        given = _optional_secret(data.get("secret"), "secret")
        secret, _ = _secrets(adapter, given, webhook.verify_token)
        if not secret:
            raise Invalid("secret", f"{webhook.channel} webhooks have no secret to rotate")
        candidate = dataclasses.replace(webhook, secret=secret)
        try:
            state = await adapter.on_created(candidate, self.url(candidate))
        except Exception as exc:  # noqa: BLE001 - any failure keeps the old secret
            raise _upstream(webhook.channel, exc) from None  # the old secret stays registered and stored
        changes: dict[str, Any] = {"secret": secret}
        if state:
            changes["state"] = state
        return await self.store.update(Webhook, webhook.id, changes) or candidate

    async def delete(self, principal: Principal, company_id: str, agent_id: str, webhook_id: str) -> None:
        webhook = await scope.webhook(self.store, principal, company_id, agent_id, webhook_id)
        await self.store.delete(Webhook, webhook.id)

    def _adapter(self, channel: str) -> ChannelAdapter:
        try:
            return self.channels.adapter(channel)
        except KeyError:
            raise Invalid("channel", f"{channel} is not available on this gateway") from None


def _credentials(adapter: ChannelAdapter, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Invalid("credentials", "must be an object")
    try:
        return adapter.validate_credentials(value)
    except CredentialsError as exc:
        raise _invalid(exc, "credentials") from None


async def _check(adapter: ChannelAdapter, credentials: dict[str, Any]) -> None:
    """The platform's word on the credentials: wrong ones are a 400 naming the field; a platform
    that cannot answer now is a 502 (nothing is known about them, nothing is stored)."""
    try:
        await adapter.check_credentials(credentials)
    except CredentialsError as exc:
        raise _invalid(exc, "credentials") from None
    except SendError as exc:
        log.warning("checking %s credentials failed: %s", adapter.channel, exc)
        raise UpstreamFailed(f"{adapter.display_name} credentials could not be checked: {exc}",
                             field="credentials") from None


def _settings(adapter: ChannelAdapter, value: Any) -> dict[str, Any]:
    """The channel's webhook settings (WhatsApp's re-engagement template), checked by its adapter;
    a bad value is a 400 naming "settings.<field>"."""
    try:
        return adapter.validate_settings(value)
    except CredentialsError as exc:
        raise _invalid(exc, "settings") from None


def _secrets(adapter: ChannelAdapter, secret: str | None, verify_token: str | None) -> tuple[str | None, str | None]:
    try:
        return adapter.generate_secrets(secret, verify_token)
    except CredentialsError as exc:
        raise _invalid(exc, None) from None


def _invalid(exc: CredentialsError, group: str | None) -> Invalid:
    field = exc.field
    if group and field != group and not field.startswith(group + "."):
        field = f"{group}.{field}" if field not in ("secret", "verifyToken") else field
    return Invalid(field, str(exc).removeprefix(f"{exc.field}: "))


def _optional_secret(value: Any, field: str) -> str | None:
    if value is None:
        return None
    return v.string(value, field, max_len=MAX_SECRET)


def _upstream(channel: str, exc: Exception) -> UpstreamFailed:
    # The platform's reason is the useful part ("Telegram refused setWebhook: bad token"); it never
    # contains our secrets, which go in request bodies, not error texts.
    reason = str(exc) or exc.__class__.__name__
    log.warning("registering a %s webhook failed: %s", channel, reason)
    field = exc.field if isinstance(exc, CredentialsError) else None
    return UpstreamFailed(f"{channel} registration failed: {reason}", field=field)
