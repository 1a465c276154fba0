"""The one-node broker: everything in process memory, nothing shared."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from buzzi.broker.base import Broker, RateDecision, StreamEvent, Subscription
from buzzi.broker.local import SubscriberRegistry
from buzzi.config import BrokerSettings

REAP_INTERVAL = 1.0  # seconds between sweeps of expired entries


@dataclass
class _Log:
    events: deque[StreamEvent]
    epoch: int
    last_seq: int  # starts at the epoch
    expires_at: float = 0.0


@dataclass
class _Expiring:
    value: Any
    expires_at: float  # monotonic


class MemoryBroker(Broker):
    def __init__(self, settings: BrokerSettings, reap_interval: float = REAP_INTERVAL) -> None:
        self.settings = settings
        self.reap_interval = reap_interval
        self.registry = SubscriberRegistry()
        self._logs: dict[str, _Log] = {}
        # The highest id issued to any stream: a new log's epoch starts at or above it, so a log
        # created after another expired continues above its ids even if the clock went back.
        self._issued = 0
        self._kv: dict[str, _Expiring] = {}
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
        for table in (self._kv, self._windows, self._nodes, self._sessions):
            for key in [k for k, v in table.items() if v.expires_at <= now]:
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
            epoch = max(time.time_ns() // 1000, self._issued)
            entry = self._logs[stream] = _Log(deque(maxlen=self.settings.event_log_size), epoch, epoch)
        entry.last_seq += 1
        self._issued = max(self._issued, entry.last_seq)
        entry.expires_at = time.monotonic() + self.settings.event_log_ttl_seconds
        item = StreamEvent(str(entry.last_seq), event, data, entry.epoch)
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
        if item is not None and item.expires_at <= time.monotonic():
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
        return RateDecision(False, count, limit, max(item.expires_at - now, 0.001))

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
        # The dicts are kept as handed over, not copied: the hub builds them fresh for this call
        # (one per open stream, thousands), and list_sessions hands out copies.
        self._sessions[node_id] = _Expiring(list(sessions), time.monotonic() + ttl)

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
