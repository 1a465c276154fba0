"""Admin API calls the tests share: each asserts the status it expects and returns the JSON."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.gateway import RunningGateway

# Where the backend matters (queries, tenancy filters, secrets sealed at rest): run on SQLite and on
# MongoDB (the cluster configuration, through the mongoeco wire server).
ON_EVERY_STORE = pytest.mark.parametrize("store_backend", ["sqlite", "mongodb"], indirect=True)

FAQ = {
    "documents": [{"title": "Opening hours", "content": "We are open Monday to Friday from 9 to 18."}],
    "fallback": "Sorry, I do not know.",
}
WHATSAPP = {
    "channel": "whatsapp", "secret": "meta-app-secret-0123456789abcdef",
    "credentials": {"phoneNumberId": "1098765432", "accessToken": "EAAG-access-token-secret-wxyz"},
}


async def call(gw: RunningGateway, method: str, path: str, token: str | None, body: Any = None,
               expect: int = 200) -> Any:
    status, data, _ = await gw.request(method, path, json_body=body, token=token)
    assert status == expect, (method, path, status, data)
    return data


async def create_company(gw: RunningGateway, token: str, name: str = "Acme", **extra: Any) -> dict:
    return await call(gw, "POST", "/api/admin/companies", token, {"name": name, **extra}, 201)


async def create_agent(gw: RunningGateway, token: str, cid: str, **extra: Any) -> dict:
    body = {"name": "Helper", "kind": "faq", "settings": FAQ, **extra}
    return await call(gw, "POST", f"/api/admin/companies/{cid}/agents", token, body, 201)


async def create_webhook(gw: RunningGateway, token: str, cid: str, aid: str, body: dict | None = None) -> dict:
    return await call(gw, "POST", f"/api/admin/companies/{cid}/agents/{aid}/webhooks", token,
                      body or WHATSAPP, 201)


async def company_admin(gw: RunningGateway, owner: str, cid: str, email: str) -> str:
    """Create a company admin of `cid` and return their token."""
    await call(gw, "POST", "/api/admin/users", owner,
               {"email": email, "password": "company-pass-123", "role": "company_admin", "companyId": cid}, 201)
    return await gw.login(email, "company-pass-123")

# A signature header value that must never come back from the delivery log.
SECRET_HEADERS_PLAIN = "sha256=" + "ab" * 32
