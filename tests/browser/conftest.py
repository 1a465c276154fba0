"""Browser tests: a real gateway with the demo and real headless Chromium (tests/support/browser.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from tests.support.browser import browser_fixture, page_fixture  # noqa: F401 - fixtures for this package
from tests.support.gateway import RunningGateway, running_gateway

# A short reconnect hint keeps the "stream ends after each answer" cycle quick in tests.
CHAT = {"create_demo": True, "retry_ms": 200}


@pytest_asyncio.fixture(loop_scope="module")  # the browser's loop: see tests/support/browser.py
async def demo_gw(make_settings) -> AsyncIterator[RunningGateway]:
    async with running_gateway(make_settings, chat=CHAT) as running:
        yield running
