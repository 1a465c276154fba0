"""Fixtures of the agent tests (tests/agents, tests/contracts/test_agents.py): the fake LLM and company
services, and a registry allowed to reach them on 127.0.0.1. Registered in tests/conftest.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from buzzi.agents.registry import AgentRegistry
from buzzi.signing import new_standard_secret
from tests.support.agent_factories import agent_registry
from tests.support.fake_llm import FakeServices


@pytest.fixture
def agent_secret() -> str:
    return new_standard_secret()


@pytest.fixture
async def fake(agent_secret: str) -> AsyncIterator[FakeServices]:
    async with FakeServices(agent_secret=agent_secret) as services:
        yield services


@pytest.fixture
async def registry() -> AsyncIterator[AgentRegistry]:
    async with agent_registry() as reg:
        yield reg
