"""Waiting on a condition with a deadline: tests synchronise on state, never on fixed sleeps."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def wait_until(check: Callable[[], T | Awaitable[T]], timeout: float = 10.0, interval: float = 0.01) -> T:
    """Poll `check` (sync or async) until it returns a truthy value; fail after `timeout` seconds."""

    async def poll() -> T:
        while True:
            value = check()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(interval)

    try:
        return await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"condition not met within {timeout}s: {getattr(check, '__name__', check)}") from None
