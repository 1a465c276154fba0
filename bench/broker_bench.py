"""Broker fan-out by hand: `.venv/bin/python -m bench.broker_bench [--n 5000] [--concurrency 32]`.

Per broker: publish N events into one stream with one live subscriber and measure
- events/s: N / (first publish -> last event received), with `concurrency` publishers in flight;
- p50/p99 publish->receive latency, from sequential publishes (one event in flight at a time).
Redis (a server it starts, or BUZZI_BENCH_REDIS_URL) publishes on one broker instance and
subscribes on another, as two nodes would. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from contextlib import ExitStack
from dataclasses import dataclass

from buzzi.broker import open_broker
from buzzi.broker.base import StreamLog
from buzzi.config import BrokerSettings


@dataclass
class Result:
    name: str
    events_per_s: float
    p50_ms: float
    p99_ms: float


async def throughput(publisher: StreamLog, subscriber: StreamLog, n: int, concurrency: int) -> float:
    """Events per second from `publisher` to one live subscriber on `subscriber` (both may be one node)."""
    sub = subscriber.subscribe("bench-throughput", maxsize=n + 1)
    await subscriber.replay("bench-throughput", None)  # the subscription is live after this
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await publisher.publish("bench-throughput", "message", {"i": i})

    start = time.perf_counter()
    workers = asyncio.gather(*(worker() for _ in range(concurrency)))
    for _ in range(n):
        await sub.get()
    elapsed = time.perf_counter() - start
    await workers
    sub.close()
    return n / elapsed


async def _latency(publisher: StreamLog, subscriber: StreamLog, n: int) -> list[float]:
    sub = subscriber.subscribe("bench-latency", maxsize=16)
    await subscriber.replay("bench-latency", None)
    samples = []
    for i in range(n):
        sent = time.perf_counter()
        await publisher.publish("bench-latency", "message", {"i": i})
        await sub.get()
        samples.append((time.perf_counter() - sent) * 1000)
    sub.close()
    return samples


async def _run(name: str, url: str, n: int, concurrency: int, two_nodes: bool) -> Result:
    settings = BrokerSettings(
        url=url, event_log_size=500, event_log_ttl_seconds=600, max_connections=concurrency + 4, node_ttl_seconds=15
    )
    publisher = open_broker(url, settings, "bench-pub")
    await publisher.open()
    subscriber = publisher
    if two_nodes:
        subscriber = open_broker(url, settings, "bench-sub")
        await subscriber.open()
    try:
        await _latency(publisher, subscriber, 100)  # warm-up: connections, scripts
        rate = await throughput(publisher, subscriber, n, concurrency)
        samples = sorted(await _latency(publisher, subscriber, min(n, 2000)))
    finally:
        if subscriber is not publisher:
            await subscriber.close()
        await publisher.close()
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return Result(name, rate, statistics.median(samples), p99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="events per throughput run")
    parser.add_argument("--concurrency", type=int, default=32, help="publishes in flight in the throughput run")
    args = parser.parse_args()

    with ExitStack() as stack:
        redis_url = os.environ.get("BUZZI_BENCH_REDIS_URL")
        if not redis_url:
            from tests.support.redis_server import RedisServer

            server = RedisServer()
            server.start()
            stack.callback(server.cleanup)
            redis_url = server.url
            redis_name = f"redis ({os.path.basename(server.binary)}), 2 nodes"
        else:
            redis_name = "redis (BUZZI_BENCH_REDIS_URL), 2 nodes"
        results = [
            asyncio.run(_run("memory, 1 node", "memory://", args.n, args.concurrency, two_nodes=False)),
            asyncio.run(_run(redis_name, redis_url, args.n, args.concurrency, two_nodes=True)),
        ]

    print(f"\nn={args.n}, concurrency={args.concurrency}; latency from sequential publishes\n")
    print("| broker | events/s | p50 publish->receive (ms) | p99 publish->receive (ms) |")
    print("|---|---:|---:|---:|")
    for r in results:
        print(f"| {r.name} | {r.events_per_s:,.0f} | {r.p50_ms:.3f} | {r.p99_ms:.3f} |")


if __name__ == "__main__":
    main()
