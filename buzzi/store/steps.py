"""Store operations written once as a sequence of steps that each backend runs its own way.

A multi-document rule (the intake of an inbound message) is a generator: it yields one step at a
time (FindOne, Insert, Update on raw documents), receives the step's result, and has a step's
failure (DuplicateKey) thrown back in to handle or let through. Store.transact runs the steps one
round trip each, relying on unique indexes under races (MongoDB); SQLite runs all of them in one
transaction on its store thread. Either way the rule, and what it writes, is the same code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

R = TypeVar("R")


@dataclass(frozen=True)
class FindOne:
    """The first document of `collection` equal to `where` on its top-level fields, or None."""

    collection: str
    where: dict[str, Any]


@dataclass(frozen=True)
class Insert:
    """Insert `doc`; a unique-key clash is thrown back into the steps as DuplicateKey."""

    collection: str
    doc: dict[str, Any]


@dataclass(frozen=True)
class Update:
    """$set/$inc on the document `id`; the document after, or None if there is none."""

    collection: str
    id: str
    set_: dict[str, Any]
    inc: dict[str, int] = field(default_factory=dict)


Step = FindOne | Insert | Update
Steps = Generator[Step, Any, R]


def run_steps(steps: Steps[R], apply: Callable[[Step], Any]) -> R:
    """Drive `steps` with a synchronous `apply` (a backend that runs them inside one transaction)."""
    reply: Any = None
    error: Exception | None = None
    while True:
        try:
            step = steps.throw(error) if error is not None else steps.send(reply)
        except StopIteration as done:
            return done.value
        reply, error = None, None
        try:
            reply = apply(step)
        except Exception as exc:  # noqa: BLE001 - handed to the steps, which handle it or raise it
            error = exc


async def run_steps_async(steps: Steps[R], apply: Callable[[Step], Awaitable[Any]]) -> R:
    """Drive `steps` with an asynchronous `apply`, one round trip per step."""
    reply: Any = None
    error: Exception | None = None
    while True:
        try:
            step = steps.throw(error) if error is not None else steps.send(reply)
        except StopIteration as done:
            return done.value
        reply, error = None, None
        try:
            reply = await apply(step)
        except Exception as exc:  # noqa: BLE001 - handed to the steps, which handle it or raise it
            error = exc
