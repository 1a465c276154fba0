"""The same admin behaviour on the MongoDB store (the cluster configuration): tenancy, listing order
and secrets sealed at rest do not depend on the backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.admin import test_conversations, test_tenancy, test_webhooks
from tests.support.gateway import RunningGateway, running_gateway


@pytest.fixture
async def mongo_gw(make_settings, mongo_db_url: str) -> AsyncIterator[RunningGateway]:
    async with running_gateway(make_settings, store={"url": mongo_db_url}) as running:
        yield running


async def test_tenancy_on_mongodb(mongo_gw: RunningGateway) -> None:
    owner = await mongo_gw.login()
    await test_tenancy.test_company_admin_cannot_reach_another_tenant(mongo_gw, owner)


async def test_secrets_sealed_on_mongodb(mongo_gw: RunningGateway) -> None:
    owner = await mongo_gw.login()
    await test_webhooks.test_secrets_are_encrypted_at_rest(mongo_gw, owner)
    await test_webhooks.test_rotate_secret(mongo_gw, owner)


async def test_conversations_on_mongodb(mongo_gw: RunningGateway) -> None:
    owner = await mongo_gw.login()
    await test_conversations.test_list_and_messages_of_a_web_conversation(mongo_gw, owner)
    await test_conversations.test_webhook_events_are_listed_without_secrets(mongo_gw, owner)
