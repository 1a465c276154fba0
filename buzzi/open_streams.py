"""Open long-lived responses outside the chat StreamHub (the dashboard's live pages), owned by the
Gateway so that draining ends them too: each stream registers the event that ends it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class OpenStreams:
    def __init__(self) -> None:
        self._open: set[asyncio.Event] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.closing = False

    def __len__(self) -> int:
        return len(self._open)

    @contextlib.contextmanager
    def track(self, closed: asyncio.Event) -> Iterator[None]:
        """Registers a stream for the block's duration; `close_all` sets `closed` to end it. A stream
        opened after draining began is closed at once."""
        self._open.add(closed)
        self._idle.clear()
        if self.closing:
            closed.set()
        try:
            yield
        finally:
            self._open.discard(closed)
            if not self._open:
                self._idle.set()

    async def close_all(self, timeout: float) -> None:
        """End every open stream and wait (at most `timeout` seconds) until each has left its block."""
        self.closing = True
        for closed in list(self._open):
            closed.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
