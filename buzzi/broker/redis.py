"""The cluster broker on Redis (or Valkey), via redis-py's asyncio client.

Per stream: a head hash (the log's epoch and its last id) and a Redis Stream log (explicit ids
"<seq>-0", capped with MAXLEN, expiring with the head), appended and PUBLISHed in one Lua call, so a
publish is one round trip. A missing head means a new log: its epoch comes from the Redis server's
clock (one clock for every node), raised above the newest id of a log that survived without its head.
Each node holds ONE pub/sub connection (the listener): it subscribes a stream's channel when the
first local subscriber appears, unsubscribes when the last leaves, and fans each message out to
the local subscriptions. The listener reconnects by itself with backoff after Redis restarts and
re-subscribes every active channel.

A subscription only receives events once Redis has confirmed its channel. `publish`, `replay` and
`last_id` on this node first wait for that confirmation for their stream, so the usual resume
pattern (subscribe, then replay after Last-Event-ID, then live events with a larger id) has no gap
even when another node publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from buzzi.broker.base import Broker, BrokerUnavailable, RateDecision, StreamEvent, Subscription
from buzzi.broker.local import SubscriberRegistry
from buzzi.config import BrokerSettings

log = logging.getLogger(__name__)

PREFIX = "buzzi:"
INBOX_CHANNEL = PREFIX + "inbox"
STREAM_CHANNEL = PREFIX + "ch:"
NODES_KEY = PREFIX + "nodes"  # zset node id -> heartbeat expiry (ms), so listing needs no SCAN

SOCKET_TIMEOUT = 5.0
READY_TIMEOUT = 5.0  # how long publish/replay wait for this node's channel subscription
BACKOFF_MIN, BACKOFF_MAX = 0.05, 2.0
IDLE_PING = 10.0  # listener sends PING after this much silence; a second silence = dead link

# KEYS: head, log. ARGV: maxlen, ttl ms, event name, event JSON string, data JSON, channel.
# Returns {id, epoch} as strings. Ids are formatted with %d: Lua's own number-to-string conversion
# would print a 16-digit id in exponent notation.
PUBLISH_LUA = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  local now = redis.call('TIME')
  local base = tonumber(now[1]) * 1000000 + tonumber(now[2])
  local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1]
  if top then base = math.max(base, tonumber(string.match(top[1], '^%d+'))) end
  epoch = string.format('%d', base)
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', epoch)
end
local seq = string.format('%d', redis.call('HINCRBY', KEYS[1], 'seq', 1))
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[1], seq .. '-0', 'e', ARGV[3], 'd', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[6], '[' .. seq .. ',' .. epoch .. ',' .. ARGV[4] .. ',' .. ARGV[5] .. ']')
return {seq, epoch}
"""

# KEYS: counter. ARGV: window ms. Returns {count, ms until the window resets}.
HIT_LUA = """
local count = redis.call('INCR', KEYS[1])
local ttl = -1
if count > 1 then ttl = redis.call('PTTL', KEYS[1]) end
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""


def redact_url(url: str) -> str:
    """The URL with any password replaced, safe for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _stream_keys(stream: str) -> tuple[str, str]:
    # Hash tag keeps a stream's two keys in one slot (Redis Cluster friendly).
    return f"{PREFIX}{{{stream}}}:head", f"{PREFIX}{{{stream}}}:log"


class RedisBroker(Broker):
    def __init__(self, url: str, settings: BrokerSettings, node_id: str) -> None:
        self.url = url
        self.settings = settings
        self.node_id = node_id
        self._safe_url = redact_url(url)
        self._pool: aioredis.BlockingConnectionPool | None = None
        self._redis: aioredis.Redis | None = None
        self.registry = SubscriberRegistry(on_first=self._want_channels, on_last=self._want_channels)
        # Listener state: the channels Redis confirmed on the current pub/sub connection, and the
        # channels we asked for there (so a sync sends only the difference).
        self.listener_channels: set[str] = set()
        self._sent: set[str] = set()
        self._in_flight: dict[str, int] = {}  # SUBSCRIBE/UNSUBSCRIBE sent but not yet answered
        self._ready_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._conn: AbstractConnection | None = None
        self._listener: asyncio.Task[None] | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self._sync_again = False
        self._inbox = asyncio.Event()
        self._closing = False

    # ---- lifecycle
    async def open(self) -> None:
        self._closing = False
        self._pool = aioredis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=self.settings.max_connections,
            timeout=SOCKET_TIMEOUT,  # wait this long for a free pooled connection
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
            # No silent retries: a retried publish could append an event twice.
            retry=Retry(NoBackoff(), 0),
            client_name=f"buzzi:{self.node_id}",
            decode_responses=True,
        )
        self._redis = aioredis.Redis(connection_pool=self._pool)
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            await self._pool.aclose()
            self._pool = self._redis = None
            raise BrokerUnavailable(f"Redis broker at {self._safe_url} is unreachable: {exc}") from exc
        self._publish = self._redis.register_script(PUBLISH_LUA)
        self._hit = self._redis.register_script(HIT_LUA)
        self._listener = asyncio.create_task(self._listen_forever(), name=f"redis-broker-listener:{self.node_id}")
        try:
            # Wake-ups from other nodes must reach us as soon as open() returns.
            await self._await_channel(INBOX_CHANNEL)
        except BrokerUnavailable:
            await self.close()
            raise

    async def close(self) -> None:
        self._closing = True
        self.registry.close_all()
        for task in (self._sync_task, self._listener):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._sync_task = self._listener = None
        for waiters in self._ready_waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(BrokerUnavailable(f"Redis broker at {self._safe_url} is closed"))
        if self._pool is not None:
            await self._pool.aclose()
        self._pool = self._redis = None

    async def ping(self) -> None:
        async with self._call():
            await self._client.ping()

    @property
    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            raise BrokerUnavailable(f"Redis broker at {self._safe_url} is not open")
        return self._redis

    @contextlib.asynccontextmanager
    async def _call(self) -> AsyncIterator[None]:
        try:
            yield
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            if self._pool is not None:
                # After a Redis restart every idle pooled connection is stale: drop them all at once
                # rather than fail one call per connection.
                with contextlib.suppress(Exception):
                    await self._pool.disconnect(inuse_connections=False)
            raise BrokerUnavailable(f"Redis broker at {self._safe_url}: {exc}") from exc

    # ---- streams
    async def publish(self, stream: str, event: str, data: dict[str, Any]) -> StreamEvent:
        await self._await_channel(STREAM_CHANNEL + stream, only_if_local=stream)
        head, log_key = _stream_keys(stream)
        payload = json.dumps(data, separators=(",", ":"))
        args = [
            self.settings.event_log_size,
            _ms(self.settings.event_log_ttl_seconds),
            event,
            json.dumps(event),
            payload,
            STREAM_CHANNEL + stream,
        ]
        async with self._call():
            seq, epoch = await self._publish(keys=[head, log_key], args=args)
        return StreamEvent(seq, event, data, int(epoch))

    def subscribe(self, stream: str, maxsize: int = 256) -> Subscription:
        return self.registry.add(stream, maxsize)

    async def replay(self, stream: str, after_id: str | None) -> list[StreamEvent]:
        await self._await_channel(STREAM_CHANNEL + stream, only_if_local=stream)
        start = f"{int(after_id) + 1}-0" if after_id is not None else "-"
        head, log_key = _stream_keys(stream)
        async with self._call(), self._client.pipeline(transaction=True) as pipe:
            pipe.hget(head, "epoch")
            pipe.xrange(log_key, min=start, max="+")
            epoch, entries = await pipe.execute()
        # A log without its head (evicted under memory pressure) has no known epoch: 0 says "the
        # client may have seen any of it", so a gap reads as trimmed, never as a new log.
        known = int(epoch) if epoch is not None else 0
        return [_entry_event(entry_id, fields, known) for entry_id, fields in entries]

    async def last_id(self, stream: str) -> str | None:
        await self._await_channel(STREAM_CHANNEL + stream, only_if_local=stream)
        async with self._call():
            entries = await self._client.xrevrange(_stream_keys(stream)[1], max="+", min="-", count=1)
        return entries[0][0].split("-", 1)[0] if entries else None

    # ---- key/value
    async def kv_set(self, key: str, value: str, ttl: float) -> None:
        async with self._call():
            await self._client.set(PREFIX + "kv:" + key, value, px=_ms(ttl))

    async def kv_get(self, key: str, touch_ttl: float | None = None) -> str | None:
        async with self._call():
            if touch_ttl is None:
                return await self._client.get(PREFIX + "kv:" + key)
            return await self._client.getex(PREFIX + "kv:" + key, px=_ms(touch_ttl))

    # ---- counters
    async def hit(self, key: str, limit: int, window: float) -> RateDecision:
        async with self._call():
            count, ttl_ms = await self._hit(keys=[PREFIX + "rl:" + key], args=[_ms(window)])
        if count <= limit:
            return RateDecision(True, count, limit, 0.0)
        return RateDecision(False, count, limit, max(ttl_ms, 1) / 1000)

    # ---- presence
    async def node_heartbeat(self, node_id: str, info: dict[str, Any], ttl: float) -> None:
        doc = json.dumps({**info, "nodeId": node_id, "lastSeen": time.time()})
        expires_ms = int(time.time() * 1000) + _ms(ttl)
        async with self._call(), self._client.pipeline(transaction=True) as pipe:
            pipe.set(PREFIX + "node:" + node_id, doc, px=_ms(ttl))
            pipe.zadd(NODES_KEY, {node_id: expires_ms})
            # Reclaim the index entries of nodes that died without leaving.
            pipe.zremrangebyscore(NODES_KEY, "-inf", int(time.time() * 1000) - 60_000)
            await pipe.execute()

    async def node_leave(self, node_id: str) -> None:
        async with self._call(), self._client.pipeline(transaction=True) as pipe:
            pipe.delete(PREFIX + "node:" + node_id, PREFIX + "sessions:" + node_id)
            pipe.zrem(NODES_KEY, node_id)
            await pipe.execute()

    async def set_sessions(self, node_id: str, sessions: list[dict[str, Any]], ttl: float) -> None:
        async with self._call():
            await self._client.set(PREFIX + "sessions:" + node_id, json.dumps(sessions), px=_ms(ttl))

    async def _live_node_ids(self) -> list[str]:
        return sorted(await self._client.zrange(NODES_KEY, 0, -1))

    async def list_nodes(self) -> list[dict[str, Any]]:
        async with self._call():
            ids = await self._live_node_ids()
            docs = await self._client.mget([PREFIX + "node:" + i for i in ids]) if ids else []
        return [json.loads(doc) for doc in docs if doc is not None]

    async def list_sessions(self) -> list[dict[str, Any]]:
        async with self._call():
            ids = await self._live_node_ids()
            if not ids:
                return []
            keys = [PREFIX + "node:" + i for i in ids] + [PREFIX + "sessions:" + i for i in ids]
            values = await self._client.mget(keys)
        nodes, session_lists = values[: len(ids)], values[len(ids) :]
        result: list[dict[str, Any]] = []
        for node_id, node, sessions in zip(ids, nodes, session_lists, strict=True):
            if node is not None and sessions is not None:  # a dead node's sessions are gone with it
                result.extend({**s, "nodeId": node_id} for s in json.loads(sessions))
        return result

    # ---- inbox wake-ups
    async def notify_inbox(self) -> None:
        async with self._call():
            await self._client.publish(INBOX_CHANNEL, "1")

    async def wait_inbox(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._inbox.wait(), timeout)
        except TimeoutError:
            return False
        self._inbox.clear()
        return True

    # ---- the pub/sub listener
    def _wanted(self) -> set[str]:
        return {INBOX_CHANNEL} | {STREAM_CHANNEL + s for s in self.registry.by_stream}

    def _want_channels(self, _stream: str | None = None) -> None:
        """Called (synchronously) when local streams appear or vanish: sync the channel set soon."""
        if self._closing:
            return
        self._sync_again = True
        if self._sync_task is None or self._sync_task.done():
            self._sync_task = asyncio.get_running_loop().create_task(self._sync_channels())

    async def _sync_channels(self) -> None:
        """Send SUBSCRIBE/UNSUBSCRIBE for the difference between wanted and asked-for channels.
        Only one runs at a time; replies are read by the listener."""
        while self._sync_again:
            self._sync_again = False
            conn = self._conn
            if conn is None or not conn.is_connected:
                return  # the listener syncs everything when it (re)connects
            wanted = self._wanted()
            add, drop = sorted(wanted - self._sent), sorted(self._sent - wanted)
            try:
                if add:
                    self._sent.update(add)
                    for ch in add:
                        self._in_flight[ch] = self._in_flight.get(ch, 0) + 1
                    await conn.send_command("SUBSCRIBE", *add, check_health=False)
                if drop:
                    self._sent.difference_update(drop)
                    for ch in drop:
                        self._in_flight[ch] = self._in_flight.get(ch, 0) + 1
                    await conn.send_command("UNSUBSCRIBE", *drop, check_health=False)
            except (RedisError, OSError) as exc:
                log.debug("pub/sub sync failed (listener will reconnect): %s", exc)
                return

    async def _await_channel(self, channel: str, only_if_local: str | None = None) -> None:
        """Wait until this node's listener has the channel confirmed by Redis."""
        if only_if_local is not None and only_if_local not in self.registry.by_stream:
            return
        if channel in self.listener_channels and not self._in_flight.get(channel):
            return
        waiter = asyncio.get_running_loop().create_future()
        self._ready_waiters.setdefault(channel, []).append(waiter)
        try:
            await asyncio.wait_for(waiter, READY_TIMEOUT)
        except TimeoutError:
            raise BrokerUnavailable(
                f"Redis broker at {self._safe_url}: no pub/sub subscription for {channel} after {READY_TIMEOUT}s"
            ) from None
        finally:
            waiters = self._ready_waiters.get(channel)
            if waiters is not None:
                with contextlib.suppress(ValueError):
                    waiters.remove(waiter)
                if not waiters:
                    del self._ready_waiters[channel]

    def _settle(self, channel: str, subscribed: bool) -> None:
        left = self._in_flight.get(channel, 1) - 1
        if left > 0:
            self._in_flight[channel] = left
        else:
            self._in_flight.pop(channel, None)
        if subscribed:
            self.listener_channels.add(channel)
        else:
            self.listener_channels.discard(channel)
        if subscribed and left <= 0:
            for waiter in self._ready_waiters.get(channel, ()):
                if not waiter.done():
                    waiter.set_result(None)

    async def _listen_forever(self) -> None:
        delay = BACKOFF_MIN
        first = True
        while not self._closing:
            assert self._pool is not None
            # A connection of its own, outside the pool; raw bytes, since payloads are parsed once here.
            conn = self._pool.connection_class(**{**self._pool.connection_kwargs, "decode_responses": False})
            try:
                await conn.connect()
                self._conn = conn
                if not first:
                    log.info("redis broker %s: pub/sub reconnected, resubscribing", self._safe_url)
                first = False
                delay = BACKOFF_MIN
                self._sent.clear()
                self._in_flight.clear()
                self._sync_again = True
                await self._sync_channels()
                await self._read(conn)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                # Once per outage at warning level; the retries while Redis stays down at debug.
                level = logging.WARNING if delay == BACKOFF_MIN else logging.DEBUG
                log.log(level, "redis broker %s: pub/sub connection lost, reconnecting: %s", self._safe_url, exc)
            finally:
                self._conn = None
                self.listener_channels.clear()
                with contextlib.suppress(Exception):
                    await conn.disconnect()
            if self._closing:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _read(self, conn: AbstractConnection) -> None:
        pinged = False
        while True:
            reply = await conn.read_response(timeout=IDLE_PING, push_request=True)
            if reply is None:  # silence: prove the link is alive, or give up on it
                if pinged:
                    raise RedisTimeoutError("no answer to PING on the pub/sub connection")
                await conn.send_command("PING", check_health=False)
                pinged = True
                continue
            pinged = False
            kind = reply[0]
            if kind == b"message":
                self._dispatch(reply[1].decode(), reply[2])
            elif kind == b"subscribe":
                self._settle(reply[1].decode(), subscribed=True)
            elif kind == b"unsubscribe":
                self._settle(reply[1].decode(), subscribed=False)

    def _dispatch(self, channel: str, payload: bytes) -> None:
        if channel == INBOX_CHANNEL:
            self._inbox.set()
            return
        stream = channel[len(STREAM_CHANNEL) :]
        if stream not in self.registry.by_stream:
            return  # the last local subscriber left; UNSUBSCRIBE is on its way
        try:
            seq, epoch, event, data = json.loads(payload)
        except (ValueError, TypeError):
            log.warning("redis broker: malformed event on %s dropped", channel)
            return
        self.registry.deliver(stream, StreamEvent(str(seq), event, data, epoch))


def _entry_event(entry_id: str, fields: dict[str, str], epoch: int) -> StreamEvent:
    return StreamEvent(entry_id.split("-", 1)[0], fields["e"], json.loads(fields["d"]), epoch)
