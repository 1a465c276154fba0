"""Prefixed random identifiers: the prefix tells a reader what an id names."""

import os
import secrets
import threading

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


# 96 random bits per id: collisions are out of reach, and ids stay short enough to read in a log.
ID_BYTES = 12
# The random bytes of this many ids are read from the OS at once: every os.urandom call releases
# the GIL, and a webhook request takes three ids, each then waiting for the GIL again behind the
# store thread (the intake profile of issue 12 showed it). Same source, same bits, fewer calls.
POOL_IDS = 256


class _Pool:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.data = b""
        self.pos = 0

    def take(self) -> bytes:
        with self.lock:
            if self.pos >= len(self.data):
                self.data, self.pos = os.urandom(ID_BYTES * POOL_IDS), 0
            self.pos += ID_BYTES
            return self.data[self.pos - ID_BYTES:self.pos]

    def forget(self) -> None:
        self.lock = threading.Lock()  # a fork may have copied it held
        self.data, self.pos = b"", 0


_pool = _Pool()
# A forked child must never hand out the parent's pre-read bytes again.
os.register_at_fork(after_in_child=_pool.forget)


def new_id(kind: str) -> str:
    return PREFIXES[kind] + _pool.take().hex()


def new_session_id() -> str:
    """A web chat session id is a bearer secret: 256 random bits."""
    return "s_" + secrets.token_urlsafe(32)
