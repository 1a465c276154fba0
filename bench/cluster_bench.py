"""Cross-node SSE delivery by hand: `.venv/bin/python -m bench.cluster_bench [--streams 5000] [--seconds 10]`.

Topology: node A is a real gateway process (run.py) on Redis + a MongoDB-wire store (mongoeco in a
subprocess, or BUZZI_BENCH_MONGODB_URL). N web chat sessions each hold one SSE stream on node A.
"Node B" publishes: a RedisBroker named node-b in this process, doing exactly what node B's message
processor does (the Lua append+PUBLISH); its events cross Redis, node A's one pub/sub connection,
node A's fan-out and the SSE write, and are timed when the client here parses them.

Measured:
- cross-node latency p50/p99: publishes at --rate per second, round robin over the streams, for
  --seconds; each event carries its send time (same process, same clock);
- cross-node SSE events/s: one event to every stream as fast as --concurrency publishers go,
  counted until the last client has it;
- broker events/s: Redis (two broker instances, as two nodes) vs the single-node memory broker,
  one stream, one subscriber, --concurrency publishers.
Prints a markdown table. The client side (N streams, parsing) shares the machine with node A,
Redis and the store, so on a small machine the numbers are a floor, not a ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.broker_bench import throughput as broker_throughput
from buzzi.broker import open_broker
from buzzi.broker.base import KeyValue, StreamLog
from buzzi.chat import conversation_stream
from buzzi.config import BrokerSettings
from buzzi.crypto import sha256_hex
from buzzi.ids import new_id, new_session_id
from tests.support.cluster import Cluster


@dataclass
class Clients:
    """N SSE readers; each records (receive time - send time) of the timed events it parses."""

    samples: list[float] = field(default_factory=list)
    received: int = 0
    seen: dict[int, int] = field(default_factory=dict)  # stream index -> events received
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    refused: int = 0  # stream opens answered 503 (and retried, as the widget does)

    async def read(self, http: aiohttp.ClientSession, url: str, index: int, opened: asyncio.Queue[int],
                   gate: asyncio.Semaphore) -> None:
        async with gate:  # connects come in bounded waves, as reconnects through a balancer would
            while True:
                resp = await http.get(url, headers={"Last-Event-ID": "0"})
                if resp.status == 200:
                    break
                self.refused += 1
                resp.release()
                await asyncio.sleep(0.5)
            opened.put_nowait(index)
        async with resp:
            async for raw in resp.content:
                if not raw.startswith(b"data:"):
                    continue
                now = time.perf_counter()
                data = json.loads(raw[5:])
                self.received += 1
                self.seen[index] = self.seen.get(index, 0) + 1
                sent = data.get("t")
                if sent is not None:
                    self.samples.append((now - sent) * 1000)


async def _wait(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {what} did not happen within {timeout}s")
        await asyncio.sleep(0.05)


async def _create_sessions(broker: KeyValue, n: int, concurrency: int) -> tuple[list[str], list[str]]:
    """N web chat sessions as node A's session cache holds them (what POST /api/chat/sessions leaves
    in Redis). Going through the HTTP API would time the MongoDB-wire stand-in, not the gateway."""
    sids = [new_session_id() for _ in range(n)]
    conversations = [new_id("conversation") for _ in range(n)]
    todo = iter(range(n))

    async def worker() -> None:
        for i in todo:
            value = json.dumps({"c": conversations[i], "co": "c_bench", "a": "a_bench"})
            await broker.kv_set(f"chat:{sha256_hex(sids[i])}", value, 3600)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sids, [conversation_stream(c) for c in conversations]


async def _broker_rate(url: str, n: int, concurrency: int, two_nodes: bool) -> float:
    settings = BrokerSettings(url=url, event_log_size=500, event_log_ttl_seconds=600,
                              max_connections=concurrency + 4, node_ttl_seconds=15)
    publisher = open_broker(url, settings, "bench-pub")
    await publisher.open()
    subscriber = publisher
    if two_nodes:
        subscriber = open_broker(url, settings, "bench-sub")
        await subscriber.open()
    try:
        return await broker_throughput(publisher, subscriber, n, concurrency)
    finally:
        if subscriber is not publisher:
            await subscriber.close()
        await publisher.close()


@dataclass
class Report:
    streams: int
    setup_s: float
    latency: list[float]
    fanout_rate: float
    redis_rate: float
    memory_rate: float
    rate: int
    seconds: float
    refused: int


async def _bench(cluster: Cluster, args: argparse.Namespace) -> Report:
    node_a = cluster["node-a"]
    node_b = open_broker(cluster.broker_url, BrokerSettings(
        url=cluster.broker_url, event_log_size=500, event_log_ttl_seconds=600,
        max_connections=args.concurrency + 4, node_ttl_seconds=15), "node-b")
    await node_b.open()
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    clients = Clients()
    try:
        async with aiohttp.ClientSession(connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=None, sock_connect=30)) as http:
            started = time.perf_counter()
            sids, streams = await _create_sessions(node_b, args.streams, args.concurrency)
            opened: asyncio.Queue[int] = asyncio.Queue()
            gate = asyncio.Semaphore(args.open_concurrency)
            for i, sid in enumerate(sids):
                url = f"{node_a.base_url}/api/chat/{sid}/stream"
                clients.tasks.append(asyncio.create_task(clients.read(http, url, i, opened, gate)))
            await _wait(lambda: opened.qsize() == len(sids), 300, "opening every stream")
            # Warm-up: one event per stream; every client having it means every subscription is live
            # (an event published before a stream subscribed still arrives, by replay after id 0).
            await _publish_all(node_b, streams, args.concurrency, timed=False)
            await _wait(lambda: len(clients.seen) == len(sids), 120, "warm-up delivery to every stream")
            setup_s = time.perf_counter() - started

            # Latency at a steady rate.
            clients.samples.clear()
            interval = 1 / args.rate
            total = int(args.rate * args.seconds)
            t0 = time.perf_counter()
            for k in range(total):
                delay = t0 + k * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                await node_b.publish(streams[k % len(streams)], "delta", {"t": time.perf_counter()})
            await _wait(lambda: len(clients.samples) >= total, 60, "delivery of the timed events")
            latency = sorted(clients.samples)

            # Fan-out burst: one event to every stream, as fast as it goes.
            before = clients.received
            start = time.perf_counter()
            await _publish_all(node_b, streams, args.concurrency, timed=False)
            await _wait(lambda: clients.received - before >= len(streams), 120, "the fan-out burst")
            fanout_rate = len(streams) / (time.perf_counter() - start)
            for task in clients.tasks:
                task.cancel()
            await asyncio.gather(*clients.tasks, return_exceptions=True)
    finally:
        await node_b.close()
    redis_rate = await _broker_rate(cluster.broker_url, args.events, args.concurrency, two_nodes=True)
    memory_rate = await _broker_rate("memory://", args.events, args.concurrency, two_nodes=False)
    return Report(len(sids), setup_s, latency, fanout_rate, redis_rate, memory_rate, args.rate, args.seconds,
                  clients.refused)


async def _publish_all(broker: StreamLog, streams: list[str], concurrency: int, timed: bool) -> None:
    todo = iter(streams)

    async def worker() -> None:
        for stream in todo:
            await broker.publish(stream, "delta", {"t": time.perf_counter()} if timed else {"w": 1})

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def _pct(samples: list[float], q: float) -> float:
    return samples[min(len(samples) - 1, int(len(samples) * q))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=5000, help="SSE streams (one session each) on node A")
    parser.add_argument("--rate", type=int, default=200, help="timed publishes per second in the latency run")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the latency run")
    parser.add_argument("--events", type=int, default=20000, help="events per broker events/s run")
    parser.add_argument("--concurrency", type=int, default=32, help="publishes in flight")
    parser.add_argument("--open-concurrency", type=int, default=100, help="stream connects in flight")
    args = parser.parse_args()
    # A plain `kill` still stops the node, Redis and the store this bench started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    from tests.support.mongo_server import MongoWireServer
    from tests.support.redis_server import RedisServer

    with ExitStack() as stack:
        redis = RedisServer()
        redis.start()
        stack.callback(redis.cleanup)
        mongo_url = os.environ.get("BUZZI_BENCH_MONGODB_URL")
        if not mongo_url:
            mongo = MongoWireServer(database="buzzi_bench")
            mongo.start()
            stack.callback(mongo.stop)
            mongo_url = mongo.url
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="buzzi-cluster-bench-")))
        cluster = Cluster.fresh(tmp, mongo_url, redis.url, BUZZI_LIMITS_IP_PER_MINUTE="10000000",
                                BUZZI_BROKER_NODE_TTL_SECONDS="15", BUZZI_SERVER_LOG_LEVEL="warning")
        stack.enter_context(cluster.running())
        cluster.start("node-a")
        report = asyncio.run(_bench(cluster, args))

    lat = report.latency
    print(f"\n{report.streams} SSE streams on node A (setup {report.setup_s:.0f} s); publishes from node B via Redis;"
          f" latency at {report.rate}/s for {report.seconds:.0f} s ({len(lat)} samples), {os.cpu_count()} CPUs\n")
    print("| measure | value |")
    print("|---|---:|")
    print(f"| cross-node publish -> SSE client p50 (ms) | {statistics.median(lat):.2f} |")
    print(f"| cross-node publish -> SSE client p99 (ms) | {_pct(lat, 0.99):.2f} |")
    print(f"| cross-node publish -> SSE client max (ms) | {lat[-1]:.2f} |")
    print(f"| cross-node fan-out, 1 event to each of {report.streams} streams (SSE events/s) | "
          f"{report.fanout_rate:,.0f} |")
    print(f"| broker events/s, Redis, 2 nodes (1 stream, {args.concurrency} publishers) | {report.redis_rate:,.0f} |")
    print(f"| broker events/s, memory, 1 node (same run) | {report.memory_rate:,.0f} |")
    print(f"| stream opens refused (503) and retried, {args.open_concurrency} connecting at once | {report.refused} |")


if __name__ == "__main__":
    main()
