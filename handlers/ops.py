"""Operations endpoints: liveness, readiness and Prometheus metrics (docs/contract.md §5)."""

from __future__ import annotations

from handlers.base import BaseHandler


class HealthHandler(BaseHandler):
    def get(self) -> None:
        self.write_json({"status": "ok", "node": self.gateway.node_id})


class ReadyHandler(BaseHandler):
    async def get(self) -> None:
        checks = await self.gateway.readiness()
        ready = all(v == "ok" for v in checks.values()) and not self.gateway.draining
        self.write_json({"status": "ready" if ready else "unavailable", "checks": checks,
                         "draining": self.gateway.draining}, 200 if ready else 503)


class MetricsHandler(BaseHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.gateway.metrics.render())
