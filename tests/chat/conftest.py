from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from buzzi.ids import new_id
from buzzi.models import Agent, Company
from tests.support.gateway import RunningGateway, running_gateway

FAQ = {
    "documents": [
        {"title": "Opening hours", "content": "We are open Monday to Friday from 9 to 18."},
        {"title": "Returns", "content": "Items can be returned within 30 days for a full refund."},
    ],
    "fallback": "Sorry, I do not know.",
}


@pytest.fixture
async def gw(make_settings) -> AsyncIterator[RunningGateway]:
    async with running_gateway(make_settings) as running:
        yield running


async def create_faq_agent(gw: RunningGateway, **fields) -> Agent:
    company = await gw.store.add(Company(id=new_id("company"), name="Acme"))
    return await gw.store.add(Agent(id=new_id("agent"), company_id=company.id, name="Helper", kind="faq",
                                    settings=FAQ, **fields))


@pytest.fixture
async def faq_agent(gw: RunningGateway) -> Agent:
    return await create_faq_agent(gw)


async def new_session(gw: RunningGateway, agent: Agent, **extra) -> dict:
    status, body, _ = await gw.request(
        "POST", "/api/chat/sessions", json_body={"companyId": agent.company_id, "agentId": agent.id, **extra})
    assert status == 201, body
    return body
