"""The dashboard shell over plain HTTP: login and logout, the session cookie, CSRF, throttling,
security headers and redirects."""

from __future__ import annotations

import re

from yarl import URL

from tests.dashboard.client import OWNER_EMAIL, DashboardClient, new_http
from tests.support.gateway import RunningGateway, running_gateway


def session_morsel(client: DashboardClient):
    morsel = client.cookie("buzzi_admin")
    assert morsel is not None and morsel.value, "no session cookie"
    return morsel


async def login_set_cookie(client: DashboardClient) -> str:
    """The Set-Cookie header of the session cookie in the login answer (a 303, not followed)."""
    await client.get("/admin/login")
    # Sent by hand: with an https public_url the login CSRF cookie is Secure, and the jar keeps it
    # from this plain-http test server.
    login_csrf = client.cookie("buzzi_login_csrf").value
    async with client.http.post(client.gw.base_url + "/admin/login", allow_redirects=False, data={
        "email": OWNER_EMAIL, "password": "admin-password-123", "_csrf": client.csrf,
    }, headers={"Cookie": f"buzzi_login_csrf={login_csrf}"}) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/admin/companies"
        return next(v for v in resp.headers.getall("Set-Cookie") if v.startswith("buzzi_admin="))


async def test_login_sets_a_strict_httponly_session_cookie(clients) -> None:
    client = clients()
    page = await client.get("/admin/login")
    assert page.status == 200 and 'name="password"' in page.text
    cookie = await login_set_cookie(client)
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie
    assert "Secure" not in cookie  # plain http public_url: a Secure cookie would never come back
    home = await client.get("/admin/companies")
    assert home.status == 200 and OWNER_EMAIL in home.text and "Log out" in home.text


async def test_cookie_is_secure_when_the_public_url_is_https(make_settings) -> None:
    async with running_gateway(make_settings, server={"public_url": "https://gateway.example"}) as gw:
        async with new_http() as http:
            cookie = await login_set_cookie(DashboardClient(gw, http))
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie


async def test_wrong_password_shows_a_friendly_error_and_no_session(clients) -> None:
    client = clients()
    page = await client.login(password="wrong-password", expect=401)
    assert "Wrong e-mail or password" in page.text
    assert client.cookie("buzzi_admin") is None
    assert (await client.get("/admin/companies")).url.split("?")[0].endswith("/admin/login")


async def test_login_is_throttled_per_address(make_settings) -> None:
    async with running_gateway(make_settings, security={"login_attempts_per_minute": 3}) as gw, new_http() as http:
        client = DashboardClient(gw, http)
        statuses = [(await client.login(password=f"wrong-{i}", expect=None)).status for i in range(4)]
        assert statuses == [401, 401, 401, 429]
        assert "Too many attempts" in client.pages[-1].text
        # Even the right password is refused from this address while the lock holds.
        locked = await client.login(expect=429)
        assert "Too many attempts" in locked.text and client.cookie("buzzi_admin") is None


async def test_pages_need_a_session(clients, gw: RunningGateway) -> None:
    client = clients()
    async with client.http.get(gw.base_url + "/admin/companies?x=1", allow_redirects=False) as resp:
        assert resp.status == 302
        assert resp.headers["Location"].startswith("/admin/login?next=%2Fadmin%2Fcompanies%3Fx%3D1")
    assert (await client.post("/admin/companies", {"name": "Nope"}, csrf=False)).status == 401
    # A forged cookie is no session either.
    client.http.cookie_jar.update_cookies({"buzzi_admin": "forged.jwt.value"}, URL(gw.base_url))
    page = await client.get("/admin/companies")
    assert page.url.split("?")[0].endswith("/admin/login")


async def test_login_returns_to_next_but_never_off_site(clients) -> None:
    client = clients()
    await client.get("/admin/login")
    page = await client.post("/admin/login", {"email": OWNER_EMAIL, "password": "admin-password-123",
                                              "next": "/admin/companies/new"})
    assert page.url.endswith("/admin/companies/new")
    other = clients()
    await other.get("/admin/login")
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        page = await other.post("/admin/login", {"email": OWNER_EMAIL, "password": "admin-password-123",
                                                 "next": target})
        assert page.url.endswith("/admin/companies"), (target, page.url)
        await other.post("/admin/logout")
        await other.get("/admin/login")


async def test_root_redirects_to_companies(owner: DashboardClient) -> None:
    page = await owner.get("/admin")
    assert page.status == 200 and page.url.endswith("/admin/companies")


async def test_state_changes_need_the_csrf_token(owner: DashboardClient) -> None:
    no_token = await owner.post("/admin/companies", {"name": "NoToken"}, csrf=False)
    assert no_token.status == 403
    wrong = await owner.post("/admin/companies", {"name": "Wrong", "_csrf": "0" * 64}, csrf=False)
    assert wrong.status == 403
    listing = await owner.get("/admin/companies")
    assert "NoToken" not in listing.text and "Wrong" not in listing.text
    # The header form (static/admin.js Buzzi.post) is accepted like the hidden field.
    token = owner.csrf
    by_header = await owner.request("POST", "/admin/companies", data={"name": "ViaHeader", "status": "active"},
                                    headers={"X-CSRF-Token": token})
    assert by_header.status == 200 and "ViaHeader" in by_header.text
    # The logout form is a state change too.
    assert (await owner.post("/admin/logout", csrf=False)).status == 403


async def test_login_form_needs_its_csrf_token(clients) -> None:
    client = clients()
    await client.get("/admin/login")
    page = await client.post("/admin/login", {"email": OWNER_EMAIL, "password": "admin-password-123"}, csrf=False)
    assert page.status == 403 and client.cookie("buzzi_admin") is None


async def test_csrf_token_is_per_session(clients) -> None:
    first, second = clients(), clients()
    await first.login()
    await second.login()
    assert first.csrf and second.csrf and first.csrf != second.csrf
    refused = await first.post("/admin/companies", {"name": "Crossed", "_csrf": second.csrf}, csrf=False)
    assert refused.status == 403


async def test_logout_ends_the_session_even_for_a_copied_cookie(owner: DashboardClient, clients, gw) -> None:
    stolen = session_morsel(owner).value
    page = await owner.post("/admin/logout")
    assert page.url.split("?")[0].endswith("/admin/login") and "You are logged out" in page.text
    assert owner.cookie("buzzi_admin") is None or not owner.cookie("buzzi_admin").value
    replay = clients()
    replay.http.cookie_jar.update_cookies({"buzzi_admin": stolen}, URL(gw.base_url))
    assert (await replay.get("/admin/companies")).url.split("?")[0].endswith("/admin/login")


async def test_security_headers_on_every_page(owner: DashboardClient, clients) -> None:
    for page in (await clients().get("/admin/login"), await owner.get("/admin/companies"),
                 await owner.get("/admin/nowhere")):
        csp = page.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert page.headers["X-Frame-Options"] == "DENY"
        assert page.headers["Referrer-Policy"] == "same-origin"
        assert page.headers["Cache-Control"] == "no-store"
        assert page.headers["Content-Type"].startswith("text/html")
        # No inline scripts: every <script> has a src on this origin.
        assert all(re.search(r'src="/static/', tag) for tag in re.findall(r"<script[^>]*>", page.text))


async def test_unknown_dashboard_paths_are_html_404_after_login(owner: DashboardClient, clients) -> None:
    page = await owner.get("/admin/nowhere")
    assert page.status == 404 and "Page not found" in page.text
    stranger = await clients().get("/admin/nowhere")
    assert stranger.url.split("?")[0].endswith("/admin/login")


async def test_static_assets_are_served(owner: DashboardClient) -> None:
    for name in ("admin.css", "admin.js"):
        page = await owner.get(f"/static/{name}")
        assert page.status == 200 and len(page.text) > 500
