"""Dashboard part 2 in real headless Chromium: an admin watches the demo widget's live session, takes
the conversation over, types and replies (the widget shows it as a person), and releases it; customer
markup is shown as text. Saves docs/dashboard-sessions.png and docs/dashboard-conversation.png."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, expect

from buzzi.models import Conversation
from tests.browser.helpers import ask, wait_for_session
from tests.dashboard.client import OWNER_EMAIL, OWNER_PASSWORD
from tests.support.browser import browser_fixture, page_fixture  # noqa: F401 - fixtures for this module
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]  # the browser's loop

DOCS = Path(__file__).resolve().parents[2] / "docs"
XSS = "<img src=x onerror=alert(1)>"


@pytest_asyncio.fixture(loop_scope="module")
async def demo_gw(make_settings) -> AsyncIterator[RunningGateway]:
    # A short reconnect hint: the widget's stream ends after each answer and comes back quickly.
    async with running_gateway(make_settings, chat={"create_demo": True, "retry_ms": 200}) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="module")
async def widget(browser: Browser) -> AsyncIterator[Page]:
    """The customer's browser: a context of its own (its own storage), watched for dialogs."""
    context = await browser.new_context(viewport={"width": 900, "height": 700})
    context.set_default_timeout(10_000)
    pg = await context.new_page()
    dialogs: list[str] = []

    async def on_dialog(dialog) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    pg.on("dialog", on_dialog)
    pg.dialogs = dialogs  # type: ignore[attr-defined]
    try:
        yield pg
    finally:
        await context.close()


async def log_in(page: Page, gw: RunningGateway, next_path: str) -> None:
    await page.goto(f"{gw.base_url}/admin/login?next={next_path}")
    await page.get_by_label("E-mail").fill(OWNER_EMAIL)
    await page.get_by_label("Password").fill(OWNER_PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(f"**{next_path}")


async def test_admin_takes_over_a_live_widget_chat(demo_gw: RunningGateway, page: Page, widget: Page) -> None:
    company_id, agent_id = demo_gw.gateway.demo
    await log_in(page, demo_gw, "/admin/conversations")
    await expect(page.locator("#conversations tbody tr")).to_have_count(0)

    # The customer opens the demo and asks something: the conversation list picks it up by itself...
    await widget.goto(demo_gw.base_url + "/demo")
    await wait_for_session(widget, company_id, agent_id)
    await ask(widget, "what are your opening hours?")
    await expect(widget.locator(".msg.assistant[data-id]")).to_contain_text("Monday")
    conversation = await wait_until(lambda: demo_gw.store.find_one(Conversation, company_id=company_id))
    listed = page.locator(f'#conversations tbody tr[data-id="{conversation.id}"]')
    await expect(listed.locator("td.num")).to_have_text("2")
    await expect(listed).to_contain_text("Buzzi Demo")

    # ... and their session shows up live on the sessions page, with its node.
    await page.get_by_role("link", name="Live sessions").click()
    await expect(page.locator("[data-live-state]")).to_have_text("live")
    row = page.locator("#sessions tbody tr", has=page.locator(f'a[href="/admin/conversations/{conversation.id}"]'))
    await expect(row).to_have_count(1)
    await expect(row.locator("td").first).to_have_text("test-node")
    await expect(page.locator("#nodes tbody tr").first.locator("td").first).to_have_text("test-node")
    DOCS.mkdir(exist_ok=True)
    await page.screenshot(path=str(DOCS / "dashboard-sessions.png"), full_page=True)

    # The admin opens the conversation and takes it over; the widget is told.
    await row.get_by_role("link").click()
    await page.wait_for_url(f"**/admin/conversations/{conversation.id}")
    messages = page.locator("#messages li")
    await expect(messages).to_have_count(2)
    await expect(messages.first.locator(".content")).to_have_text("what are your opening hours?")
    await expect(page.locator("[data-live-state]")).to_have_text("live")
    reply_box = page.get_by_label("Reply as a person")
    await expect(reply_box).to_be_disabled()
    await page.get_by_role("button", name="Take over").click()
    await expect(page.get_by_role("button", name="Release to bot")).to_be_visible()
    await expect(reply_box).to_be_enabled()
    await expect(widget.locator("li.system").last).to_have_text("A person will answer you here shortly.")

    # Typing shows in the widget; the reply arrives there as a person's.
    await reply_box.press_sequentially("Hello, this is Dana")
    await expect(widget.locator(".status")).to_have_text("A person is typing\u2026")
    await reply_box.press_sequentially(" from support.")
    await page.get_by_role("button", name="Send reply").click()
    await expect(widget.locator(".msg.human .body")).to_have_text("Hello, this is Dana from support.")
    await expect(reply_box).to_have_value("")
    await expect(page.locator("#messages li.role-human .content")).to_have_text("Hello, this is Dana from support.")

    # Customer markup is shown as text in the dashboard: no element, no script.
    await ask(widget, XSS)
    user_rows = page.locator("#messages li.role-user .content")
    await expect(user_rows.last).to_have_text(XSS, timeout=8_000)
    assert await page.locator("#messages img").count() == 0
    await page.screenshot(path=str(DOCS / "dashboard-conversation.png"), full_page=True)

    # Back to the bot: the widget says so and the bot answers again.
    await page.get_by_role("button", name="Release to bot").click()
    await expect(page.get_by_role("button", name="Take over")).to_be_visible()
    await expect(reply_box).to_be_disabled()
    await expect(widget.locator("li.system").last).to_have_text("You're back with the assistant.")
    assert (await demo_gw.store.get(Conversation, conversation.id)).owner == "bot"

    assert page.watch.page_errors == [] and page.watch.dialogs == []  # type: ignore[attr-defined]
    assert widget.dialogs == []  # type: ignore[attr-defined]
