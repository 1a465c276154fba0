"""Form parsing for the dashboard: posted fields into the JSON-shaped input the buzzi.admin services
validate, and their validation errors back into messages next to the fields they name."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from buzzi.admin.render import redact
from buzzi.channels.base import ChannelAdapter
from buzzi.errors import Invalid, ServiceError
from buzzi.models import Agent

if TYPE_CHECKING:
    from handlers.dashboard.shell import DashboardHandler

AGENT_SECRET_SETTINGS = {"openai": ("apiKey",), "http": ("secret",)}  # never shown again, blank keeps
CORRECT_FIELD = "Please correct the highlighted field."

_INDEX = re.compile(r"\[\d+\]$")
_DOCUMENT_FIELD = re.compile(r"doc-(\d{1,4})-(title|content)")


def lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]


def field_errors(exc: Invalid) -> dict[str, str]:
    """{field: message} for the form, also under the list's own name (allowedOrigins[2] -> allowedOrigins)."""
    field = exc.field or "form"
    message = exc.message.removeprefix(f"{field}: ")
    errors = {field: message}
    base = _INDEX.sub("", field)
    if base != field:
        errors.setdefault(base, f"{field.removeprefix(base)} {message}".strip())
    return errors


def form_errors(exc: ServiceError) -> tuple[dict[str, str], str]:
    """(errors by field, the page's message): an invalid field is highlighted; another failure (the
    platform refused a registration) is told as it is, next to its field when it names one."""
    if isinstance(exc, Invalid):
        return field_errors(exc), CORRECT_FIELD
    return ({exc.field: exc.message} if exc.field else {}), exc.message


def company_form(handler: DashboardHandler, *, with_subscription: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"name": handler.field("name")}
    if with_subscription:
        expires = handler.field("expiresAt")
        data["subscription"] = {"status": handler.field("status", "active"), "expiresAt": expires or None}
    return data


def documents_from_form(handler: DashboardHandler) -> list[dict[str, str]]:
    """doc-<i>-title / doc-<i>-content pairs in index order; rows left wholly empty are dropped."""
    indexes = sorted({int(m.group(1)) for name in handler.request.body_arguments
                      if (m := _DOCUMENT_FIELD.fullmatch(name))})
    docs = []
    for i in indexes:
        title = handler.get_body_argument(f"doc-{i}-title", "") or ""
        content = handler.get_body_argument(f"doc-{i}-content", "") or ""
        if title.strip() or content.strip():
            docs.append({"title": title.strip(), "content": content.strip()})
    return docs


def _agent_settings(handler: DashboardHandler, kind: str) -> dict[str, Any]:
    docs = documents_from_form(handler)
    if kind == "http":
        return {"url": handler.field("url"), "secret": handler.field("secret")}
    if kind != "openai":
        settings: dict[str, Any] = {"documents": docs}
        if handler.field("fallback"):
            settings["fallback"] = handler.field("fallback")
        return settings
    settings = {"baseUrl": handler.field("baseUrl"), "model": handler.field("model"), "apiKey": handler.field("apiKey")}
    if handler.field("systemPrompt"):
        settings["systemPrompt"] = handler.field("systemPrompt")
    if docs:
        settings["documents"] = docs
    temperature = handler.field("temperature")
    if temperature:
        try:
            settings["temperature"] = float(temperature)
        except ValueError:
            settings["temperature"] = temperature  # the service's validation names the field
    return settings


def agent_form(handler: DashboardHandler, current: Agent | None) -> dict[str, Any]:
    kind = handler.field("kind", current.kind if current else "faq")
    settings = _agent_settings(handler, kind)
    # Secret settings are never sent back to the browser: left blank on an edit, the stored one stays.
    # Passed on redacted, as the JSON API gets it back, so the service's rules hold here too: a blank
    # secret with a changed URL is refused (the stored secret must not follow a URL to a new host).
    if current is not None and current.kind == kind:
        for key in AGENT_SECRET_SETTINGS.get(kind, ()):
            if not settings.get(key) and current.settings.get(key):
                settings[key] = redact(current.settings[key])
    return {"name": handler.field("name"), "status": handler.field("status", "active"), "kind": kind,
            "settings": settings, "allowedOrigins": lines(handler.field("allowedOrigins"))}


def agent_form_view(data: dict[str, Any]) -> dict[str, Any]:
    """What the agent form shows: the settings without their secrets."""
    settings = dict(data.get("settings") or {})
    secrets_set = {key: bool(settings.pop(key, None)) for key in ("apiKey", "secret")}
    return {"name": data.get("name", ""), "status": data.get("status", "active"), "kind": data.get("kind", "faq"),
            "settings": settings, "documents": settings.get("documents") or [],
            "allowedOrigins": "\n".join(data.get("allowedOrigins") or []), "secretsSet": secrets_set}


def credentials_from_form(handler: DashboardHandler, adapter: ChannelAdapter,
                          current: dict[str, Any] | None = None) -> dict[str, Any]:
    """The channel's credential fields (`cred-<channel>-<field>`); blank ones keep the current value."""
    out: dict[str, Any] = {}
    for credential in adapter.credential_fields:
        value = handler.field(f"cred-{adapter.channel}-{credential.name}")
        if value:
            out[credential.name] = value
        elif current and current.get(credential.name):
            out[credential.name] = current[credential.name]
    return out


def setting_input(channel: str, name: str) -> str:
    """The form input of a webhook setting: "set-whatsapp-reengagementTemplate-name"."""
    return f"set-{channel}-{name.replace('.', '-')}"


def flat_settings(adapter: ChannelAdapter, settings: dict[str, Any]) -> dict[str, str]:
    """{dotted field name: current value} for the adapter's setting fields, to fill the form."""
    out: dict[str, str] = {}
    for setting in adapter.setting_fields:
        value: Any = settings
        for key in setting.name.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        out[setting.name] = "" if value is None else str(value)
    return out


def settings_from_form(handler: DashboardHandler, adapter: ChannelAdapter) -> dict[str, Any]:
    """The channel's webhook settings from their inputs, nested by the dotted names; fields left
    empty are left out (all empty: no settings), so the adapter's validation names what is missing."""
    out: dict[str, Any] = {}
    for setting in adapter.setting_fields:
        value = handler.field(setting_input(adapter.channel, setting.name)).strip()
        if not value:
            continue
        *parents, leaf = setting.name.split(".")
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return out
