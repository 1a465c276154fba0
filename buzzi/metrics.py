"""Prometheus metrics: only what the code really measures. One registry per Gateway so tests
running several gateways in one process do not collide.

Every label value comes from a fixed set (route class names, status codes, channel names, agent
kinds, outcomes) or is mapped into one here: nothing a client chooses becomes a label, or every
made-up value would add a time series until restart (docs/contract.md "Public endpoints under
hostile load")."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# RFC 9110 §9 methods plus PATCH; Tornado answers any other token with 405.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})


def method_label(method: str | None) -> str:
    """The `method` label: the method when it is a known one, else "other"."""
    return method if method in KNOWN_METHODS else "other"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "buzzi_http_requests_total", "HTTP requests by route and status", ["route", "method", "status"], registry=r
        )
        self.http_latency = Histogram(
            "buzzi_http_request_duration_seconds", "HTTP request latency by route", ["route"], registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.sse_streams = Gauge("buzzi_sse_streams_open", "Open SSE streams on this node", registry=r)
        self.sse_events = Counter("buzzi_sse_events_sent_total", "SSE events written to clients", registry=r)
        self.webhooks = Counter(
            "buzzi_webhook_requests_total", "Webhook requests by channel and outcome", ["channel", "outcome"],
            registry=r,
        )
        self.agent_runs = Counter(
            "buzzi_agent_runs_total", "Agent runs by kind and result", ["kind", "result"], registry=r
        )
        self.agent_latency = Histogram(
            "buzzi_agent_first_event_seconds", "Time from claim to the agent's first event", ["kind"], registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.channel_sends = Counter(
            "buzzi_channel_sends_total", "Outbound channel sends by channel and result", ["channel", "result"],
            registry=r,
        )
        self.rate_limited = Counter("buzzi_rate_limited_total", "Requests refused by a rate limit", ["scope"],
                                    registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
