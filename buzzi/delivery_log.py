"""The webhook delivery log the dashboard shows: one redacted entry per request to a known webhook
(headers by an allow-list, bodies after parsing: buzzi/redaction.py).

Best effort and off the request path: entries are written in batches (one store call takes every
entry that came in while the previous call was in flight, so under load it costs one round trip
per batch, and an idle gateway writes each entry at once), and each webhook's log is trimmed to
its retention now and then rather than on every request.
"""

from __future__ import annotations

import asyncio
import logging

from buzzi.channels.base import WebhookRequest
from buzzi.config import WebhookSettings
from buzzi.ids import new_id
from buzzi.models import Webhook, WebhookEvent
from buzzi.redaction import redact_body, redact_headers
from buzzi.store.base import Store

log = logging.getLogger("buzzi.delivery_log")

# Trimming the log to its retention sorts the kept window: do it every retention/20 entries per
# webhook (at most 5% over the retention) instead of on every request.
PRUNE_FRACTION = 20
# Entries written per store call at most (the rest wait for the next call).
EVENT_BATCH = 200


class DeliveryLog:
    def __init__(self, store: Store, settings: WebhookSettings) -> None:
        self.store = store
        self.retention = settings.event_retention
        self._pending: list[WebhookEvent] = []
        self._unpruned: dict[str, int] = {}  # webhook id -> entries recorded since its last trim
        self._writer: asyncio.Task[None] | None = None

    def record(self, webhook: Webhook, request: WebhookRequest, *, outcome: str, status: int, detail: str,
               message_ids: list[str], latency_ms: float) -> None:
        """Queue one entry (secrets redacted); it is written in the background."""
        self._pending.append(WebhookEvent(
            id=new_id("webhook_event"), webhook_id=webhook.id, company_id=webhook.company_id,
            channel=webhook.channel, outcome=outcome, status_code=status, latency_ms=round(latency_ms, 2),
            received_at=request.now, detail=detail[:500], headers=redact_headers(request.headers),
            body=redact_body(request.body), message_ids=message_ids,
        ))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="delivery-log")

    async def wait_idle(self) -> None:
        """Wait until every queued entry is written (shutdown, tests)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.wait({self._writer})

    async def _write(self) -> None:
        every = max(1, self.retention // PRUNE_FRACTION)
        while self._pending:
            batch, self._pending = self._pending[:EVENT_BATCH], self._pending[EVENT_BATCH:]
            prune = set()
            for event in batch:
                if event.webhook_id is None:
                    continue
                unpruned = self._unpruned.get(event.webhook_id, 0) + 1
                if unpruned >= every:
                    prune.add(event.webhook_id)
                    unpruned = 0
                self._unpruned[event.webhook_id] = unpruned
            try:
                await self.store.add_webhook_events(batch, self.retention, prune=prune)
            except Exception as exc:  # noqa: BLE001 - the delivery log is best effort
                log.warning("could not record %d webhook events: %s", len(batch), exc)
