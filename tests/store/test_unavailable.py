"""A backend that cannot be reached raises StoreUnavailable (the HTTP layer turns it into 503): the
ways each backend fails on its own (the contract suite checks a closed store on both)."""

from __future__ import annotations

from pathlib import Path

import pytest

from buzzi.crypto import SecretBox
from buzzi.models import Company
from buzzi.store import StoreUnavailable
from buzzi.store.mongo import MongoStore
from buzzi.store.sqlite import SQLiteStore
from tests.support.mongo_server import MongoWireServer
from tests.support.stores import assert_unavailable


async def test_sqlite_that_cannot_open_is_unavailable(tmp_path: Path, box: SecretBox) -> None:
    (tmp_path / "a-directory").mkdir()
    store = SQLiteStore(tmp_path / "a-directory", box)
    with pytest.raises(StoreUnavailable):
        await store.open()
    await assert_unavailable(store)


async def test_mongo_server_going_away_and_coming_back(box: SecretBox) -> None:
    with MongoWireServer() as server:
        store = MongoStore(server.url, box, timeout=0.3)
        await store.open()
        try:
            await store.add(Company(id="c_1", name="One"))
            server.stop()
            await assert_unavailable(store)
            server.start()  # same port; the in-memory data is gone, the store reconnects by itself
            await store.ping()
            await store.add(Company(id="c_2", name="Two"))
            assert (await store.get(Company, "c_2")).name == "Two"
        finally:
            await store.close()
        await assert_unavailable(store)


async def test_mongo_that_cannot_connect_is_unavailable(box: SecretBox) -> None:
    server = MongoWireServer()  # a free port nobody listens on
    store = MongoStore(server.url, box, timeout=0.3)
    with pytest.raises(StoreUnavailable):
        await store.open()
    await assert_unavailable(store)
