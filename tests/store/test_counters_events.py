"""Counters and the webhook delivery log."""

from __future__ import annotations

import asyncio

from buzzi.models import WebhookEvent
from buzzi.store import Store
from tests.store.factories import event


async def test_incr_counter(store: Store) -> None:
    assert await store.incr_counter("tickets") == 1
    assert await store.incr_counter("tickets", 5) == 6
    assert await store.incr_counter("other") == 1
    assert await store.incr_counter("tickets", -2) == 4


async def test_incr_counter_concurrently_loses_nothing(stores: list[Store]) -> None:
    values = await asyncio.gather(*(s.incr_counter("hits") for s in stores for _ in range(10)))
    assert sorted(values) == list(range(1, 41))
    assert await stores[0].incr_counter("hits", 0) == 40


async def test_webhook_events_are_pruned_to_retention(store: Store) -> None:
    for i in range(6):
        await store.add_webhook_event(event("wh_1", received_at=100.0 + i), retention=3)
    await store.add_webhook_event(event("wh_2", received_at=50.0), retention=3)
    for i in range(4):
        await store.add_webhook_event(event(None, received_at=10.0 + i), retention=3)  # no webhook: kept

    kept = await store.find(WebhookEvent, order_by="received_at", webhook_id="wh_1")
    assert [e.received_at for e in kept] == [103.0, 104.0, 105.0]
    assert await store.count(WebhookEvent, webhook_id="wh_2") == 1
    assert await store.count(WebhookEvent, webhook_id=None) == 4


async def test_concurrent_pruning_never_removes_the_newest(stores: list[Store]) -> None:
    await asyncio.gather(*(
        s.add_webhook_event(event("wh_1", received_at=float(n * 10 + i)), retention=5)
        for i, s in enumerate(stores) for n in range(5)
    ))
    kept = {e.received_at for e in await stores[0].find(WebhookEvent, webhook_id="wh_1")}
    assert {33.0, 40.0, 41.0, 42.0, 43.0} <= kept
    await stores[0].add_webhook_event(event("wh_1", received_at=1000.0), retention=5)
    kept_after = await stores[0].find(WebhookEvent, order_by="received_at", webhook_id="wh_1")
    assert [e.received_at for e in kept_after] == [40.0, 41.0, 42.0, 43.0, 1000.0]
