"""How failures talking to an upstream (LLM API, company service) become one `error` event.

The messages are shown to end users, so they say what happened in general terms and never
carry upstream bodies, URLs with credentials, or keys; details go to the log.
"""

from __future__ import annotations

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
