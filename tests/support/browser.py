"""Headless Debian Chromium driven by Playwright's async API (never `playwright install`:
the browser comes from apt, `apt-get install -y chromium`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest_asyncio
from playwright.async_api import Browser, Dialog, Page, async_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]


@contextlib.asynccontextmanager
async def launch_browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class PageWatch:
    """What a page did that a test may want to assert never happened."""

    dialogs: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)


# Launching Chromium takes seconds, so one browser serves a whole test module. Playwright's
# connection is bound to the loop that started it, so a module using these fixtures runs its tests
# and its other async fixtures in the module's loop:
#   pytestmark = pytest.mark.asyncio(loop_scope="module")
#   @pytest_asyncio.fixture(loop_scope="module") for fixtures such as a running gateway.
@pytest_asyncio.fixture(name="browser", scope="module", loop_scope="module")
async def browser_fixture() -> AsyncIterator[Browser]:
    async with launch_browser() as launched:
        yield launched


@pytest_asyncio.fixture(name="page", loop_scope="module")
async def page_fixture(browser: Browser) -> AsyncIterator[Page]:
    """A fresh context (empty localStorage) and page; `page.watch` records dialogs and JS errors."""
    context = await browser.new_context(viewport={"width": 1100, "height": 760})
    context.set_default_timeout(10_000)
    pg = await context.new_page()
    watch = PageWatch()

    async def on_dialog(dialog: Dialog) -> None:
        watch.dialogs.append(dialog.message)
        await dialog.dismiss()

    pg.on("dialog", on_dialog)
    pg.on("pageerror", lambda exc: watch.page_errors.append(str(exc)))
    pg.watch = watch  # type: ignore[attr-defined]
    try:
        yield pg
    finally:
        await context.close()
