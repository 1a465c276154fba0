"""Admin API tokens: short-lived HS256 JWTs signed with a key derived from BUZZI_SECRET_KEY.

Each token carries a random id (`jti`, revoked one by one at logout) and the user's session version
(`sv`, a random value on the user that logout-everywhere, a password, role or company change and
disabling replace, so every older token of that user stops working at once)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import jwt

from buzzi import clock
from buzzi.crypto import derive_key
from buzzi.models import User

ISSUER = "buzzi-gateway"


class InvalidToken(Exception):
    pass


@dataclass(frozen=True)
class Principal:
    user_id: str
    email: str
    role: str
    company_id: str | None
    token_id: str = ""  # the jti of the token this request came with
    expires_at: float = 0.0  # when that token expires (how long its revocation must be remembered)

    @property
    def is_owner(self) -> bool:
        return self.role == "owner"

    def can_access(self, company_id: str | None) -> bool:
        return self.is_owner or (company_id is not None and company_id == self.company_id)


@dataclass(frozen=True)
class TokenClaims:
    user_id: str
    token_id: str
    session_version: str
    expires_at: float


def new_session_version() -> str:
    """Random rather than a counter: two concurrent bumps can never write the same value, so a token
    issued from a user read before the last bump is always refused."""
    return secrets.token_urlsafe(12)


class TokenService:
    def __init__(self, secret_key: str, ttl_seconds: int) -> None:
        self._key = derive_key(secret_key, "admin-tokens")
        self._nonce_key = derive_key(secret_key, "dashboard-session-nonce")
        self.ttl = ttl_seconds

    def issue(self, user: User) -> tuple[str, float]:
        now = clock.now()
        expires = now + self.ttl
        claims = {
            "iss": ISSUER, "sub": user.id, "email": user.email, "role": user.role,
            "cid": user.company_id, "iat": int(now), "exp": int(expires),
            "jti": secrets.token_urlsafe(16), "sv": user.session_version,
        }
        return jwt.encode(claims, self._key, algorithm="HS256"), expires

    def verify(self, token: str) -> TokenClaims:
        try:
            claims = jwt.decode(token, self._key, algorithms=["HS256"], issuer=ISSUER,
                                options={"require": ["exp", "sub", "iss", "jti"]})
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from None
        sub, jti, sv = claims["sub"], claims["jti"], claims.get("sv", "")
        if not all(isinstance(x, str) for x in (sub, jti, sv)):
            raise InvalidToken("malformed claims")
        return TokenClaims(sub, jti, sv, float(claims["exp"]))

    def session_nonce(self, token_id: str) -> str:
        """The dashboard cookie's nonce for a token: bound to its jti by an HMAC, so a cookie is only
        valid with the nonce the gateway gave it (a bare JWT or `<jwt>~anything` is no session)."""
        return hmac.new(self._nonce_key, token_id.encode(), hashlib.sha256).hexdigest()[:32]
