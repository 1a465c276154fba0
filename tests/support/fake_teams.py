"""A local stand-in for the Bot Framework: OpenID metadata + JWKS (our own RSA keys), the
client-credentials token endpoint (Microsoft Entra ID), and the connector's conversations API.

    async with FakeTeams() as bf:
        key = bf.add_key("k1", endorsements=["msteams"])
        token = key.mint({"aud": APP_ID, "serviceurl": bf.service_url})
        bf.register_app(TENANT, APP_ID, "secret")  # from then on the login server checks credentials
        ... ChannelSettings teams_openid_url=bf.openid_url, teams_token_url=bf.token_url ...

The login server answers refusals like Entra ID: HTTP 400 (401 when the client failed to
authenticate) with {"error", "error_description": "AADSTSnnnn: ...\\r\\nTrace ID: ...", "error_codes",
"timestamp", "trace_id", "correlation_id", "error_uri"} [learn.microsoft.com previous-versions
dn645548 "Token Issuance Endpoint Errors"; Entra reference-error-codes]. The connector answers an
activity over the size limit (its JSON in UTF-16 bytes) with 413 MessageSizeTooBig
[msteams-docs format-your-bot-messages].
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.fake_telegram import Answer, FakeApi, Recorded

ISSUER = "https://api.botframework.com"
MESSAGE_LIMIT_BYTES = 100 * 1024  # "the bot message size limit is 100 KB", counted in UTF-16
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
        # tenant -> {app id: client secret}; empty: every token request succeeds (no login checks).
        self.apps: dict[str, dict[str, str]] = {}
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

    def register_app(self, tenant: str, app_id: str, secret: str) -> None:
        self.apps.setdefault(tenant, {})[app_id] = secret

    def _token(self, request: Recorded) -> Answer:
        tenant = request.path.split("/")[-4]  # /{tenant}/oauth2/v2.0/token
        form = request.form
        app_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if self.apps and tenant not in self.apps:
            return _entra_error(400, "invalid_request", 90002,
                                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
                                "and are signing into the correct cloud. Check with your subscription "
                                "administrator, this may happen if there are no active subscriptions for the "
                                "tenant.")
        if self.apps and app_id not in self.apps[tenant]:
            return _entra_error(400, "unauthorized_client", 700016,
                                f"Application with identifier '{app_id}' was not found in the directory "
                                f"'{tenant}'. This can happen if the application has not been installed by the "
                                "administrator of the tenant or consented to by any user in the tenant. You may "
                                "have sent your authentication request to the wrong tenant.")
        if self.apps and self.apps[tenant][app_id] != secret:
            return _entra_error(401, "invalid_client", 7000215,
                                "Invalid client secret provided. Ensure the secret being sent in the request is "
                                "the client secret value, not the client secret ID, for a secret added to app "
                                f"'{app_id}'.")
        self._issued += 1
        return Answer(json={"token_type": "Bearer", "expires_in": self.token_lifetime,
                            "ext_expires_in": self.token_lifetime, "access_token": f"bf-token-{self._issued}"},
                      content_type="application/json; charset=utf-8")

    def _activity(self, request: Recorded) -> Answer:
        size = len(request.body.decode("utf-8").encode("utf-16-le"))
        if size > MESSAGE_LIMIT_BYTES:
            return Answer(413, {"error": {"code": "MessageSizeTooBig",
                                          "message": f"Activity of {size} bytes exceeds the message size limit."}})
        self._replies += 1
        return Answer(201, {"id": f"reply-{self._replies}"})

    def default(self, request: Recorded) -> Answer:
        if request.path.endswith("/.well-known/openidconfiguration"):
            return Answer(json={"issuer": ISSUER, "jwks_uri": f"{self.url}/v1/.well-known/keys",
                                "id_token_signing_alg_values_supported": ["RS256"]})
        if request.path.endswith("/.well-known/keys"):
            return Answer(json={"keys": self.published})
        if request.path.endswith("/oauth2/v2.0/token"):
            return self._token(request)
        if "/v3/conversations/" in request.path and request.method == "POST":
            return self._activity(request)
        return Answer(404, {"error": {"code": "NotFound", "message": "not scripted"}})


def _entra_error(status: int, error: str, code: int, description: str) -> Answer:
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    return Answer(status, {
        "error": error,
        "error_description": f"AADSTS{code}: {description}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}"
                             f"\r\nTimestamp: {stamp}",
        "error_codes": [code], "timestamp": stamp, "trace_id": trace, "correlation_id": correlation,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }, content_type="application/json; charset=utf-8")
