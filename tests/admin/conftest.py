from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.gateway import RunningGateway, running_gateway


@pytest.fixture
async def gw(make_settings) -> AsyncIterator[RunningGateway]:
    async with running_gateway(make_settings) as running:
        yield running


@pytest.fixture
async def owner(gw: RunningGateway) -> str:
    """An owner's token (the bootstrap admin)."""
    return await gw.login()
