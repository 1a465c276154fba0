"""Coalesce calls made in one event-loop iteration into one round trip, in call order.

The Redis broker's publishes go through this: everything submitted while the loop runs (and while
the previous batch is in flight) leaves as ONE script call, the way Centrifugo's Redis engine
pipelines per loop iteration. One batch is in flight at a time, so batches reach Redis in the order
they were submitted and the per-stream id order follows the call order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """`submit(item)` returns a future of the item's result; `send(items)` runs a whole batch and
    returns one result per item, or raises, which fails every item of that batch.

    An item whose caller was cancelled before its batch left is dropped, not sent. Once its batch
    left, it ran (or failed as a whole) whatever the caller does.
    """

    def __init__(self, send: Callable[[list[T]], Awaitable[list[R]]], max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self._send = send
        self._max_batch = max_batch
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None

    def submit(self, item: T) -> asyncio.Future[R]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append((item, future))
        if self._task is None:
            # Starts after the callbacks already scheduled in this iteration: their submits join.
            self._task = loop.create_task(self._drain())
        return future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                batch = [(item, fut) for item, fut in batch if not fut.done()]  # done = cancelled
                if batch:
                    await self._run(batch)
        finally:
            self._task = None

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._send([item for item, _ in batch])
        except asyncio.CancelledError:
            for _, fut in batch:
                fut.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - every caller of the batch gets the failure
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), result in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(result)

    async def close(self) -> None:
        """Cancel what is queued and the batch in flight."""
        task, self._task = self._task, None
        for _, fut in self._queue:
            fut.cancel()
        self._queue.clear()
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
