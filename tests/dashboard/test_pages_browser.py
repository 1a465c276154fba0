"""Dashboard part 1 in real headless Chromium: log in, create a company, an agent (FAQ rows added in
the page) and a WhatsApp webhook, copy its URL, send a test event and find it in the delivery log.
Saves docs/dashboard-login.png, docs/dashboard-webhooks.png and docs/dashboard-deliveries.png."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Page, expect

from buzzi.models import Agent, Webhook, WebhookEvent
from tests.admin.helpers import create_agent, create_company, create_webhook
from tests.dashboard.client import OWNER_EMAIL, OWNER_PASSWORD
from tests.support.browser import browser_fixture, page_fixture  # noqa: F401 - fixtures for this module
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]  # the browser's loop

DOCS = Path(__file__).resolve().parents[2] / "docs"
META_SECRET = "meta-app-secret-0123456789abcdef"


@pytest_asyncio.fixture(loop_scope="module")
async def dash_gw(make_settings) -> AsyncIterator[RunningGateway]:
    async with running_gateway(make_settings) as running:
        yield running


async def log_in(page: Page, gw: RunningGateway) -> None:
    await page.goto(gw.base_url + "/admin/companies")
    await expect(page).to_have_url(gw.base_url + "/admin/login?next=%2Fadmin%2Fcompanies")
    await page.get_by_label("E-mail").fill(OWNER_EMAIL)
    await page.get_by_label("Password").fill(OWNER_PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("heading", name="Companies")).to_be_visible()


async def test_company_agent_webhook_test_event_and_delivery_log(dash_gw: RunningGateway, page: Page) -> None:
    gw = dash_gw
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text) if msg.type == "error" else None)
    DOCS.mkdir(exist_ok=True)

    await page.goto(gw.base_url + "/admin/login")
    await page.screenshot(path=str(DOCS / "dashboard-login.png"))
    await log_in(page, gw)

    await page.get_by_role("link", name="New company").click()
    await page.get_by_label("Name").fill("Acme Shoes")
    await page.get_by_label("Status").select_option("trialing")
    await page.get_by_label("Expires on").fill("2099-06-30")
    await page.get_by_role("button", name="Create company").click()
    await expect(page.get_by_role("heading", name="Acme Shoes")).to_be_visible()

    await page.get_by_role("link", name="New agent").click()
    await page.get_by_label("Name", exact=True).fill("Shoe helper")
    # Only the chosen kind's settings are shown (static/admin.js).
    await expect(page.get_by_label("Model")).to_be_hidden()
    await page.get_by_label("Kind").select_option("openai")
    await expect(page.get_by_label("Model")).to_be_visible()
    await page.get_by_label("Kind").select_option("faq")
    await page.locator("#doc-0-title").fill("Opening hours")
    await page.locator("#doc-0-content").fill("Monday to Friday, 9 to 18.")
    await page.get_by_role("button", name="Add document").click()
    await page.locator("#doc-1-title").fill("Returns")
    await page.locator("#doc-1-content").fill("Within 30 days with the receipt.")
    await page.get_by_role("button", name="Create agent").click()
    await expect(page.get_by_text("2: Opening hours, Returns")).to_be_visible()
    agent = (await gw.store.find(Agent))[0]
    assert [d["title"] for d in agent.settings["documents"]] == ["Opening hours", "Returns"]

    await page.get_by_role("link", name="New webhook").click()
    await page.get_by_label("Channel").select_option("whatsapp")
    await page.locator("#secret-whatsapp").fill(META_SECRET)
    await page.get_by_label("Phone number ID").fill("1098765432")
    await page.locator("#cred-whatsapp-accessToken").fill("EAAG-access-token-secret-wxyz")
    await page.get_by_role("button", name="Create webhook").click()
    await expect(page.get_by_role("heading", name="Copy these now")).to_be_visible()
    await expect(page.locator("#revealed-secret")).to_have_text(META_SECRET)
    webhook = (await gw.store.find(Webhook))[0]
    url = f"{gw.base_url}/api/webhooks/{webhook.company_id}/{webhook.agent_id}/whatsapp/{webhook.id}"
    await expect(page.locator("#webhook-url")).to_have_text(url)

    # Copy: the button's value lands on the clipboard (and in Buzzi.lastCopied, read without clipboard rights).
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gw.base_url)
    copy = page.locator("[data-copy='webhook-url']")
    await copy.click()
    await expect(copy).to_have_text("Copied")
    assert await page.evaluate("window.Buzzi.lastCopied") == url
    assert await page.evaluate("navigator.clipboard.readText()") == url

    await page.get_by_role("button", name="Send test event").click()
    await expect(page.locator("#test-status")).to_have_text("200")
    await expect(page.locator("#revealed")).to_have_count(0)  # the secret is gone for good
    assert META_SECRET not in await page.content()
    await page.screenshot(path=str(DOCS / "dashboard-webhooks.png"), full_page=True)

    await wait_until(lambda: gw.store.find(WebhookEvent, webhook_id=webhook.id), timeout=5)
    await page.get_by_role("link", name="See it in the delivery log").click()
    await expect(page.get_by_role("heading", name="Delivery log")).to_be_visible()
    row = page.locator("#deliveries tbody tr")
    await expect(row).to_have_count(1)
    await expect(row.locator("td[data-status]")).to_have_text("200")
    await expect(row.locator(".badge")).to_have_text("ok")
    await page.screenshot(path=str(DOCS / "dashboard-deliveries.png"), full_page=True)

    await row.get_by_role("link").click()
    await expect(page.get_by_role("heading", name="Delivery", exact=True)).to_be_visible()
    await expect(page.get_by_text("[redacted]")).to_be_visible()

    assert page.watch.page_errors == [] and page.watch.dialogs == []  # type: ignore[attr-defined]
    assert console == []  # among others: no CSP violation


async def test_confirm_dialog_guards_destructive_buttons(dash_gw: RunningGateway, page: Page) -> None:
    gw = dash_gw
    token = await gw.login()
    cid = (await create_company(gw, token))["id"]
    aid = (await create_agent(gw, token, cid))["id"]
    webhook = await gw.store.get(Webhook, (await create_webhook(gw, token, cid, aid))["id"])
    await log_in(page, gw)
    await page.goto(f"{gw.base_url}/admin/companies/{webhook.company_id}/agents/{webhook.agent_id}"
                    f"/webhooks/{webhook.id}")
    dialog = page.locator("#confirm-dialog")
    await page.get_by_role("button", name="Delete").click()
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("Delete this webhook?")
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(dialog).to_be_hidden()
    assert await gw.store.get(Webhook, webhook.id) is not None
    await page.get_by_role("button", name="Disable").click()
    await dialog.get_by_role("button", name="Confirm").click()
    await expect(page.get_by_text("Webhook disabled.")).to_be_visible()
    assert (await gw.store.get(Webhook, webhook.id)).status == "disabled"
    assert page.watch.page_errors == []  # type: ignore[attr-defined]
