"""The webhook delivery log the dashboard shows: one redacted entry per request to a known webhook
(headers by an allow-list, bodies after parsing: buzzi/redaction.py).

Best effort and off the request path: a request only appends its facts to a bounded buffer. The
writer redacts them (before anything is stored) and writes them in batches: one store call takes
every entry that came in while the previous call was in flight, so under load it costs one round
trip per batch, and an idle gateway writes each entry at once. Each webhook's log is trimmed to its
retention now and then rather than on every request. When the store falls behind a flood, the
oldest waiting entries are dropped (counted in buzzi_delivery_log_dropped_total, with a warning):
the buffer never grows without bound and a request never waits for the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import NamedTuple

from buzzi.channels.base import WebhookRequest
from buzzi.config import WebhookSettings
from buzzi.ids import new_id
from buzzi.metrics import Metrics
from buzzi.models import Webhook, WebhookEvent
from buzzi.redaction import PARSE_LIMIT, redact_body, redact_headers
from buzzi.store.base import Store

log = logging.getLogger("buzzi.delivery_log")

# Trimming the log to its retention sorts the kept window (1-3 ms on SQLite at 1,000 entries): do
# it every retention/5 entries per webhook (at most 20% over the retention), not on every request.
# Every retention/20 cost ~30 us of store time per webhook request at full intake (bench/webhook_bench.py).
PRUNE_FRACTION = 5
# Entries written per store call at most (the rest wait for the next call).
EVENT_BATCH = 200
# Entries waiting for the writer at most, and their body bytes at most: past either, the oldest go.
PENDING_MAX = 10_000
PENDING_BYTES_MAX = 32 * 1024 * 1024
# A flood drops entries by the thousand: one warning per this many seconds says how many.
DROP_WARNING_SECONDS = 10.0
# The writer redacts on the event loop: it lets other work run after this much of it.
REDACT_SLICE_SECONDS = 0.005


class _Entry(NamedTuple):
    """A request's facts as received; redacted by the writer."""

    webhook: Webhook
    headers: dict[str, str]
    body: bytes
    received_at: float
    outcome: str
    status: int
    detail: str
    message_ids: list[str]
    latency_ms: float


class DeliveryLog:
    def __init__(self, store: Store, settings: WebhookSettings, metrics: Metrics) -> None:
        self.store = store
        self.retention = settings.event_retention
        self.metrics = metrics
        self._pending: deque[_Entry] = deque()
        self._pending_bytes = 0
        self._dropped_unreported = 0
        self._warned_at = -DROP_WARNING_SECONDS
        self._unpruned: dict[str, int] = {}  # webhook id -> entries recorded since its last trim
        self._writer: asyncio.Task[None] | None = None

    def record(self, webhook: Webhook, request: WebhookRequest, *, outcome: str, status: int, detail: str,
               message_ids: list[str], latency_ms: float) -> None:
        """Queue one entry; it is redacted and written in the background."""
        body = request.body
        if len(body) > PARSE_LIMIT:
            # redact_body reads only the excerpt of a body this large (and no more than its length
            # decides that): keeping a bit more than the limit gives the same result in less memory.
            body = body[:PARSE_LIMIT + 1]
        while self._pending and (len(self._pending) >= PENDING_MAX
                                 or self._pending_bytes + len(body) > PENDING_BYTES_MAX):
            self._drop_oldest()
        self._pending.append(_Entry(webhook, request.headers, body, request.now, outcome, status, detail,
                                    message_ids, latency_ms))
        self._pending_bytes += len(body)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="delivery-log")

    def _drop_oldest(self) -> None:
        self._pending_bytes -= len(self._pending.popleft().body)
        self.metrics.delivery_log_dropped.inc()
        self._dropped_unreported += 1
        now = time.monotonic()
        if now - self._warned_at >= DROP_WARNING_SECONDS:
            log.warning("delivery log behind the request rate: dropped the %d oldest entries",
                        self._dropped_unreported)
            self._warned_at, self._dropped_unreported = now, 0

    async def wait_idle(self) -> None:
        """Wait until every queued entry is written (shutdown, tests)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.wait({self._writer})

    async def _write(self) -> None:
        while self._pending:
            batch = [self._pending.popleft() for _ in range(min(EVENT_BATCH, len(self._pending)))]
            self._pending_bytes -= sum(len(entry.body) for entry in batch)
            events = await self._redacted(batch)
            try:
                await self.store.add_webhook_events(events, self.retention, prune=self._due_for_trim(events))
            except Exception as exc:  # noqa: BLE001 - the delivery log is best effort
                log.warning("could not record %d webhook events: %s", len(events), exc)

    @staticmethod
    async def _redacted(batch: list[_Entry]) -> list[WebhookEvent]:
        """The entries as stored: secrets redacted. A body that needs parsing can take a while, so
        the loop gets a turn every REDACT_SLICE_SECONDS."""
        events = []
        started = time.perf_counter()
        for entry in batch:
            webhook = entry.webhook
            events.append(WebhookEvent(
                id=new_id("webhook_event"), webhook_id=webhook.id, company_id=webhook.company_id,
                channel=webhook.channel, outcome=entry.outcome, status_code=entry.status,
                latency_ms=round(entry.latency_ms, 2), received_at=entry.received_at, detail=entry.detail[:500],
                headers=redact_headers(entry.headers), body=redact_body(entry.body), message_ids=entry.message_ids,
            ))
            if time.perf_counter() - started > REDACT_SLICE_SECONDS:
                await asyncio.sleep(0)
                started = time.perf_counter()
        return events

    def _due_for_trim(self, events: list[WebhookEvent]) -> set[str]:
        """The webhooks whose log is to be trimmed to its retention with this batch."""
        every = max(1, self.retention // PRUNE_FRACTION)
        prune = set()
        for event in events:
            if event.webhook_id is None:
                continue
            unpruned = self._unpruned.get(event.webhook_id, 0) + 1
            if unpruned >= every:
                prune.add(event.webhook_id)
                unpruned = 0
            self._unpruned[event.webhook_id] = unpruned
        return prune
