"""The admin service methods the dashboard pages are built on (instead of reading the store or the
broker themselves): each keeps to the principal's tenancy."""

from __future__ import annotations

import pytest

from buzzi.auth import Principal
from buzzi.errors import NotFound, Unauthorized
from buzzi.models import Webhook, WebhookEvent
from tests.admin.helpers import call, create_agent, create_company, create_webhook
from tests.support.gateway import RunningGateway
from tests.support.web_sessions import store_conversation

OWNER = Principal("u_owner", "owner@example.test", "owner", None)


def admin_of(company_id: str) -> Principal:
    return Principal("u_admin", "admin@example.test", "company_admin", company_id)


async def two_tenants(gw: RunningGateway) -> tuple[str, str, str, str]:
    """(company A, its agent with one webhook, company B, its agent without webhooks)"""
    token = await gw.login()
    a = (await create_company(gw, token, "Acme"))["id"]
    a_agent = (await create_agent(gw, token, a))["id"]
    await create_webhook(gw, token, a, a_agent)
    b = (await create_company(gw, token, "Globex"))["id"]
    b_agent = (await create_agent(gw, token, b))["id"]
    return a, a_agent, b, b_agent


async def test_webhook_counts_are_per_agent_of_the_company(gw: RunningGateway) -> None:
    a, a_agent, b, b_agent = await two_tenants(gw)
    webhooks = gw.gateway.admin.webhooks
    assert await webhooks.count_by_agent(OWNER, a, [a_agent]) == {a_agent: 1}
    # Another company's agent counts nothing under this company, and another tenant sees nothing.
    assert await webhooks.count_by_agent(OWNER, b, [b_agent, a_agent]) == {b_agent: 0, a_agent: 0}
    with pytest.raises(NotFound):
        await webhooks.count_by_agent(admin_of(b), a, [a_agent])


async def test_one_delivery_only_under_its_own_webhook(gw: RunningGateway) -> None:
    a, a_agent, b, b_agent = await two_tenants(gw)
    token = await gw.login()
    b_hook = (await create_webhook(gw, token, b, b_agent))["id"]
    (a_hook,) = await gw.store.find(Webhook, company_id=a)
    event = WebhookEvent(id="we_test", webhook_id=a_hook.id, company_id=a, channel="whatsapp", outcome="ok",
                         status_code=200, latency_ms=1.0)
    await gw.store.add(event)
    monitoring = gw.gateway.admin.monitoring
    assert (await monitoring.webhook_event(admin_of(a), a, a_agent, a_hook.id, event.id)).id == event.id
    for principal, ids in ((admin_of(b), (a, a_agent, a_hook.id)), (OWNER, (b, b_agent, b_hook))):
        with pytest.raises(NotFound):
            await monitoring.webhook_event(principal, *ids, event.id)


async def test_live_views_keep_to_the_tenant(gw: RunningGateway) -> None:
    a, _, b, b_agent = await two_tenants(gw)
    session = await call(gw, "POST", "/api/chat/sessions", None, {"companyId": b, "agentId": b_agent}, 201)
    await store_conversation(gw, session, b, b_agent)  # as its first message would
    live = gw.gateway.admin.live
    assert await live.company_names(admin_of(a), [a, b]) == {a: "Acme", b: b}
    assert await live.company_names(OWNER, [b, "c_gone"]) == {b: "Globex", "c_gone": "c_gone"}
    with pytest.raises(NotFound):
        await live.conversation_feed(admin_of(a), session["conversationId"])
    feed = await live.conversation_feed(OWNER, session["conversationId"])
    assert feed.conversation.company_id == b


async def test_a_logged_out_session_is_revoked_and_no_other(gw: RunningGateway) -> None:
    auth = gw.gateway.admin.auth
    first, second = await gw.login(), await gw.login()
    one, two = auth.session_cookie(first), auth.session_cookie(second)
    principal = await auth.authenticate_session(one)
    assert (await auth.authenticate_session(two)).user_id == principal.user_id
    await auth.logout(principal)
    for revoked in (one, f"{first}~another-nonce"):
        with pytest.raises(Unauthorized):
            await auth.authenticate_session(revoked)
    with pytest.raises(Unauthorized):
        await auth.authenticate(f"Bearer {first}")
    assert (await auth.authenticate_session(two)).user_id == principal.user_id


async def test_test_events_are_offered_where_the_adapter_can_sign_one(gw: RunningGateway) -> None:
    samples = gw.gateway.admin.samples
    whatsapp = Webhook(id="wh_1", company_id="c", agent_id="a", channel="whatsapp", secret="s" * 32,
                       credentials={"phoneNumberId": "1", "accessToken": "t"})
    teams = Webhook(id="wh_2", company_id="c", agent_id="a", channel="teams", credentials={"appId": "x"})
    assert samples.cannot_send(whatsapp) == ""
    assert "Bot Framework" in samples.cannot_send(teams)
