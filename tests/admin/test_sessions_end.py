"""Sessions that really end (issue 10 item 4), over HTTP against a running node: a logout revokes
its token, logout everywhere and a password, role or company change or disabling end every older
token of the user, on the API (and, in tests/dashboard/test_session_end.py, on the dashboard)."""

from __future__ import annotations

from tests.admin.helpers import ON_EVERY_STORE, call, create_company
from tests.support.gateway import RunningGateway

PASSWORD = "company-pass-123"


async def _company_admin(gw: RunningGateway, owner: str, cid: str, email: str = "ca@example.com") -> str:
    """The new user's id."""
    body = {"email": email, "password": PASSWORD, "role": "company_admin", "companyId": cid}
    return (await call(gw, "POST", "/api/admin/users", owner, body, 201))["id"]


async def _refused(gw: RunningGateway, token: str) -> None:
    status, body, headers = await gw.request("GET", "/api/admin/me", token=token)
    assert (status, body) == (401, {"error": "Unauthorized"})
    assert headers["WWW-Authenticate"] == "Bearer"


async def test_logout_revokes_only_its_own_token(gw: RunningGateway) -> None:
    first, second = await gw.login(), await gw.login()
    assert first != second  # each token has its own id, even within the same second
    status, body, _ = await gw.request("POST", "/api/admin/logout", token=first)
    assert status == 204, body
    await _refused(gw, first)
    assert (await call(gw, "GET", "/api/admin/me", second))["email"] == "admin@localhost"
    # A revoked token cannot log itself out again either.
    await call(gw, "POST", "/api/admin/logout", first, expect=401)


@ON_EVERY_STORE
async def test_logout_everywhere_ends_every_token_of_the_user(gw: RunningGateway, owner: str) -> None:
    cid = (await create_company(gw, owner))["id"]
    await _company_admin(gw, owner, cid)
    mine = [await gw.login("ca@example.com", PASSWORD) for _ in range(3)]
    await call(gw, "POST", "/api/admin/logout", mine[0], {"everywhere": True}, 204)
    for token in mine:
        await _refused(gw, token)
    await call(gw, "GET", "/api/admin/me", owner)  # another user's session is untouched
    fresh = await gw.login("ca@example.com", PASSWORD)
    await call(gw, "GET", "/api/admin/me", fresh)


async def test_logout_body_is_checked(gw: RunningGateway, owner: str) -> None:
    bad = await call(gw, "POST", "/api/admin/logout", owner, {"everywhere": "yes"}, 400)
    assert bad["field"] == "everywhere"
    assert (await call(gw, "POST", "/api/admin/logout", owner, {"all": True}, 400))["field"] == "all"
    await call(gw, "GET", "/api/admin/me", owner)  # a refused logout ends nothing


@ON_EVERY_STORE
async def test_a_password_change_ends_older_tokens(gw: RunningGateway, owner: str) -> None:
    cid = (await create_company(gw, owner))["id"]
    uid = await _company_admin(gw, owner, cid)
    old = await gw.login("ca@example.com", PASSWORD)
    # The user changes their own password: the token that did it ends too.
    await call(gw, "PATCH", f"/api/admin/users/{uid}", old, {"password": "brand-new-pass-1"})
    await _refused(gw, old)
    newer = await gw.login("ca@example.com", "brand-new-pass-1")
    # An owner resets it: every token from before is refused.
    await call(gw, "PATCH", f"/api/admin/users/{uid}", owner, {"password": "owner-set-pass-2"})
    await _refused(gw, newer)
    await gw.login("ca@example.com", "owner-set-pass-2")


async def test_a_role_or_company_change_ends_older_tokens(gw: RunningGateway, owner: str) -> None:
    a = (await create_company(gw, owner, "A"))["id"]
    b = (await create_company(gw, owner, "B"))["id"]
    uid = await _company_admin(gw, owner, a)
    token = await gw.login("ca@example.com", PASSWORD)
    await call(gw, "PATCH", f"/api/admin/users/{uid}", owner, {"companyId": b})
    await _refused(gw, token)
    token = await gw.login("ca@example.com", PASSWORD)
    await call(gw, "PATCH", f"/api/admin/users/{uid}", owner, {"role": "owner", "companyId": None})
    await _refused(gw, token)
    # Changing only the e-mail does not end the session.
    token = await gw.login("ca@example.com", PASSWORD)
    await call(gw, "PATCH", f"/api/admin/users/{uid}", owner, {"email": "renamed@example.com"})
    assert (await call(gw, "GET", "/api/admin/me", token))["email"] == "renamed@example.com"


async def test_disabling_a_user_ends_its_tokens_and_logins(gw: RunningGateway, owner: str) -> None:
    cid = (await create_company(gw, owner))["id"]
    uid = await _company_admin(gw, owner, cid)
    token = await gw.login("ca@example.com", PASSWORD)
    # Only an owner may disable, and not themselves as the last owner.
    await call(gw, "PATCH", f"/api/admin/users/{uid}", token, {"disabled": True}, 403)
    me = await call(gw, "GET", "/api/admin/me", owner)
    await call(gw, "PATCH", f"/api/admin/users/{me['id']}", owner, {"disabled": True}, 409)
    assert (await call(gw, "PATCH", f"/api/admin/users/{uid}", owner, {"disabled": True}))["disabled"] is True
    await _refused(gw, token)
    assert await call(gw, "POST", "/api/admin/login", None, {"email": "ca@example.com", "password": PASSWORD},
                      401) == {"error": "Invalid credentials"}
    await call(gw, "PATCH", f"/api/admin/users/{uid}", owner, {"disabled": False})
    await _refused(gw, token)  # re-enabling does not bring old tokens back
    await gw.login("ca@example.com", PASSWORD)


async def test_a_deleted_and_recreated_user_does_not_revive_old_tokens(gw: RunningGateway, owner: str) -> None:
    cid = (await create_company(gw, owner))["id"]
    uid = await _company_admin(gw, owner, cid)
    token = await gw.login("ca@example.com", PASSWORD)
    await call(gw, "DELETE", f"/api/admin/users/{uid}", owner, expect=204)
    await _company_admin(gw, owner, cid)  # same e-mail, a new user
    await _refused(gw, token)
