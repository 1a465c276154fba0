"""Prefixed random identifiers: the prefix tells a reader what an id names."""

import secrets

PREFIXES = {
    "company": "c_",
    "agent": "a_",
    "webhook": "wh_",
    "user": "u_",
    "conversation": "cv_",
    "message": "m_",
    "webhook_event": "we_",
    "media": "md_",
}


def new_id(kind: str) -> str:
    # 96 random bits: collisions are out of reach, and ids stay short enough to read in a log.
    return PREFIXES[kind] + secrets.token_hex(12)


def new_session_id() -> str:
    """A web chat session id is a bearer secret: 256 random bits."""
    return "s_" + secrets.token_urlsafe(32)
