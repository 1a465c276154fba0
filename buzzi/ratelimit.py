"""Rate limits on top of the broker's atomic fixed-window counter, so one limit holds for every
node sharing the broker (docs/contract.md §3: checked and counted atomically, shared by all nodes)."""

from __future__ import annotations

from buzzi.broker.base import RateCounters
from buzzi.config import LimitSettings
from buzzi.errors import Throttled
from buzzi.metrics import Metrics

WINDOW_SECONDS = 60.0


class RateLimited(Throttled):
    def __init__(self, scope: str, retry_after: int) -> None:
        super().__init__(retry_after, "Rate limit exceeded")
        self.scope = scope


class RateLimiter:
    def __init__(self, broker: RateCounters, limits: LimitSettings, metrics: Metrics) -> None:
        self.broker = broker
        self.limits = limits
        self.metrics = metrics

    async def check(self, *scopes: tuple[str, str, int]) -> None:
        """Count one hit in each (scope, key, limit); raise RateLimited at the first refusal."""
        # One broker call for all scopes (with Redis, one script call for every check of the loop
        # iteration); the scopes after a refusal are not counted, as before.
        decisions = await self.broker.hit_all([(f"rl:{scope}:{key}", limit, WINDOW_SECONDS)
                                               for scope, key, limit in scopes])
        for (scope, _, _), decision in zip(scopes, decisions, strict=False):  # none after a refusal
            if not decision.allowed:
                self.metrics.rate_limited.labels(scope).inc()
                raise RateLimited(scope, max(1, int(decision.retry_after + 0.999)))

    async def check_chat(self, company_id: str, session_key: str, ip: str) -> None:
        await self.check(
            ("ip", ip, self.limits.ip_per_minute),
            ("session", session_key, self.limits.session_per_minute),
            ("company", company_id, self.limits.company_per_minute),
        )

    async def check_session_start(self, company_id: str, ip: str) -> None:
        """New web chat sessions have their own budget, per address and per company, apart from the
        company's message budget: anyone can start sessions (company and agent ids are public), and
        a flood of them must not get the company's webhooks and live chats a 429 (docs/contract.md §5)."""
        await self.check(
            ("session_start_ip", ip, self.limits.sessions_per_ip_per_minute),
            ("session_start_company", company_id, self.limits.sessions_per_company_per_minute),
        )

    async def check_webhook(self, company_id: str, webhook_id: str) -> None:
        await self.check(
            ("webhook", webhook_id, self.limits.webhook_per_minute),
            ("company", company_id, self.limits.company_per_minute),
        )
