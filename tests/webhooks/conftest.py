"""Fixtures for the end-to-end webhook tests: a gateway wired to every fake platform."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.webhooks.kit import ChannelLab, channel_lab


@pytest.fixture
async def lab(make_settings) -> AsyncIterator[ChannelLab]:
    async with channel_lab(make_settings) as running:
        yield running
