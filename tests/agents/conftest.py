from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from buzzi.agents.registry import AgentRegistry
from buzzi.config import AgentSettings
from buzzi.netguard import NetPolicy
from buzzi.signing import new_standard_secret
from tests.support.fake_llm import FakeServices

FAILURE = "Sorry, try again."
LOCAL_SERVICES = NetPolicy(allow_private=True)  # the fake agent and LLM services run on 127.0.0.1


@pytest.fixture
def agent_secret() -> str:
    return new_standard_secret()


@pytest.fixture
async def fake(agent_secret: str) -> AsyncIterator[FakeServices]:
    async with FakeServices(agent_secret=agent_secret) as services:
        yield services


@pytest.fixture
async def registry() -> AsyncIterator[AgentRegistry]:
    reg = AgentRegistry(AgentSettings(timeout_seconds=5.0, http_connect_timeout_seconds=2.0, failure_message=FAILURE),
                        LOCAL_SERVICES)
    yield reg
    await reg.close()


@pytest.fixture
async def impatient_registry() -> AsyncIterator[AgentRegistry]:
    """Gives up on an upstream after a fraction of a second (stalled-server tests)."""
    reg = AgentRegistry(AgentSettings(timeout_seconds=0.3, http_connect_timeout_seconds=0.3, failure_message=FAILURE),
                        LOCAL_SERVICES)
    yield reg
    await reg.close()
