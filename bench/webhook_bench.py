"""Webhook throughput by hand: `.venv/bin/python -m bench.webhook_bench [--n 4000] [--concurrency 64]`.

Side by side in one run, each server in its own process, driven by this process over
`--concurrency` keep-alive connections with signed WhatsApp webhooks (a unique wamid each):
- gateway: run.py with a SQLite store, the memory broker and an FAQ agent whose replies go to a
  fake Graph API served from this process; a 200 means verified + stored + acknowledged;
- bare: bench/bare_hmac_server.py, a Tornado handler that only checks X-Hub-Signature-256.
Prints a markdown table (requests/s, p50, p99, errors), then checks that the gateway stored one
message per acknowledged request and reports how long it took to answer them all.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
from aiohttp import web

from buzzi.crypto import SecretBox
from buzzi.models import Agent, Company, Webhook
from buzzi.signing import hub_signature
from buzzi.store.sqlite import SQLiteStore

ROOT = Path(__file__).resolve().parent.parent
APP_SECRET = "bench-app-secret-0123456789"
NUMBER = "106540352242922"
FAQ = {"documents": [{"title": "Colors", "content": "It comes in red, blue and green."}],
       "fallback": "Sorry, I do not know."}
PATH = "/api/webhooks/c_bench/a_bench/whatsapp/wh_bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def body(i: int, run: str) -> tuple[bytes, dict[str, str]]:
    sender = f"1650{i:07d}"  # one customer per request, as a busy number sees it
    item = {"from": sender, "id": f"wamid.BENCH{run}{i:08d}", "timestamp": str(int(time.time())),
            "type": "text", "text": {"body": "Does it come in another color?"}}
    raw = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [
        {"field": "messages", "value": {"messaging_product": "whatsapp",
                                        "metadata": {"display_phone_number": "15550783881", "phone_number_id": NUMBER},
                                        "contacts": [{"profile": {"name": "Bench"}, "wa_id": sender}],
                                        "messages": [item]}}]}]}).encode()
    return raw, {"Content-Type": "application/json", "X-Hub-Signature-256": hub_signature(APP_SECRET, raw)}


async def load(url: str, n: int, concurrency: int, run: str) -> dict[str, float]:
    """POST n signed webhooks over `concurrency` connections; latencies of the 200s."""
    requests = [body(i, run) for i in range(n)]  # signed up front: the client's HMAC is not timed
    latencies: list[float] = []
    errors = 0
    cursor = iter(requests)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            nonlocal errors
            for raw, headers in cursor:
                started = time.perf_counter()
                async with http.post(url, data=raw, headers=headers) as response:
                    await response.read()
                    if response.status == 200:
                        latencies.append(time.perf_counter() - started)
                    else:
                        errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    return {"ok": len(latencies), "errors": errors, "rps": len(latencies) / elapsed, "p50": pct(0.50),
            "p99": pct(0.99), "elapsed": elapsed}


class Sends:
    """Reply sends seen by the fake Graph API; `all_in` is set once `expected` arrived."""

    def __init__(self, expected: int) -> None:
        self.count = 0
        self.expected = expected
        self.all_in = asyncio.Event()

    def seen(self) -> None:
        self.count += 1
        if self.count >= self.expected:
            self.all_in.set()


@contextlib.asynccontextmanager
async def fake_graph(expected: int) -> AsyncIterator[tuple[str, Sends]]:
    """The Graph API the agent's replies go to: answers every send and typing call with 200."""
    sends = Sends(expected)

    async def messages(request: web.Request) -> web.Response:
        payload = await request.json()
        if payload.get("type") == "text":
            sends.seen()
        return web.json_response({"messaging_product": "whatsapp", "messages": [{"id": "wamid.OUT"}]})

    app = web.Application()
    app.router.add_post(f"/v24.0/{NUMBER}/messages", messages)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v24.0", sends
    finally:
        await runner.cleanup()


async def seed(db: Path, secret_key: str) -> None:
    store = SQLiteStore(db, SecretBox(secret_key))
    await store.open()
    await store.add(Company(id="c_bench", name="Bench"))
    await store.add(Agent(id="a_bench", company_id="c_bench", name="FAQ", kind="faq", settings=FAQ))
    await store.add(Webhook(id="wh_bench", company_id="c_bench", agent_id="a_bench", channel="whatsapp",
                            secret=APP_SECRET, verify_token="bench-verify",
                            credentials={"phoneNumberId": NUMBER, "accessToken": "EAAG-bench-token"}))
    await store.close()


@contextlib.contextmanager
def process(cmd: list[str], env: dict[str, str], ready: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        for line in proc.stdout:
            if ready in line:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{cmd} did not start")
        else:
            raise RuntimeError(f"{cmd} exited: {proc.wait()}")
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) per thread of process `pid` ("main" is the event loop), from /proc."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                stat = (task / "stat").read_text()
                name = "main" if task.name == str(pid) else f"thread {task.name}"
                fields = stat[stat.rindex(")") + 2:].split()
                out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def cpu_per_request(before: dict[str, float], after: dict[str, float], n: int) -> str:
    """Milliseconds of CPU per request by thread: where the time of the measured load went."""
    spent = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in after}
    parts = [f"{name} {ms * 1000 / n:.2f}" for name, ms in sorted(spent.items(), key=lambda kv: -kv[1]) if ms > 0]
    return ", ".join(parts) or "n/a"


def stored_messages(db: Path) -> tuple[int, int]:
    """(user messages stored, assistant replies sent) in the gateway's SQLite file."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        users = conn.execute("SELECT COUNT(*) FROM messages WHERE json_extract(doc, '$.role') = 'user'").fetchone()
        sent = conn.execute("SELECT COUNT(*) FROM messages WHERE json_extract(doc, '$.delivery.status') = 'sent'"
                            ).fetchone()
        return users[0], sent[0]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="measured requests per server")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--log-level", default="info", help="gateway log level (info logs every request)")
    parser.add_argument("--inbox-concurrency", type=int,
                        help="answers in flight on the gateway (default: config)")
    parser.add_argument("--profile", metavar="FILE", help="run the gateway under cProfile, stats into FILE")
    args = parser.parse_args()
    python = sys.executable
    results: dict[str, dict[str, float]] = {}

    with tempfile.TemporaryDirectory(prefix="buzzi-bench-") as tmp:
        db = Path(tmp) / "bench.sqlite3"
        secret_key = secrets.token_urlsafe(32)
        await seed(db, secret_key)
        total = args.warmup + args.n
        async with fake_graph(total) as (graph, sends):
            port = free_port()
            env = {**os.environ, "BUZZI_PORT": str(port), "BUZZI_STORE_URL": f"sqlite:///{db}",
                   "BUZZI_BROKER_URL": "memory://", "BUZZI_SECRET_KEY": secret_key,
                   "BUZZI_ADMIN_PASSWORD": "bench-admin-password", "BUZZI_CHAT_CREATE_DEMO": "false",
                   "BUZZI_SERVER_DATA_DIR": tmp, "BUZZI_SERVER_LOG_LEVEL": args.log_level,
                   "BUZZI_WHATSAPP_API_BASE": graph, "BUZZI_LIMITS_WEBHOOK_PER_MINUTE": "100000000",
                   "BUZZI_LIMITS_COMPANY_PER_MINUTE": "100000000",
                   "BUZZI_SECURITY_ALLOW_PRIVATE_NETWORKS": "true"}  # any bench agent/platform is on 127.0.0.1
            if args.inbox_concurrency:
                env["BUZZI_INBOX_CONCURRENCY"] = str(args.inbox_concurrency)
            gateway_cmd = [python, *(["-m", "cProfile", "-o", args.profile] if args.profile else []), "run.py"]
            with process(gateway_cmd, env, "listening on") as proc:
                url = f"http://127.0.0.1:{port}{PATH}"
                await load(url, args.warmup, args.concurrency, "warm")
                cpu_before = thread_cpu(proc.pid)
                results["gateway"] = await load(url, args.n, args.concurrency, "run")
                gateway_cpu = cpu_per_request(cpu_before, thread_cpu(proc.pid), args.n)
                started = time.perf_counter()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sends.all_in.wait(), timeout=180)
                drained = time.perf_counter() - started
                users, replied = stored_messages(db)

        bare_port = free_port()
        cmd = [python, "-m", "bench.bare_hmac_server", "--port", str(bare_port), "--secret", APP_SECRET]
        with process(cmd, dict(os.environ), "ready") as proc:
            url = f"http://127.0.0.1:{bare_port}{PATH}"
            await load(url, args.warmup, args.concurrency, "warm")
            cpu_before = thread_cpu(proc.pid)
            results["bare"] = await load(url, args.n, args.concurrency, "run")
            bare_cpu = cpu_per_request(cpu_before, thread_cpu(proc.pid), args.n)

    print(f"\n{args.n} signed WhatsApp webhooks, {args.concurrency} concurrent connections\n")
    print("| server | acknowledged/s | p50 ms | p99 ms | errors |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        print(f"| {name} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['errors']:.0f} |")
    ratio = results["gateway"]["rps"] / results["bare"]["rps"]
    print(f"\ngateway / bare: {ratio:.2f}x (target >= 0.5x, p99 < 50 ms)")
    print(f"server CPU ms per request during the measured load, by thread: gateway {gateway_cpu}; bare {bare_cpu}")
    print(f"gateway stored {users} messages for {total} acknowledged requests; "
          f"{replied} replies delivered to the fake Graph API ({sends.count} sends seen), "
          f"all answered {drained:.1f} s after the last acknowledgement")


if __name__ == "__main__":
    asyncio.run(main())
