"""Admin login and token checks. Failed logins are throttled per IP and per account on the shared
broker, so the limit holds across the cluster."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from buzzi import clock
from buzzi.auth import InvalidToken, Principal, TokenService
from buzzi.broker.base import KeyValue
from buzzi.crypto import hash_password, sha256_hex, verify_password
from buzzi.errors import Throttled, Unauthorized
from buzzi.models import User
from buzzi.ratelimit import RateLimited, RateLimiter
from buzzi.store.base import Store

# Verified against when the e-mail is unknown, so the answer takes as long as for a wrong password.
_DUMMY_HASH = hash_password("buzzi-dummy-password-for-timing")


class AdminAuth:
    def __init__(self, store: Store, broker: KeyValue, limiter: RateLimiter, tokens: TokenService,
                 attempts_per_minute: int) -> None:
        self.store = store
        self.broker = broker
        self.limiter = limiter
        self.tokens = tokens
        self.attempts = attempts_per_minute

    async def login(self, email: Any, password: Any, ip: str) -> tuple[str, float]:
        """(token, expires_at); Unauthorized with one message for every bad credential."""
        email = email.strip().lower() if isinstance(email, str) else ""
        password = password if isinstance(password, str) else ""
        keys = self._keys(email, ip)
        await self._refuse_if_locked(keys)
        user = await self._find(email) if email else None
        # scrypt costs ~50 ms of CPU: off the event loop, so open streams do not stall.
        ok = await asyncio.to_thread(verify_password, password, user.password_hash if user else _DUMMY_HASH)
        if user is None or not ok:
            await self._count_failure(keys)
            raise Unauthorized("Invalid credentials")
        return self.tokens.issue(user)

    async def authenticate(self, authorization: str | None) -> Principal:
        """The principal of a `Bearer` token, read fresh from the store: a deleted user or a changed role
        takes effect at once, not when the token expires."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized()
        try:
            claims = self.tokens.verify(token.strip())
        except InvalidToken:
            raise Unauthorized() from None
        user = await self.store.get(User, claims.user_id)
        if user is None:
            raise Unauthorized()
        return Principal(user.id, user.email, user.role, user.company_id)

    async def end_session(self, session: str) -> None:
        """Logout of a dashboard session: its token stays valid until it expires, so the session is
        remembered as revoked (on the shared broker, for every node) until then."""
        await self.broker.kv_set(_revoked_key(session), "1", float(self.tokens.ttl))

    async def session_revoked(self, session: str) -> bool:
        return await self.broker.kv_get(_revoked_key(session)) is not None

    async def _find(self, email: str) -> User | None:
        return await self.store.find_one(User, email=email)

    def _keys(self, email: str, ip: str) -> list[tuple[str, str]]:
        # The account key is hashed: e-mail addresses do not belong in broker key names.
        return [("login-ip", ip or "unknown"), ("login-account", sha256_hex(email)[:32])]

    async def _refuse_if_locked(self, keys: list[tuple[str, str]]) -> None:
        # A lock is set once the failures of a window are used up; checking it before the password
        # keeps a correct guess from being told apart while throttled.
        now = clock.now()
        for scope, key in keys:
            until = await self.broker.kv_get(f"lock:{scope}:{key}")
            if until is not None:
                try:
                    remaining = float(until) - now
                except ValueError:
                    remaining = 60.0
                if remaining > 0:
                    raise Throttled(max(1, math.ceil(remaining)))

    async def _count_failure(self, keys: list[tuple[str, str]]) -> None:
        try:
            await self.limiter.check(*((scope, key, self.attempts) for scope, key in keys))
        except RateLimited as exc:
            until = clock.now() + exc.retry_after
            for scope, key in keys:
                if scope == exc.scope:
                    await self.broker.kv_set(f"lock:{scope}:{key}", repr(until), exc.retry_after)
            raise Throttled(exc.retry_after) from None


def _revoked_key(session: str) -> str:
    # Hashed: the session cookie holds a bearer token, which does not belong in broker key names.
    return f"dash-logout:{sha256_hex(session)[:40]}"
