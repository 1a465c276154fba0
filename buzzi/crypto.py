"""Keys derived from BUZZI_SECRET_KEY, encryption of stored credentials, and password hashing."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import secrets
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def derive_key(secret_key: str, purpose: str, length: int = 32) -> bytes:
    """One master secret, a separate key per purpose: a leaked token key never decrypts credentials."""
    return HKDF(
        algorithm=hashes.SHA256(), length=length, salt=b"buzzi-gateway", info=purpose.encode()
    ).derive(secret_key.encode())


class SecretBox:
    """Encrypts values (any JSON) at rest; ciphertexts are prefixed so plaintext is never mistaken for one."""

    PREFIX = "enc:v1:"

    def __init__(self, secret_key: str) -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(derive_key(secret_key, "credentials-at-rest")))
        # Every webhook request reads its channel config; decrypting the same ciphertexts again
        # costs more than the rest of the lookup. Plaintexts are cached as bytes so callers always
        # get fresh objects they may mutate.
        self._decrypt = functools.lru_cache(maxsize=4096)(self._decrypt_uncached)

    def _decrypt_uncached(self, token: str) -> bytes:
        return self._fernet.decrypt(token.encode())

    def seal(self, value: Any) -> str | None:
        if value is None:
            return None
        token = self._fernet.encrypt(json.dumps(value, separators=(",", ":")).encode())
        return self.PREFIX + token.decode()

    def open(self, sealed: str | None) -> Any:
        if sealed is None:
            return None
        if not isinstance(sealed, str) or not sealed.startswith(self.PREFIX):
            raise ValueError("not a sealed value")
        try:
            return json.loads(self._decrypt(sealed[len(self.PREFIX):]))
        except InvalidToken:
            raise ValueError("sealed with another secret key") from None


# scrypt parameters: 16 MiB of memory per hash, ~50 ms on this class of machine.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt_hex, digest_hex = encoded.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt_hex), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest.hex(), digest_hex)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()

