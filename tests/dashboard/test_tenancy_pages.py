"""A company admin gets the 404 page for every page and action of another tenant's companies,
agents, webhooks and deliveries, and nothing of theirs changes."""

from __future__ import annotations

import re

from buzzi.models import Agent, Company, Webhook, WebhookEvent
from tests.admin.helpers import company_admin
from tests.dashboard.client import DashboardClient
from tests.dashboard.forms import create_agent, create_company, create_whatsapp, webhook_path
from tests.support.gateway import RunningGateway
from tests.support.waiting import wait_until


async def test_company_admin_gets_404_for_another_tenant(owner: DashboardClient, clients, gw: RunningGateway) -> None:
    # Tenant A, with a webhook and one delivery; tenant B, whose admin tries everything on A.
    a = await create_company(owner, "Tenant A")
    a_agent = await create_agent(owner, a, "A bot")
    a_hook, _ = await create_whatsapp(owner, a, a_agent)
    await owner.post(webhook_path(a, a_agent, a_hook) + "/test")
    (event,) = await wait_until(lambda: gw.store.find(WebhookEvent, webhook_id=a_hook), timeout=5)
    b = await create_company(owner, "Tenant B")
    b_agent = await create_agent(owner, b, "B bot")
    b_hook, _ = await create_whatsapp(owner, b, b_agent)
    await company_admin(gw, await gw.login(), b, "admin@b.example")
    admin = clients()
    await admin.login("admin@b.example", "company-pass-123")
    before = (await gw.store.get(Company, a), await gw.store.get(Agent, a_agent), await gw.store.get(Webhook, a_hook))

    company, agent, hook = f"/admin/companies/{a}", f"/admin/companies/{a}/agents/{a_agent}", \
        webhook_path(a, a_agent, a_hook)
    # Mixed ids: B's own company with A's agent, B's own agent with A's webhook, A's delivery under B's hook.
    mixed_agent = f"/admin/companies/{b}/agents/{a_agent}"
    mixed_hook = webhook_path(b, b_agent, a_hook)
    gets = [company, f"{company}/edit", f"{company}/agents/new", agent, f"{agent}/edit", f"{agent}/webhooks/new",
            hook, f"{hook}/deliveries", f"{hook}/deliveries/{event.id}", mixed_agent, mixed_hook,
            webhook_path(b, b_agent, b_hook) + f"/deliveries/{event.id}"]
    for path in gets:
        page = await admin.get(path)
        assert page.status == 404 and "Page not found" in page.text, path
        assert "Tenant A" not in page.text and "A bot" not in page.text, path
    posts = {
        company: {"name": "Owned"}, f"{company}/delete": {}, f"{company}/agents": {"name": "X", "kind": "faq"},
        agent: {"name": "Owned"}, f"{agent}/delete": {},
        f"{agent}/webhooks": {"channel": "custom", "cred-custom-callbackUrl": "https://x.example/"},
        hook: {"ipAllowlist": "10.0.0.0/8"}, f"{hook}/status": {"status": "disabled"},
        f"{hook}/rotate": {"secret": "attacker-chosen-secret-000"}, f"{hook}/test": {}, f"{hook}/delete": {},
        f"{mixed_agent}/delete": {}, f"{mixed_hook}/delete": {}, f"{mixed_hook}/rotate": {"secret": "x" * 20},
    }
    for path, form in posts.items():
        page = await admin.post(path, form)
        assert page.status == 404 and "Page not found" in page.text, path
    after = (await gw.store.get(Company, a), await gw.store.get(Agent, a_agent), await gw.store.get(Webhook, a_hook))
    assert after == before
    assert len(await gw.store.find(WebhookEvent, webhook_id=a_hook)) == 1  # no test event was sent
    assert await gw.store.find(Agent, company_id=a) == [before[1]]
    # Their own pages still work, and list nothing of A.
    own = await admin.get(f"/admin/companies/{b}/agents/{b_agent}")
    assert own.status == 200 and "B bot" in own.text
    listing = await admin.get("/admin/companies")
    assert "Tenant B" in listing.text and "Tenant A" not in listing.text
    assert not re.search(rf"{a}\b", listing.text)
