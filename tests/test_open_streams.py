"""The Gateway's registry of open dashboard streams: draining ends each one and waits for it."""

from __future__ import annotations

import asyncio

from buzzi.open_streams import OpenStreams
from tests.support.gateway import running_gateway


async def serve(streams: OpenStreams, closed: asyncio.Event, linger: float = 0.0) -> None:
    """A stream's handler in small: open until `closed` is set, then a little cleanup."""
    with streams.track(closed):
        await closed.wait()
        await asyncio.sleep(linger)


async def test_close_all_ends_every_stream_and_waits_for_it_to_leave() -> None:
    streams = OpenStreams()
    events = [asyncio.Event() for _ in range(3)]
    tasks = [asyncio.create_task(serve(streams, e, linger=0.05)) for e in events]
    await asyncio.sleep(0)
    assert len(streams) == 3
    await streams.close_all(timeout=5)
    assert all(e.is_set() for e in events)
    assert all(t.done() for t in tasks) and len(streams) == 0


async def test_a_stream_opened_while_closing_is_closed_at_once() -> None:
    streams = OpenStreams()
    await streams.close_all(timeout=1)
    late = asyncio.Event()
    await asyncio.wait_for(serve(streams, late), 1)
    assert late.is_set()


async def test_close_all_waits_no_longer_than_its_timeout() -> None:
    streams = OpenStreams()
    stuck = asyncio.create_task(serve(streams, asyncio.Event(), linger=10))
    await asyncio.sleep(0)
    started = asyncio.get_running_loop().time()
    await streams.close_all(timeout=0.1)
    assert asyncio.get_running_loop().time() - started < 1
    assert len(streams) == 1
    stuck.cancel()


async def test_gateway_drain_closes_the_dashboard_streams(make_settings) -> None:
    async with running_gateway(make_settings) as gw:
        closed = asyncio.Event()
        stream = asyncio.create_task(serve(gw.gateway.admin_streams, closed))
        await asyncio.sleep(0)
        await gw.gateway.drain()
        assert closed.is_set() and stream.done()
