"""Cross-node SSE delivery by hand: `.venv/bin/python -m bench.cluster_bench [--streams 5000] [--seconds 10]`.

Topology: node A is a real gateway process (run.py) on Redis + a MongoDB-wire store (mongoeco in a
subprocess, or BUZZI_BENCH_MONGODB_URL). N web chat sessions each hold one SSE stream on node A.
"Node B" publishes: a RedisBroker named node-b in this process, doing exactly what node B's message
processor does (the Lua append+PUBLISH); its events cross Redis, node A's one pub/sub connection,
node A's fan-out and the SSE write, and are timed when the client here parses them.

Measured:
- cross-node latency p50/p99: publishes at --rate per second, round robin over the streams, for
  --seconds; each event carries its send time (same process, same clock);
- cross-node SSE events/s: --rounds bursts of one event to every stream as fast as
  --fanout-concurrency publishers go (node B in a process of its own for these), each counted until the last client
  has it, and node A's CPU time per event (steady under machine load, where the rate is not);
  the baseline is the same clients and bursts against bench/bare_sse_server.py's POST /broadcast
  (bare Tornado, one process, run after node A stopped);
- events lost or duplicated: every client counts the distinct ids it got (an id at or below the
  last one is a duplicate) against what was published to its stream;
- broker events/s: Redis (two broker instances, as two nodes) vs the single-node memory broker,
  one stream, one subscriber, --concurrency publishers.
Prints a markdown table; `--json PATH` writes the headline figures (bench/figures.py).
The client side (N streams, parsing) shares the machine with node A,
Redis and the store, so on a small machine the numbers are a floor, not a ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from bench.broker_bench import throughput as broker_throughput
from bench.figures import Figure, write_figures
from buzzi import jsoncodec
from buzzi.broker import open_broker
from buzzi.broker.base import KeyValue, StreamLog
from buzzi.chat import conversation_stream
from buzzi.config import BrokerSettings
from buzzi.crypto import sha256_hex
from buzzi.gctuning import tune_for_serving
from buzzi.ids import new_id, new_session_id
from tests.support.cluster import Cluster


class _SseReader(asyncio.Protocol):
    """One SSE stream read straight off its socket: a callback per chunk, no task per event, so the
    clients (which share this machine with the node) cost as little as the bench can make them.
    The request is HTTP/1.0, so the body arrives unchunked."""

    def __init__(self, clients: Clients, index: int, opened: asyncio.Future[int]) -> None:
        self.clients, self.index, self.opened = clients, index, opened
        self.buffer = b""
        self.headers_done = False
        self.last_id = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.headers_done:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            status = int(head.split(b" ", 2)[1])
            if not self.opened.done():
                self.opened.set_result(status)
            if status != 200:
                return
            self.headers_done, self.buffer = True, rest
        *frames, self.buffer = self.buffer.split(b"\n\n")
        now = time.perf_counter()
        for frame in frames:
            self.clients.frame(self, frame, now)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_result(0)


@dataclass
class Clients:
    """N SSE readers; each records (receive time - send time) of the timed events it parses, and
    counts events per stream, an id at or below the last one it got being a duplicate."""

    samples: list[float] = field(default_factory=list)
    received: int = 0
    duplicated: int = 0
    seen: dict[int, int] = field(default_factory=dict)  # stream index -> distinct events received
    readers: list[_SseReader] = field(default_factory=list)
    target: tuple[int, asyncio.Future[None]] | None = None  # (count, set once `received` reaches it)
    refused: int = 0  # stream opens not answered 200 (and retried, as the widget does)

    async def open(self, url: str, index: int, gate: asyncio.Semaphore) -> None:
        parts = urlsplit(url)
        request = (f"GET {parts.path} HTTP/1.0\r\nHost: {parts.netloc}\r\nAccept: text/event-stream\r\n"
                   "Last-Event-ID: 0\r\n\r\n").encode()
        loop = asyncio.get_running_loop()
        async with gate:  # connects come in bounded waves, as reconnects through a balancer would
            while True:
                opened: asyncio.Future[int] = loop.create_future()
                transport, reader = await loop.create_connection(
                    lambda o=opened: _SseReader(self, index, o), parts.hostname, parts.port)
                transport.write(request)
                if await opened == 200:
                    self.readers.append(reader)
                    return
                self.refused += 1
                transport.close()
                await asyncio.sleep(0.5)

    def frame(self, reader: _SseReader, frame: bytes, now: float) -> None:
        event_id, data = 0, None
        for line in frame.split(b"\n"):
            if line.startswith(b"id:"):
                event_id = int(line[3:])
            elif line.startswith(b"data:"):
                data = jsoncodec.loads(line[5:])
        if data is None:
            return  # retry: or a heartbeat comment
        self.received += 1
        if self.target is not None and self.received >= self.target[0] and not self.target[1].done():
            self.target[1].set_result(None)
        if event_id <= reader.last_id:
            self.duplicated += 1
            return
        reader.last_id = event_id
        self.seen[reader.index] = self.seen.get(reader.index, 0) + 1
        sent = data.get("t")
        if isinstance(sent, float):
            self.samples.append((now - sent) * 1000)

    async def reach(self, count: int, timeout: float) -> None:
        """Return as soon as `received` reaches count (no polling delay in a timed burst)."""
        if self.received >= count:
            return
        future = asyncio.get_running_loop().create_future()
        self.target = (count, future)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise SystemExit(f"bench: only {self.received} of {count} events arrived within {timeout}s") from None
        finally:
            self.target = None

    def lost(self, expected: dict[int, int]) -> int:
        return sum(max(0, n - self.seen.get(i, 0)) for i, n in expected.items())

    def stop(self) -> None:
        for reader in self.readers:
            if reader.transport is not None:
                reader.transport.close()


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
    fanout: Fanout
    redis_rate: float
    memory_rate: float
    lost: int
    duplicated: int
    refused: int
    bare_fanout: Fanout | None = None


async def _open_streams(clients: Clients, urls: list[str], open_concurrency: int) -> None:
    gate = asyncio.Semaphore(open_concurrency)
    async with asyncio.timeout(300):
        await asyncio.gather(*(clients.open(url, i, gate) for i, url in enumerate(urls)))


def _http() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=False),
                                 timeout=aiohttp.ClientTimeout(total=None, sock_connect=30))


async def _latency_run(node_b: StreamLog, streams: list[str], clients: Clients, rate: int, seconds: float,
                       expected: dict[int, int]) -> list[float]:
    """Timed publishes at `rate` per second, round robin over the streams."""
    clients.samples.clear()
    interval = 1 / rate
    total = int(rate * seconds)
    t0 = time.perf_counter()
    for k in range(total):
        delay = t0 + k * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await node_b.publish(streams[k % len(streams)], "delta", {"t": time.perf_counter()})
        expected[k % len(streams)] += 1
    await _wait(lambda: len(clients.samples) >= total, 60, "delivery of the timed events")
    return sorted(clients.samples)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Fanout:
    rate: float  # SSE events/s
    cpu_us: float  # server CPU per SSE event: steady under machine load, where the rate is not
    others_us: dict[str, float] = field(default_factory=dict)  # the same for the other processes involved


async def _fanout(publish_round, clients: Clients, n: int, rounds: int, server_pid: int,
                  others: dict[str, int] | None = None) -> Fanout:
    """SSE events/s of `rounds` bursts of one event to each of the n streams, each counted until
    the last client has it, and the server's CPU time per event (and that of `others`, by name)."""
    elapsed = 0.0
    others = {"clients (this process)": os.getpid(), **(others or {})}
    before = {name: _cpu_seconds(pid) for name, pid in others.items()}
    cpu = _cpu_seconds(server_pid)
    for _ in range(rounds):
        target = clients.received + n
        start = time.perf_counter()
        await publish_round()
        await clients.reach(target, 120)
        elapsed += time.perf_counter() - start
    per_event = {name: (_cpu_seconds(pid) - before[name]) / (n * rounds) * 1e6 for name, pid in others.items()}
    return Fanout(n * rounds / elapsed, (_cpu_seconds(server_pid) - cpu) / (n * rounds) * 1e6, per_event)


async def _bench(cluster: Cluster, args: argparse.Namespace) -> Report:
    node_a = cluster["node-a"]
    node_b = open_broker(cluster.broker_url, BrokerSettings(
        url=cluster.broker_url, event_log_size=500, event_log_ttl_seconds=600,
        max_connections=args.concurrency + 4, node_ttl_seconds=15), "node-b")
    await node_b.open()
    clients = Clients()
    try:
        started = time.perf_counter()
        sids, streams = await _create_sessions(node_b, args.streams, args.concurrency)
        await _open_streams(clients, [f"{node_a.base_url}/api/chat/{sid}/stream" for sid in sids],
                            args.open_concurrency)
        # Warm-up: one event per stream; every client having it means every subscription is live
        # (an event published before a stream subscribed still arrives, by replay after id 0).
        await _publish_all(node_b, streams, args.concurrency)
        await _wait(lambda: len(clients.seen) == len(sids), 120, "warm-up delivery to every stream")
        setup_s = time.perf_counter() - started
        expected = dict.fromkeys(range(len(streams)), 1)
        latency = await _latency_run(node_b, streams, clients, args.rate, args.seconds, expected)
        async with _publisher_process(cluster.broker_url, streams, args.fanout_concurrency) as (publish_round, pid):
            fanout = await _fanout(publish_round, clients, len(streams), args.rounds, node_a.proc.pid,
                                   {"node B (publisher)": pid, "Redis": args.redis_pid})
        for i in expected:
            expected[i] += args.rounds
        await asyncio.sleep(0.5)  # a late duplicate would show up now
        clients.stop()
    finally:
        await node_b.close()
    redis_rate = await _broker_rate(cluster.broker_url, args.events, args.concurrency, two_nodes=True)
    memory_rate = await _broker_rate("memory://", args.events, args.concurrency, two_nodes=False)
    return Report(len(sids), setup_s, latency, fanout, redis_rate, memory_rate, clients.lost(expected),
                  clients.duplicated, clients.refused)


@contextlib.asynccontextmanager
async def _publisher_process(url: str, streams: list[str], concurrency: int
                             ) -> AsyncIterator[tuple[Callable[[], Awaitable[None]], int]]:
    """Node B for the fan-out bursts, in a process of its own as another node would be (sharing
    this one with thousands of SSE readers would time the readers): a function that has it
    publish one event to every stream and returns once it has."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.cluster_bench", "--publisher", url, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, cwd=Path(__file__).resolve().parent.parent)
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout
    stdin.write(jsoncodec.dumpb({"streams": streams, "concurrency": concurrency}) + b"\n")
    if (await stdout.readline()).strip() != b"ready":  # started: its start-up is not timed
        raise SystemExit("bench: the publisher process failed to start")

    async def publish_round() -> None:
        stdin.write(b"go\n")
        await stdin.drain()
        if (await stdout.readline()).strip() != b"done":
            raise SystemExit("bench: the publisher process failed")

    try:
        yield publish_round, proc.pid
    finally:
        stdin.close()
        await proc.wait()


async def _publisher_main(url: str) -> None:
    """`--publisher URL` (run by _publisher_process): reads the streams (one JSON line), then per
    `go` line publishes one event to each and answers `done`."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)  # the stream list is one long line
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    job = jsoncodec.loads(await reader.readline())
    node = open_broker(url, BrokerSettings(url=url, event_log_size=500, event_log_ttl_seconds=600,
                                           max_connections=job["concurrency"] + 4, node_ttl_seconds=15), "node-b2")
    await node.open()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    try:
        while (await reader.readline()).strip() == b"go":
            await _publish_all(node, job["streams"], job["concurrency"])
            sys.stdout.write("done\n")
            sys.stdout.flush()
    finally:
        await node.close()


async def _publish_all(broker: StreamLog, streams: list[str], concurrency: int) -> None:
    todo = iter(streams)

    async def worker() -> None:
        for stream in todo:
            await broker.publish(stream, "delta", {"w": 1})

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _bare_fanout(base_url: str, args: argparse.Namespace, pid: int) -> Fanout:
    """The same clients and bursts against bench/bare_sse_server.py, whose POST /broadcast writes
    one event to every open stream: the bare Tornado ceiling of this machine."""
    clients = Clients()
    async with _http() as http:
        await _open_streams(clients, [f"{base_url}/stream/{i}" for i in range(args.streams)],
                            args.open_concurrency)

        async def broadcast() -> None:
            async with http.post(f"{base_url}/broadcast") as resp:
                resp.raise_for_status()

        await broadcast()  # warm-up
        await _wait(lambda: clients.received >= args.streams, 120, "warm-up broadcast")
        fanout = await _fanout(broadcast, clients, args.streams, args.rounds, pid)
        clients.stop()
    return fanout


def _pct(samples: list[float], q: float) -> float:
    return samples[min(len(samples) - 1, int(len(samples) * q))]


def _figures(report: Report, args: argparse.Namespace) -> list[Figure]:
    lat = report.latency
    p99 = _pct(lat, 0.99)
    n = f"{report.streams:,}"
    bare = report.bare_fanout
    return [
        Figure("broker events/s node to node, Redis (1 stream, 2 broker instances)", round(report.redis_rate),
               "ev/s", ">= 40,000", report.redis_rate >= 40_000, round(report.memory_rate),
               "memory broker, 1 node, same run"),
        Figure(f"cross-node fan-out, 1 event to each of {n} streams on node A", round(report.fanout.rate),
               "ev/s", ">= 20,000", report.fanout.rate >= 20_000, round(bare.rate) if bare else None,
               "bare Tornado broadcast to the same streams (bench/bare_sse_server.py)",
               f"{args.rounds} bursts, {args.fanout_concurrency} publishes in flight on node B"),
        Figure("node A CPU per fanned-out SSE event", round(report.fanout.cpu_us, 1), "us",
               bare=round(bare.cpu_us, 1) if bare else None, baseline="bare Tornado broadcast, same run"),
        Figure(f"cross-node publish -> SSE client p50 at {args.rate:,} ev/s", round(statistics.median(lat), 2),
               "ms"),
        Figure(f"cross-node publish -> SSE client p99 at {args.rate:,} ev/s", round(p99, 2), "ms", "< 10 ms",
               p99 < 10),
        Figure("cross-node events lost + duplicated", report.lost + report.duplicated, "count", "0",
               report.lost + report.duplicated == 0, note=f"lost {report.lost}, duplicated {report.duplicated}"),
    ]


def _print(report: Report, args: argparse.Namespace) -> None:
    lat = report.latency
    print(f"\n{report.streams} SSE streams on node A (setup {report.setup_s:.0f} s); publishes from node B via Redis;"
          f" latency at {args.rate}/s for {args.seconds:.0f} s ({len(lat)} samples), {os.cpu_count()} CPUs\n")
    print("| measure | value |")
    print("|---|---:|")
    print(f"| cross-node publish -> SSE client p50 (ms) | {statistics.median(lat):.2f} |")
    print(f"| cross-node publish -> SSE client p99 (ms) | {_pct(lat, 0.99):.2f} |")
    print(f"| cross-node publish -> SSE client max (ms) | {lat[-1]:.2f} |")
    print(f"| cross-node fan-out, 1 event to each of {report.streams} streams (SSE events/s, {args.rounds} bursts, "
          f"{args.fanout_concurrency} in flight) | "
          f"{report.fanout.rate:,.0f} |")
    print(f"| node A CPU per fanned-out SSE event (us) | {report.fanout.cpu_us:.1f} |")
    for name, us in report.fanout.others_us.items():
        print(f"| {name} CPU per fanned-out SSE event (us) | {us:.1f} |")
    if report.bare_fanout is not None:
        print(f"| bare Tornado broadcast to {report.streams} streams, same clients (SSE events/s) | "
              f"{report.bare_fanout.rate:,.0f} |")
        print(f"| bare Tornado CPU per SSE event (us) | {report.bare_fanout.cpu_us:.1f} |")
    print(f"| broker events/s, Redis, 2 nodes (1 stream, {args.concurrency} publishers) | {report.redis_rate:,.0f} |")
    print(f"| broker events/s, memory, 1 node (same run) | {report.memory_rate:,.0f} |")
    print(f"| events lost / duplicated | {report.lost} / {report.duplicated} |")
    print(f"| stream opens refused (503) and retried, {args.open_concurrency} connecting at once | {report.refused} |")


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=5000, help="SSE streams (one session each) on node A")
    parser.add_argument("--rate", type=int, default=1000, help="timed publishes per second in the latency run")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the latency run")
    parser.add_argument("--rounds", type=int, default=5, help="fan-out bursts (one event to every stream each)")
    parser.add_argument("--events", type=int, default=20000, help="events per broker events/s run")
    parser.add_argument("--concurrency", type=int, default=32, help="publishes in flight")
    parser.add_argument("--fanout-concurrency", type=int, default=100,
                        help="publishes in flight on node B in the fan-out bursts (100 concurrent replies, issue 12)")
    parser.add_argument("--open-concurrency", type=int, default=100, help="stream connects in flight")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare Tornado broadcast baseline")
    parser.add_argument("--json", metavar="PATH", help="write the headline figures there (bench/figures.py)")
    parser.add_argument("--publisher", metavar="REDIS_URL", help=argparse.SUPPRESS)  # the fan-out's node B
    return parser.parse_args()


def main() -> None:
    args = _parse()
    if args.publisher:
        asyncio.run(_publisher_main(args.publisher))
        return
    tune_for_serving()  # the clients hold thousands of streams too (buzzi/gctuning.py)
    # A plain `kill` still stops the node, Redis and the store this bench started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    from tests.support.mongo_server import MongoWireServer
    from tests.support.redis_server import RedisServer

    with ExitStack() as stack:
        redis = RedisServer()
        redis.start()
        stack.callback(redis.cleanup)
        args.redis_pid = redis._proc.pid
        mongo_url = os.environ.get("BUZZI_BENCH_MONGODB_URL")
        if not mongo_url:
            mongo = MongoWireServer(database="buzzi_bench")
            mongo.start()
            stack.callback(mongo.stop)
            mongo_url = mongo.url
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="buzzi-cluster-bench-")))
        cluster = Cluster.fresh(tmp, mongo_url, redis.url, BUZZI_LIMITS_IP_PER_MINUTE="10000000",
                                # every bench stream comes from 127.0.0.1
                                BUZZI_CHAT_MAX_STREAMS_PER_ADDRESS=str(args.streams + 100),
                                BUZZI_BROKER_NODE_TTL_SECONDS="15", BUZZI_SERVER_LOG_LEVEL="warning")
        with cluster.running():
            cluster.start("node-a")
            report = asyncio.run(_bench(cluster, args))
        if not args.no_bare:
            report.bare_fanout = _run_bare(args)

    _print(report, args)
    write_figures(args.json, "cluster", _figures(report, args))


def _run_bare(args: argparse.Namespace) -> Fanout:
    """bench/bare_sse_server.py in a subprocess, after node A stopped (one server at a time)."""
    from tests.support.redis_server import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.bare_sse_server", "--port", str(port)],
                            stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parent.parent)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # "ready"
        return asyncio.run(_bare_fanout(f"http://127.0.0.1:{port}", args, proc.pid))
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
