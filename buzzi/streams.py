"""Live SSE streams held by this node: gap-free replay + live delivery, presence and draining.

Order of operations for a (re)connecting client: subscribe first, then read the log after its
Last-Event-ID, then deliver live events, skipping any id already sent. Subscribing before reading
the log is what makes the hand-over gap-free; skipping ids is what makes it duplicate-free.

A log the broker lost (expired, or a Redis restarted empty) needs no guessing: every event names
its log's epoch, and a new log's ids start above every id of the old one (buzzi.broker.base
StreamLog), so for a client at id N the next event it needs is the one after max(N, epoch). Any
other event means some were missed, and the log tells whether it still holds them.
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
from buzzi.broker.base import Presence, StreamEvent, StreamLog, Subscription, SubscriptionClosed
from buzzi.config import Settings
from buzzi.errors import Throttled
from buzzi.events import TERMINAL
from buzzi.metrics import Metrics

log = logging.getLogger("buzzi.streams")

HEARTBEAT = None  # what `events()` yields when a heartbeat comment is due

PRESENCE_SLICE = 500  # streams listed per loop iteration when publishing presence

RESYNC_MESSAGE = "Some earlier events are no longer available; reload the conversation."


class TooManyStreams(Throttled):
    """The session (or the client address) already holds `limit` open streams on this node. A place
    frees up as soon as one of them ends; the widget's own reconnect delay is a fair hint for when
    to try again."""

    def __init__(self, limit: int, retry_after: int, holder: str = "session") -> None:
        super().__init__(retry_after, f"Too many open streams for this {holder}", extra={"limit": limit})
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


@dataclass(eq=False, slots=True)  # identity: each connection is its own stream; slots: one per stream
class LiveStream:
    stream: str
    conversation_id: str
    company_id: str
    agent_id: str
    address: str = ""  # the client's address: counted for its cap, never published
    connected_at: float = field(default_factory=clock.now)
    last_event_id: str | None = None
    events_sent: int = 0
    closed: Closed = field(default_factory=Closed)
    # Events ready to go right after the one just yielded: the writer flushes only when this is 0,
    # so a burst already queued goes out in one write (no added latency: nothing is waited for).
    queued: int = 0
    last_seq: int = 0  # the id of the last event handed to the client's writer

    _since: str | None = field(default=None, init=False, repr=False)

    def info(self, node_id: str) -> dict[str, Any]:
        if self._since is None:  # formatted once: a node lists every stream every few seconds
            self._since = clock.iso(self.connected_at)
        return {
            "nodeId": node_id, "conversationId": self.conversation_id, "companyId": self.company_id,
            "agentId": self.agent_id, "connectedSince": self._since,
            "lastEventId": self.last_event_id, "eventsSent": self.events_sent,
        }


class StreamHub:
    def __init__(self, stream_log: StreamLog, presence: Presence, settings: Settings, node_id: str,
                 metrics: Metrics) -> None:
        self.stream_log = stream_log
        self.presence = presence  # where this node publishes its live sessions
        self.settings = settings
        self.node_id = node_id
        self.metrics = metrics
        self.live: set[LiveStream] = set()
        # Open streams per session stream and per client address (for their caps): counts, not
        # sets of streams (a set is ~200 bytes per open stream); a key leaves its map when its
        # count reaches zero, so each map holds at most one entry per open stream.
        self._by_stream: dict[str, int] = {}
        self._by_address: dict[str, int] = {}
        self._dirty = asyncio.Event()
        self._presence_task: asyncio.Task[None] | None = None
        self.draining = False
        self.started_at = clock.now()
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        self._presence_task = asyncio.create_task(self._publish_presence(), name="presence")

    def open(self, stream: str, conversation_id: str, company_id: str, agent_id: str, address: str = ""
             ) -> LiveStream:
        """Register a client's stream; TooManyStreams when its session, or its address, already holds
        the most allowed. The caps are per node: they bound what one session id, or one client with
        any number of sessions, can tie up here (sockets, buffers)."""
        retry_after = max(1, math.ceil(self.settings.chat.retry_ms / 1000))
        limit = self.settings.chat.max_streams_per_session
        if self._by_stream.get(stream, 0) >= limit:
            raise TooManyStreams(limit, retry_after)
        per_address = self.settings.chat.max_streams_per_address
        if self._by_address.get(address, 0) >= per_address:
            raise TooManyStreams(per_address, retry_after, "address")
        live = LiveStream(stream, conversation_id, company_id, agent_id, address)
        _count_up(self._by_stream, stream)
        _count_up(self._by_address, address)
        self.live.add(live)
        self._idle.clear()
        self.metrics.sse_streams.set(len(self.live))
        self._dirty.set()
        return live

    def close(self, live: LiveStream) -> None:
        live.closed.set()
        if live not in self.live:
            return  # closed before: counted down once only
        self.live.discard(live)
        _count_down(self._by_address, live.address)
        _count_down(self._by_stream, live.stream)
        if not self.live:
            self._idle.set()
        self.metrics.sse_streams.set(len(self.live))
        self._dirty.set()

    async def events(self, live: LiveStream, last_event_id: str | None,
                     write_now: Callable[[StreamEvent], bool] | None = None) -> AsyncIterator[StreamEvent | None]:
        """Events for one client: replayed after last_event_id, then live; ends after a terminal
        event, on drain, or when the client falls too far behind (it resumes by Last-Event-ID).
        A last_event_id that is not an event id counts as none. Yields HEARTBEAT (None) when nothing
        happened for heartbeat_seconds.

        `write_now(event)`: the caller's writer, when it can send an event on the spot (False when
        it cannot: its connection is backed up). While the caller waits for the next event and
        the broker delivers the next one in order, that event goes straight to write_now from the
        delivery (counted as sent) instead of waking the caller's task: a fan-out to thousands of
        streams then costs no task switch per stream. Everything else (replays, a gap, a terminal
        event, a burst, a writer that is backed up) is yielded as usual."""
        sub = self.stream_log.subscribe(live.stream, maxsize=self.settings.chat.stream_buffer_events)
        live.closed.on_set = sub.close
        try:
            if live.closed.is_set():
                return
            live.last_seq, batch = await self._resume(live, last_event_id)
            if write_now is not None:
                sub.sink = _Sink(self, live, write_now)
            while True:
                for i, event in enumerate(batch):
                    live.last_seq = event.seq
                    live.queued = len(batch) - i - 1 + sub.pending()
                    yield event
                    if event.event in TERMINAL:
                        return
                try:
                    batch = await self._next_live(live, sub)
                except TimeoutError:
                    batch = []  # nothing happened for heartbeat_seconds
                except SubscriptionClosed:
                    if not live.closed.is_set():
                        log.info("stream %s cut off (slow client or broker closed)", live.conversation_id)
                    return
                if not batch:
                    live.queued = 0
                    yield HEARTBEAT
        finally:
            sub.sink = None
            live.closed.on_set = None
            sub.close()

    def _write_now(self, live: LiveStream, write_now: Callable[[StreamEvent], bool], event: StreamEvent) -> bool:
        """The subscription's sink (see `events`): True when the event needs nothing more."""
        if event.seq <= live.last_seq:
            return True  # already sent: the replay and the live feed overlap
        if event.event in TERMINAL or _missed(event, live.last_seq) or live.closed.is_set():
            return False  # the stream's own task ends it, or replays the gap
        try:
            if not write_now(event):
                return False
        except Exception:  # noqa: BLE001 - the client went away: its task finds out and ends
            return False
        live.last_seq = event.seq
        self.sent(live, event)
        return True

    async def _resume(self, live: LiveStream, last_event_id: str | None) -> tuple[int, list[StreamEvent]]:
        """The id the client is at, and what the log holds for it beyond that."""
        resume_seq = parse_event_id(last_event_id)
        if resume_seq is None:
            # A fresh client starts at the present: history comes from GET .../messages.
            # A malformed id counts as none: treating it as 0 would replay the whole log.
            return int(await self.stream_log.last_id(live.stream) or 0), []
        return resume_seq, await self._replay(live, resume_seq)

    async def _next_live(self, live: LiveStream, sub: Subscription) -> list[StreamEvent]:
        """The next live event the client needs, or the logged events up to it when some were missed.
        TimeoutError when a heartbeat is due; SubscriptionClosed when the stream ends."""
        while True:
            event = await sub.get(self.settings.chat.heartbeat_seconds)
            if event.seq <= live.last_seq:
                continue  # already sent: the replay and the live feed overlap
            if not _missed(event, live.last_seq):
                return [event]
            log.warning("stream %s: live events were missed (a new log, or a broker outage); replaying the log",
                        live.conversation_id)
            return await self._replay(live, live.last_seq) or [event]

    async def _replay(self, live: LiveStream, after: int) -> list[StreamEvent]:
        """Logged events after id `after`; only the resync error when the log lost the next one."""
        events = await self.stream_log.replay(live.stream, str(after))
        if events and _missed(events[0], after):
            return [self._resync(live, events[0])]
        return events

    def _resync(self, live: LiveStream, oldest_kept: StreamEvent) -> StreamEvent:
        """The terminal `error` that tells a client events it never got were trimmed from the log, so
        it must reload the conversation (GET .../messages) instead of trusting its stream.

        It is not in the log. Its id is the one just before the oldest event kept: above the client's
        last id (ids only grow), and the browser's automatic reconnect (Last-Event-ID = this id) then
        gets every event still kept, with no second resync."""
        log.warning("stream %s: the event log no longer holds what the client missed; asking it to resync",
                    live.conversation_id)
        live.queued = 0
        data = {"code": "resync", "message": RESYNC_MESSAGE, "retryable": True}
        return StreamEvent(str(oldest_kept.seq - 1), "error", data, oldest_kept.epoch)

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
            await self.presence.node_leave(self.node_id)

    async def _publish_presence(self) -> None:
        """Heartbeat this node and its live sessions; push changes within about a second."""
        ttl = self.settings.broker.node_ttl_seconds
        period = max(0.5, ttl / 3)
        while True:
            try:
                info = {"streams": len(self.live), "draining": self.draining, "startedAt": clock.iso(self.started_at)}
                await self.presence.node_heartbeat(self.node_id, info, ttl)
                await self.presence.set_sessions(self.node_id, await self._session_list(), ttl)
            except Exception as exc:  # noqa: BLE001 - presence is best effort; the broker may be restarting
                log.warning("presence update failed: %s", exc)
            self._dirty.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), timeout=period)
            await asyncio.sleep(0.2)  # coalesce bursts of connects/disconnects


    async def _session_list(self) -> list[dict[str, Any]]:
        """Every live stream's info, built in slices with the loop let go in between: with
        thousands of streams one pass would hold up every event delivery for tens of ms."""
        sessions: list[dict[str, Any]] = []
        for i, live in enumerate(list(self.live)):
            if i and i % PRESENCE_SLICE == 0:
                await asyncio.sleep(0)
            sessions.append(live.info(self.node_id))
        return sessions


class _Sink:
    """`StreamHub._write_now` bound to one stream and its writer: one small object per open stream
    (a functools.partial with its args tuple and bound method cost about 4x as much)."""

    __slots__ = ("hub", "live", "write_now")

    def __init__(self, hub: StreamHub, live: LiveStream, write_now: Callable[[StreamEvent], bool]) -> None:
        self.hub = hub
        self.live = live
        self.write_now = write_now

    def __call__(self, event: StreamEvent) -> bool:
        return self.hub._write_now(self.live, self.write_now, event)


def _count_up(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


def _count_down(counts: dict[str, int], key: str) -> None:
    remaining = counts.get(key, 0) - 1
    if remaining > 0:
        counts[key] = remaining
    else:
        counts.pop(key, None)


def parse_event_id(value: str | None) -> int | None:
    """An event id as a client sends it back (Last-Event-ID), or None when it is not one. ASCII
    digits only: int() would also take "-5", "+5", " 5_0" or non-ASCII digits."""
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > 20 or not (value.isascii() and value.isdigit()):
        return None
    return int(value)


def _missed(event: StreamEvent, last_seq: int) -> bool:
    """True when `event` is not the next one a client at `last_seq` needs: that is the first of the
    event's log (when the client saw nothing of that log) or the one after last_seq."""
    return event.seq > max(last_seq, event.epoch) + 1
