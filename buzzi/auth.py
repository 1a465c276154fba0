"""Admin API tokens: short-lived HS256 JWTs signed with a key derived from BUZZI_SECRET_KEY."""

from __future__ import annotations

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

    @property
    def is_owner(self) -> bool:
        return self.role == "owner"

    def can_access(self, company_id: str | None) -> bool:
        return self.is_owner or (company_id is not None and company_id == self.company_id)


class TokenService:
    def __init__(self, secret_key: str, ttl_seconds: int) -> None:
        self._key = derive_key(secret_key, "admin-tokens")
        self.ttl = ttl_seconds

    def issue(self, user: User) -> tuple[str, float]:
        now = clock.now()
        expires = now + self.ttl
        claims = {
            "iss": ISSUER, "sub": user.id, "email": user.email, "role": user.role,
            "cid": user.company_id, "iat": int(now), "exp": int(expires),
        }
        return jwt.encode(claims, self._key, algorithm="HS256"), expires

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(token, self._key, algorithms=["HS256"], issuer=ISSUER,
                                options={"require": ["exp", "sub", "iss"]})
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from None
        return Principal(claims["sub"], claims.get("email", ""), claims.get("role", ""), claims.get("cid"))
