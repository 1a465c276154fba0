"""The cluster broker on Redis (or Valkey), via redis-py's asyncio client.

Per stream: a head hash (the log's epoch and its last id) and a Redis Stream log (explicit ids
"<seq>-0", capped with MAXLEN, expiring with the head), appended and PUBLISHed in one Lua call.
Publishes are batched (buzzi.broker.batching): all those made in one event-loop iteration, or while
the previous batch is in flight, go out as ONE script call (EVALSHA) in call order, and each channel
gets one pub/sub message per batch; so a publish costs a share of one round trip, and the ids of one
stream follow the order of the publish calls on a node. A missing head means a new log: its epoch
comes from the Redis server's clock (one clock for every node), raised above the newest id of a log
that survived without its head.
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
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from buzzi import jsoncodec
from buzzi.broker.base import Broker, BrokerUnavailable, RateDecision, StreamEvent, Subscription
from buzzi.broker.batching import Batcher
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
MAX_BATCH = 500  # publishes per script call: bounds how long one call holds Redis (well under 1 ms)

_Publish = tuple[str, str, bytes, bytes]  # stream, event name, event JSON, data JSON
_Hits = Sequence[tuple[str, int, float]]  # one RateLimiter.check: (key, limit, window) per scope

# One call appends a whole batch of events (any streams) and publishes them: per event, KEYS holds
# its stream's head and log, ARGV (after maxlen and ttl ms) its event name, event JSON, data JSON
# and channel. Each channel gets ONE message per call, a JSON array of [id, epoch, event, data],
# so a burst on one stream costs the subscribing node one pub/sub message. Returns id, epoch per
# event. Ids are formatted with %d: Lua's own number-to-string conversion would print a 16-digit id
# in exponent notation. (The keys of a batch span slots: this needs one Redis, not Redis Cluster,
# which the client does not speak anyway.) Sent as EVALSHA; redis-py's registered script loads the
# body again on NOSCRIPT (an empty script cache after a restart or failover), which ran nothing, so
# the retry cannot append twice (https://redis.io/docs/latest/develop/reference/errors/common/noscript/).
PUBLISH_BATCH_LUA = """
local maxlen, ttl = ARGV[1], ARGV[2]
local epochs, logs, heads, messages, channels, result = {}, {}, {}, {}, {}, {}
for i = 1, #KEYS / 2 do
  local head, log, a = KEYS[2 * i - 1], KEYS[2 * i], 2 + 4 * (i - 1)
  local epoch = epochs[head]
  if not epoch then
    epoch = redis.call('HGET', head, 'epoch')
    if not epoch then
      local now = redis.call('TIME')
      local base = tonumber(now[1]) * 1000000 + tonumber(now[2])
      local top = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)[1]
      if top then base = math.max(base, tonumber(string.match(top[1], '^%d+'))) end
      epoch = string.format('%d', base)
      redis.call('HSET', head, 'epoch', epoch, 'seq', epoch)
    end
    epochs[head] = epoch
    logs[log] = true
    heads[#heads + 1] = head
  end
  local seq = string.format('%d', redis.call('HINCRBY', head, 'seq', 1))
  redis.call('XADD', log, 'MAXLEN', maxlen, seq .. '-0', 'e', ARGV[a + 1], 'd', ARGV[a + 3])
  local channel = ARGV[a + 4]
  local parts = messages[channel]
  if not parts then
    parts = {}
    messages[channel] = parts
    channels[#channels + 1] = channel
  end
  parts[#parts + 1] = '[' .. seq .. ',' .. epoch .. ',' .. ARGV[a + 2] .. ',' .. ARGV[a + 3] .. ']'
  result[#result + 1] = seq
  result[#result + 1] = epoch
end
for _, head in ipairs(heads) do redis.call('PEXPIRE', head, ttl) end
for log in pairs(logs) do redis.call('PEXPIRE', log, ttl) end
for _, channel in ipairs(channels) do
  redis.call('PUBLISH', channel, '[' .. table.concat(messages[channel], ',') .. ']')
end
return result
"""

# Every rate-limit hit of one event-loop iteration in one call. The hits come in groups (one
# RateLimiter.check: its scopes in order); ARGV holds, per group, its size then a limit and a window
# (ms) per hit, KEYS the counters in the same order. A group stops at its first refusal: the scopes
# after it are not counted, as when each hit was its own call. Returns {count, ms until the window
# resets} per hit, {0, 0} for one not counted. Each INCR is atomic, so the answers are those of one
# call per hit, whichever node sends them.
HIT_BATCH_LUA = """
local result, k, a = {}, 0, 1
while a <= #ARGV do
  local n = tonumber(ARGV[a])
  a = a + 1
  local refused = false
  for _ = 1, n do
    k = k + 1
    local limit, window = tonumber(ARGV[a]), ARGV[a + 1]
    a = a + 2
    if refused then
      result[#result + 1] = 0
      result[#result + 1] = 0
    else
      local count = redis.call('INCR', KEYS[k])
      local ttl = -1
      if count > 1 then ttl = redis.call('PTTL', KEYS[k]) end
      if ttl < 0 then
        redis.call('PEXPIRE', KEYS[k], window)
        ttl = tonumber(window)
      end
      result[#result + 1] = count
      result[#result + 1] = ttl
      refused = count > limit
    end
  end
end
return result
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
        self._batcher: Batcher[_Publish, tuple[str, str]] | None = None
        self._hits: Batcher[_Hits, list[RateDecision]] | None = None
        self._wakes: Batcher[None, None] | None = None
        self._received = 0  # replies read by the listener (the watchdog's proof of life)

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
        self._publish = self._redis.register_script(PUBLISH_BATCH_LUA)
        self._batcher = Batcher(self._publish_batch, MAX_BATCH)
        self._hit = self._redis.register_script(HIT_BATCH_LUA)
        self._hits = Batcher(self._hit_batch, MAX_BATCH)
        # MAX_BATCH is no bound here: one PUBLISH serves every wake-up queued while one is in flight.
        self._wakes = Batcher(self._wake_batch, 1_000_000)
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
        for batcher in (self._batcher, self._hits, self._wakes):
            if batcher is not None:
                await batcher.close()
        self._batcher = self._hits = self._wakes = None
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
        if self._batcher is None:
            raise BrokerUnavailable(f"Redis broker at {self._safe_url} is not open")
        # Encoded here, by the caller: a bad value fails this publish only, not its whole batch.
        item = (stream, event, jsoncodec.dumpb(event), jsoncodec.dumpb(data))
        seq, epoch = await self._batcher.submit(item)
        return StreamEvent(seq, event, data, int(epoch))

    async def _publish_batch(self, items: list[_Publish]) -> list[tuple[str, str]]:
        """One script call for every publish of the batch (see PUBLISH_BATCH_LUA)."""
        keys: list[str] = []
        args: list[Any] = [self.settings.event_log_size, _ms(self.settings.event_log_ttl_seconds)]
        for stream, event, event_json, data_json in items:
            keys.extend(_stream_keys(stream))
            args += (event, event_json, data_json, STREAM_CHANNEL + stream)
        async with self._call():
            flat = await self._publish(keys=keys, args=args)
        return list(zip(flat[::2], flat[1::2], strict=True))

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
        return (await self.hit_all([(key, limit, window)]))[0]

    async def hit_all(self, hits: Sequence[tuple[str, int, float]]) -> list[RateDecision]:
        """The hits of every caller in one event-loop iteration go out as one script call
        (HIT_BATCH_LUA), like the publishes."""
        if self._hits is None:
            raise BrokerUnavailable(f"Redis broker at {self._safe_url} is not open")
        return await self._hits.submit(hits)

    async def _hit_batch(self, groups: list[_Hits]) -> list[list[RateDecision]]:
        keys: list[str] = []
        args: list[Any] = []
        for group in groups:
            args.append(len(group))
            for key, limit, window in group:
                keys.append(PREFIX + "rl:" + key)
                args += (limit, _ms(window))
        async with self._call():
            flat = await self._hit(keys=keys, args=args)
        answers = iter(zip(flat[::2], flat[1::2], strict=True))
        result: list[list[RateDecision]] = []
        for group in groups:
            decisions: list[RateDecision] = []
            for _, limit, _ in group:
                count, ttl_ms = next(answers)
                if count == 0:
                    continue  # after a refusal of its group: not counted
                allowed = count <= limit
                decisions.append(RateDecision(allowed, count, limit, 0.0 if allowed else max(ttl_ms, 1) / 1000))
            result.append(decisions)
        return result

    # ---- presence
    async def node_heartbeat(self, node_id: str, info: dict[str, Any], ttl: float) -> None:
        doc = jsoncodec.dumpb({**info, "nodeId": node_id, "lastSeen": time.time()})
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
            await self._client.set(PREFIX + "sessions:" + node_id, jsoncodec.dumpb(sessions), px=_ms(ttl))

    async def _live_node_ids(self) -> list[str]:
        return sorted(await self._client.zrange(NODES_KEY, 0, -1))

    async def list_nodes(self) -> list[dict[str, Any]]:
        async with self._call():
            ids = await self._live_node_ids()
            docs = await self._client.mget([PREFIX + "node:" + i for i in ids]) if ids else []
        return [jsoncodec.loads(doc) for doc in docs if doc is not None]

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
                result.extend({**s, "nodeId": node_id} for s in jsoncodec.loads(sessions))
        return result

    # ---- inbox wake-ups
    async def notify_inbox(self) -> None:
        """Coalesced: at most one wake-up PUBLISH in flight per node, and one more queued for every
        call made meanwhile (a PUBLISH already sent may reach the answer processes before the
        caller's work was committed, so it cannot stand for that work). The caller returns once a
        PUBLISH sent after its call was answered, so no wake-up is lost."""
        if self._wakes is None:
            raise BrokerUnavailable(f"Redis broker at {self._safe_url} is not open")
        await self._wakes.submit(None)

    async def _wake_batch(self, items: list[None]) -> list[None]:
        async with self._call():
            await self._client.publish(INBOX_CHANNEL, "1")
        return [None] * len(items)

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
            # RESP2: messages arrive as plain arrays, and a subscribed RESP2 connection may still send
            # PING, which the watchdog needs (https://redis.io/docs/manual/pubsub). Under RESP3 redis-py
            # routes every pub/sub push through a handler that formats it for a debug log: a third of
            # the listener's time.
            conn = self._pool.connection_class(
                **{**self._pool.connection_kwargs, "decode_responses": False, "protocol": 2})
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
        """Read replies until the connection fails. No timeout per read (a timer per message is
        most of a read's cost when messages are small): a watchdog proves the link instead."""
        watchdog = asyncio.create_task(self._watch(conn), name=f"redis-broker-watchdog:{self.node_id}")
        try:
            while True:
                reply = await conn.read_response(timeout=math.inf)
                self._received += 1
                if watchdog.done():  # it gave up on the link (and disconnected it)
                    watchdog.result()
                self._handle(reply)
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                await watchdog
        # After the watchdog disconnects, the read above fails with a connection error.

    async def _watch(self, conn: AbstractConnection) -> None:
        """After IDLE_PING of silence send PING; after a second silence, drop the connection."""
        pinged = False
        while True:
            seen = self._received
            await asyncio.sleep(IDLE_PING)
            if self._received != seen:
                pinged = False
                continue
            if pinged:
                log.warning("redis broker %s: no answer to PING on the pub/sub connection", self._safe_url)
                await conn.disconnect()
                raise RedisTimeoutError("no answer to PING on the pub/sub connection")
            await conn.send_command("PING", check_health=False)
            pinged = True

    def _handle(self, reply: Any) -> None:
        if isinstance(reply, list) and reply:
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
            # Decoded once for every local subscriber of the stream.
            items = jsoncodec.loads(payload)
            if items and not isinstance(items[0], list):
                items = [items]  # one event per message, as a node before batching sends it
            events = [StreamEvent(str(seq), event, data, epoch) for seq, epoch, event, data in items]
        except (ValueError, TypeError):
            log.warning("redis broker: malformed event on %s dropped", channel)
            return
        for item in events:
            self.registry.deliver(stream, item)


def _entry_event(entry_id: str, fields: dict[str, str], epoch: int) -> StreamEvent:
    return StreamEvent(entry_id.split("-", 1)[0], fields["e"], jsoncodec.loads(fields["d"]), epoch)
