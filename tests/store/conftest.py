"""The `store` fixture: every contract test runs once on SQLite and once on MongoDB (mongoeco wire
server, or BUZZI_TEST_MONGODB_URL). `make_store` opens more stores on the same database, standing in
for other processes/nodes (or, with another SecretBox, for a node configured with another key)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from buzzi.crypto import SecretBox
from buzzi.store import Store, open_store

MakeStore = Callable[..., Awaitable[Store]]


@pytest.fixture(params=["sqlite", "mongo"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite3'}"
    return request.getfixturevalue("mongo_db_url")


@pytest.fixture
async def make_store(store_url: str, box: SecretBox) -> AsyncIterator[MakeStore]:
    opened: list[Store] = []

    async def make(with_box: SecretBox | None = None, *, timeout: float = 5.0) -> Store:
        store = open_store(store_url, with_box or box, timeout=timeout)
        await store.open()
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


@pytest.fixture
async def store(make_store: MakeStore) -> Store:
    return await make_store()


@pytest.fixture
async def stores(make_store: MakeStore) -> list[Store]:
    """Four stores on one database: separate connections, like four gateway nodes."""
    return [await make_store() for _ in range(4)]
