"""Hostile HTTP against a running node (docs/contract.md "Public endpoints under hostile load"):
bodies over a route's limit get 413 before they are read or parsed, slow bodies and idle
connections time out (SSE streams are not idle), client-chosen method names do not become metric
labels or unbounded log fields, and the lone-surrogate check stays linear and still names the field."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from urllib.parse import urlparse

import aiohttp
import pytest

from buzzi.logs import clip
from tests.chat.conftest import create_faq_agent, new_session
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.sse import read_sse

MIB = 1024 * 1024
TOO_LARGE = (413, {"error": "Payload too large"})
# A dashboard form, the admin API and the public chat API: all take small bodies.
SMALL_BODY_ROUTES = ["/api/chat/sessions", "/api/admin/login", "/admin/login"]


@pytest.fixture
async def gw(make_settings) -> AsyncIterator[RunningGateway]:
    async with running_gateway(make_settings) as running:
        yield running


# ---- raw HTTP/1.1, so the test decides exactly what is sent and when

async def connect(gw: RunningGateway) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    url = urlparse(gw.base_url)
    return await asyncio.open_connection(url.hostname, url.port)


def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_response(reader: asyncio.StreamReader, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    status_line, *header_lines = head.decode("latin1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), timeout)
    return int(status_line.split()[1]), headers, body


async def closed_by_server(reader: asyncio.StreamReader, timeout: float) -> bool:
    """True when the server closes the connection within `timeout` (whatever it sent before)."""
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True


def parsed(response: tuple[int, dict[str, str], bytes]) -> tuple[int, object]:
    status, _, body = response
    return status, json.loads(body)


# ---- 413 before the body is read

@pytest.mark.parametrize("path", SMALL_BODY_ROUTES)
async def test_a_declared_5_mib_body_is_refused_before_it_is_sent(gw: RunningGateway, path: str) -> None:
    reader, writer = await connect(gw)
    # Only the headers and 1 KiB of the 5 MiB go out: the answer cannot have waited for the body.
    writer.write(request_head("POST", path, {"Content-Length": str(5 * MIB), "Content-Type": "application/json"}))
    writer.write(b'{"x":[' + b"[]," * 340)
    response = await read_response(reader)
    assert parsed(response) == TOO_LARGE
    assert response[1]["content-type"].startswith("application/json")
    assert await closed_by_server(reader, 10)
    writer.close()


@pytest.mark.parametrize("path", SMALL_BODY_ROUTES)
async def test_a_chunked_body_is_refused_once_it_passes_the_limit(gw: RunningGateway, path: str) -> None:
    reader, writer = await connect(gw)
    writer.write(request_head("POST", path, {"Transfer-Encoding": "chunked", "Content-Type": "application/json"}))
    chunk = b"[]," * 5000  # 15,000 bytes: the 64 KiB limit passes in the fifth chunk
    for _ in range(5):
        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    await writer.drain()
    # The body never ends (no last chunk): the answer came from counting, not from the whole body.
    assert parsed(await read_response(reader)) == TOO_LARGE
    assert await closed_by_server(reader, 10)
    writer.close()


async def test_an_ordinary_client_sending_the_whole_body_reads_the_413(gw: RunningGateway) -> None:
    """The client writes all 5 MiB before it reads; the node drops them unread instead of resetting."""
    big = b'{"x":[' + b"[]," * (5 * MIB // 3) + b"[]]}"
    for path in SMALL_BODY_ROUTES:
        status, body, _ = await gw.request("POST", path, data=big, headers={"Content-Type": "application/json"})
        assert (status, body) == TOO_LARGE

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(80):
            yield b" " * 65536

    async with gw.http.post(gw.base_url + "/api/chat/sessions", data=chunks()) as resp:
        assert (resp.status, await resp.json()) == TOO_LARGE
    _, metrics, _ = await gw.request("GET", "/metrics")
    assert 'buzzi_http_requests_total{method="POST",route="BodyTooLarge",status="413"} 4.0' in metrics


async def test_bodies_under_the_limit_reach_the_handler(gw: RunningGateway) -> None:
    almost = json.dumps({"email": "admin@localhost", "password": "x", "pad": "p" * 60_000}).encode()
    status, body, _ = await gw.request("POST", "/api/admin/login", data=almost)
    assert status == 401, body  # parsed and checked: a wrong password, not a refused body
    assert await gw.login()


async def test_the_webhook_limit_follows_webhooks_max_body_bytes(make_settings) -> None:
    # Meta batches: the webhook route takes what webhooks.max_body_bytes says, other routes do not.
    async with running_gateway(make_settings, webhooks={"max_body_bytes": 4 * MIB}) as gw:
        three_mib = b"{" + b" " * (3 * MIB) + b"}"
        status, body, _ = await gw.request("POST", "/api/webhooks/c_x/a_x/whatsapp/wh_x", data=three_mib)
        assert (status, body) == (404, {"error": "Invalid webhook"})  # it reached the intake
        status, body, _ = await gw.request("POST", "/api/chat/sessions", data=three_mib)
        assert (status, body) == TOO_LARGE
    async with running_gateway(make_settings, webhooks={"max_body_bytes": 2048}) as gw:
        reader, writer = await connect(gw)
        writer.write(request_head("POST", "/api/webhooks/c_x/a_x/whatsapp/wh_x", {"Content-Length": str(MIB)}))
        assert parsed(await read_response(reader)) == TOO_LARGE
        writer.close()


async def test_the_small_limit_is_a_setting(make_settings) -> None:
    async with running_gateway(make_settings, server={"max_body_bytes": 1024}) as gw:
        status, body, _ = await gw.request("POST", "/api/admin/login", data=b"{" + b" " * 2000 + b"}")
        assert (status, body) == TOO_LARGE


# ---- parsing stays cheap and still names the bad field

async def test_a_lone_surrogate_deep_in_a_big_body_is_found_and_named(gw: RunningGateway) -> None:
    filler = ",".join(["[]"] * 15_000)
    body = ('{"companyId": "c_x", "customer": {"name": "ok", "tags": [' + filler
            + ', {"deep": [{"x": "fine"}, {"x": "\\ud800"}]}]}}').encode()
    assert 60_000 > len(body) > 45_000
    status, answer, _ = await gw.request("POST", "/api/chat/sessions", data=body)
    assert status == 400, answer
    assert answer["error"].startswith("customer.tags[15000].deep[1].x:")


async def test_healthz_answers_while_worst_case_bodies_are_parsed(gw: RunningGateway) -> None:
    worst = [b'{"x":[' + b",".join([b"[]"] * 20_000) + b"]}",  # 60 KiB of empty lists
             b'{"x":[' + b",".join([b"{}"] * 20_000) + b"]}",
             b'{"x":[' + b",".join(['"é"'.encode()] * 12_000) + b"]}"]
    assert all(50_000 < len(b) < 64 * 1024 for b in worst)

    async def hostile() -> None:
        for _ in range(4):
            statuses = await asyncio.gather(*(gw.request("POST", "/api/chat/sessions", data=b) for b in worst))
            assert all(400 <= s[0] < 500 and s[0] != 413 for s in statuses)  # parsed, then refused as invalid

    async def health() -> list[float]:
        latencies = []
        while not attack.done():
            started = time.perf_counter()
            status, _, _ = await gw.request("GET", "/healthz")
            latencies.append(time.perf_counter() - started)
            assert status == 200
            await asyncio.sleep(0.005)
        return latencies

    attack = asyncio.ensure_future(hostile())
    latencies = await health()
    await attack
    assert latencies and max(latencies) < 1.0  # generous: the old check took seconds per 4 MiB body


# ---- slow bodies, idle connections, long streams

async def test_a_slow_body_is_timed_out(make_settings) -> None:
    async with running_gateway(make_settings, server={"body_timeout_seconds": 1.0}) as gw:
        reader, writer = await connect(gw)
        writer.write(request_head("POST", "/api/admin/login", {"Content-Length": "1000"}))
        started = time.monotonic()

        async def trickle() -> None:  # one byte every 0.2 s would take 200 s
            for _ in range(1000):
                writer.write(b" ")
                await asyncio.sleep(0.2)

        sender = asyncio.ensure_future(trickle())
        try:
            assert await closed_by_server(reader, 10)
        finally:
            sender.cancel()
            writer.close()
        assert time.monotonic() - started < 10
        assert (await gw.request("GET", "/healthz"))[0] == 200


async def test_a_body_partly_sent_with_the_headers_is_still_timed_out(make_settings) -> None:
    """A body that arrives whole with its headers skips the body timer (handlers/limits.py); one
    that arrives in part, on a connection whose previous request did skip it, is still timed out."""
    async with running_gateway(make_settings, server={"body_timeout_seconds": 1.0}) as gw:
        reader, writer = await connect(gw)
        body = b'{"email": "nobody@example.com", "password": "wrong-password"}'
        writer.write(request_head("POST", "/api/admin/login", {"Content-Length": str(len(body))}) + body)
        status, headers, _ = await read_response(reader)
        assert status in (400, 401, 403) and headers.get("connection", "").lower() != "close"
        writer.write(request_head("POST", "/api/admin/login", {"Content-Length": "1000"}) + b"{" * 500)
        started = time.monotonic()

        async def trickle() -> None:  # the other 500 bytes, one every 0.2 s, would take 100 s
            for _ in range(500):
                await asyncio.sleep(0.2)
                writer.write(b" ")

        sender = asyncio.ensure_future(trickle())
        try:
            assert await closed_by_server(reader, 10)
        finally:
            sender.cancel()
            writer.close()
        assert time.monotonic() - started < 10


async def test_idle_connections_are_closed(make_settings) -> None:
    async with running_gateway(make_settings, server={"idle_timeout_seconds": 1.0}) as gw:
        reader, writer = await connect(gw)
        writer.write(request_head("GET", "/healthz", {}))
        assert (await read_response(reader))[0] == 200  # keep-alive: the connection stays open ...
        assert await closed_by_server(reader, 10)  # ... until it has been idle for a second
        writer.close()
        reader, writer = await connect(gw)  # a connection that never sends anything
        assert await closed_by_server(reader, 10)
        writer.close()


async def test_sse_streams_outlive_the_idle_and_body_timeouts(make_settings) -> None:
    server = {"idle_timeout_seconds": 0.5, "body_timeout_seconds": 0.5}
    async with running_gateway(make_settings, server=server, chat={"heartbeat_seconds": 0.2}) as gw:
        agent = await create_faq_agent(gw)
        sid = (await new_session(gw, agent))["sessionId"]
        heartbeats = 0
        started = time.monotonic()
        async with gw.http.get(f"{gw.base_url}/api/chat/{sid}/stream",
                               timeout=aiohttp.ClientTimeout(total=20)) as resp:
            assert resp.status == 200
            async for event in read_sse(resp):
                heartbeats += event.event == "comment"
                if time.monotonic() - started > 2.5:
                    break
        assert heartbeats >= 5  # still streaming after five times the idle timeout


# ---- client-chosen values stay out of labels and log lines

async def test_made_up_methods_do_not_grow_metrics_or_log_lines(gw: RunningGateway,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="buzzi.access")
    reader, writer = await connect(gw)

    async def weird(n: int) -> None:
        method = f"M{n:04d}" + "X" * 300
        writer.write(request_head(method, "/healthz", {}))
        assert (await read_response(reader))[0] == 405

    for n in range(3):
        await weird(n)
    await gw.request("GET", "/metrics")  # its own series exist before the baseline is taken
    before = len((await gw.request("GET", "/metrics"))[1])
    for n in range(3, 300):
        await weird(n)
    writer.close()
    _, metrics, _ = await gw.request("GET", "/metrics")
    assert 'buzzi_http_requests_total{method="other",route="HealthHandler",status="405"} 300.0' in metrics
    assert "XXXX" not in metrics
    assert len(metrics) - before < 200  # only counter values changed: no new series
    lines = [r for r in caplog.records if r.name == "buzzi.access" and r.getMessage().endswith(" 405")]
    assert len(lines) == 300
    assert all(len(r.getMessage()) < 100 and "X" * 20 not in r.getMessage() for r in lines)


def test_log_fields_are_clipped_and_escaped() -> None:
    assert clip("GET") == "GET"
    assert clip("a\r\nforged line\x00\ud800") == "a\\r\\nforged line\\x00\\ud800"
    assert clip("x" * 5000) == "x" * 1000 + "...(+4000)"
