"""The dashboard's Server-Sent Events responses: written by the one SSE writer (handlers.sse), and
registered with the Gateway's open admin streams so that a drain ends them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import tornado.iostream

from handlers.dashboard.shell import DashboardHandler
from handlers.sse import SseWriter

RETRY_MS = 2000  # EventSource reconnect delay after a stream ends (drain, overflow)

# (event name, data, event id) to send, or None for a heartbeat.
LiveEvent = tuple[str, dict[str, Any], str | None] | None


class LiveEvents(DashboardHandler):
    """Events to a dashboard page, ending when the client goes away, the feed ends or the node drains.
    `items` is an async generator whose feed ends on `self.closed`: set in each of those cases, and
    created here, before the generator first runs."""

    closed: asyncio.Event

    async def stream(self, items: AsyncIterator[LiveEvent]) -> None:
        self.closed = asyncio.Event()
        sse = SseWriter(self, cache_control="no-cache, no-store")
        with self.gateway.admin_streams.track(self.closed):
            try:
                sse.retry(RETRY_MS)
                await sse.flush()
                async with contextlib.aclosing(items) as events:
                    async for item in events:
                        if item is None:
                            sse.heartbeat()
                        else:
                            sse.event(*item)
                        await sse.flush()
            except (tornado.iostream.StreamClosedError, TimeoutError):
                pass  # the client went away or could not keep up: EventSource reconnects for a fresh picture
            finally:
                self.closed.set()
        if not self._finished:
            self.finish()

    def on_connection_close(self) -> None:
        closed = getattr(self, "closed", None)
        if closed is not None:
            closed.set()
