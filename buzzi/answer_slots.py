"""How many answers the inbox worker runs at once, lowered while the event loop is saturated.

In one process intake and answering share one interpreter (one GIL, one event loop). The
platforms time out on intake, never on an answer: while a burst of webhooks saturates the loop,
every answer started meanwhile takes CPU from the acknowledgements. So the worker's answer slots
have a limit that a governor moves with the measured loop lag: a timer that should fire every
LAG_SAMPLE_SECONDS and fires late, on a running average, by more than `busy_lag` means the loop is
saturated, and the limit halves (down to a floor of at least 1: answers always progress); a lag
under half of that means the loop is idle again, and the limit doubles back to the configured concurrency. The
burst is acknowledged first and answered right after. At normal load the lag stays far below the
threshold and the limit never moves, so a chat answer starts exactly as before.

Lowering the limit never interrupts a running answer: it only holds back the next ones.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

LAG_SAMPLE_SECONDS = 0.05  # 20 timer wake-ups a second: negligible next to any request
SMOOTHING = 0.3            # weight of a new sample in the running lag: one slow callback is no burst
IDLE_FRACTION = 0.5        # lag under busy_lag * this counts as idle (the band between holds the limit)


class AnswerSlots:
    """A counting limiter like asyncio.Semaphore whose limit can change while slots are held."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    def locked(self) -> bool:
        return self.in_use >= self.limit

    def try_acquire(self) -> bool:
        """Take a slot now if one is free (and nobody queued before us); never suspends."""
        if self.locked() or self._waiters:
            return False
        self.in_use += 1
        return True

    async def acquire(self) -> None:
        if self.try_acquire():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # resolved by _wake with the slot already counted as ours
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed to us as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self.in_use -= 1
        self._wake()

    def set_limit(self, limit: int) -> None:
        self.limit = limit
        self._wake()

    def _wake(self) -> None:
        """Hand free slots to the waiters in arrival order (counted at once, so nobody overtakes)."""
        while self._waiters and self.in_use < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_use += 1
                waiter.set_result(None)


class LoopLagGovernor:
    """Moves an AnswerSlots limit between `floor` and `ceiling` with the event loop's lag."""

    def __init__(self, slots: AnswerSlots, ceiling: int, floor: int, busy_lag: float) -> None:
        self.slots = slots
        self.ceiling = ceiling
        self.floor = max(1, min(floor, ceiling))  # never 0: answers must progress
        self.busy_lag = busy_lag
        self.lag = 0.0     # the running (smoothed) lag, seconds
        self.lowered = 0  # how often the limit went down: what tests and benches read
        self._task: asyncio.Task[None] | None = None

    def observe(self, lag: float) -> int:
        """One lag sample (seconds a timer fired late): set and return the new limit."""
        self.lag += SMOOTHING * (lag - self.lag)
        limit = self.slots.limit
        if self.lag >= self.busy_lag and limit > self.floor:
            limit = max(self.floor, limit // 2)
            self.lowered += 1
        elif self.lag < self.busy_lag * IDLE_FRACTION and limit < self.ceiling:
            limit = min(self.ceiling, limit * 2)
        if limit != self.slots.limit:
            self.slots.set_limit(limit)
        return limit

    def start(self) -> None:
        if self.busy_lag > 0 and self.floor < self.ceiling:
            self._task = asyncio.create_task(self._sample(), name="answer-slots-governor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + LAG_SAMPLE_SECONDS
            await asyncio.sleep(LAG_SAMPLE_SECONDS)
            self.observe(loop.time() - due)
