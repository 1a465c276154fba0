"""Shared outbound machinery: retry with backoff, Graph error classification, size-limited reads,
the pacer, and the channel registry."""

from __future__ import annotations

import asyncio

import pytest

from buzzi.channels.base import SendError
from buzzi.channels.custom import CustomAdapter
from buzzi.channels.instagram import InstagramAdapter
from buzzi.channels.messenger import MessengerAdapter
from buzzi.channels.meta import MESSAGING_ERRORS, graph_error
from buzzi.channels.outbound import MediaTooLargeError, OutboundHttp, download, parse_retry_after, with_retry
from buzzi.channels.pacing import Pacer
from buzzi.channels.registry import CHANNELS, ChannelRegistry
from buzzi.channels.whatsapp import WHATSAPP_ERRORS, WhatsAppAdapter
from tests.support.fake_meta import Reply, ScriptedServer


class FakeTime:
    """A clock that only moves when the code under test sleeps: waits are recorded, never spent."""

    def __init__(self, advance: bool = True) -> None:
        self.now = 0.0
        self.advance = advance
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        if self.advance:
            self.now += delay


# ---------------------------------------------------------------------------- with_retry

async def test_retry_after_then_success_even_past_the_cap():
    outcomes = [SendError("slow down", retryable=True, retry_after=2.5),
                SendError("slow down", retryable=True, retry_after=500), "ok"]
    time = FakeTime()
    retries: list[tuple[int, float]] = []

    async def call():
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    result = await with_retry(call, max_attempts=5, base=1, cap=30, sleep=time.sleep,
                              on_retry=lambda n, err, d: retries.append((n, d)))
    # Retry-After is a "not before": the backoff cap does not shorten it
    assert result == "ok" and time.sleeps == [2.5, 500] and retries == [(1, 2.5), (2, 500)]


async def test_permanent_error_is_not_retried_and_network_errors_are():
    time = FakeTime()
    calls = 0

    async def permanent():
        nonlocal calls
        calls += 1
        raise SendError("bad token", retryable=False, code=190)

    with pytest.raises(SendError) as exc:
        await with_retry(permanent, max_attempts=5, base=1, cap=30, sleep=time.sleep)
    assert calls == 1 and exc.value.attempts == 1 and time.sleeps == []

    async def timeout():
        raise TimeoutError

    with pytest.raises(SendError) as exc:
        await with_retry(timeout, max_attempts=4, base=1, cap=30, sleep=time.sleep)
    assert exc.value.retryable and exc.value.attempts == 4 and len(time.sleeps) == 3
    assert all(0 <= d <= min(30, 2 ** i) for i, d in enumerate(time.sleeps))


def test_parse_retry_after():
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize(("classes", "status", "code", "retryable"), [
    (WHATSAPP_ERRORS, 400, 130429, True), (WHATSAPP_ERRORS, 400, 131047, False),
    (WHATSAPP_ERRORS, 503, None, True), (WHATSAPP_ERRORS, 400, None, False),
    (MESSAGING_ERRORS, 400, 613, True), (MESSAGING_ERRORS, 500, 190, False), (MESSAGING_ERRORS, 429, 12345, True),
])
def test_graph_error_classification(classes, status, code, retryable):
    payload = {"error": {"code": code, "message": "m"}} if code is not None else "not json"
    error = graph_error("send", status, payload, "4", classes)
    assert (error.retryable, error.code, error.status, error.retry_after) == (retryable, code, status, 4.0)


# ---------------------------------------------------------------------------- size-limited download

async def test_download_limits(make_settings):
    settings = make_settings().channels
    http = OutboundHttp(settings)
    try:
        async with ScriptedServer() as server:
            server.always("GET", "/exact", Reply(200, body=b"a" * 100, stream=True))
            server.always("GET", "/over", Reply(200, body=b"a" * 200_000, stream=True))
            server.always("GET", "/err", Reply(503, headers={"Retry-After": "9"}))
            assert (await download(http.session("x"), server.url + "/exact", 100))[0] == b"a" * 100
            with pytest.raises(MediaTooLargeError):
                await download(http.session("x"), server.url + "/over", 100_000)
            with pytest.raises(SendError) as exc:
                await download(http.session("x"), server.url + "/err", 100)
            assert exc.value.retryable and exc.value.retry_after == 9.0
    finally:
        await http.close()


# ---------------------------------------------------------------------------- pacer

async def test_pacer_allows_a_burst_then_paces():
    time = FakeTime()
    pacer = Pacer(80, clock=time.clock, sleep=time.sleep)
    waits = [await pacer.acquire("106540352242922") for _ in range(82)]
    assert waits[:80] == [0.0] * 80
    assert waits[80] == pytest.approx(1 / 80) and waits[81] == pytest.approx(1 / 80)
    assert await pacer.acquire("another-number") == 0.0  # keys are independent
    time.now += 10  # refilled
    assert await pacer.acquire("106540352242922") == 0.0


async def test_pacer_reserves_for_concurrent_callers():
    time = FakeTime(advance=False)  # nobody's wait has elapsed yet: each reservation queues further
    pacer = Pacer(2, burst=1, clock=time.clock, sleep=time.sleep)
    waits = await asyncio.gather(*(pacer.acquire("k") for _ in range(4)))
    assert sorted(waits) == pytest.approx([0.0, 0.5, 1.0, 1.5])


async def test_pacer_forgets_idle_keys():
    time = FakeTime()
    pacer = Pacer(1, clock=time.clock, sleep=time.sleep, max_keys=2)
    await pacer.acquire("a")
    await pacer.acquire("b")
    time.now += 5
    await pacer.acquire("c")
    assert set(pacer._buckets) == {"c"}
    with pytest.raises(ValueError):
        Pacer(0)


# ---------------------------------------------------------------------------- registry

async def test_registry_builds_one_adapter_per_channel(make_settings):
    settings = make_settings().channels
    registry = ChannelRegistry(settings, replay_window_seconds=42)
    try:
        expected = {"whatsapp": WhatsAppAdapter, "messenger": MessengerAdapter, "instagram": InstagramAdapter,
                    "custom": CustomAdapter}
        for channel, cls in expected.items():
            adapter = registry.adapter(channel)
            assert type(adapter) is cls and adapter.channel == channel and adapter.http is registry.http
        assert registry.channels == list(CHANNELS) and set(expected) <= set(CHANNELS)
        assert registry.adapter("custom").replay_window == registry.adapter("slack").replay_window == 42
        with pytest.raises(KeyError):
            registry.adapter("fax")
        session = registry.http.session("whatsapp")
    finally:
        await registry.close()
    assert session.closed
