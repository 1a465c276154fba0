from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.gateway import RunningGateway, running_gateway


@pytest.fixture
def store_backend(request: pytest.FixtureRequest) -> str:
    """sqlite unless a test asks for more with tests.admin.helpers.ON_EVERY_STORE."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
async def gw(make_settings, store_backend: str, request: pytest.FixtureRequest) -> AsyncIterator[RunningGateway]:
    sections = {"store": {"url": request.getfixturevalue("mongo_db_url")}} if store_backend == "mongodb" else {}
    async with running_gateway(make_settings, **sections) as running:
        yield running


@pytest.fixture
async def owner(gw: RunningGateway) -> str:
    """An owner's token (the bootstrap admin)."""
    return await gw.login()
