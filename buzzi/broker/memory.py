"""The one-node broker: everything in process memory, nothing shared.

Also home of the local-delivery pieces both brokers use (LocalSubscription, SubscriberRegistry):
a node delivers live events to its own consumers the same way whatever carries them between nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from buzzi.broker.base import Broker, RateDecision, StreamEvent, Subscription, SubscriptionClosed
from buzzi.config import BrokerSettings

log = logging.getLogger(__name__)

REAP_INTERVAL = 1.0  # seconds between sweeps of expired entries


class LocalSubscription(Subscription):
    """A bounded queue of live events for one consumer on this node.

    Not an asyncio.Queue: that costs three deques and an Event (about 3 KiB) per subscriber, and
    most subscribers (open chat streams) sit idle. Here the deque exists only while events wait,
    and one future wakes the single reader."""

    __slots__ = ("_items", "_maxsize", "_on_close", "_waiter", "closed", "overflowed", "stream")

    def __init__(self, stream: str, maxsize: int, on_close: Callable[[LocalSubscription], None]) -> None:
        self.stream = stream
        self.overflowed = False
        self.closed = False
        self._items: deque[StreamEvent] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._maxsize = maxsize
        self._on_close = on_close

    def push(self, event: StreamEvent) -> None:
        if self.closed:
            return
        items = self._items
        if items is None:
            items = self._items = deque()
        elif len(items) >= self._maxsize:
            # Cut the slow consumer off rather than buffer without bound; it resumes from the log.
            self.overflowed = True
            self.close()
            return
        items.append(event)
        self._wake()

    async def get(self) -> StreamEvent:
        while True:
            if self.closed:
                raise SubscriptionClosed(self.stream)
            items = self._items
            if items:
                event = items.popleft()
                if not items:
                    self._items = None  # an idle subscriber holds no buffer
                return event
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter  # cancelling this (a timeout) leaves queued events in place
            finally:
                self._waiter = None

    def pending(self) -> int:
        return len(self._items) if self._items and not self.closed else 0

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._items = None
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


@dataclass
class _Log:
    events: deque[StreamEvent]
    last_seq: int = 0
    expires_at: float = 0.0


@dataclass
class _Expiring:
    value: Any
    expires_at: float | None  # monotonic; None = no expiry


class MemoryBroker(Broker):
    def __init__(self, settings: BrokerSettings, reap_interval: float = REAP_INTERVAL) -> None:
        self.settings = settings
        self.reap_interval = reap_interval
        self.registry = SubscriberRegistry()
        self._logs: dict[str, _Log] = {}
        self._kv: dict[str, _Expiring] = {}
        self._counters: dict[str, _Expiring] = {}
        self._windows: dict[str, _Expiring] = {}
        self._nodes: dict[str, _Expiring] = {}  # node id -> (info, lastSeen wall time)
        self._sessions: dict[str, _Expiring] = {}  # node id -> its session list
        self._inbox = asyncio.Event()
        self._reaper: asyncio.Task[None] | None = None

    # ---- lifecycle
    async def open(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap_forever(), name="memory-broker-reaper")

    async def close(self) -> None:
        self.registry.close_all()
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None

    async def ping(self) -> None:
        return None

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self.reap_interval)
            self.reap()

    def reap(self) -> None:
        """Drop every expired entry, so idle keys never accumulate."""
        now = time.monotonic()
        for name in [k for k, v in self._logs.items() if v.expires_at <= now]:
            del self._logs[name]
        for table in (self._kv, self._counters, self._windows, self._nodes, self._sessions):
            for key in [k for k, v in table.items() if v.expires_at is not None and v.expires_at <= now]:
                del table[key]

    # ---- streams
    def _log(self, stream: str) -> _Log | None:
        entry = self._logs.get(stream)
        if entry is not None and entry.expires_at <= time.monotonic():
            del self._logs[stream]
            return None
        return entry

    async def publish(self, stream: str, event: str, data: dict[str, Any]) -> StreamEvent:
        entry = self._log(stream)
        if entry is None:
            entry = self._logs[stream] = _Log(deque(maxlen=self.settings.event_log_size))
        entry.last_seq += 1
        entry.expires_at = time.monotonic() + self.settings.event_log_ttl_seconds
        item = StreamEvent(str(entry.last_seq), event, data)
        entry.events.append(item)
        self.registry.deliver(stream, item)
        return item

    def subscribe(self, stream: str, maxsize: int = 256) -> Subscription:
        return self.registry.add(stream, maxsize)

    async def replay(self, stream: str, after_id: str | None) -> list[StreamEvent]:
        entry = self._log(stream)
        if entry is None:
            return []
        after = int(after_id) if after_id is not None else 0
        return [e for e in entry.events if e.seq > after]

    async def last_id(self, stream: str) -> str | None:
        entry = self._log(stream)
        return entry.events[-1].id if entry is not None and entry.events else None

    # ---- key/value
    @staticmethod
    def _live(table: dict[str, _Expiring], key: str) -> _Expiring | None:
        item = table.get(key)
        if item is not None and item.expires_at is not None and item.expires_at <= time.monotonic():
            del table[key]
            return None
        return item

    async def kv_set(self, key: str, value: str, ttl: float) -> None:
        self._kv[key] = _Expiring(value, time.monotonic() + ttl)

    async def kv_get(self, key: str, touch_ttl: float | None = None) -> str | None:
        item = self._live(self._kv, key)
        if item is None:
            return None
        if touch_ttl is not None:
            item.expires_at = time.monotonic() + touch_ttl
        return item.value

    async def kv_delete(self, key: str) -> None:
        self._kv.pop(key, None)

    # ---- counters
    async def hit(self, key: str, limit: int, window: float) -> RateDecision:
        # No await between read and write: atomic on the event loop.
        now = time.monotonic()
        item = self._live(self._windows, key)
        if item is None:
            item = self._windows[key] = _Expiring(0, now + window)
        item.value += 1
        count: int = item.value
        if count <= limit:
            return RateDecision(True, count, limit, 0.0)
        return RateDecision(False, count, limit, max(item.expires_at - now, 0.001))  # type: ignore[operator]

    async def incr(self, key: str, by: int = 1, ttl: float | None = None) -> int:
        item = self._live(self._counters, key)
        if item is None:
            item = self._counters[key] = _Expiring(0, None)
        item.value += by
        if ttl is not None and item.expires_at is None:
            item.expires_at = time.monotonic() + ttl
        return item.value

    # ---- presence
    def _live_nodes(self) -> list[tuple[str, dict[str, Any], float]]:
        nodes = []
        for node_id in sorted(self._nodes):
            item = self._live(self._nodes, node_id)
            if item is not None:
                info, last_seen = item.value
                nodes.append((node_id, info, last_seen))
        return nodes

    async def node_heartbeat(self, node_id: str, info: dict[str, Any], ttl: float) -> None:
        self._nodes[node_id] = _Expiring((dict(info), time.time()), time.monotonic() + ttl)

    async def node_leave(self, node_id: str) -> None:
        self._nodes.pop(node_id, None)
        self._sessions.pop(node_id, None)

    async def set_sessions(self, node_id: str, sessions: list[dict[str, Any]], ttl: float) -> None:
        self._sessions[node_id] = _Expiring([dict(s) for s in sessions], time.monotonic() + ttl)

    async def list_nodes(self) -> list[dict[str, Any]]:
        return [{**info, "nodeId": node_id, "lastSeen": last_seen} for node_id, info, last_seen in self._live_nodes()]

    async def list_sessions(self) -> list[dict[str, Any]]:
        # Only sessions of live nodes: a dead node's sessions vanish with it.
        result = []
        for node_id, _, _ in self._live_nodes():
            item = self._live(self._sessions, node_id)
            if item is not None:
                result.extend({**session, "nodeId": node_id} for session in item.value)
        return result

    # ---- inbox wake-ups
    async def notify_inbox(self) -> None:
        self._inbox.set()

    async def wait_inbox(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._inbox.wait(), timeout)
        except TimeoutError:
            return False
        self._inbox.clear()
        return True
