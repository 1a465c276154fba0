"""A dependency outage for the live store or broker of a running gateway.

The real object keeps doing all the work: only the chosen method, for the calls `when` picks, raises
the backend's own "unavailable" error a set number of times, then answers normally again, as a
store or broker that comes back does. Everything else sharing the object (webhook ingestion, the
inbox claims) is left alone, so a test measures what the answering code does with the outage.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from buzzi.broker.base import BrokerUnavailable
from buzzi.models import Message
from buzzi.store.base import StoreUnavailable

Predicate = Callable[..., bool]


def always(*args: Any, **kwargs: Any) -> bool:
    return True


class Outage:
    def __init__(self, target: object, method: str, error: Callable[[], Exception], *, times: int = 1,
                 when: Predicate = always) -> None:
        self.target = target
        self.method = method
        self.error = error
        self.times = times
        self.when = when
        self.raised = 0
        self._real: Callable[..., Awaitable[Any]] = getattr(target, method)

    async def _call(self, *args: Any, **kwargs: Any) -> Any:
        if self.raised < self.times and self.when(*args, **kwargs):
            self.raised += 1
            raise self.error()
        return await self._real(*args, **kwargs)

    def __enter__(self) -> Outage:
        setattr(self.target, self.method, self._call)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # The bound method lives on the class: dropping the instance attribute restores it.
        delattr(self.target, self.method)


def store_down() -> Exception:
    return StoreUnavailable("sqlite: database is locked")


def broker_down() -> Exception:
    return BrokerUnavailable("Redis broker at redis://broker:6379: Connection refused")


def storing_a_reply(message: Message) -> bool:
    return message.role == "assistant"


def publishing(name: str) -> Predicate:
    """Matches Broker.publish calls of one event name."""
    def matches(stream: str, event: str, data: dict[str, Any]) -> bool:
        return event == name
    return matches
