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
import itertools
import os
import statistics
import time
from contextlib import ExitStack
from dataclasses import dataclass

from bench.figures import Figure, write_figures
from buzzi.broker import open_broker
from buzzi.broker.base import StreamLog
from buzzi.config import BrokerSettings


@dataclass
class Result:
    name: str
    events_per_s: float
    p50_ms: float
    p99_ms: float
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    cpu_us: float = 0.0


async def throughput(publisher: StreamLog, subscriber: StreamLog, n: int, concurrency: int,
                     check: list[int] | None = None) -> float:
    """Events per second from `publisher` to one live subscriber on `subscriber` (both may be one node).
    With `check`, appends [lost, duplicated, out of order] for the events received and this process's
    CPU time per event in us (both nodes: steady under machine load, where events/s is not)."""
    stream = f"bench-throughput-{time.monotonic_ns()}"  # a fresh log per run
    sub = subscriber.subscribe(stream, maxsize=n + 1)
    await subscriber.replay(stream, None)  # the subscription is live after this
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await publisher.publish(stream, "message", {"i": i})

    start, cpu = time.perf_counter(), time.process_time()
    workers = asyncio.gather(*(worker() for _ in range(concurrency)))
    received = []
    try:
        while len(received) < n:
            received.append(await sub.get(timeout=10))
    except TimeoutError:
        pass  # some never came: counted as lost below
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    await workers
    sub.close()
    if check is not None:
        distinct = {e.data["i"] for e in received}
        ids = [e.seq for e in received]
        check += [n - len(distinct), len(received) - len(distinct), sum(b <= a for a, b in itertools.pairwise(ids)),
                  cpu / n * 1e6]
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
        check: list[int] = []
        rate = await throughput(publisher, subscriber, n, concurrency, check)
        samples = sorted(await _latency(publisher, subscriber, min(n, 2000)))
    finally:
        if subscriber is not publisher:
            await subscriber.close()
        await publisher.close()
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return Result(name, rate, statistics.median(samples), p99, *check)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="events per throughput run")
    parser.add_argument("--concurrency", type=int, default=32, help="publishes in flight in the throughput run")
    parser.add_argument("--json", metavar="PATH", help="write the headline figures there (bench/figures.py)")
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
    print("| broker | events/s | CPU us/event | p50 publish->receive (ms) | p99 publish->receive (ms) "
          "| lost / dup / out of order |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r.name} | {r.events_per_s:,.0f} | {r.cpu_us:.1f} | {r.p50_ms:.3f} | {r.p99_ms:.3f} | "
              f"{r.lost} / {r.duplicated} / {r.out_of_order} |")
    write_figures(args.json, "broker", _figures(results[1], results[0], args))


def _figures(redis: Result, memory: Result, args: argparse.Namespace) -> list[Figure]:
    bad = redis.lost + redis.duplicated + redis.out_of_order
    return [
        Figure(f"broker events/s node to node, Redis ({args.concurrency} publishers, 1 stream)",
               round(redis.events_per_s), "ev/s", ">= 40,000", redis.events_per_s >= 40_000,
               round(memory.events_per_s), "memory broker, 1 node, same run"),
        Figure("broker CPU per event, Redis, both nodes (bench process)", round(redis.cpu_us, 1), "us",
               bare=round(memory.cpu_us, 1), baseline="memory broker, same run"),
        Figure("broker publish -> receive p50, Redis, one event in flight", round(redis.p50_ms, 3), "ms",
               bare=round(memory.p50_ms, 3), baseline="memory broker, same run"),
        Figure("broker publish -> receive p99, Redis, one event in flight", round(redis.p99_ms, 3), "ms",
               bare=round(memory.p99_ms, 3), baseline="memory broker, same run"),
        Figure("broker events lost + duplicated + out of order, Redis", bad, "count", "0", bad == 0),
    ]


if __name__ == "__main__":
    main()
