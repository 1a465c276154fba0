"""The broker seams: how nodes share live events, short-lived state, limits, presence and wake-ups.

One small protocol per concern, so that each consumer depends only on what it uses:

- StreamLog: a capped, expiring event log per stream with live delivery (the SSE hub, publishers);
- KeyValue: strings with a TTL (the chat session cache, login lockouts, dashboard logouts);
- RateCounters: fixed-window limits checked and counted atomically (the rate limiter);
- Presence: node heartbeats and each node's live sessions (the hub writes, monitoring reads);
- WakeUps: "new work was stored" signals to every node's inbox worker.

`Broker` is all five plus a lifecycle: what a backend implements (memory.py for one node, redis.py
for a cluster, both one class over one connection) and what the composition root holds. One
contract suite (tests/contracts/test_broker.py) runs against both backends.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from buzzi.errors import Unavailable

_log = logging.getLogger("buzzi.broker")


@dataclass(frozen=True)
class StreamEvent:
    """One logged event. `id` is a decimal integer (as a string), strictly increasing per stream.

    `epoch` names the log the event is in: every id of that log is above it, and a log created later
    for the same stream (after the old one expired or the broker lost its data) gets an epoch at or
    above every id the old one issued. See StreamLog for how that is guaranteed.
    """

    id: str
    event: str
    data: dict[str, Any]
    epoch: int

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


class SubscriptionClosed(Exception):
    pass


class Subscription(abc.ABC):
    """Live events of one stream for one local consumer, in publish order.

    A consumer that falls more than `maxsize` events behind is cut off (`get` raises
    SubscriptionClosed), so a slow client never grows memory without bound; it reconnects and
    catches up from the log by Last-Event-ID.
    """

    stream: str
    # Set by the consumer to take live events without being woken: called with an event that
    # arrives while the consumer waits in `get` with nothing queued; True = it took the event
    # (`get` goes on waiting), False = queue it for `get` as usual. It must not raise or block.
    sink: Callable[[StreamEvent], bool] | None = None

    @abc.abstractmethod
    async def get(self, timeout: float | None = None) -> StreamEvent:
        """Next live event; raises SubscriptionClosed once closed or cut off, TimeoutError when none
        came within `timeout` seconds (queued events stay queued)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop delivery and free everything; idempotent."""

    def pending(self) -> int:
        """Events already queued for `get` (a hint for batching writes; 0 when unknown)."""
        return 0


class StreamLog(Protocol):
    """Per-stream event logs with live delivery, in the manner of Centrifugo's engine: publish into
    a capped history, deliver live to whichever node holds the subscriber, replay on reconnect.

    Epochs, so that a lost log is known rather than guessed: a log's epoch is its creation time in
    microseconds (raised, if needed, above every id the backend still holds for the stream), and its
    ids count up from there. A log created later therefore starts above every id an earlier log
    issued (unless that one averaged more than one event per microsecond over its whole life), so
    the ids a client sees keep growing across a lost log, and an id at or below an event's epoch
    means the client has seen nothing of that event's log. Ids stay below 2**53, exact as doubles
    (Redis' Lua, JavaScript) until the year 2255.
    """

    @abc.abstractmethod
    async def publish(self, stream: str, event: str, data: dict[str, Any]) -> StreamEvent:
        """Append to the stream's capped, expiring log with the next id, then deliver live to every
        subscriber of the stream on every node."""

    @abc.abstractmethod
    def subscribe(self, stream: str, maxsize: int = 256) -> Subscription:
        """Live events published after this call."""

    @abc.abstractmethod
    async def replay(self, stream: str, after_id: str | None) -> list[StreamEvent]:
        """Logged events with id > after_id (all kept events when None), oldest first."""

    @abc.abstractmethod
    async def last_id(self, stream: str) -> str | None:
        """Id of the newest logged event, or None."""


class KeyValue(Protocol):
    @abc.abstractmethod
    async def kv_set(self, key: str, value: str, ttl: float) -> None: ...

    @abc.abstractmethod
    async def kv_get(self, key: str, touch_ttl: float | None = None) -> str | None:
        """Value or None; with touch_ttl, also extends its life (sliding expiry)."""


class RateCounters(Protocol):
    @abc.abstractmethod
    async def hit(self, key: str, limit: int, window: float) -> RateDecision:
        """Fixed-window rate limit, checked and counted in one atomic step."""

    async def hit_all(self, hits: Sequence[tuple[str, int, float]]) -> list[RateDecision]:
        """Hit each (key, limit, window) in order, stopping at the first refusal (the keys after it
        are not counted); the decisions up to and including that refusal. A backend may send every
        caller's hits of one loop iteration together (redis.py); this default calls `hit` per key."""
        decisions: list[RateDecision] = []
        for key, limit, window in hits:
            decision = await self.hit(key, limit, window)
            decisions.append(decision)
            if not decision.allowed:
                break
        return decisions


class Presence(Protocol):
    """Which nodes are alive and which sessions each holds; both expire unless refreshed."""

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


class WakeUps(Protocol):
    @abc.abstractmethod
    async def notify_inbox(self) -> None:
        """Wake every node's inbox worker (new work was stored)."""

    @abc.abstractmethod
    async def wait_inbox(self, timeout: float) -> bool:
        """Wait for a wake-up; True if one came before the timeout."""


class Broker(StreamLog, KeyValue, RateCounters, Presence, WakeUps, Protocol):
    """Every concern plus the lifecycle; only the composition root and the backends name it."""

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise BrokerUnavailable unless the broker answers."""


async def wake_inboxes(wakeups: WakeUps) -> bool:
    """Wake every node after new work was stored, best effort.

    The work is already committed and every inbox polls the store, so a broker outage only delays
    the answer by one poll: it must not turn an accepted request into an error (whose retry would
    store the message twice). False when the broker did not answer.
    """
    try:
        await wakeups.notify_inbox()
    except BrokerUnavailable as exc:
        _log.warning("inbox wake-up not sent (%s): the next poll picks the work up", exc)
        return False
    return True
