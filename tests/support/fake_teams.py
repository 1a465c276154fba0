"""A local stand-in for the Bot Framework: OpenID metadata + JWKS (our own RSA keys), the
client-credentials token endpoint, and the connector's conversations API.

    async with FakeTeams() as bf:
        key = bf.add_key("k1", endorsements=["msteams"])
        token = key.mint({"aud": APP_ID, "serviceurl": bf.service_url})
        ... ChannelSettings teams_openid_url=bf.openid_url, teams_token_url=bf.token_url ...
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.fake_telegram import Answer, FakeApi, Recorded

ISSUER = "https://api.botframework.com"
_PRIVATE: list[rsa.RSAPrivateKey] = []  # RSA generation is slow-ish: one key pair per process and kid order


def _private_key(index: int) -> rsa.RSAPrivateKey:
    while len(_PRIVATE) <= index:
        _PRIVATE.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return _PRIVATE[index]


@dataclass
class SigningKey:
    kid: str
    private: rsa.RSAPrivateKey
    jwk: dict[str, Any]

    def mint(self, claims: dict[str, Any], *, kid: str | None = None, alg: str = "RS256") -> str:
        now = int(time.time())
        payload = {"iss": ISSUER, "iat": now, "nbf": now, "exp": now + 3600, **claims}
        return jwt.encode(payload, self.private, algorithm=alg, headers={"kid": kid or self.kid})


class FakeTeams(FakeApi):
    def __init__(self) -> None:
        super().__init__()
        self.keys: list[SigningKey] = []
        self.published: list[dict[str, Any]] = []  # the JWKS as served (tests rotate it)
        self.token_lifetime = 3600
        self._issued = 0
        self._replies = 0

    @property
    def openid_url(self) -> str:
        return f"{self.url}/v1/.well-known/openidconfiguration"

    @property
    def token_url(self) -> str:
        return f"{self.url}/botframework.com/oauth2/v2.0/token"

    @property
    def service_url(self) -> str:
        return f"{self.url}/amer/"

    def add_key(self, kid: str, endorsements: list[str] | None = None, publish: bool = True) -> SigningKey:
        private = _private_key(len(self.keys))
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
        jwk.update({"kid": kid, "use": "sig"})
        if endorsements is not None:
            jwk["endorsements"] = endorsements
        key = SigningKey(kid, private, jwk)
        self.keys.append(key)
        if publish:
            self.published.append(jwk)
        return key

    def default(self, request: Recorded) -> Answer:
        if request.path.endswith("/.well-known/openidconfiguration"):
            return Answer(json={"issuer": ISSUER, "jwks_uri": f"{self.url}/v1/.well-known/keys",
                                "id_token_signing_alg_values_supported": ["RS256"]})
        if request.path.endswith("/.well-known/keys"):
            return Answer(json={"keys": self.published})
        if request.path.endswith("/oauth2/v2.0/token"):
            self._issued += 1
            return Answer(json={"token_type": "Bearer", "expires_in": self.token_lifetime,
                                "ext_expires_in": self.token_lifetime, "access_token": f"bf-token-{self._issued}"})
        if "/v3/conversations/" in request.path and request.method == "POST":
            self._replies += 1
            return Answer(201, {"id": f"reply-{self._replies}"})
        return Answer(404, {"error": {"code": "NotFound", "message": "not scripted"}})
