"""Live sessions across the cluster: the page, then a `snapshot` event whenever the visible sessions
or nodes change (buzzi.admin.live.SessionsFeed, filtered by the principal's tenancy)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from buzzi import clock
from buzzi.admin.live import SessionsFeed
from handlers.dashboard.live import LiveEvent, LiveEvents
from handlers.dashboard.shell import DashboardHandler


class SessionsPage(DashboardHandler):
    nav = "sessions"

    async def get(self) -> None:
        snapshot = await self.admin.live.sessions_feed(self.principal).snapshot()
        self.render_page("sessions.html", title="Live sessions", snapshot=snapshot)


class SessionsEvents(LiveEvents):
    nav = "sessions"

    async def get(self) -> None:
        await self.stream(self._items(self.admin.live.sessions_feed(self.principal)))

    async def _items(self, feed: SessionsFeed) -> AsyncIterator[LiveEvent]:
        async with contextlib.aclosing(feed.snapshots(self.closed)) as snapshots:
            async for snapshot in snapshots:
                yield None if snapshot is None else ("snapshot", {**snapshot, "at": clock.iso(clock.now())}, None)


ROUTES: list[tuple] = [
    (r"/admin/sessions/?", SessionsPage),
    (r"/admin/sessions/events", SessionsEvents),
]
