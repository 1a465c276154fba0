"""10,000 hostile requests of mixed kinds against one node (run.py in its own process, so its RSS is
honest): the node's RSS stays within START + RSS_BOUND_MB throughout, and /healthz, probed from a
third process all along, keeps its p99 under 50 ms (docs/contract.md §5 "Public endpoints under
hostile load"). Bounded concurrency (16 requests at once, which saturates one node on 2 cores:
~1,500-2,500 requests/s), plus 20 slow-header clients beside them; about 10 s."""

from __future__ import annotations

import asyncio
import collections
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from tests.support.node_process import ADMIN_PASSWORD, NodeProcess, node_process

pytestmark = pytest.mark.fuzz

TOTAL = 10_000
CONCURRENCY = 16
RSS_BOUND_MB = 60  # above the RSS measured after a warm-up, at every sample during the run
P99_BOUND_MS = 50.0

# A separate process, so the load generator's own CPU use cannot delay (or hide) the node's answers.
PROBER = r"""
import http.client, json, os, sys, time
host, port, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
times = []
conn = http.client.HTTPConnection(host, port, timeout=5)
while not os.path.exists(stop):
    start = time.perf_counter()
    conn.request("GET", "/healthz")
    resp = conn.getresponse()
    resp.read()
    times.append((time.perf_counter() - start) * 1000)
    assert resp.status == 200, resp.status
    time.sleep(0.02)
print(json.dumps(times))
"""

Kind = Callable[[aiohttp.ClientSession, int], Awaitable[int]]


class Target:
    """What the hostile requests aim at: real public ids (as in any widget snippet), a real signed
    webhook URL, real chat sessions, and an owner token for the unknown-id probes."""

    def __init__(self, base: str, token: str, company: str, agent: str, webhook_url: str, sessions: list[str]):
        self.base, self.token, self.company, self.agent = base, token, company, agent
        self.webhook_url, self.sessions = webhook_url, sessions


async def _status(resp: aiohttp.ClientResponse) -> int:
    await resp.read()
    return resp.status


def kinds(t: Target) -> dict[str, Kind]:
    big = b'{"x":[' + b"[]," * (2 * 1024 * 1024 // 3) + b"[]]}"  # ~2 MiB of cheap-to-send, costly-to-walk JSON
    deep = b'{"a":' + b"[" * 30_000 + b"]" * 30_000 + b"}"
    surrogate = b'{"companyId":"\\ud800","agentId":"\\udfff","customer":{"\\ud83d":"x"}}'

    async def big_body(http: aiohttp.ClientSession, i: int) -> int:
        path = "/api/chat/sessions" if i % 2 else "/api/admin/login"
        async with http.post(t.base + path, data=big) as resp:
            return await _status(resp)

    async def deep_nesting(http: aiohttp.ClientSession, i: int) -> int:
        path = ("/api/chat/sessions", "/api/admin/login", f"/api/chat/{t.sessions[0]}/message")[i % 3]
        async with http.post(t.base + path, data=deep) as resp:
            return await _status(resp)

    async def bad_json(http: aiohttp.ClientSession, i: int) -> int:
        body = random.Random(i).randbytes(200) if i % 2 else b'{"companyId": "c_1", "agentId": '
        async with http.post(t.base + "/api/chat/sessions", data=body) as resp:
            return await _status(resp)

    async def lone_surrogates(http: aiohttp.ClientSession, i: int) -> int:
        path = "/api/chat/sessions" if i % 2 else f"/api/chat/{t.sessions[i % len(t.sessions)]}/message"
        body = surrogate if i % 2 else b'{"content":"hi \\ud800 there"}'
        async with http.post(t.base + path, data=body) as resp:
            return await _status(resp)

    async def long_method(http: aiohttp.ClientSession, i: int) -> int:
        method = "".join(random.Random(i).choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ", k=2000))  # each one different
        async with http.request(method, t.base + "/api/chat/sessions") as resp:
            return await _status(resp)

    async def bad_signature(http: aiohttp.ClientSession, i: int) -> int:
        url = t.webhook_url if i % 2 else t.webhook_url.rsplit("/", 1)[0] + f"/wh_unknown{i}"
        headers = {"webhook-id": f"msg_{i}", "webhook-timestamp": str(int(time.time())),
                   "webhook-signature": "v1,AAAA"}
        async with http.post(url, data=b'{"type":"message.created","data":{}}', headers=headers) as resp:
            return await _status(resp)

    async def unknown_ids(http: aiohttp.ClientSession, i: int) -> int:
        path, headers = [
            (f"/api/chat/s_{i:064d}/messages", {}),
            (f"/api/admin/companies/c_unknown{i}/agents", {"Authorization": f"Bearer {t.token}"}),
            (f"/api/webhooks/c_{i}/a_{i}/whatsapp/wh_{i}?hub.mode=subscribe", {}),
        ][i % 3]
        async with http.get(t.base + path, headers=headers) as resp:
            return await _status(resp)

    async def session_creation(http: aiohttp.ClientSession, i: int) -> int:
        body = {"companyId": t.company, "agentId": t.agent, "customer": {"id": f"u{i}"}}
        async with http.post(t.base + "/api/chat/sessions", json=body) as resp:
            return await _status(resp)

    async def stream_open(http: aiohttp.ClientSession, i: int) -> int:
        async with http.get(f"{t.base}/api/chat/{t.sessions[i % len(t.sessions)]}/stream") as resp:
            if resp.status == 200:
                await resp.content.readline()
                await asyncio.sleep(0.2)  # held open a moment, then dropped like a flaky client
            else:
                await resp.read()
            return resp.status

    return {"big_body": big_body, "deep_nesting": deep_nesting, "bad_json": bad_json,
            "lone_surrogates": lone_surrogates, "long_method": long_method, "bad_signature": bad_signature,
            "unknown_ids": unknown_ids, "session_creation": session_creation, "stream_open": stream_open}


# How many of the 10,000 each kind gets (slow headers run beside them on their own connections).
WEIGHTS = {"big_body": 1, "deep_nesting": 4, "bad_json": 15, "lone_surrogates": 15, "long_method": 10,
           "bad_signature": 15, "unknown_ids": 15, "session_creation": 15, "stream_open": 10}


async def slow_headers(host: str, port: int, stop: asyncio.Event) -> int:
    """A client that sends its request line and then one header byte every half second."""
    sent = 0
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return 0
    try:
        writer.write(b"POST /api/chat/sessions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        while not stop.is_set() and not reader.at_eof():
            writer.write(b"a")
            await writer.drain()
            sent += 1
            await asyncio.sleep(0.5)
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
    return sent


async def prepare(node: NodeProcess) -> Target:
    base = node.base_url
    async with aiohttp.ClientSession() as http:
        async def call(method: str, path: str, body: dict, token: str = "") -> dict:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with http.request(method, base + path, json=body, headers=headers) as resp:
                assert resp.status < 300, (path, resp.status, await resp.text())
                return await resp.json()

        token = (await call("POST", "/api/admin/login", {"email": "admin@localhost",
                                                         "password": ADMIN_PASSWORD}))["token"]
        cid = (await call("POST", "/api/admin/companies", {"name": "Target"}, token))["id"]
        agent = {"name": "faq", "settings": {"documents": [{"title": "Hours", "content": "9 to 5"}]}}
        aid = (await call("POST", f"/api/admin/companies/{cid}/agents", agent, token))["id"]
        hook = {"channel": "custom", "credentials": {"callbackUrl": "http://127.0.0.1:9/callback"}}
        url = (await call("POST", f"/api/admin/companies/{cid}/agents/{aid}/webhooks", hook, token))["url"]
        sessions = [(await call("POST", "/api/chat/sessions", {"companyId": cid, "agentId": aid}))["sessionId"]
                    for _ in range(3)]
    return Target(base, token, cid, aid, url, sessions)


async def run_load(target: Target, node: NodeProcess, rss: list[int]) -> collections.Counter[str]:
    plan = [name for name, weight in WEIGHTS.items() for _ in range(weight)]
    rng = random.Random(10)
    order = [rng.choice(plan) for _ in range(TOTAL)]
    handlers = kinds(target)
    outcomes: collections.Counter[str] = collections.Counter()
    queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
    for item in enumerate(order):
        queue.put_nowait(item)

    async def worker() -> None:
        timeout = aiohttp.ClientTimeout(total=15)
        async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=4)) as http:
            while not queue.empty():
                i, name = queue.get_nowait()
                try:
                    status = await handlers[name](http, i)
                    outcomes[f"{name} {status}"] += 1
                except (aiohttp.ClientError, TimeoutError) as exc:
                    outcomes[f"{name} {type(exc).__name__}"] += 1

    async def sample_rss() -> None:
        while True:
            rss.append(node.rss_bytes())
            await asyncio.sleep(0.1)

    host, port = target.base.removeprefix("http://").split(":")
    stop = asyncio.Event()
    slow = [asyncio.create_task(slow_headers(host, int(port), stop)) for _ in range(20)]
    sampler = asyncio.create_task(sample_rss())
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    stop.set()
    await asyncio.gather(*slow)
    sampler.cancel()
    return outcomes


async def test_ten_thousand_hostile_requests_keep_rss_and_healthz_bounded(tmp_path: Path):
    with node_process(tmp_path) as node:
        target = await prepare(node)
        async with aiohttp.ClientSession() as http:  # warm-up: every code path imported and cached once
            for _ in range(50):
                async with http.get(target.base + "/healthz") as resp:
                    await resp.read()
        start_rss = node.rss_bytes()
        host, port = target.base.removeprefix("http://").split(":")
        stop_file = tmp_path / "stop-prober"
        prober = await asyncio.create_subprocess_exec(sys.executable, "-c", PROBER, host, port, str(stop_file),
                                                      stdout=asyncio.subprocess.PIPE)
        rss: list[int] = []
        began = time.monotonic()
        outcomes = await run_load(target, node, rss)
        elapsed = time.monotonic() - began
        stop_file.touch()
        probe_out, _ = await asyncio.wait_for(prober.communicate(), 10)
        rss.append(node.rss_bytes())
        stderr = node.stderr()
        alive = node.proc.poll() is None

    latencies = sorted(json.loads(probe_out))
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    peak_mb = (max(rss) - start_rss) / 2**20
    errors = {k: v for k, v in outcomes.items() if k.split()[-1].startswith("5") or not k.split()[-1].isdigit()}
    summary = (f"{sum(outcomes.values())} requests in {elapsed:.1f} s; RSS start {start_rss / 2**20:.0f} MB, "
               f"peak +{peak_mb:.1f} MB; /healthz p99 {p99:.1f} ms over {len(latencies)} probes, "
               f"max {latencies[-1]:.1f} ms; outcomes {dict(sorted(outcomes.items()))}")
    print(summary)
    assert alive, stderr[-3000:]
    assert sum(outcomes.values()) == TOTAL
    assert not errors, summary
    assert "Traceback" not in stderr, stderr[-3000:]
    assert peak_mb <= RSS_BOUND_MB, summary
    assert p99 < P99_BOUND_MS, summary
