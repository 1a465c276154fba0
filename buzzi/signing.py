"""Webhook signature schemes shared by inbound verification and outbound signing.

All comparisons are constant time; all HMACs run over the raw bytes as received or sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

STANDARD_PREFIX = "whsec_"


def new_standard_secret() -> str:
    """A Standard Webhooks secret: whsec_ + base64 of 32 random bytes."""
    return STANDARD_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _standard_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(STANDARD_PREFIX))


def standard_sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value (v1 scheme) for one message."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_standard_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def standard_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": standard_sign(secret, msg_id, timestamp, body),
    }


def standard_verify(secret: str, msg_id: str, timestamp: str, signatures: str, body: bytes,
                    now: float, tolerance: float) -> bool:
    """True if any v1 entry of the space-separated signature list matches and the timestamp is
    within `tolerance` seconds of `now`. Unknown versions are ignored (key rotation, v1a)."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs(now - ts) > tolerance:
        return False
    try:
        expected = standard_sign(secret, msg_id, ts, body).split(",", 1)[1]
    except (ValueError, TypeError):
        return False
    ok = False
    for entry in (signatures or "").split():
        version, _, sig = entry.partition(",")
        if version == "v1" and hmac.compare_digest(sig.encode(), expected.encode()):
            ok = True  # keep looping: the time taken must not depend on which entry matched
    return ok


def hub_signature(secret: str, body: bytes) -> str:
    """Meta's X-Hub-Signature-256 value."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def hub_verify(secret: str, header: str | None, body: bytes) -> bool:
    if not header or not secret:
        return False
    return hmac.compare_digest(header.strip().lower().encode(), hub_signature(secret, body).encode())


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    base = f"v0:{timestamp}:".encode() + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def slack_verify(secret: str, timestamp: str | None, header: str | None, body: bytes,
                 now: float, tolerance: float) -> bool:
    if not timestamp or not header or not secret:
        return False
    try:
        if abs(now - int(timestamp)) > tolerance:
            return False
    except ValueError:
        return False
    return hmac.compare_digest(header.encode(), slack_signature(secret, timestamp, body).encode())
