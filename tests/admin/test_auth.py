"""Login, throttling of failed logins, and the bearer token on every admin route."""

from __future__ import annotations

from buzzi import clock
from buzzi.auth import TokenService
from buzzi.models import User
from tests.admin.helpers import call, create_company
from tests.support.gateway import RunningGateway, running_gateway

BAD = {"email": "admin@localhost", "password": "wrong-password"}


async def test_login_returns_a_working_token(gw: RunningGateway) -> None:
    body = await call(gw, "POST", "/api/admin/login", None,
                      {"email": "Admin@Localhost", "password": "admin-password-123"})
    assert set(body) == {"token", "expiresAt"}
    assert clock.parse_iso(body["expiresAt"]) > clock.now() + 60
    me = await call(gw, "GET", "/api/admin/me", body["token"])
    assert me["email"] == "admin@localhost" and me["role"] == "owner"
    assert "password" not in me and "passwordHash" not in me


async def test_bad_password_and_unknown_email_get_the_same_answer(gw: RunningGateway) -> None:
    wrong = await call(gw, "POST", "/api/admin/login", None, BAD, 401)
    unknown = await call(gw, "POST", "/api/admin/login", None,
                         {"email": "nobody@example.com", "password": "admin-password-123"}, 401)
    missing = await call(gw, "POST", "/api/admin/login", None, {}, 401)
    assert wrong == unknown == missing == {"error": "Invalid credentials"}
    status, body, _ = await gw.request("POST", "/api/admin/login", data=b"{not json")
    assert status == 400 and "error" in body


async def test_failed_logins_are_throttled_per_ip(make_settings) -> None:
    async with running_gateway(make_settings, security={"login_attempts_per_minute": 3}) as gw:
        for i in range(3):
            await call(gw, "POST", "/api/admin/login", None, {"email": f"x{i}@example.com", "password": "nope-nope"},
                       401)
        status, body, headers = await gw.request("POST", "/api/admin/login", json_body=BAD)
        assert status == 429, body
        assert int(headers["Retry-After"]) >= 1
        # Locked out: even the right password is refused, so a guess cannot be confirmed while throttled.
        status, _, _ = await gw.request(
            "POST", "/api/admin/login", json_body={"email": "admin@localhost", "password": "admin-password-123"})
        assert status == 429


async def test_admin_routes_need_a_valid_token(gw: RunningGateway, secret_key: str) -> None:
    expired = TokenService(secret_key, -120).issue(await gw.store.find_one(User, email="admin@localhost"))[0]
    forged = TokenService("another-secret-key", 3600).issue(await gw.store.find_one(User, email="admin@localhost"))[0]
    for path in ("/api/admin/companies", "/api/admin/users", "/api/admin/conversations", "/api/admin/sessions",
                 "/api/admin/webhook-events", "/api/admin/nodes", "/api/admin/no-such-thing"):
        for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Bearer garbage"},
                        {"Authorization": f"Bearer {expired}"}, {"Authorization": f"Bearer {forged}"},
                        {"Authorization": f"Basic {expired}"}):
            status, body, _ = await gw.request("GET", path, headers=headers)
            assert (status, body) == (401, {"error": "Unauthorized"}), (path, headers)


async def test_unknown_admin_path_is_404_once_authenticated(gw: RunningGateway, owner: str) -> None:
    assert await call(gw, "GET", "/api/admin/no-such-thing", owner, expect=404) == {"error": "Not found"}


async def test_token_of_a_deleted_user_is_refused(gw: RunningGateway, owner: str) -> None:
    company = await create_company(gw, owner)
    user = await call(gw, "POST", "/api/admin/users", owner, {
        "email": "temp@example.com", "password": "temp-password", "companyId": company["id"]}, 201)
    token = await gw.login("temp@example.com", "temp-password")
    await call(gw, "GET", "/api/admin/me", token)
    await call(gw, "DELETE", f"/api/admin/users/{user['id']}", owner, expect=204)
    assert await call(gw, "GET", "/api/admin/me", token, expect=401) == {"error": "Unauthorized"}
