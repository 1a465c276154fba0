"""Prometheus metrics: only what the code really measures. One registry per Gateway so tests
running several gateways in one process do not collide.

Every label value comes from a fixed set (route class names, status codes, channel names, agent
kinds, outcomes) or is mapped into one here: nothing a client chooses becomes a label, or every
made-up value would add a time series until restart (docs/contract.md "Public endpoints under
hostile load")."""

from __future__ import annotations

import re
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase

M = TypeVar("M", bound=MetricWrapperBase)

# RFC 9110 §9 methods plus PATCH; Tornado answers any other token with 405.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})


def method_label(method: str | None) -> str:
    """The `method` label: the method when it is a known one, else "other"."""
    return method if method in KNOWN_METHODS else "other"


# Why an inbound event was not answered: short snake_case words the adapters and the intake choose
# ("receipt", "echo", "edit_recorded"...). Anything else is "other", and so is any reason past the
# first DROP_REASONS_MAX this process has seen: a bug that put payload text in a reason cannot add
# time series without end.
DROP_REASON = re.compile(r"[a-z][a-z0-9_]{0,39}")
DROP_REASONS_MAX = 64


def drop_reason(reason: object) -> str:
    """The bounded form of a drop reason: itself when it is snake_case of at most 40 characters, else "other"."""
    return reason if isinstance(reason, str) and DROP_REASON.fullmatch(reason) else "other"


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
        self.webhook_drops = Counter(
            "buzzi_webhook_drops_total", "Inbound webhook events deliberately not answered, by channel and reason",
            ["channel", "reason"], registry=r,
        )
        self._drop_reasons: set[str] = set()
        self._children: dict[tuple[MetricWrapperBase, tuple[str, ...]], MetricWrapperBase] = {}
        self.delivery_log_dropped = Counter(
            "buzzi_delivery_log_dropped_total",
            "Delivery-log entries dropped unwritten because the store fell behind a flood", registry=r,
        )
        # Platform receipts of our sends (buzzi/receipts.py); status from RECEIPT_STATUSES, else "other".
        self.delivery_receipts = Counter(
            "buzzi_delivery_receipts_total", "Delivery receipts of our sends by channel and status",
            ["channel", "status"], registry=r,
        )

    def labelled(self, metric: M, *values: str) -> M:
        """`metric.labels(*values)`, remembered: labels() takes a lock and builds its key on every
        call, several times per request. Label values come from bounded sets (see above), so does
        this memory."""
        key = (metric, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child  # type: ignore[return-value]

    def count_drops(self, channel: str, drops: dict[str, int]) -> None:
        """Count the events of one delivery that were not answered (channel already a label value)."""
        for reason, count in drops.items():
            label = drop_reason(reason)
            if label not in self._drop_reasons:
                if len(self._drop_reasons) >= DROP_REASONS_MAX:
                    label = "other"
                self._drop_reasons.add(label)
            self.labelled(self.webhook_drops, channel, label).inc(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
