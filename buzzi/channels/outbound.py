"""Outbound HTTP to channel platforms: one aiohttp session per channel, retries with backoff.

Adapters classify a failed response into SendError(retryable=..., retry_after=...); `with_retry`
turns that into exponential backoff with full jitter, honouring Retry-After (capped), and gives
up at once on permanent errors.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp

from buzzi.channels.base import SendError
from buzzi.config import ChannelSettings

T = TypeVar("T")
USER_AGENT = "BuzziGateway/0.1 (+https://buzzi.ai)"


class OutboundHttp:
    """Lazily creates one ClientSession per channel (separate connection pools and limits)."""

    def __init__(self, settings: ChannelSettings) -> None:
        self.settings = settings
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    def session(self, channel: str) -> aiohttp.ClientSession:
        session = self._sessions.get(channel)
        if session is None or session.closed:
            timeout = aiohttp.ClientTimeout(total=self.settings.send_timeout_seconds)
            session = aiohttp.ClientSession(
                timeout=timeout,
                headers={"User-Agent": USER_AGENT},
                connector=aiohttp.TCPConnector(limit=64),
            )
            self._sessions[channel] = session
        return session

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()


def backoff_delay(attempt: int, base: float, cap: float, retry_after: float | None) -> float:
    """Delay before retry number `attempt` (1-based): Retry-After when given, else full jitter."""
    if retry_after is not None and retry_after >= 0:
        return min(retry_after, cap)
    return random.uniform(0, min(cap, base * (2 ** (attempt - 1))))


async def with_retry(
    call: Callable[[], Awaitable[T]],
    *,
    max_attempts: int,
    base: float,
    cap: float,
    on_retry: Callable[[int, SendError, float], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run `call` until it succeeds, fails permanently, or `max_attempts` are spent.
    Network errors and timeouts count as retryable."""
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
