"""Web chat SSE by hand: `.venv/bin/python -m bench.chat_bench [--quick]`.

Side by side in one run, each server in its own process (fresh for every phase), driven over
127.0.0.1 by a raw asyncio SSE client (one Protocol per connection, no per-connection coroutine).
The RSS phase opens its streams from holder processes (`--hold`, at most HOLDER_STREAMS each), so
that neither the client nor a server needs more than the open-file limit (20,000 here) allows:
- gateway: bench/gateway_node.py = run.py's app (SQLite store, memory broker, demo faq agent) plus a
  bench-only POST /bench/publish/{conversation_id} that publishes through the gateway's broker;
- bare: bench/bare_sse_server.py, streams in a dict and a POST that writes to one of them.

1. RSS per open stream at 1k / 5k / 10k / 19.5k streams: (VmRSS - VmRSS before opening) / streams;
   the gateway's sessions are created before the baseline is taken.
2. Unicast `delta` events/s to 500 streams and publish -> receive p50/p99: `--workers` closed-loop
   publishers, each POSTing `--batch` events to the next stream round-robin; every event carries
   time.time_ns() from the moment it was published.
3. POST message -> first `delta` p50/p99 with 100 concurrent sessions on the demo faq agent, the
   gateway's CPU per answered message, and its event-loop stalls >= 20 ms and GC pauses
   (bench/gateway_node.py /bench/lag), to tell the gateway's own stalls from the machine's load.
Prints a markdown table with the ratios against the targets; `--json PATH` writes the headline
figures (bench/figures.py) for the summary table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import resource
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.figures import Figure, write_figures

ROOT = Path(__file__).resolve().parent.parent
LIMITS = {"BUZZI_LIMITS_IP_PER_MINUTE": "1000000000", "BUZZI_LIMITS_SESSION_PER_MINUTE": "1000000000",
          "BUZZI_LIMITS_COMPANY_PER_MINUTE": "1000000000", "BUZZI_LIMITS_SESSIONS_PER_IP_PER_MINUTE": "1000000000",
          "BUZZI_LIMITS_SESSIONS_PER_COMPANY_PER_MINUTE": "1000000000",
          # every bench stream comes from 127.0.0.1: lift the per-address stream cap
          "BUZZI_CHAT_MAX_STREAMS_PER_ADDRESS": "1000000"}
QUESTION = "What are your opening hours?"
HOLDER_STREAMS = 10_000  # streams one holder process keeps open: well inside its open-file limit
SERVER_FD_MARGIN = 300  # a server's own files besides its streams: listener, store, pipes, HTTP clients


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def raise_nofile() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


# ---------------------------------------------------------------- the SSE client


class SseClient(asyncio.Protocol):
    """One SSE connection. HTTP/1.1 chunk framing is left in the bytes: every server flush is one
    whole event, so splitting on the blank line and looking for `event:` / `"t":` is enough."""

    def __init__(self, path: str, on_event: Callable[[SseClient, bytes, bytes], None]) -> None:
        self.path = path
        self.on_event = on_event
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.headers_done = False
        self.buf = b""
        self.waiter: asyncio.Future[float] | None = None  # phase 3: resolved at the next delta
        self.done: asyncio.Future[None] | None = None  # phase 3: resolved at the next complete

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        request = f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
        self.transport.write(request.encode())  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        if not self.headers_done:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            if not buf.startswith(b"HTTP/1.1 200"):
                if not self.ready.done():
                    self.ready.set_exception(RuntimeError(buf[:200].decode(errors="replace")))
                return
            self.headers_done = True
            buf = buf[end + 4:]
        frames = buf.split(b"\n\n")
        self.buf = frames.pop()
        for frame in frames:
            i = frame.find(b"event: ")
            if i < 0:
                if b"retry:" in frame and not self.ready.done():
                    self.ready.set_result(None)
                continue
            self.on_event(self, frame[i + 7:frame.find(b"\n", i)], frame)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before the stream started"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def ignore(_: SseClient, __: bytes, ___: bytes) -> None:
    return None


async def open_streams(port: int, paths: list[str], on_event: Callable[[SseClient, bytes, bytes], None],
                       concurrency: int = 200) -> list[SseClient]:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)

    async def one(path: str) -> SseClient:
        async with gate:
            _, proto = await loop.create_connection(lambda: SseClient(path, on_event), "127.0.0.1", port)
            await asyncio.wait_for(proto.ready, 30)
            return proto

    return list(await asyncio.gather(*(one(p) for p in paths)))


async def hold_main(port: int) -> None:
    """`--hold PORT`: open the stream paths read from stdin (one a line, up to an empty line), print
    "held N", keep them open until stdin closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    paths = []
    while (line := (await reader.readline()).strip()):
        paths.append(line.decode())
    clients = await open_streams(port, paths, ignore)
    print(f"held {len(clients)}", flush=True)
    while await reader.read(4096):
        pass
    for c in clients:
        c.close()


@contextlib.asynccontextmanager
async def holders() -> AsyncIterator[Callable[[int, list[str]], Awaitable[None]]]:
    """Opens streams from child processes (each at most HOLDER_STREAMS); all close on exit."""
    procs: list[asyncio.subprocess.Process] = []

    async def hold(port: int, paths: list[str]) -> None:
        for i in range(0, len(paths), HOLDER_STREAMS):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.chat_bench", "--hold", str(port), cwd=ROOT,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            procs.append(proc)
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(("\n".join(paths[i:i + HOLDER_STREAMS]) + "\n\n").encode())
            await proc.stdin.drain()
            line = (await asyncio.wait_for(proc.stdout.readline(), 600)).decode()
            if not line.startswith("held "):
                raise RuntimeError(f"stream holder failed (exit {await proc.wait()})")

    try:
        yield hold
    finally:
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()


# ---------------------------------------------------------------- the servers


@dataclass
class Server:
    name: str
    pid: int
    port: int
    company: str = ""
    agent: str = ""
    sessions: list[tuple[str, str]] = field(default_factory=list)  # (sessionId, conversationId)

    def stream_path(self, i: int) -> str:
        return f"/api/chat/{self.sessions[i][0]}/stream" if self.name == "gateway" else f"/stream/s{i}"

    def publish_path(self, i: int, n: int) -> str:
        return (f"/bench/publish/{self.sessions[i][1]}?n={n}" if self.name == "gateway"
                else f"/publish/s{i}?n={n}")


@contextlib.asynccontextmanager
async def server(name: str, tmp: Path, log_level: str) -> AsyncIterator[Server]:
    port = free_port()
    if name == "gateway":
        data = tempfile.mkdtemp(dir=tmp)
        env = {**os.environ, **LIMITS, "BUZZI_STORE_URL": f"sqlite:///{data}/bench.sqlite3",
               "BUZZI_BROKER_URL": "memory://", "BUZZI_SERVER_DATA_DIR": data, "BUZZI_CHAT_CREATE_DEMO": "true",
               "BUZZI_ADMIN_PASSWORD": "bench-admin-password", "BUZZI_SERVER_LOG_LEVEL": log_level,
               "BUZZI_SECURITY_ALLOW_PRIVATE_NETWORKS": "true"}  # any bench agent/platform is on 127.0.0.1
        module, ready = "bench.gateway_node", "bench-ready"
    else:
        env, module, ready = dict(os.environ), "bench.bare_sse_server", "ready"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, "--port", str(port), cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=_log_file(tmp / f"{name}.log"))
    try:
        assert proc.stdout is not None
        line = ""
        while ready not in line:
            raw = await asyncio.wait_for(proc.stdout.readline(), 60)
            if not raw:
                raise RuntimeError(f"{module} exited with {await proc.wait()}; see its log")
            line = raw.decode()
        srv = Server(name, proc.pid, port)
        for part in line.split():
            key, _, value = part.partition("=")
            if key in ("company", "agent"):
                setattr(srv, key, value)
        yield srv
    finally:
        if proc.returncode is None:
            proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)


def _log_file(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def create_sessions(http: aiohttp.ClientSession, srv: Server, n: int, concurrency: int = 32) -> None:
    if srv.name != "gateway":
        srv.sessions = [(f"s{i}", f"s{i}") for i in range(n)]
        return
    url = f"http://127.0.0.1:{srv.port}/api/chat/sessions"
    body = {"companyId": srv.company, "agentId": srv.agent}
    todo = iter(range(n))
    out: list[tuple[str, str]] = []

    async def worker() -> None:
        for _ in todo:
            async with http.post(url, json=body) as resp:
                data = await resp.json()
                if resp.status != 201:
                    raise RuntimeError(f"session: {resp.status} {data}")
                out.append((data["sessionId"], data["conversationId"]))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    srv.sessions = out


# ---------------------------------------------------------------- 1. memory


async def memory_phase(name: str, tmp: Path, levels: list[int], args: argparse.Namespace) -> dict[int, float]:
    async with server(name, tmp, args.log_level) as srv, holders() as hold:
        # The session-creating connections close before the streams open: the server's files are
        # its streams (and SERVER_FD_MARGIN), nothing else.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
            await create_sessions(http, srv, max(levels) + 50)
        warm = await open_streams(srv.port, [srv.stream_path(max(levels) + i) for i in range(50)], ignore)
        for c in warm:
            c.close()
        await asyncio.sleep(2)
        base = rss_kib(srv.pid)
        opened = 0
        result: dict[int, float] = {}
        for level in levels:
            await hold(srv.port, [srv.stream_path(i) for i in range(opened, level)])
            opened = level
            await asyncio.sleep(2)  # let the gateway's presence task publish the new session list
            result[level] = (rss_kib(srv.pid) - base) / level
            print(f"  {name}: {level} streams, RSS {rss_kib(srv.pid) / 1024:.1f} MiB "
                  f"(+{result[level]:.1f} KiB/stream)", flush=True)
        return result


# ---------------------------------------------------------------- 2. unicast throughput


@dataclass
class Recorder:
    since_ns: int = 2**63  # events published before this (warm-up) are not counted
    received: int = 0
    last_ns: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def on_event(self, _: SseClient, name: bytes, frame: bytes) -> None:
        if name != b"delta":
            return
        now = time.time_ns()
        j = frame.rfind(b'"t":')
        sent = int(frame[j + 4:frame.find(b"}", j)])
        if sent < self.since_ns:
            return
        self.received += 1
        self.last_ns = now
        self.latencies_ms.append((now - sent) / 1e6)

    def start(self) -> None:
        self.since_ns, self.received, self.last_ns, self.latencies_ms = time.time_ns(), 0, 0, []

    async def drained(self, published: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        # Polls a counter the protocol callbacks bump (an Event per event would cost the client more).
        while self.received < published and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def throughput_phase(name: str, tmp: Path, args: argparse.Namespace) -> dict[str, float]:
    """Saturation: closed-loop publishers -> events/s and server CPU per event. Then paced at
    --rate events/s (open loop, below saturation) -> publish -> receive latency."""
    n = args.streams
    async with server(name, tmp, args.log_level) as srv, aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=args.workers * 2)) as http:
        await create_sessions(http, srv, n)
        rec = Recorder()
        clients = await open_streams(srv.port, [srv.stream_path(i) for i in range(n)], rec.on_event)
        base = f"http://127.0.0.1:{srv.port}"
        cursor = [0]

        async def publish(batch: int) -> None:
            i = cursor[0] % n
            cursor[0] += 1
            async with http.post(base + srv.publish_path(i, batch)) as resp:
                await resp.read()
                if resp.status != 202:
                    raise RuntimeError(f"publish: {resp.status}")

        async def publisher(until: float, sent: list[int]) -> None:
            while time.monotonic() < until:
                await publish(args.batch)
                sent[0] += args.batch

        warm = [0]
        await asyncio.gather(*(publisher(time.monotonic() + 1.0, warm) for _ in range(args.workers)))
        await asyncio.sleep(1.0)
        rec.start()
        cpu0, published = cpu_seconds(srv.pid), [0]
        await asyncio.gather(*(publisher(time.monotonic() + args.seconds, published) for _ in range(args.workers)))
        await rec.drained(published[0])
        cpu = cpu_seconds(srv.pid) - cpu0
        out = {"eps": rec.received / ((rec.last_ns - rec.since_ns) / 1e9), "lost": published[0] - rec.received,
               "cpu_us": cpu / max(rec.received, 1) * 1e6, "sat_p50": pct(rec.latencies_ms, 0.5)}

        await asyncio.sleep(1.0)
        rec.start()
        posts = int(args.rate * args.seconds / args.paced_batch)
        interval = args.paced_batch / args.rate
        t0 = time.monotonic()
        pending = set()
        for k in range(posts):
            await asyncio.sleep(max(0.0, t0 + k * interval - time.monotonic()))
            task = asyncio.create_task(publish(args.paced_batch))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        await rec.drained(posts * args.paced_batch)
        out.update(p50=pct(rec.latencies_ms, 0.5), p99=pct(rec.latencies_ms, 0.99),
                   lost=out["lost"] + posts * args.paced_batch - rec.received)
        for c in clients:
            c.close()
        return out


# ---------------------------------------------------------------- 3. first delta


async def first_delta_phase(tmp: Path, args: argparse.Namespace, sessions: int, rounds: int) -> dict[str, float]:
    """Each session: (re)open its stream as EventSource does after `complete`, POST a question,
    time the first delta, wait for `complete` (which ends the stream); think 0-2x --think s; repeat."""
    def on_event(client: SseClient, name: bytes, _: bytes) -> None:
        now = time.perf_counter()
        if name == b"delta" and client.waiter is not None and not client.waiter.done():
            client.waiter.set_result(now)
        elif name in (b"complete", b"error") and client.done is not None and not client.done.done():
            client.done.set_result(None)

    async with server("gateway", tmp, args.log_level) as srv, aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=sessions)) as http:
        await create_sessions(http, srv, sessions)
        loop = asyncio.get_running_loop()
        first: list[float] = []
        accepted: list[float] = []
        errors = [0]

        async def user(i: int) -> None:
            url = f"http://127.0.0.1:{srv.port}/api/chat/{srv.sessions[i][0]}/message"
            for _ in range(rounds):
                (client,) = await open_streams(srv.port, [srv.stream_path(i)], on_event)
                await asyncio.sleep(random.uniform(0, 2 * args.think))  # users do not type in lockstep
                client.waiter, client.done = loop.create_future(), loop.create_future()
                started = time.perf_counter()
                async with http.post(url, json={"content": QUESTION}) as resp:
                    await resp.read()
                    if resp.status != 202:
                        raise RuntimeError(f"message: {resp.status}")
                accepted.append((time.perf_counter() - started) * 1000)
                try:
                    first.append((await asyncio.wait_for(client.waiter, 30) - started) * 1000)
                    await asyncio.wait_for(client.done, 30)
                except TimeoutError:
                    errors[0] += 1
                client.close()

        cpu0 = cpu_seconds(srv.pid)
        async with http.post(f"http://127.0.0.1:{srv.port}/bench/lag") as resp:
            await resp.read()
        await asyncio.gather(*(user(i) for i in range(sessions)))
        async with http.get(f"http://127.0.0.1:{srv.port}/bench/lag") as resp:
            print(f"  gateway event loop stalls >= 20 ms (late ms, CPU ms): {await resp.text()}", flush=True)
        # The steadier figure on a shared machine: the gateway's CPU per answered message (the
        # latency percentiles swing with the other jobs' load).
        cpu_ms = (cpu_seconds(srv.pid) - cpu0) / max(len(first), 1) * 1000
        return {"p50": pct(first, 0.5), "p99": pct(first, 0.99), "n": len(first), "errors": errors[0],
                "accepted_p50": pct(accepted, 0.5), "accepted_p99": pct(accepted, 0.99), "cpu_ms": cpu_ms}


# ---------------------------------------------------------------- report


def report(args: argparse.Namespace, mem: dict[str, dict[int, float]], tput: dict[str, dict[str, float]],
           fd: dict[str, float], alone: dict[str, float]) -> None:
    def ok(flag: bool) -> str:
        return "yes" if flag else "**no**"

    print(f"\n### Web chat SSE: gateway vs bare Tornado ({'quick' if args.quick else 'full'} run)\n")
    print("| metric | gateway | bare | gateway/bare | target | met |")
    print("| --- | ---: | ---: | ---: | --- | --- |")
    for level, g in mem["gateway"].items():
        b = mem["bare"][level]
        print(f"| RSS per open stream @ {level} streams (KiB) | {g:.1f} | {b:.1f} | {g / b:.2f}x | <= 1.3x | "
              f"{ok(g / b <= 1.3)} |")
    g, b = tput["gateway"], tput["bare"]
    print(f"| unicast delta events/s, {args.streams} streams (saturated) | {g['eps']:.0f} | {b['eps']:.0f} | "
          f"{g['eps'] / b['eps']:.2f}x | >= 0.8x | {ok(g['eps'] / b['eps'] >= 0.8)} |")
    print(f"| server CPU per delivered event (us) | {g['cpu_us']:.0f} | {b['cpu_us']:.0f} | "
          f"{g['cpu_us'] / b['cpu_us']:.2f}x | (<= 1.25x) | {ok(g['cpu_us'] / b['cpu_us'] <= 1.25)} |")
    for key in ("p50", "p99"):
        print(f"| publish -> receive {key} at {args.rate:.0f} events/s (ms) | {g[key]:.1f} | {b[key]:.1f} | "
              f"{g[key] / b[key]:.1f}x | - | - |")
    print(f"| events lost | {g['lost']:.0f} | {b['lost']:.0f} | | 0 | {ok(g['lost'] == 0 == b['lost'])} |")
    print(f"| POST message -> 202 p50 / p99 (ms), {args.sessions} sessions | {fd['accepted_p50']:.1f} / "
          f"{fd['accepted_p99']:.1f} | n/a | | - | - |")
    print(f"| POST message -> first delta p50 / p99 (ms), 1 session alone | {alone['p50']:.1f} / "
          f"{alone['p99']:.1f} | n/a | | - | - |")
    print(f"| POST message -> first delta p50 (ms), {args.sessions} sessions | {fd['p50']:.1f} | n/a | | - | - |")
    print(f"| POST message -> first delta p99 (ms), {args.sessions} sessions | {fd['p99']:.1f} | n/a | | < 50 ms | "
          f"{ok(fd['p99'] < 50)} |")
    print(f"| gateway CPU per answered message (ms), {args.sessions} sessions | {fd['cpu_ms']:.2f} | n/a | | - | - |")
    print(f"\nSaturation: {args.workers} closed-loop publishers x {args.batch} events per POST for "
          f"{args.seconds:.0f} s; latency: paced at {args.rate:.0f} events/s in POSTs of {args.paced_batch}; "
          f"first delta: {fd['n']:.0f} samples ({args.rounds} messages per session, think 0-{2 * args.think:g} s, "
          f"{fd['errors']:.0f} timed out). Load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.")


def figures(args: argparse.Namespace, mem: dict[str, dict[int, float]], tput: dict[str, dict[str, float]],
            fd: dict[str, float]) -> list[Figure]:
    """The headline figures for the summary table (issue 12 part 3): RSS per stream at the top
    level, first delta at --sessions sessions, unicast events/s; each beside the bare server."""
    def num(value: float) -> float | None:
        return None if math.isnan(value) else round(value, 2)

    def ratio(gateway: float, bare: float) -> float | None:
        return None if math.isnan(gateway) or math.isnan(bare) or not bare else round(gateway / bare, 3)

    top = max(mem["gateway"])
    rss, rss_bare = mem["gateway"][top], mem["bare"][top]
    rss_ratio = ratio(rss, rss_bare)
    g, b = tput["gateway"], tput["bare"]
    eps_ratio = ratio(g["eps"], b["eps"])
    p99 = num(fd["p99"])
    run = "quick" if args.quick else "full"
    return [
        Figure(f"chat: RSS per open stream @ {top} streams, one process", num(rss), "KiB", "<= 1.3x bare",
               None if rss_ratio is None else rss_ratio <= 1.3, num(rss_bare), "bare Tornado SSE server",
               f"{rss_ratio}x bare" if rss_ratio is not None else "phase not run"),
        Figure(f"chat: POST message -> first delta p99, {args.sessions} sessions ({run} run)", p99, "ms",
               "< 50 ms", None if p99 is None else p99 < 50, None, "",
               f"p50 {num(fd['p50'])} ms, {fd['n']:.0f} samples, {fd['errors']:.0f} timed out, "
               f"gateway CPU {num(fd['cpu_ms'])} ms per message"),
        Figure(f"chat: unicast delta events/s, {args.streams} streams (saturated)", num(g["eps"]), "ev/s",
               ">= 0.8x bare", None if eps_ratio is None else eps_ratio >= 0.8, num(b["eps"]),
               "bare Tornado SSE server",
               f"{eps_ratio}x bare; CPU/event {num(g['cpu_us'])} vs {num(b['cpu_us'])} us"),
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run in well under a minute")
    parser.add_argument("--levels", default="1000,5000,10000,19500", help="open-stream counts for the RSS phase")
    parser.add_argument("--streams", type=int, default=500, help="streams in the throughput phase")
    parser.add_argument("--workers", type=int, default=8, help="concurrent publishers (saturation)")
    parser.add_argument("--batch", type=int, default=50, help="events per publish POST (saturation)")
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s of the paced latency run")
    parser.add_argument("--paced-batch", type=int, default=5, help="events per publish POST (paced)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured publishing time per server")
    parser.add_argument("--sessions", type=int, default=100, help="concurrent chat sessions in the first-delta phase")
    parser.add_argument("--rounds", type=int, default=5, help="messages per session in the first-delta phase")
    parser.add_argument("--think", type=float, default=1.0,
                        help="mean pause (s) between a complete and the next message")
    parser.add_argument("--phases", default="rss,throughput,first-delta", help="comma-separated subset to run")
    parser.add_argument("--log-level", default="warning", help="gateway log level (info logs every request)")
    parser.add_argument("--json", metavar="PATH", help="write the headline figures there (bench/figures.py)")
    parser.add_argument("--hold", type=int, metavar="PORT", help=argparse.SUPPRESS)  # a stream holder child
    args = parser.parse_args()
    if args.hold:
        raise_nofile()
        await hold_main(args.hold)
        return
    levels = [int(x) for x in args.levels.split(",")]
    if args.quick:
        levels, args.seconds, args.rounds = [200, 1000], 3.0, 2
    hard = raise_nofile()
    if max(levels) + SERVER_FD_MARGIN > hard:
        sys.exit(f"RLIMIT_NOFILE hard limit {hard} is too low for {max(levels)} streams in one server")

    phases = set(args.phases.split(","))
    nan = {level: float("nan") for level in levels}
    mem: dict[str, dict[int, float]] = {"gateway": nan, "bare": nan}
    tput: dict[str, dict[str, float]] = {s: dict.fromkeys(("eps", "cpu_us", "p50", "p99", "lost"), float("nan"))
                                         for s in ("gateway", "bare")}
    fd = dict.fromkeys(("p50", "p99", "n", "errors", "accepted_p50", "accepted_p99", "cpu_ms"), float("nan"))
    alone = dict(fd)
    with tempfile.TemporaryDirectory(prefix="buzzi-chat-bench-") as name:
        tmp = Path(name)
        for srv in ("gateway", "bare") if "rss" in phases else ():
            print(f"RSS phase: {srv}", flush=True)
            mem[srv] = await memory_phase(srv, tmp, levels, args)
        for srv in ("gateway", "bare") if "throughput" in phases else ():
            print(f"throughput phase: {srv}", flush=True)
            tput[srv] = await throughput_phase(srv, tmp, args)
            print(f"  {tput[srv]}", flush=True)
        if "first-delta" in phases:
            print("first-delta phase: gateway, one session alone", flush=True)
            alone = await first_delta_phase(tmp, args, 1, 20)
            print(f"  {alone}", flush=True)
            print(f"first-delta phase: gateway, {args.sessions} sessions", flush=True)
            fd = await first_delta_phase(tmp, args, args.sessions, args.rounds)
            print(f"  {fd}", flush=True)
    report(args, mem, tput, fd, alone)
    write_figures(args.json, "chat", figures(args, mem, tput, fd))

if __name__ == "__main__":
    asyncio.run(main())
