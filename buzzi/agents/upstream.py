"""How failures talking to an upstream (LLM API, company service) become one `error` event.

The messages are shown to end users, so they say what happened in general terms and never
carry upstream bodies, URLs with credentials, or keys; details go to the log.
"""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp

from buzzi.events import AgentEvent, error
from buzzi.netguard import blocked_cause

UNAVAILABLE = "upstream_unavailable"
RATE_LIMITED = "upstream_rate_limited"
UPSTREAM_ERROR = "upstream_error"
AUTH = "upstream_auth"
REJECTED = "upstream_rejected"
PROTOCOL = "upstream_protocol"
MISCONFIGURED = "agent_misconfigured"
BLOCKED = "upstream_blocked"

# Upstreams are other people's servers: bound what one answer may make us hold in memory.
MAX_BODY_BYTES = 2_000_000
MAX_ANSWER_CHARS = 200_000
# After json.loads a surrogate code point can only be a lone one (escaped pairs are joined).
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class UpstreamFailure(Exception):
    """Raised inside a runner to end the run with exactly one error event."""

    def __init__(self, code: str, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable

    def event(self) -> AgentEvent:
        return error(self.code, self.message, self.retryable)


def for_status(status: int, what: str) -> UpstreamFailure:
    """Map a non-2xx HTTP status from `what` ("The AI service", ...) to a failure."""
    if status == 429:
        return UpstreamFailure(RATE_LIMITED, f"{what} is rate limiting requests (HTTP 429)", True)
    if status >= 500:
        return UpstreamFailure(UPSTREAM_ERROR, f"{what} failed (HTTP {status})", True)
    if status in (401, 403):
        return UpstreamFailure(AUTH, f"{what} refused the credentials (HTTP {status})", False)
    return UpstreamFailure(REJECTED, f"{what} rejected the request (HTTP {status})", False)


def for_exception(exc: BaseException, what: str) -> UpstreamFailure:
    """Network-level failures: retryable, the service may be back in a moment; except an address
    the network policy refuses, which stays refused until an operator changes the settings."""
    blocked = blocked_cause(exc)
    if blocked is not None:
        return UpstreamFailure(BLOCKED, f"{what} was not called: {blocked}", False)
    if isinstance(exc, TimeoutError):  # aiohttp's ServerTimeoutError is one too
        return UpstreamFailure(UNAVAILABLE, f"{what} timed out", True)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamFailure(UNAVAILABLE, f"{what} closed the connection mid-answer", True)
    return UpstreamFailure(UNAVAILABLE, f"{what} is unreachable", True)


def protocol(what: str, detail: str) -> UpstreamFailure:
    return UpstreamFailure(PROTOCOL, f"{what} sent a malformed answer ({detail})", False)


def truncated(what: str) -> UpstreamFailure:
    return UpstreamFailure(UPSTREAM_ERROR, f"{what} ended the answer early", True)


def too_long(what: str) -> UpstreamFailure:
    return UpstreamFailure(PROTOCOL, f"{what} sent an answer longer than {MAX_ANSWER_CHARS} characters", False)


async def read_body(resp: aiohttp.ClientResponse, what: str) -> bytes:
    """The whole (non-streamed) body, refusing one over MAX_BODY_BYTES."""
    raw = await resp.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise protocol(what, "the answer is too large")
    return raw


def parse_json(raw: str | bytes) -> Any:
    """json.loads, with every lone UTF-16 surrogate in keys and strings replaced by U+FFFD. JSON
    lets "\\ud800" through, but UTF-8 cannot encode it: stored or streamed, it would break the
    reply for good. Raises ValueError like json.loads."""
    data = json.loads(raw)
    if isinstance(data, str):
        return _LONE_SURROGATE.sub("\ufffd", data)
    pending = [data] if isinstance(data, dict | list) else []
    while pending:  # iterative: nesting as deep as json.loads allows cannot exhaust the stack here
        node = pending.pop()
        if isinstance(node, dict):
            for key in [k for k in node if _LONE_SURROGATE.search(k)]:
                node[_LONE_SURROGATE.sub("\ufffd", key)] = node.pop(key)
            slots: Any = node.items()
        else:
            slots = enumerate(node)
        for slot, value in list(slots):
            if isinstance(value, str):
                if _LONE_SURROGATE.search(value):
                    node[slot] = _LONE_SURROGATE.sub("\ufffd", value)
            elif isinstance(value, dict | list):
                pending.append(value)
    return data
