"""Local delivery, the same for every backend: a node hands live events to its own consumers through
these whatever carries the events between nodes."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable

from buzzi.broker.base import StreamEvent, Subscription, SubscriptionClosed


class LocalSubscription(Subscription):
    """A bounded queue of live events for one consumer on this node.

    Not an asyncio.Queue: that costs three deques and an Event (about 3 KiB) per subscriber, and
    most subscribers (open chat streams) sit idle. Here the deque exists only while events wait,
    and one future wakes the single reader."""

    __slots__ = ("_deadline", "_items", "_maxsize", "_on_close", "_timeout", "_timer", "_waiter", "closed", "sink",
                 "stream")

    def __init__(self, stream: str, maxsize: int, on_close: Callable[[LocalSubscription], None]) -> None:
        self.stream = stream
        self.closed = False
        self._items: deque[StreamEvent] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._maxsize = maxsize
        self._on_close = on_close
        # get(timeout): one timer that outlives the waits and is only moved when it fires, so a
        # busy stream pays no timer per event (arming and cancelling one per get did cost).
        self._deadline = 0.0
        self._timeout: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.sink: Callable[[StreamEvent], bool] | None = None

    def push(self, event: StreamEvent) -> None:
        if self.closed:
            return
        items = self._items
        if items is None:
            waiter, sink = self._waiter, self.sink
            if sink is not None and waiter is not None and not waiter.done() and sink(event):
                # Taken while the consumer waits: no wake-up, and its silence starts over.
                if self._timeout is not None:
                    self._deadline = waiter.get_loop().time() + self._timeout
                return
            items = self._items = deque()
        elif len(items) >= self._maxsize:
            # Cut the slow consumer off rather than buffer without bound; it resumes from the log.
            self.close()
            return
        items.append(event)
        self._wake()

    async def get(self, timeout: float | None = None) -> StreamEvent:
        loop = asyncio.get_running_loop()
        self._timeout = timeout
        self._deadline = math.inf if timeout is None else loop.time() + timeout
        while True:
            if self.closed:
                raise SubscriptionClosed(self.stream)
            items = self._items
            if items:
                event = items.popleft()
                if not items:
                    self._items = None  # an idle subscriber holds no buffer
                return event
            if self._timer is None and timeout is not None:
                self._timer = loop.call_at(self._deadline, self._on_timer)
            waiter = self._waiter = loop.create_future()
            try:
                await waiter  # cancelling this leaves queued events in place
            finally:
                self._waiter = None

    def _on_timer(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # nobody waits: the next get(timeout) arms a timer again
        if self._deadline == math.inf:
            return  # the waiting get has no timeout
        loop = asyncio.get_running_loop()
        if loop.time() >= self._deadline:
            waiter.set_exception(TimeoutError())
        else:  # the waiting get started after this timer was armed: wait out its own deadline
            self._timer = loop.call_at(self._deadline, self._on_timer)

    def pending(self) -> int:
        return len(self._items) if self._items and not self.closed else 0

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._items = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._wake()
        self._on_close(self)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class SubscriberRegistry:
    """This node's live subscriptions by stream; tells the owner when a stream gains its first
    subscriber or loses its last (the Redis broker (un)subscribes the channel then)."""

    def __init__(
        self,
        on_first: Callable[[str], None] | None = None,
        on_last: Callable[[str], None] | None = None,
    ) -> None:
        self.by_stream: dict[str, set[LocalSubscription]] = {}
        self._on_first = on_first
        self._on_last = on_last

    def add(self, stream: str, maxsize: int) -> LocalSubscription:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        sub = LocalSubscription(stream, maxsize, self._remove)
        subs = self.by_stream.get(stream)
        if subs is None:
            subs = self.by_stream[stream] = set()
            if self._on_first:
                self._on_first(stream)
        subs.add(sub)
        return sub

    def _remove(self, sub: LocalSubscription) -> None:
        subs = self.by_stream.get(sub.stream)
        if subs is None or sub not in subs:
            return
        subs.discard(sub)
        if not subs:
            del self.by_stream[sub.stream]
            if self._on_last:
                self._on_last(sub.stream)

    def deliver(self, stream: str, event: StreamEvent) -> None:
        # A copy: an overflowing subscription removes itself while we iterate.
        for sub in list(self.by_stream.get(stream, ())):
            sub.push(event)

    def close_all(self) -> None:
        for subs in list(self.by_stream.values()):
            for sub in list(subs):
                sub.close()
