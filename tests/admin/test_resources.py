"""CRUD of users, companies and agents, with validation errors that name the field."""

from __future__ import annotations

from buzzi import clock
from buzzi.models import Agent
from tests.admin.helpers import FAQ, call, create_agent, create_company
from tests.support.gateway import RunningGateway


async def test_company_crud(gw: RunningGateway, owner: str) -> None:
    created = await create_company(gw, owner, "Acme", subscription={"status": "trialing",
                                                                    "expiresAt": "2030-01-02T03:04:05Z"})
    cid = created["id"]
    assert cid.startswith("c_")
    assert created["subscription"]["status"] == "trialing"
    assert created["subscription"]["expiresAt"] == "2030-01-02T03:04:05Z"
    assert clock.parse_iso(created["createdAt"]) <= clock.now()
    assert await call(gw, "GET", f"/api/admin/companies/{cid}", owner) == created
    patched = await call(gw, "PATCH", f"/api/admin/companies/{cid}", owner, {"subscription": {"status": "past_due"}})
    # Partial: the expiry stays, the name stays.
    assert patched["subscription"]["status"] == "past_due"
    assert patched["subscription"]["expiresAt"] == "2030-01-02T03:04:05Z"
    assert patched["name"] == "Acme" and patched["subscription"]["active"] is False
    renamed = await call(gw, "PATCH", f"/api/admin/companies/{cid}", owner, {"name": "Acme Ltd"})
    assert renamed["name"] == "Acme Ltd"
    assert [c["id"] for c in await call(gw, "GET", "/api/admin/companies", owner)] == [cid]
    await call(gw, "DELETE", f"/api/admin/companies/{cid}", owner, expect=204)
    assert await call(gw, "GET", f"/api/admin/companies/{cid}", owner, expect=404) == {"error": "Not found"}
    await call(gw, "DELETE", f"/api/admin/companies/{cid}", owner, expect=404)


COMPANY_ERRORS = [
    ({"name": "A", "subscription": {"status": "free"}}, "subscription.status"),
    ({"name": "A", "subscription": {"expiresAt": "tomorrow"}}, "subscription.expiresAt"),
    ({"name": "A", "subscription": {"plan": "gold"}}, "subscription.plan"),
    ({"name": "A", "subscription": "active"}, "subscription"),
    ({"name": 42}, "name"),
    ({"name": "  "}, "name"),
    ({}, "name"),
    ({"name": "A", "colour": "red"}, "colour"),
]


async def test_company_validation_names_the_field(gw: RunningGateway, owner: str) -> None:
    for body, field in COMPANY_ERRORS:
        answer = await call(gw, "POST", "/api/admin/companies", owner, body, 400)
        assert answer["field"] == field, (body, answer)
        assert answer["error"].startswith(f"{field}: ")


async def test_subscription_status_error_lists_the_choices(gw: RunningGateway, owner: str) -> None:
    cid = (await create_company(gw, owner))["id"]
    answer = await call(gw, "PATCH", f"/api/admin/companies/{cid}", owner, {"subscription": {"status": "free"}}, 400)
    assert answer == {"error": "subscription.status: must be one of active, trialing, past_due, canceled",
                      "field": "subscription.status"}


async def test_bad_json_is_400(gw: RunningGateway, owner: str) -> None:
    for data in (b"{oops", b"[1, 2]"):
        status, body, _ = await gw.request("POST", "/api/admin/companies", data=data, token=owner)
        assert status == 400 and "error" in body


async def test_agent_crud(gw: RunningGateway, owner: str) -> None:
    cid = (await create_company(gw, owner))["id"]
    agent = await create_agent(gw, owner, cid, allowedOrigins=["https://Shop.example.com", "http://localhost:3000"])
    aid = agent["id"]
    assert aid.startswith("a_") and agent["companyId"] == cid
    assert agent["status"] == "active" and agent["kind"] == "faq"
    assert agent["settings"]["documents"][0]["title"] == "Opening hours"
    assert agent["allowedOrigins"] == ["https://shop.example.com", "http://localhost:3000"]
    base = f"/api/admin/companies/{cid}/agents"
    assert await call(gw, "GET", f"{base}/{aid}", owner) == agent
    patched = await call(gw, "PATCH", f"{base}/{aid}", owner, {"status": "inactive", "name": "Bot"})
    assert (patched["status"], patched["name"], patched["settings"]) == ("inactive", "Bot", agent["settings"])
    assert [a["id"] for a in await call(gw, "GET", base, owner)] == [aid]
    await call(gw, "DELETE", f"{base}/{aid}", owner, expect=204)
    await call(gw, "GET", f"{base}/{aid}", owner, expect=404)
    assert await call(gw, "GET", base, owner) == []
    # An agent id under another company's path is not found.
    other = (await create_company(gw, owner, "Other"))["id"]
    aid2 = (await create_agent(gw, owner, cid))["id"]
    await call(gw, "GET", f"/api/admin/companies/{other}/agents/{aid2}", owner, expect=404)


AGENT_ERRORS = [
    ({"name": "B", "kind": "magic"}, "kind"),
    ({"name": "B", "kind": "faq", "settings": {"documents": "nope", "fallback": "x"}}, "settings.documents"),
    ({"name": "B", "kind": "faq", "settings": {"documents": [{"title": "t"}], "fallback": "x"}},
     "settings.documents[0]"),
    ({"name": "B", "kind": "openai", "settings": {"baseUrl": "ftp://x", "model": "m", "apiKey": "k"}},
     "settings.baseUrl"),
    ({"name": "B", "status": "paused", "settings": FAQ}, "status"),
    ({"name": "B", "settings": FAQ, "allowedOrigins": ["https://ok.example", "not a url"]}, "allowedOrigins[1]"),
    ({"name": "B", "settings": FAQ, "allowedOrigins": "https://ok.example"}, "allowedOrigins"),
    ({"settings": FAQ}, "name"),
    ({"name": "B", "settings": FAQ, "id": "a_mine"}, "id"),
]


async def test_agent_validation_names_the_field(gw: RunningGateway, owner: str) -> None:
    for body, field in AGENT_ERRORS:
        cid = (await create_company(gw, owner))["id"]
        answer = await call(gw, "POST", f"/api/admin/companies/{cid}/agents", owner, body, 400)
        assert answer["field"].startswith(field), (body, answer)
        assert await call(gw, "GET", f"/api/admin/companies/{cid}/agents", owner) == []


async def test_agent_kind_change_is_checked_against_its_settings(gw: RunningGateway, owner: str) -> None:
    cid = (await create_company(gw, owner))["id"]
    agent = await create_agent(gw, owner, cid)
    path = f"/api/admin/companies/{cid}/agents/{agent['id']}"
    answer = await call(gw, "PATCH", path, owner, {"kind": "http"}, 400)
    assert answer["field"].startswith("settings")
    changed = await call(gw, "PATCH", path, owner, {
        "kind": "http", "settings": {"url": "https://svc.example.com/answer",
                                     "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}})
    assert changed["kind"] == "http" and changed["settings"]["url"] == "https://svc.example.com/answer"


async def test_user_crud(gw: RunningGateway, owner: str) -> None:
    cid = (await create_company(gw, owner))["id"]
    user = await call(gw, "POST", "/api/admin/users", owner, {
        "email": "Ann@Example.com", "password": "ann-password", "role": "company_admin", "companyId": cid}, 201)
    assert user["id"].startswith("u_")
    assert (user["email"], user["role"], user["companyId"]) == ("ann@example.com", "company_admin", cid)
    assert "password" not in user and "passwordHash" not in user
    await call(gw, "POST", "/api/admin/users", owner,
               {"email": "ann@example.com", "password": "other-password", "companyId": cid}, 409)
    assert await call(gw, "GET", f"/api/admin/users/{user['id']}", owner) == user
    await call(gw, "PATCH", f"/api/admin/users/{user['id']}", owner, {"password": "new-password-1"})
    await gw.login("ann@example.com", "new-password-1")
    await call(gw, "POST", "/api/admin/login", None, {"email": "ann@example.com", "password": "ann-password"}, 401)
    emails = sorted(u["email"] for u in await call(gw, "GET", "/api/admin/users", owner))
    assert emails == ["admin@localhost", "ann@example.com"]
    await call(gw, "DELETE", f"/api/admin/users/{user['id']}", owner, expect=204)
    await call(gw, "GET", f"/api/admin/users/{user['id']}", owner, expect=404)


USER_ERRORS = [
    ({"email": "not-an-email", "password": "long-enough"}, "email"),
    ({"email": "a@b.c", "password": "short"}, "password"),
    ({"email": "a@b.c", "password": "long-enough", "role": "root"}, "role"),
    ({"email": "a@b.c", "password": "long-enough", "role": "company_admin"}, "companyId"),
    ({"email": "a@b.c", "password": "long-enough", "companyId": "c_nope"}, "companyId"),
    ({"email": "a@b.c", "password": "long-enough", "role": "owner", "companyId": "c_x"}, "companyId"),
    ({"email": "a@b.c", "password": "long-enough", "passwordHash": "x"}, "passwordHash"),
]


async def test_user_validation_names_the_field(gw: RunningGateway, owner: str) -> None:
    for body, field in USER_ERRORS:
        answer = await call(gw, "POST", "/api/admin/users", owner, body, 400)
        assert answer["field"] == field, (body, answer)


async def test_the_last_owner_cannot_be_deleted(gw: RunningGateway, owner: str) -> None:
    me = await call(gw, "GET", "/api/admin/me", owner)
    await call(gw, "DELETE", f"/api/admin/users/{me['id']}", owner, expect=409)
    second = await call(gw, "POST", "/api/admin/users", owner,
                        {"email": "boss2@example.com", "password": "boss-password", "role": "owner"}, 201)
    await call(gw, "DELETE", f"/api/admin/users/{second['id']}", owner, expect=204)
    assert (await call(gw, "GET", "/api/admin/me", owner))["role"] == "owner"


async def test_deleting_a_company_removes_what_it_owns(gw: RunningGateway, owner: str) -> None:
    cid = (await create_company(gw, owner))["id"]
    aid = (await create_agent(gw, owner, cid))["id"]
    await call(gw, "POST", "/api/admin/users", owner,
               {"email": "c@example.com", "password": "company-pass", "companyId": cid}, 201)
    await call(gw, "DELETE", f"/api/admin/companies/{cid}", owner, expect=204)
    emails = [u["email"] for u in await call(gw, "GET", "/api/admin/users", owner)]
    assert emails == ["admin@localhost"]
    assert await gw.store.get(Agent, aid) is None
