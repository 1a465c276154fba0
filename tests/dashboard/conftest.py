from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import pytest

from tests.dashboard.client import DashboardClient, new_http
from tests.support.gateway import RunningGateway, running_gateway


@pytest.fixture
async def gw(make_settings) -> AsyncIterator[RunningGateway]:
    async with running_gateway(make_settings) as running:
        yield running


@pytest.fixture
async def clients(gw: RunningGateway) -> AsyncIterator[Callable[[], DashboardClient]]:
    """A factory of dashboard clients, each with its own cookie jar."""
    async with AsyncExitStack() as stack:

        def make() -> DashboardClient:
            http = new_http()
            stack.push_async_callback(http.close)
            return DashboardClient(gw, http)

        yield make


@pytest.fixture
async def owner(clients) -> DashboardClient:
    """A dashboard client logged in as the bootstrap owner."""
    client = clients()
    await client.login()
    return client
