"""Throttling of password guessing that nobody can turn into an account lockout.

- Per (account, address): the first `free_attempts` failures cost nothing; after that each further
  try from that pair must wait 1, 2, 4, ... seconds (at most `max_delay`), answered 429 with
  `Retry-After` before the password is looked at. A correct password resets the pair. Another
  address is never delayed by it, so failures from an attacker cannot keep the owner out.
- Per address: at most `per_minute` failures a minute whatever the accounts (spraying one password
  over many accounts), then that address waits out the minute.

State lives in the broker's KeyValue with TTLs: shared by every node, and the memory it takes is
bounded by the per-address limit times the TTL (the in-memory broker reaps expired keys)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from buzzi import clock
from buzzi.broker.base import KeyValue
from buzzi.config import SecuritySettings
from buzzi.crypto import sha256_hex
from buzzi.errors import Throttled
from buzzi.ratelimit import RateLimited, RateLimiter

FIRST_DELAY = 1.0


@dataclass(frozen=True)
class LoginPolicy:
    per_minute: int  # failed logins per address per minute
    free_attempts: int  # failures per (account, address) before delays start
    max_delay: float  # longest delay of one pair, seconds

    @classmethod
    def of(cls, security: SecuritySettings) -> LoginPolicy:
        return cls(security.login_attempts_per_minute, security.login_free_attempts,
                   security.login_max_delay_seconds)


class LoginGuard:
    def __init__(self, kv: KeyValue, limiter: RateLimiter, policy: LoginPolicy) -> None:
        self.kv = kv
        self.limiter = limiter
        self.policy = policy
        # A pair's failure count outlives its longest delay, so waiting it out does not reset it.
        self.memory = max(4 * policy.max_delay, 600.0)

    def delay_after(self, failures: int) -> float:
        """Seconds a pair waits after its `failures`-th failure (0 while still free)."""
        if failures < self.policy.free_attempts:
            return 0.0
        return min(self.policy.max_delay, FIRST_DELAY * 2.0 ** min(failures - self.policy.free_attempts, 40))

    async def check(self, account: str, ip: str) -> None:
        """Before the password is checked: Throttled while the address or the pair must wait, so a
        correct guess cannot be told apart while throttled."""
        now = clock.now()
        for key in (_ip_lock(ip), _pair(account, ip)):
            _, until = _parse(await self.kv.kv_get(key))
            if until > now:
                raise Throttled(max(1, math.ceil(until - now)))

    async def failed(self, account: str, ip: str) -> None:
        """Count a wrong password; Throttled when it used up the address's failures for the minute."""
        key = _pair(account, ip)
        failures, _ = _parse(await self.kv.kv_get(key))
        failures += 1
        delay = self.delay_after(failures)
        await self.kv.kv_set(key, _format(failures, clock.now() + delay if delay else 0.0), self.memory)
        try:
            await self.limiter.check(("login-ip", ip or "unknown", self.policy.per_minute))
        except RateLimited as exc:
            await self.kv.kv_set(_ip_lock(ip), _format(0, clock.now() + exc.retry_after), exc.retry_after)
            raise Throttled(exc.retry_after) from None

    async def succeeded(self, account: str, ip: str) -> None:
        # KeyValue has no delete: a near-zero TTL forgets the pair's failures.
        await self.kv.kv_set(_pair(account, ip), _format(0, 0.0), 0.001)


def _pair(account: str, ip: str) -> str:
    # Hashed: e-mail addresses do not belong in broker key names.
    return f"login-delay:{sha256_hex(f'{account}|{ip}')[:40]}"


def _ip_lock(ip: str) -> str:
    return f"login-ip-lock:{ip or 'unknown'}"


def _format(failures: int, until: float) -> str:
    return f"{failures} {until!r}"


def _parse(value: str | None) -> tuple[int, float]:
    if not value:
        return 0, 0.0
    failures, _, until = value.partition(" ")
    try:
        return int(failures), float(until or 0)
    except ValueError:
        return 0, 0.0
