"""Outbound HTTP to channel platforms: one aiohttp session per channel, retries with backoff.

Platform API calls go to the operator's configured API bases (trusted); URLs a tenant or a payload
chose (custom callbackUrl, inbound media URLs) go through `tenant_session`, whose connector enforces
the network policy (buzzi/netguard.py).

Adapters classify a failed response into SendError(retryable=..., retry_after=...); `with_retry`
turns that into exponential backoff with full jitter and gives up at once on permanent errors.
Retry-After (HTTP) and Telegram's `parameters.retry_after` are a "not before" (docs/channels.md
§8a; Telegram Bot API "ResponseParameters": "the number of seconds left to wait before the
request can be repeated"): a retry never goes earlier, whatever the backoff cap, and a wait longer
than the caller may hold a worker becomes SendLater, a durable reschedule.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp

from buzzi.channels.base import SendError
from buzzi.config import ChannelSettings
from buzzi.guarded_http import connector
from buzzi.netguard import NetPolicy, blocked_cause

T = TypeVar("T")
USER_AGENT = "BuzziGateway/0.1 (+https://buzzi.ai)"


class SendLater(Exception):
    """A send may not go out for longer than is worth holding a worker (a Retry-After past the
    backoff cap, a pair rate limit measured in minutes): the caller reschedules it durably for
    `delay` seconds from now instead of sleeping. Retry-After is a "not before": never earlier."""

    def __init__(self, error: SendError, delay: float, attempts: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.delay = delay
        self.attempts = attempts


class OutboundHttp:
    """Lazily creates one ClientSession per channel (separate connection pools and limits), and
    one more per channel for tenant-chosen URLs."""

    def __init__(self, settings: ChannelSettings, net_policy: NetPolicy | None = None) -> None:
        self.settings = settings
        self.net_policy = net_policy if net_policy is not None else NetPolicy()
        self._sessions: dict[tuple[str, bool], aiohttp.ClientSession] = {}

    def session(self, channel: str) -> aiohttp.ClientSession:
        """For the channel's platform API (the operator's configured base URLs)."""
        return self._session(channel, guarded=False)

    def tenant_session(self, channel: str) -> aiohttp.ClientSession:
        """For URLs a tenant or an inbound payload supplied: non-public addresses are refused."""
        return self._session(channel, guarded=True)

    def _session(self, channel: str, *, guarded: bool) -> aiohttp.ClientSession:
        session = self._sessions.get((channel, guarded))
        if session is None or session.closed:
            timeout = aiohttp.ClientTimeout(total=self.settings.send_timeout_seconds)
            policy = self.net_policy if guarded else NetPolicy(allow_private=True)
            session = aiohttp.ClientSession(
                timeout=timeout,
                headers={"User-Agent": USER_AGENT},
                connector=connector(policy, limit=64),
            )
            self._sessions[(channel, guarded)] = session
        return session

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()


def backoff_delay(attempt: int, base: float, cap: float, retry_after: float | None) -> float:
    """Delay before retry number `attempt` (1-based): full jitter up to `cap`, but never less than
    a Retry-After, which the cap does not shorten (it is the platform's "not before")."""
    jitter = random.uniform(0, min(cap, base * (2 ** (attempt - 1))))
    if retry_after is not None and retry_after >= 0:
        return max(retry_after, jitter)
    return jitter


async def with_retry(
    call: Callable[[], Awaitable[T]],
    *,
    max_attempts: int,
    base: float,
    cap: float,
    inline_wait: float | None = None,
    on_retry: Callable[[int, SendError, float], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run `call` until it succeeds, fails permanently, or `max_attempts` are spent.
    Network errors and timeouts count as retryable. A retry that must wait longer than
    `inline_wait` seconds (None: no limit) raises SendLater(error, delay, attempts) instead of
    sleeping: the caller reschedules the send durably, not before `delay` from now."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except SendError as exc:
            error = exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = SendError(f"network error: {exc.__class__.__name__}: {exc}", retryable=True)
        if not error.retryable or attempt >= max_attempts:
            error.attempts = attempt  # type: ignore[attr-defined]
            raise error
        delay = backoff_delay(attempt, base, cap, error.retry_after)
        if inline_wait is not None and delay > inline_wait:
            raise SendLater(error, delay, attempt) from error
        if on_retry is not None:
            on_retry(attempt, error, delay)
        await sleep(delay)


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP-date: rare on these APIs; fall back to backoff


class MediaTooLargeError(Exception):
    """An inbound attachment is larger than channels.media_max_bytes; it was not kept."""


async def read_limited(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """The response body, refusing early (Content-Length) or as soon as more than `max_bytes` arrived,
    so a huge or endless body never sits in memory."""
    if response.content_length is not None and response.content_length > max_bytes:
        raise MediaTooLargeError(f"media is {response.content_length} bytes, limit {max_bytes}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise MediaTooLargeError(f"media exceeds the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def blocked_error(exc: BaseException, what: str) -> SendError | None:
    """A permanent SendError when `exc` is the network policy refusing the address: retrying
    cannot help until an operator allows it."""
    blocked = blocked_cause(exc)
    if blocked is None:
        return None
    return SendError(f"{what} {blocked}", retryable=False, code="blocked")


def status_error(what: str, status: int, retry_after: str | None = None) -> SendError:
    """The generic HTTP classification: 429 and 5xx are worth retrying, anything else is not."""
    return SendError(f"{what}: HTTP {status}", retryable=status == 429 or status >= 500,
                     retry_after=parse_retry_after(retry_after), status=status)


async def download(session: aiohttp.ClientSession, url: str, max_bytes: int,
                   headers: dict[str, str] | None = None) -> tuple[bytes, str | None]:
    """GET a media URL: (bytes, mime type), at most `max_bytes`; SendError on a non-2xx answer.
    Redirects are followed (CDN media URLs use them); aiohttp drops Authorization on a hop to
    another origin, so a token never leaks to a redirect target. On a tenant session every hop's
    address is checked, so a redirect to a private address is refused like a direct URL."""
    try:
        async with session.get(url, headers=headers or {}) as response:
            if not 200 <= response.status < 300:
                raise status_error("media download", response.status, response.headers.get("Retry-After"))
            body = await read_limited(response, max_bytes)
            mime = response.headers.get("Content-Type")
            return body, (mime.split(";")[0].strip() or None) if mime else None
    except aiohttp.ClientError as exc:
        blocked = blocked_error(exc, "media download")
        if blocked is None:
            raise
        raise blocked from None
