"""Admin login, token checks and the end of sessions.

A token is refused (401) when its signature or expiry is wrong, its user is gone or disabled, its
session version is not the user's current one (logout everywhere, a password, role or company
change, disabling), or its id was revoked by a logout (kept in the broker's KeyValue, for every
node, until the token would have expired anyway). The user is read from the store on every request
anyway, so the version check costs nothing more and is never stale."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

from buzzi import clock
from buzzi.admin import validation as v
from buzzi.admin.login_guard import LoginGuard
from buzzi.auth import InvalidToken, Principal, TokenService, new_session_version
from buzzi.broker.base import KeyValue
from buzzi.crypto import hash_password, sha256_hex, verify_password
from buzzi.errors import Unauthorized
from buzzi.models import User
from buzzi.store.base import Store

# Verified against when the e-mail is unknown, so the answer takes as long as for a wrong password.
_DUMMY_HASH = hash_password("buzzi-dummy-password-for-timing")
# Between the JWT and the nonce in the dashboard cookie; never in a JWT (base64url and dots).
SESSION_SEP = "~"
# Tokens are checked without leeway; the revocation outlives the expiry a little for clock skew.
REVOCATION_MARGIN = 60.0


class AdminAuth:
    def __init__(self, store: Store, broker: KeyValue, tokens: TokenService, guard: LoginGuard) -> None:
        self.store = store
        self.broker = broker
        self.tokens = tokens
        self.guard = guard

    async def login(self, email: Any, password: Any, ip: str) -> tuple[str, float]:
        """(token, expires_at); Unauthorized with one message for every bad credential."""
        email = email.strip().lower() if isinstance(email, str) else ""
        password = password if isinstance(password, str) else ""
        account = sha256_hex(email)[:32]
        await self.guard.check(account, ip)
        user = await self.store.find_one(User, email=email) if email else None
        # scrypt costs ~50 ms of CPU: off the event loop, so open streams do not stall.
        ok = await asyncio.to_thread(verify_password, password, user.password_hash if user else _DUMMY_HASH)
        if user is None or not ok:
            await self.guard.failed(account, ip)
            raise Unauthorized("Invalid credentials")
        await self.guard.succeeded(account, ip)
        if user.disabled:
            # Told apart only once the password is right: a disabled account is no oracle for guessing.
            raise Unauthorized("Invalid credentials")
        return self.tokens.issue(user)

    async def authenticate(self, authorization: str | None) -> Principal:
        """The principal of a `Bearer` token, read fresh from the store: a deleted user or a changed role
        takes effect at once, not when the token expires."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized()
        return await self._principal(token.strip())

    def session_cookie(self, token: str) -> str:
        """The dashboard cookie for a freshly issued token: the token and its bound nonce."""
        return f"{token}{SESSION_SEP}{self.tokens.session_nonce(self.tokens.verify(token).token_id)}"

    async def authenticate_session(self, cookie: str) -> Principal:
        """The principal of a dashboard cookie; Unauthorized unless its nonce is the one bound to its token."""
        token, sep, nonce = cookie.partition(SESSION_SEP)
        if not token or not sep or not nonce:
            raise Unauthorized()
        try:
            claims = self.tokens.verify(token)
        except InvalidToken:
            raise Unauthorized() from None
        if not hmac.compare_digest(nonce.encode(), self.tokens.session_nonce(claims.token_id).encode()):
            raise Unauthorized()
        return await self._principal(token)

    async def logout(self, principal: Principal, everywhere: bool = False) -> None:
        """End the session this principal's token belongs to (API token or dashboard cookie alike);
        with `everywhere`, every token of the user."""
        ttl = max(1.0, principal.expires_at - clock.now() + REVOCATION_MARGIN)
        await self.broker.kv_set(_revoked_key(principal.token_id), "1", ttl)
        if everywhere:
            await self.store.update(User, principal.user_id, {"session_version": new_session_version()})

    async def _principal(self, token: str) -> Principal:
        try:
            claims = self.tokens.verify(token)
        except InvalidToken:
            raise Unauthorized() from None
        user = await self.store.get(User, claims.user_id)
        if user is None or user.disabled or not hmac.compare_digest(
                user.session_version.encode(), claims.session_version.encode()):
            raise Unauthorized()
        if await self.broker.kv_get(_revoked_key(claims.token_id)) is not None:
            raise Unauthorized()
        return Principal(user.id, user.email, user.role, user.company_id, claims.token_id, claims.expires_at)


def logout_everywhere(data: Any) -> bool:
    """The body of `POST /api/admin/logout`: empty, or `{"everywhere": true}` to end every session of the user."""
    data = v.body_object(data)
    v.only(data, ("everywhere",))
    return v.boolean(data.get("everywhere", False), "everywhere")


def _revoked_key(token_id: str) -> str:
    return f"token-revoked:{token_id}"
