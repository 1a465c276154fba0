"""Dashboard sessions that really end (issue 10 item 4), over HTTP against a running node: the
cookie's nonce is bound to its token, a logout revokes the token behind the cookie (as a Bearer
token too), and logout everywhere or a password change ends every other session of the user."""

from __future__ import annotations

from yarl import URL

from buzzi.models import Agent
from tests.admin.helpers import call
from tests.dashboard.client import DashboardClient
from tests.dashboard.forms import create_agent, create_company, field_error
from tests.support.gateway import RunningGateway


def _logged_out(page) -> bool:
    return page.url.split("?")[0].endswith("/admin/login")


def _cookie(client: DashboardClient) -> str:
    return client.cookie("buzzi_admin").value


def _set_cookie(client: DashboardClient, gw: RunningGateway, value: str) -> None:
    client.http.cookie_jar.update_cookies({"buzzi_admin": value}, URL(gw.base_url + "/admin"))


async def test_the_cookie_nonce_is_bound_to_its_token(owner: DashboardClient, clients, gw: RunningGateway) -> None:
    token, _, nonce = _cookie(owner).partition("~")
    assert token and len(nonce) >= 32
    other = clients()
    for forged in (f"{token}~anything", f"{token}~{nonce[:-1]}x", token, f"{token}~"):
        _set_cookie(other, gw, forged)
        assert _logged_out(await other.get("/admin/companies")), forged
    assert not _logged_out(await owner.get("/admin/companies"))


async def test_logout_ends_the_cookie_and_its_token(owner: DashboardClient, clients, gw: RunningGateway) -> None:
    cookie = _cookie(owner)
    token = cookie.partition("~")[0]
    assert (await owner.post("/admin/logout")).url.endswith("flash=logged-out")
    replay = clients()
    for value in (cookie, f"{token}~anything"):
        _set_cookie(replay, gw, value)
        assert _logged_out(await replay.get("/admin/companies")), value
    status, _, _ = await gw.request("GET", "/api/admin/me", token=token)
    assert status == 401


async def test_logout_everywhere_ends_the_other_sessions(clients, gw: RunningGateway) -> None:
    laptop, phone = clients(), clients()
    await laptop.login()
    await phone.login()
    api = await gw.login()
    await laptop.get("/admin/companies")
    await laptop.post("/admin/logout", {"everywhere": "1"})
    assert _logged_out(await phone.get("/admin/companies"))
    assert (await gw.request("GET", "/api/admin/me", token=api))[0] == 401


async def test_a_password_change_ends_dashboard_sessions(clients, gw: RunningGateway) -> None:
    owner = await gw.login()
    cid = (await call(gw, "POST", "/api/admin/companies", owner, {"name": "Acme"}, 201))["id"]
    user = await call(gw, "POST", "/api/admin/users", owner, {
        "email": "ca@example.com", "password": "company-pass-123", "companyId": cid}, 201)
    client = clients()
    await client.login("ca@example.com", "company-pass-123")
    assert not _logged_out(await client.get(f"/admin/companies/{cid}"))
    await call(gw, "PATCH", f"/api/admin/users/{user['id']}", owner, {"password": "another-pass-456"})
    assert _logged_out(await client.get(f"/admin/companies/{cid}"))


async def test_the_agent_form_needs_the_key_again_for_a_new_base_url(owner: DashboardClient, gw) -> None:
    cid = await create_company(owner)
    api_key = "sk-live-owner-set-key-123456"
    form = {"name": "Llm", "kind": "openai", "status": "active", "baseUrl": "https://llm.example/v1",
            "model": "gpt-x", "allowedOrigins": ""}
    aid = await create_agent(owner, cid, **{**form, "apiKey": api_key})
    await owner.get(f"/admin/companies/{cid}/agents/{aid}/edit")
    page = await owner.post(f"/admin/companies/{cid}/agents/{aid}",
                            {**form, "baseUrl": "https://attacker.example.net/v1", "apiKey": ""})
    assert page.status == 400 and "baseUrl" in (field_error(page, "settings.apiKey") or "")
    assert api_key not in page.text
    assert (await gw.store.get(Agent, aid)).settings["baseUrl"] == "https://llm.example/v1"
    page = await owner.post(f"/admin/companies/{cid}/agents/{aid}",
                            {**form, "baseUrl": "https://own.example.net/v1", "apiKey": "sk-typed-again-7890"})
    assert page.status == 200 and "flash=saved" in page.url
    stored = (await gw.store.get(Agent, aid)).settings
    assert stored["baseUrl"] == "https://own.example.net/v1" and stored["apiKey"] == "sk-typed-again-7890"
