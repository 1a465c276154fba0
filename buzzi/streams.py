"""Live SSE streams held by this node: gap-free replay + live delivery, presence and draining.

Order of operations for a (re)connecting client: subscribe first, then read the log after its
Last-Event-ID, then deliver live events, skipping any id already sent. Subscribing before reading
the log is what makes the hand-over gap-free; skipping ids is what makes it duplicate-free.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from buzzi import clock
from buzzi.broker.base import Broker, StreamEvent, SubscriptionClosed
from buzzi.config import Settings
from buzzi.errors import Throttled
from buzzi.events import TERMINAL
from buzzi.metrics import Metrics

log = logging.getLogger("buzzi.streams")

HEARTBEAT = None  # what `events()` yields when a heartbeat comment is due

RESYNC_MESSAGE = "Some earlier events are no longer available; reload the conversation."


class TooManyStreams(Throttled):
    """The session already holds `limit` open streams on this node. A place frees up as soon as one
    of them ends; the widget's own reconnect delay is a fair hint for when to try again."""

    def __init__(self, limit: int, retry_after: int) -> None:
        super().__init__(retry_after, "Too many open streams for this session", extra={"limit": limit})
        self.limit = limit


class Closed:
    """`LiveStream.closed`: the Event interface (set / is_set / wait) without an Event's deque per
    stream. Setting it also ends the stream's subscription, so the reader waits on one thing (the
    subscription) instead of racing two tasks with asyncio.wait for every event."""

    __slots__ = ("_set", "_waiter", "on_set")

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future[None] | None = None
        self.on_set: Callable[[], None] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        if self.on_set is not None:
            self.on_set()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self) -> bool:
        if not self._set:
            if self._waiter is None:
                self._waiter = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._waiter)  # one waiter's cancellation must not wake the others
        return True


@dataclass(eq=False)  # identity semantics: each connection is its own stream
class LiveStream:
    stream: str
    conversation_id: str
    company_id: str
    agent_id: str
    connected_at: float = field(default_factory=clock.now)
    last_event_id: str | None = None
    events_sent: int = 0
    closed: Closed = field(default_factory=Closed)
    # Events ready to go right after the one just yielded: the writer flushes only when this is 0,
    # so a burst already queued goes out in one write (no added latency: nothing is waited for).
    queued: int = 0

    def info(self, node_id: str) -> dict[str, Any]:
        return {
            "nodeId": node_id, "conversationId": self.conversation_id, "companyId": self.company_id,
            "agentId": self.agent_id, "connectedSince": clock.iso(self.connected_at),
            "lastEventId": self.last_event_id, "eventsSent": self.events_sent,
        }


class StreamHub:
    def __init__(self, broker: Broker, settings: Settings, node_id: str, metrics: Metrics) -> None:
        self.broker = broker
        self.settings = settings
        self.node_id = node_id
        self.metrics = metrics
        self.live: set[LiveStream] = set()
        self._by_stream: dict[str, set[LiveStream]] = {}
        self._dirty = asyncio.Event()
        self._presence_task: asyncio.Task[None] | None = None
        self.draining = False
        self.started_at = clock.now()
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        self._presence_task = asyncio.create_task(self._publish_presence(), name="presence")

    def open(self, stream: str, conversation_id: str, company_id: str, agent_id: str) -> LiveStream:
        """Register a client's stream; TooManyStreams when its session already holds the most allowed.
        The cap is per node: it bounds what one session id can tie up here (sockets, buffers)."""
        limit = self.settings.chat.max_streams_per_session
        if len(self._by_stream.get(stream, ())) >= limit:
            raise TooManyStreams(limit, max(1, math.ceil(self.settings.chat.retry_ms / 1000)))
        live = LiveStream(stream, conversation_id, company_id, agent_id)
        self._by_stream.setdefault(stream, set()).add(live)
        self.live.add(live)
        self._idle.clear()
        self.metrics.sse_streams.set(len(self.live))
        self._dirty.set()
        return live

    def close(self, live: LiveStream) -> None:
        live.closed.set()
        self.live.discard(live)
        same = self._by_stream.get(live.stream)
        if same is not None:
            same.discard(live)
            if not same:
                del self._by_stream[live.stream]
        if not self.live:
            self._idle.set()
        self.metrics.sse_streams.set(len(self.live))
        self._dirty.set()

    async def events(self, live: LiveStream, last_event_id: str | None) -> AsyncIterator[StreamEvent | None]:
        """Events for one client: replayed after last_event_id, then live; ends after a terminal
        event, on drain, or when the client falls too far behind (it resumes by Last-Event-ID).
        A last_event_id that is not an event id counts as none. Yields HEARTBEAT (None) when nothing
        happened for heartbeat_seconds."""
        chat = self.settings.chat
        sub = self.broker.subscribe(live.stream, maxsize=chat.stream_buffer_events)
        live.closed.on_set = sub.close
        try:
            if live.closed.is_set():
                return
            resume_seq = parse_event_id(last_event_id)
            if resume_seq is None:
                # A fresh client starts at the present: history comes from GET .../messages.
                # A malformed id counts as none: treating it as 0 would replay the whole log.
                last_seq = int(await self.broker.last_id(live.stream) or 0)
            else:
                last_seq = resume_seq
                if last_seq and await self._log_reset(live.stream, last_seq):
                    last_seq = 0  # the ids started again: everything in the new log is new to this client
                replay = await self.broker.replay(live.stream, str(last_seq))
                if _gap(replay, last_seq):
                    yield self._resync(live, replay[0])
                    return
                for i, event in enumerate(replay):
                    last_seq = event.seq
                    live.queued = len(replay) - i - 1 + sub.pending()
                    yield event
                    if event.event in TERMINAL:
                        return
            while not live.closed.is_set():
                try:
                    async with asyncio.timeout(chat.heartbeat_seconds):
                        event = await sub.get()
                except TimeoutError:
                    live.queued = 0
                    yield HEARTBEAT
                    continue
                except SubscriptionClosed:
                    if not live.closed.is_set():
                        log.info("stream %s cut off (slow client or broker closed)", live.conversation_id)
                    return
                if event.seq <= last_seq:
                    if not await self._log_reset(live.stream, last_seq):
                        continue  # already sent: the replay and the live feed overlap
                    log.warning("stream %s: the broker lost its log (ids restarted); replaying the new one",
                                live.conversation_id)
                    last_seq = 0
                    replay = await self.broker.replay(live.stream, "0")  # holds this event too
                    if _gap(replay, last_seq):
                        yield self._resync(live, replay[0])
                        return
                    for i, event in enumerate(replay):
                        last_seq = event.seq
                        live.queued = len(replay) - i - 1 + sub.pending()
                        yield event
                        if event.event in TERMINAL:
                            return
                    continue
                last_seq = event.seq
                live.queued = sub.pending()
                yield event
                if event.event in TERMINAL:
                    return
        finally:
            live.closed.on_set = None
            sub.close()

    def _resync(self, live: LiveStream, oldest_kept: StreamEvent) -> StreamEvent:
        """The terminal `error` that tells a client events it never got were trimmed from the log, so
        it must reload the conversation (GET .../messages) instead of trusting its stream.

        It is not in the log. Its id is the one just before the oldest event kept: above the client's
        last id (ids only grow for it, unless the log itself was reset), and the browser's automatic
        reconnect (Last-Event-ID = this id) then gets every event still kept, with no second resync."""
        log.warning("stream %s: the event log no longer holds what the client missed; asking it to resync",
                    live.conversation_id)
        live.queued = 0
        data = {"code": "resync", "message": RESYNC_MESSAGE, "retryable": True}
        return StreamEvent(str(oldest_kept.seq - 1), "error", data)

    async def _log_reset(self, stream: str, last_seq: int) -> bool:
        """True when the stream's ids started again below `last_seq`: a Redis that restarted without
        its data (or a log that expired) counts from 1 again. Ids only grow otherwise, and the log
        always keeps its newest event, so its newest id can only be below an id sent after a reset."""
        newest = await self.broker.last_id(stream)
        return newest is None or int(newest) < last_seq

    def sent(self, live: LiveStream, event: StreamEvent, count: int = 1) -> None:
        """`count` events up to and including `event` reached the client."""
        live.last_event_id = event.id
        live.events_sent += count
        self.metrics.sse_events.inc(count)

    async def drain(self, timeout: float = 5.0) -> None:
        """End every open stream now and wait until their handlers have finished the responses
        cleanly; clients reconnect (to another node) and resume."""
        self.draining = True
        for live in list(self.live):
            live.closed.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)

    async def stop(self) -> None:
        await self.drain()
        if self._presence_task:
            self._presence_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._presence_task
        with contextlib.suppress(Exception):
            await self.broker.node_leave(self.node_id)

    async def _publish_presence(self) -> None:
        """Heartbeat this node and its live sessions; push changes within about a second."""
        ttl = self.settings.broker.node_ttl_seconds
        period = max(0.5, ttl / 3)
        while True:
            try:
                info = {"streams": len(self.live), "draining": self.draining, "startedAt": clock.iso(self.started_at)}
                await self.broker.node_heartbeat(self.node_id, info, ttl)
                await self.broker.set_sessions(self.node_id, [s.info(self.node_id) for s in self.live], ttl)
            except Exception as exc:  # noqa: BLE001 - presence is best effort; the broker may be restarting
                log.warning("presence update failed: %s", exc)
            self._dirty.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), timeout=period)
            await asyncio.sleep(0.2)  # coalesce bursts of connects/disconnects


def parse_event_id(value: str | None) -> int | None:
    """An event id as a client sends it back (Last-Event-ID), or None when it is not one. ASCII
    digits only: int() would also take "-5", "+5", " 5_0" or non-ASCII digits."""
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > 20 or not (value.isascii() and value.isdigit()):
        return None
    return int(value)


def _gap(replay: list[StreamEvent], last_seq: int) -> bool:
    """True when the log was trimmed past the client: its next event is no longer there."""
    return bool(replay) and replay[0].seq > last_seq + 1
