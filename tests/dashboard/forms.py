"""Form posts the page tests share: each asserts the answer it expects and returns the new ids."""

from __future__ import annotations

import re

from tests.dashboard.client import DashboardClient, Page

META_SECRET = "meta-app-secret-0123456789abcdef"
ACCESS_TOKEN = "EAAG-access-token-secret-wxyz"
FAQ_FORM = {"kind": "faq", "status": "active", "doc-0-title": "Opening hours",
            "doc-0-content": "We are open Monday to Friday from 9 to 18.", "allowedOrigins": ""}


def path_id(url: str, after: str) -> str:
    found = re.search(rf"/{after}/([A-Za-z0-9_\-]+)", url)
    assert found, (after, url)
    return found.group(1)


async def create_company(client: DashboardClient, name: str = "Acme", **extra: str) -> str:
    page = await client.post("/admin/companies", {"name": name, "status": "active", "expiresAt": "", **extra})
    assert page.status == 200 and "flash=created" in page.url, (page.status, page.text[:300])
    return path_id(page.url, "companies")


async def create_agent(client: DashboardClient, cid: str, name: str = "Helper", **extra: str) -> str:
    page = await client.post(f"/admin/companies/{cid}/agents", {"name": name, **FAQ_FORM, **extra})
    assert page.status == 200 and "flash=created" in page.url, (page.status, page.text[:300])
    return path_id(page.url, "agents")


async def create_whatsapp(client: DashboardClient, cid: str, aid: str, **extra: str) -> tuple[str, Page]:
    """(webhook id, the create answer: the one page that shows the secrets)."""
    page = await client.post(f"/admin/companies/{cid}/agents/{aid}/webhooks", {
        "channel": "whatsapp", "secret-whatsapp": META_SECRET, "cred-whatsapp-phoneNumberId": "1098765432",
        "cred-whatsapp-accessToken": ACCESS_TOKEN, "ipAllowlist": "", **extra})
    assert page.status == 201, (page.status, page.text[:2000])
    return re.search(r'<span class="mono">(wh_[A-Za-z0-9_\-]+)</span>', page.text).group(1), page


def webhook_path(cid: str, aid: str, wid: str) -> str:
    return f"/admin/companies/{cid}/agents/{aid}/webhooks/{wid}"


def field_error(page: Page, name: str) -> str | None:
    found = re.search(rf'<p class="field-error" id="{re.escape(name)}-error">([^<]*)</p>', page.text)
    return found.group(1) if found else None
