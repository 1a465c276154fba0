"""A company admin sees and changes only their own company: another tenant's ids are 404 on every
resource and action, lists are filtered, and owner-only actions are refused."""

from __future__ import annotations

from buzzi.ids import new_id
from buzzi.models import Conversation
from tests.admin.helpers import ON_EVERY_STORE, call, company_admin, create_agent, create_company, create_webhook
from tests.support.gateway import RunningGateway


async def tenant(gw: RunningGateway, owner: str, name: str) -> dict[str, str]:
    cid = (await create_company(gw, owner, name))["id"]
    aid = (await create_agent(gw, owner, cid))["id"]
    wid = (await create_webhook(gw, owner, cid, aid))["id"]
    conv = await gw.store.add(Conversation(id=new_id("conversation"), company_id=cid, agent_id=aid, channel="web"))
    return {"cid": cid, "aid": aid, "wid": wid, "conv": conv.id}


@ON_EVERY_STORE
async def test_company_admin_cannot_reach_another_tenant(gw: RunningGateway, owner: str) -> None:
    mine = await tenant(gw, owner, "Mine")
    theirs = await tenant(gw, owner, "Theirs")
    token = await company_admin(gw, owner, mine["cid"], "me@mine.example")
    other_user = (await call(gw, "GET", "/api/admin/users", owner))[0]["id"]  # the owner

    c, a, w, v = theirs["cid"], theirs["aid"], theirs["wid"], theirs["conv"]
    agent_body = {"name": "x", "settings": {"documents": [], "fallback": "x"}}
    attempts = [
        ("GET", f"/api/admin/companies/{c}", None),
        ("PATCH", f"/api/admin/companies/{c}", {"name": "pwned"}),
        ("DELETE", f"/api/admin/companies/{c}", None),
        ("GET", f"/api/admin/companies/{c}/agents", None),
        ("POST", f"/api/admin/companies/{c}/agents", agent_body),
        ("GET", f"/api/admin/companies/{c}/agents/{a}", None),
        ("PATCH", f"/api/admin/companies/{c}/agents/{a}", {"status": "inactive"}),
        ("DELETE", f"/api/admin/companies/{c}/agents/{a}", None),
        ("GET", f"/api/admin/companies/{c}/agents/{a}/webhooks", None),
        ("POST", f"/api/admin/companies/{c}/agents/{a}/webhooks", {"channel": "custom"}),
        ("GET", f"/api/admin/companies/{c}/agents/{a}/webhooks/{w}", None),
        ("PATCH", f"/api/admin/companies/{c}/agents/{a}/webhooks/{w}", {"status": "disabled"}),
        ("POST", f"/api/admin/companies/{c}/agents/{a}/webhooks/{w}/rotate-secret", {"secret": "s" * 20}),
        ("DELETE", f"/api/admin/companies/{c}/agents/{a}/webhooks/{w}", None),
        # Their ids smuggled under my company's path.
        ("GET", f"/api/admin/companies/{mine['cid']}/agents/{a}", None),
        ("GET", f"/api/admin/companies/{mine['cid']}/agents/{mine['aid']}/webhooks/{w}", None),
        ("GET", f"/api/admin/conversations/{v}", None),
        ("GET", f"/api/admin/conversations/{v}/messages", None),
        ("POST", f"/api/admin/conversations/{v}/handover", {"action": "take"}),
        ("POST", f"/api/admin/conversations/{v}/reply", {"content": "hi"}),
        ("POST", f"/api/admin/conversations/{v}/typing", None),
        ("GET", f"/api/admin/webhook-events?webhookId={w}", None),
        ("GET", f"/api/admin/users/{other_user}", None),
        ("PATCH", f"/api/admin/users/{other_user}", {"password": "pwned-password"}),
        ("DELETE", f"/api/admin/users/{other_user}", None),
    ]
    for method, path, body in attempts:
        assert await call(gw, method, path, token, body, 404) == {"error": "Not found"}, (method, path)

    # Nothing of theirs changed.
    assert (await call(gw, "GET", f"/api/admin/companies/{c}", owner))["name"] == "Theirs"
    agent = await call(gw, "GET", f"/api/admin/companies/{c}/agents/{a}", owner)
    assert agent["status"] == "active"
    hook = await call(gw, "GET", f"/api/admin/companies/{c}/agents/{a}/webhooks/{w}", owner)
    assert hook["status"] == "active"
    assert (await call(gw, "GET", f"/api/admin/conversations/{v}", owner))["owner"] == "bot"
    await gw.login()  # the owner's password is unchanged

    # Lists show only my company.
    assert [x["id"] for x in await call(gw, "GET", "/api/admin/companies", token)] == [mine["cid"]]
    assert [x["id"] for x in await call(gw, "GET", "/api/admin/conversations", token)] == [mine["conv"]]
    assert await call(gw, "GET", f"/api/admin/conversations?companyId={c}", token) == []
    assert [x["email"] for x in await call(gw, "GET", "/api/admin/users", token)] == ["me@mine.example"]
    assert await call(gw, "GET", f"/api/admin/webhook-events?companyId={c}", token) == []
    # The owner sees both.
    assert len(await call(gw, "GET", "/api/admin/companies", owner)) == 2
    assert len(await call(gw, "GET", "/api/admin/conversations", owner)) == 2


@ON_EVERY_STORE
async def test_company_admin_works_in_their_own_company(gw: RunningGateway, owner: str) -> None:
    mine = await tenant(gw, owner, "Mine")
    token = await company_admin(gw, owner, mine["cid"], "me@mine.example")
    c, a = mine["cid"], mine["aid"]
    assert (await call(gw, "PATCH", f"/api/admin/companies/{c}", token, {"name": "Mine Ltd"}))["name"] == "Mine Ltd"
    agent = await create_agent(gw, token, c)
    await call(gw, "PATCH", f"/api/admin/companies/{c}/agents/{agent['id']}", token, {"status": "inactive"})
    hook = await create_webhook(gw, token, c, a)
    assert hook["secret"]  # shown once to whoever created it
    taken = await call(gw, "POST", f"/api/admin/conversations/{mine['conv']}/handover", token, {"action": "take"})
    assert taken["owner"] == "human"
    me = await call(gw, "GET", "/api/admin/me", token)
    await call(gw, "PATCH", f"/api/admin/users/{me['id']}", token, {"password": "changed-pass-1"})
    await gw.login("me@mine.example", "changed-pass-1")


async def test_company_admin_cannot_do_owner_things(gw: RunningGateway, owner: str) -> None:
    mine = await tenant(gw, owner, "Mine")
    token = await company_admin(gw, owner, mine["cid"], "me@mine.example")
    me = await call(gw, "GET", "/api/admin/me", token)
    refused = [
        ("POST", "/api/admin/companies", {"name": "New"}),
        ("PATCH", f"/api/admin/companies/{mine['cid']}", {"subscription": {"status": "active"}}),
        ("DELETE", f"/api/admin/companies/{mine['cid']}", None),
        ("POST", "/api/admin/users", {"email": "boss@x.example", "password": "boss-password", "role": "owner"}),
        ("POST", "/api/admin/users", {"email": "mate@x.example", "password": "mate-password",
                                      "companyId": mine["cid"]}),
        ("PATCH", f"/api/admin/users/{me['id']}", {"role": "owner"}),
        ("PATCH", f"/api/admin/users/{me['id']}", {"companyId": None}),
        ("DELETE", f"/api/admin/users/{me['id']}", None),
        ("GET", "/api/admin/nodes", None),
    ]
    for method, path, body in refused:
        answer = await call(gw, method, path, token, body, 403)
        assert "error" in answer, (method, path)
    assert (await call(gw, "GET", "/api/admin/me", token))["role"] == "company_admin"
    assert len(await call(gw, "GET", "/api/admin/companies", owner)) == 1
    assert (await call(gw, "GET", f"/api/admin/companies/{mine['cid']}", owner))["subscription"]["status"] == "active"
