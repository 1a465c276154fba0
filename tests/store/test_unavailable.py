"""A backend that does not answer raises StoreUnavailable (the HTTP layer turns it into 503)."""

from __future__ import annotations

from pathlib import Path

import pytest

from buzzi.crypto import SecretBox
from buzzi.models import Company
from buzzi.store import Store, StoreUnavailable
from buzzi.store.mongo import MongoStore
from buzzi.store.sqlite import SQLiteStore
from tests.support.mongo_server import MongoWireServer


async def _assert_unavailable(store: Store) -> None:
    with pytest.raises(StoreUnavailable):
        await store.ping()
    with pytest.raises(StoreUnavailable):
        await store.add(Company(id="c_new", name="New"))
    with pytest.raises(StoreUnavailable):
        await store.get(Company, "c_1")
    with pytest.raises(StoreUnavailable):
        await store.claim_next_message("node-a", 60)


async def test_closed_store_is_unavailable(store: Store) -> None:
    await store.add(Company(id="c_1", name="One"))
    await store.ping()
    await store.close()
    await _assert_unavailable(store)


async def test_a_rejected_write_leaves_the_store_usable(store: Store, stores: list[Store]) -> None:
    await store.add(Company(id="c_1", name="One"))
    with pytest.raises(TypeError):
        await store.update(Company, "c_1", {"name": object()})
    assert (await store.update(Company, "c_1", {"name": "Two"})).name == "Two"
    assert (await stores[0].update(Company, "c_1", {"name": "Three"})).name == "Three"


async def test_sqlite_that_cannot_open_is_unavailable(tmp_path: Path, box: SecretBox) -> None:
    (tmp_path / "a-directory").mkdir()
    store = SQLiteStore(tmp_path / "a-directory", box)
    with pytest.raises(StoreUnavailable):
        await store.open()
    await _assert_unavailable(store)


async def test_mongo_server_going_away_and_coming_back(box: SecretBox) -> None:
    with MongoWireServer() as server:
        store = MongoStore(server.url, box, timeout=0.3)
        await store.open()
        try:
            await store.add(Company(id="c_1", name="One"))
            server.stop()
            await _assert_unavailable(store)
            server.start()  # same port; the in-memory data is gone, the store reconnects by itself
            await store.ping()
            await store.add(Company(id="c_2", name="Two"))
            assert (await store.get(Company, "c_2")).name == "Two"
        finally:
            await store.close()
        await _assert_unavailable(store)


async def test_mongo_that_cannot_connect_is_unavailable(box: SecretBox) -> None:
    server = MongoWireServer()  # a free port nobody listens on
    store = MongoStore(server.url, box, timeout=0.3)
    with pytest.raises(StoreUnavailable):
        await store.open()
    await _assert_unavailable(store)
