"""SQLite group commit: calls queued while the store thread is busy run in one transaction, and
each still gets its own outcome (a failing call is undone alone)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from buzzi.crypto import SecretBox
from buzzi.models import Company, Message
from buzzi.store import DuplicateKey
from buzzi.store.sqlite import SQLiteStore
from tests.support.stores import conversation, message
from tests.support.waiting import wait_until


@pytest.fixture
async def sqlite(sqlite_store: SQLiteStore) -> SQLiteStore:
    return sqlite_store


async def _hold(store: SQLiteStore) -> tuple[threading.Event, asyncio.Future[Any]]:
    """Keep the store thread busy until the returned gate is set."""
    busy, gate = threading.Event(), threading.Event()

    def plug(_: Any) -> None:
        busy.set()
        gate.wait(10)

    held = asyncio.ensure_future(store._run(plug))
    await wait_until(busy.is_set)
    return gate, held


async def _as_one_batch(store: SQLiteStore, calls: list[Coroutine[Any, Any, Any]]) -> list[Any]:
    """Run `calls` while the store thread is held busy, so they all queue up behind it; then let go."""
    gate, held = await _hold(store)
    tasks = [asyncio.ensure_future(call) for call in calls]
    await wait_until(lambda: store.batching.queued >= len(calls))
    gate.set()
    await held
    return await asyncio.gather(*tasks, return_exceptions=True)


async def test_concurrent_writes_share_one_transaction_and_keep_their_own_outcome(sqlite: SQLiteStore) -> None:
    keys = [f"wh_1:m{i % 40}" for i in range(50)]  # ten keys arrive twice
    before = sqlite.batching
    results = await _as_one_batch(sqlite, [sqlite.add_message_once(message(dedupe_key=k)) for k in keys])
    after = sqlite.batching

    assert results == [True] * 40 + [False] * 10
    assert after.commits - before.commits == 1
    assert after.calls - before.calls == 51  # the plug and the 50 writes
    assert await sqlite.count(Message) == 40


async def test_a_failing_call_does_not_poison_its_batch(sqlite: SQLiteStore) -> None:
    await sqlite.add(Company(id="c_1", name="One"))
    calls: list[Awaitable[Any]] = [
        sqlite.add(Company(id="c_2", name="Two")),
        sqlite.update(Company, "c_1", {"name": object()}),  # json cannot encode it: TypeError
        sqlite.add(Company(id="c_1", name="Again")),  # DuplicateKey
        sqlite.update(Company, "c_1", {"name": "Renamed"}),
        sqlite.get(Company, "c_2"),  # reads in the batch see the writes queued before them
    ]
    results = await _as_one_batch(sqlite, calls)  # type: ignore[arg-type]

    assert isinstance(results[0], Company)
    assert isinstance(results[1], TypeError)
    assert isinstance(results[2], DuplicateKey)
    assert results[3].name == "Renamed"
    assert results[4].name == "Two"
    assert sorted((c.id, c.name) for c in await sqlite.find(Company)) == [("c_1", "Renamed"), ("c_2", "Two")]


async def test_a_failing_multi_statement_call_is_undone_alone(sqlite: SQLiteStore) -> None:
    def half_then_fail(c: Any) -> None:
        c.execute("INSERT INTO companies (id, doc) VALUES ('c_half', '{}')")
        raise ValueError("after the first statement")

    results = await _as_one_batch(sqlite, [
        sqlite._run(half_then_fail, write=True),
        sqlite.add(Company(id="c_ok", name="Ok")),
    ])
    assert isinstance(results[0], ValueError)
    assert await sqlite.get(Company, "c_half") is None
    assert (await sqlite.get(Company, "c_ok")).name == "Ok"


async def test_close_finishes_the_calls_already_queued(sqlite: SQLiteStore, tmp_path: Path, box: SecretBox) -> None:
    gate, held = await _hold(sqlite)
    adds = [asyncio.ensure_future(sqlite.add(Company(id=f"c_{i}", name="x"))) for i in range(5)]
    await wait_until(lambda: sqlite.batching.queued >= 5)
    closing = asyncio.ensure_future(sqlite.close())
    await wait_until(lambda: sqlite.batching.calls == 0)  # closed to new calls: they get StoreUnavailable
    gate.set()
    await asyncio.gather(held, *adds, closing)

    reopened = SQLiteStore(tmp_path / "store.sqlite3", box)
    await reopened.open()
    try:
        assert await reopened.count(Company) == 5
    finally:
        await reopened.close()


async def test_an_intake_is_one_call_in_one_transaction(sqlite: SQLiteStore) -> None:
    before = sqlite.batching
    stored = await sqlite.ingest_message(conversation("wh_1:chat"), message(dedupe_key="wh_1:m-1"))
    after = sqlite.batching
    assert stored is not None
    assert (after.calls - before.calls, after.commits - before.commits) == (1, 1)

