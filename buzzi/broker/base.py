"""The Broker seam: how nodes share live events, short-lived state and limits.

Implementations side by side: memory.py (one node) and redis.py (a cluster). One contract suite
(tests/broker) runs against both. Like Centrifugo's engine: publish into a per-stream history,
deliver live to whichever node holds the subscriber, replay from history on reconnect.

Stream event ids are decimal integers (as strings), strictly increasing per stream, so every
node and every client compares them the same way.
"""

from __future__ import annotations

import abc
import logging
from dataclasses import dataclass
from typing import Any

from buzzi.errors import Unavailable

_log = logging.getLogger("buzzi.broker")


@dataclass(frozen=True)
class StreamEvent:
    id: str
    event: str
    data: dict[str, Any]

    @property
    def seq(self) -> int:
        return int(self.id)


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    count: int
    limit: int
    retry_after: float  # seconds until the window resets (0 when allowed)


class BrokerUnavailable(Unavailable):
    """The broker did not answer (e.g. Redis down)."""


class Subscription(abc.ABC):
    """Live events of one stream for one local consumer, in publish order.

    A consumer that falls more than `maxsize` events behind is cut off: `overflowed` becomes True
    and `get` raises SubscriptionClosed, so a slow client never grows memory without bound; it
    reconnects and catches up from the log by Last-Event-ID.
    """

    stream: str
    overflowed: bool = False

    @abc.abstractmethod
    async def get(self) -> StreamEvent:
        """Next live event; raises SubscriptionClosed once closed or overflowed."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop delivery and free everything; idempotent."""

    def pending(self) -> int:
        """Events already queued for `get` (a hint for batching writes; 0 when unknown)."""
        return 0


class SubscriptionClosed(Exception):
    pass


class Broker(abc.ABC):
    # ---- lifecycle
    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise BrokerUnavailable unless the broker answers."""

    # ---- streams
    @abc.abstractmethod
    async def publish(self, stream: str, event: str, data: dict[str, Any]) -> StreamEvent:
        """Append to the stream's capped, expiring log with the next id, then deliver live to
        every subscriber of the stream on every node."""

    @abc.abstractmethod
    def subscribe(self, stream: str, maxsize: int = 256) -> Subscription:
        """Live events published after this call."""

    @abc.abstractmethod
    async def replay(self, stream: str, after_id: str | None) -> list[StreamEvent]:
        """Logged events with id > after_id (all kept events when None), oldest first."""

    @abc.abstractmethod
    async def last_id(self, stream: str) -> str | None:
        """Id of the newest logged event, or None."""

    # ---- key/value with TTL (the shared session cache)
    @abc.abstractmethod
    async def kv_set(self, key: str, value: str, ttl: float) -> None: ...

    @abc.abstractmethod
    async def kv_get(self, key: str, touch_ttl: float | None = None) -> str | None:
        """Value or None; with touch_ttl, also extends its life (sliding expiry)."""

    @abc.abstractmethod
    async def kv_delete(self, key: str) -> None: ...

    # ---- counters
    @abc.abstractmethod
    async def hit(self, key: str, limit: int, window: float) -> RateDecision:
        """Fixed-window rate limit, checked and counted in one atomic step."""

    @abc.abstractmethod
    async def incr(self, key: str, by: int = 1, ttl: float | None = None) -> int: ...

    # ---- presence: nodes and their live sessions
    @abc.abstractmethod
    async def node_heartbeat(self, node_id: str, info: dict[str, Any], ttl: float) -> None: ...

    @abc.abstractmethod
    async def node_leave(self, node_id: str) -> None: ...

    @abc.abstractmethod
    async def set_sessions(self, node_id: str, sessions: list[dict[str, Any]], ttl: float) -> None:
        """Replace this node's published list of live sessions (expires with the node)."""

    @abc.abstractmethod
    async def list_nodes(self) -> list[dict[str, Any]]:
        """Live nodes: each info dict plus "nodeId" and "lastSeen"."""

    @abc.abstractmethod
    async def list_sessions(self) -> list[dict[str, Any]]:
        """Live sessions of all live nodes, each with "nodeId"."""

    # ---- inbox wake-ups
    @abc.abstractmethod
    async def notify_inbox(self) -> None:
        """Wake every node's inbox worker (new work was stored)."""

    @abc.abstractmethod
    async def wait_inbox(self, timeout: float) -> bool:
        """Wait for a wake-up; True if one came before the timeout."""


async def wake_inboxes(broker: Broker) -> bool:
    """Wake every node after new work was stored, best effort.

    The work is already committed and every inbox polls the store, so a broker outage only delays
    the answer by one poll: it must not turn an accepted request into an error (whose retry would
    store the message twice). False when the broker did not answer.
    """
    try:
        await broker.notify_inbox()
    except BrokerUnavailable as exc:
        _log.warning("inbox wake-up not sent (%s): the next poll picks the work up", exc)
        return False
    return True
