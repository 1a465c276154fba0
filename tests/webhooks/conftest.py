"""Fixtures for the end-to-end webhook tests: a gateway wired to every fake platform."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.webhooks.kit import ChannelLab, channel_lab


@pytest.fixture
async def lab(make_settings) -> AsyncIterator[ChannelLab]:
    async with channel_lab(make_settings) as running:
        yield running


@pytest.fixture(params=["sqlite", "mongodb"])
async def lab_on_each_store(request: pytest.FixtureRequest, make_settings) -> AsyncIterator[ChannelLab]:
    """The lab on SQLite and on MongoDB, for the intake rules (dedupe, one conversation per chat)
    that each store runs its own way."""
    store = {} if request.param == "sqlite" else {"store": {"url": request.getfixturevalue("mongo_db_url")}}
    async with channel_lab(make_settings, **store) as running:
        yield running
