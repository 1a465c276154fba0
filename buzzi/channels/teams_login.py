"""The Teams bot's identity with Microsoft Entra ID: which tenant issues its tokens, the
client-credentials form, and what a refusal from the token endpoint means (docs/channels.md §7.4).

- New Azure bots are single-tenant: multi-tenant bot creation was deprecated after 2025-07-31 and
  existing multi-tenant bots keep working [learn.microsoft.com/azure/bot-service/abs-quickstart,
  "Important" note; learn.microsoft.com/bot-framework/portal-register-bot]. A single-tenant bot's
  token comes from `{login}/{tenant}/oauth2/v2.0/token`; a legacy multi-tenant bot's from the
  `botframework.com` tenant [botbuilder-python authentication_constants.py]. So the tenant is
  always named: a GUID, a verified domain (contoso.onmicrosoft.com), or `botframework.com` for a
  bot registered as multi-tenant before the deprecation. `common`/`organizations` are refused:
  app-only tokens need a tenant-specific endpoint.
- The token endpoint answers errors as JSON `{"error", "error_description": "AADSTSnnnn: ...",
  "error_codes": [n], ...}`, HTTP 400 by default and 401 when the client failed to authenticate
  [learn.microsoft.com/previous-versions/azure/dn645548 "Token Issuance Endpoint Errors";
  learn.microsoft.com/entra/identity-platform/reference-error-codes]. The codes a setup gets wrong
  [learn.microsoft.com/azure/developer/java/sdk/troubleshooting-authentication-service-principal]:
  AADSTS7000215 invalid secret, 7000222 expired secret, 700016 application not found in the
  tenant, 90002 tenant not found.
"""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import quote

from buzzi.channels.base import CredentialsError

SCOPE = "https://api.botframework.com/.default"
TOKEN_PATH = "/oauth2/v2.0/token"
MULTI_TENANT = "botframework.com"  # the tenant a legacy multi-tenant bot's token comes from
# A verified domain: DNS labels, at least one dot, a letter TLD.
DOMAIN_RE = re.compile(r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
NOT_A_TENANT = {"common", "organizations", "consumers"}
TENANT_HELP = ("the Directory (tenant) ID of the bot's app registration (a GUID or a verified domain such as "
               f"contoso.onmicrosoft.com); for a bot registered as multi-tenant before August 2025, {MULTI_TENANT}")

# AADSTS code -> (credential field at fault, what it means in words).
REFUSALS: dict[int, tuple[str, str]] = {
    7000215: ("appPassword", "the client secret is wrong (enter the secret's Value, not its Secret ID)"),
    7000222: ("appPassword", "the client secret has expired: create a new one in the app registration"),
    7000218: ("appPassword", "no client secret was accepted"),
    700016: ("appId", "no application with this App ID in the tenant: check appId and tenantId "
                      "(a single-tenant bot needs its own tenant, not botframework.com)"),
    700023: ("tenantId", "the application belongs to another tenant"),
    90002: ("tenantId", "tenant not found"),
    900023: ("tenantId", "not a valid tenant id or domain"),
    90014: ("credentials", "a required field is missing from the token request"),
}


def normalise_tenant(value: Any) -> str:
    """The tenant segment of the token URL, or CredentialsError("tenantId")."""
    if not isinstance(value, str) or not value.strip():
        raise CredentialsError("tenantId", f"required: {TENANT_HELP}")
    tenant = value.strip().lower()
    try:
        return str(uuid.UUID(tenant))
    except ValueError:
        pass
    if tenant in NOT_A_TENANT:
        raise CredentialsError("tenantId", f"'{tenant}' cannot issue a bot's token: enter {TENANT_HELP}")
    if not DOMAIN_RE.match(tenant):
        raise CredentialsError("tenantId", f"expected {TENANT_HELP}")
    return tenant


def token_url(configured: str, tenant: str | None) -> str:
    """`channels.teams_token_url` is `{login}/{default tenant}/oauth2/v2.0/token`: the webhook's tenant
    replaces the default one. Webhooks stored before tenants were required have none: the
    configured URL (botframework.com, a legacy multi-tenant bot) is used as it is."""
    if not tenant or not configured.endswith(TOKEN_PATH):
        return configured
    base = configured[: -len(TOKEN_PATH)].rsplit("/", 1)[0]
    return f"{base}/{quote(tenant, safe='.-')}{TOKEN_PATH}"


def token_form(credentials: dict[str, Any]) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_id": str(credentials.get("appId")),
            "client_secret": str(credentials.get("appPassword") or ""), "scope": SCOPE}


def aadsts_code(body: Any) -> int | None:
    """The first AADSTS code of an error answer (`error_codes`, else the description's prefix)."""
    if not isinstance(body, dict):
        return None
    codes = body.get("error_codes")
    if isinstance(codes, list) and codes and isinstance(codes[0], int) and not isinstance(codes[0], bool):
        return codes[0]
    found = re.match(r"AADSTS(\d{1,9})\b", str(body.get("error_description") or ""))
    return int(found.group(1)) if found else None


def refusal_words(status: int, body: Any, password: str) -> str:
    """What Entra ID said, for an admin: the code in words when we know it, else the first sentence
    of its description (Trace/Correlation ids cut off, the password never repeated)."""
    code = aadsts_code(body)
    if code in REFUSALS:
        return f"{REFUSALS[code][1]} (AADSTS{code})"
    description = str(body.get("error_description") or "") if isinstance(body, dict) else ""
    first = description.split("\r\n", 1)[0].split("\n", 1)[0].strip()[:300]
    if password:
        first = first.replace(password, "\u2026")
    error = body.get("error") if isinstance(body, dict) else None
    return first or f"HTTP {status}" + (f" {error}" if isinstance(error, str) else "")


def credentials_error(status: int, body: Any, credentials: dict[str, Any]) -> CredentialsError:
    """A refused token request as the credential field at fault."""
    code = aadsts_code(body)
    field = REFUSALS[code][0] if code in REFUSALS else "credentials"
    words = refusal_words(status, body, str(credentials.get("appPassword") or ""))
    return CredentialsError(field, f"Microsoft refused a token for this bot: {words}")
