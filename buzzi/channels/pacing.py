"""Sends stay inside each platform's documented throughput: every adapter declares its
SendLimits, and the delivery path paces every send through one SendPacing (token buckets per key).

Limits declared on the adapters (docs/channels.md): WhatsApp 80 messages/s per business number (§2.3;
exceeding it returns 130429; a webhook's settings.throughput states an upgraded number's level, up to
1,000), Messenger and Instagram 300 Send API calls/s per Page or IG account
(§3.3, §4.2), Telegram about 1 message/s per chat with bursts and 30/s per bot (§5), Slack about
1 message/s per channel (§6), Teams 7 operations/s and 60/30 s per conversation (§7.4).

Not paced: WhatsApp's per-user "pair" limit (about 1 message per 6 s to one user, bursts
allowed). Enforcing it would hold a split reply back 6 s per part, which is worse for a chat
than the rare 131056 error, which is retryable and goes through with_retry's backoff.

The pacer is per process. Within one node, a number's throughput is per number, not per process:
with several answer processes (inbox.processes = N) each paces an account at rate / N (`share`), so
together they stay within the platform's rate without a shared bucket (no Redis round trip per send).
The price: an account whose sends all land on one process gets 1/N of its rate from it. The per-chat
limits are not divided: a conversation is answered by one process at a time (order deferral,
buzzi/processing.py), so its sends come from one pacer anyway. Separate nodes are not coordinated:
N nodes together may reach N times the rate; the platform's rate-limit errors are classified
retryable, so the overflow is retried instead of lost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from buzzi.channels.base import ChannelAdapter, ReplyTarget
    from buzzi.models import Webhook


@dataclass(frozen=True)
class SendLimits:
    """A channel's documented send limits; None where the platform documents none."""

    per_chat: float | None = None  # sends per second to one chat
    chat_burst: float = 1.0
    # Sends per second per sending account (a bot, an app, a Page, a business number), across its chats.
    per_account: float | None = None


class Pacer:
    """`rate` acquisitions per second per key, with bursts up to `burst`.

    A caller reserves its token before it waits (the balance may go negative), so concurrent
    callers queue up fairly without a lock: asyncio runs the bookkeeping without interleaving.
    """

    def __init__(self, rate: float, burst: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 max_keys: int = 10_000) -> None:
        if rate <= 0:
            raise ValueError("rate must be greater than 0")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self._clock = clock
        self._sleep = sleep
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    async def acquire(self, key: str) -> float:
        """Take one token for `key`, waiting when the bucket is empty; returns the wait in seconds."""
        now = self._clock()
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate) - 1
        if len(self._buckets) >= self._max_keys and key not in self._buckets:
            self._prune(now)
        self._buckets[key] = (tokens, now)
        wait = -tokens / self.rate if tokens < 0 else 0.0
        if wait > 0:
            await self._sleep(wait)
        return wait

    def _prune(self, now: float) -> None:
        """Forget keys whose bucket has refilled: they behave exactly like unseen keys."""
        for key, (tokens, at) in list(self._buckets.items()):
            if tokens + (now - at) * self.rate >= self.burst:
                del self._buckets[key]


class SendPacing:
    """One place that paces every channel's sends by the limits its adapter declares.

    Buckets are kept per channel and scope; an account's key is what the adapter names with
    `pacing_account` (WhatsApp: the business number; elsewhere: the webhook, one bot or Page).
    """

    def __init__(self, *, share: int = 1, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        if share < 1:
            raise ValueError("share must be at least 1")
        self.share = share  # the answer processes of the node, each pacing accounts at rate / share
        self._clock = clock
        self._sleep = sleep
        self._pacers: dict[tuple[str, str, float], Pacer] = {}

    async def pace(self, adapter: ChannelAdapter, webhook: Webhook, target: ReplyTarget) -> None:
        """Wait as needed to stay within the adapter's per-chat and per-account limits."""
        limits = adapter.send_limits
        if limits.per_chat is not None:
            pacer = self._pacer(adapter.channel, "chat", limits.per_chat, limits.chat_burst)
            await pacer.acquire(f"{webhook.id}:{target.chat_id}")
        # The account's own rate where its webhook states one (a WhatsApp number upgraded to 1,000/s).
        rate = adapter.account_rate(webhook)
        if rate is not None:
            pacer = self._pacer(adapter.channel, "account", rate / self.share, None)
            await pacer.acquire(adapter.pacing_account(webhook, target))

    def _pacer(self, channel: str, scope: str, rate: float, burst: float | None) -> Pacer:
        # One Pacer per rate: accounts at different levels each keep their own bucket size.
        key = (channel, scope, rate)
        pacer = self._pacers.get(key)
        if pacer is None:
            pacer = self._pacers[key] = Pacer(rate, burst, clock=self._clock, sleep=self._sleep)
        return pacer
