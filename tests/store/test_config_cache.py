"""The decoded companies/agents/webhooks the store reuses (buzzi/store/config_cache.py): never
stale, whoever changed the document (another node, another process, a hand edit of the row), and
never changed by what a caller does with the object it got. On both backends."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from buzzi.crypto import SecretBox
from buzzi.models import Agent, Company, Webhook
from buzzi.store import Store, open_store
from buzzi.store.config_cache import ConfigCache


@pytest.fixture(params=["sqlite", "mongo"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite3'}"
    return request.getfixturevalue("mongo_db_url")


@pytest.fixture
async def two_nodes(store_url: str, box: SecretBox) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on one database, as two processes or nodes have."""
    stores = [open_store(store_url, box) for _ in range(2)]
    for store in stores:
        await store.open()
    yield stores[0], stores[1]
    for store in stores:
        await store.close()


def _config() -> tuple[Webhook, Agent, Company]:
    return (
        Webhook(id="wh_1", company_id="c_1", agent_id="a_1", channel="whatsapp", secret="app-secret",
                credentials={"accessToken": "EAAG-1"}, settings={"throughput": 80}, state={"phone": "1"},
                created_at=1.0, updated_at=1.0),
        Agent(id="a_1", company_id="c_1", name="Bot", settings={"apiKey": "sk-1", "faq": []},
              created_at=1.0, updated_at=1.0),
        Company(id="c_1", name="One", created_at=1.0, updated_at=1.0),
    )


async def _resolve(store: Store) -> list:
    return await store.get_many((Webhook, "wh_1"), (Agent, "a_1"), (Company, "c_1"))


async def test_a_change_by_another_node_is_seen_on_the_next_read(two_nodes: tuple[Store, Store]) -> None:
    reader, writer = two_nodes
    for obj in _config():
        await writer.add(obj)
    assert await _resolve(reader) == list(_config())
    assert await _resolve(reader) == list(_config())  # now from the cache: the same objects

    await writer.update(Webhook, "wh_1", {"secret": "rotated", "status": "disabled"})
    await writer.update(Agent, "a_1", {"settings": {"apiKey": "sk-2"}})
    await writer.update(Company, "c_1", {"subscription_status": "canceled"})
    webhook, agent, company = await _resolve(reader)
    assert (webhook.secret, webhook.status) == ("rotated", "disabled")
    assert agent.settings == {"apiKey": "sk-2"}
    assert company.subscription_status == "canceled"
    assert (await reader.get(Webhook, "wh_1")).secret == "rotated"

    await writer.delete(Agent, "a_1")
    assert (await _resolve(reader))[1] is None
    assert await reader.get(Agent, "a_1") is None


async def test_what_a_caller_changes_in_its_copy_stays_its_own(two_nodes: tuple[Store, Store]) -> None:
    store, _ = two_nodes
    for obj in _config():
        await store.add(obj)
    await _resolve(store)  # cached
    webhook, agent, company = await _resolve(store)
    webhook.status = "disabled"
    webhook.credentials["accessToken"] = "tampered"
    webhook.state["phone"] = "2"
    webhook.settings.clear()
    agent.settings["apiKey"] = "tampered"
    company.name = "Renamed"

    assert await _resolve(store) == list(_config())
    assert await store.get(Webhook, "wh_1") == _config()[0]


async def test_a_hand_edit_of_the_sqlite_row_is_seen(tmp_path: Path, box: SecretBox) -> None:
    path = tmp_path / "store.sqlite3"
    store = open_store(f"sqlite:///{path}", box)
    await store.open()
    try:
        await store.add(Company(id="c_1", name="One"))
        assert (await store.get(Company, "c_1")).name == "One"
        with sqlite3.connect(path) as other:  # a process that knows nothing of any cache
            other.execute("UPDATE companies SET doc = json_set(doc, '$.name', 'Edited') WHERE id = 'c_1'")
        assert (await store.get(Company, "c_1")).name == "Edited"
    finally:
        await store.close()


def test_the_cache_holds_a_bounded_number_of_documents() -> None:
    cache = ConfigCache(max_entries=3)
    for i in range(5):
        cache.put("companies", f"c_{i}", f"raw{i}", Company(id=f"c_{i}", name=str(i)))
    assert len(cache) == 3
    assert cache.get("companies", "c_0", "raw0") is None  # the oldest went first
    assert cache.get("companies", "c_4", "raw4").name == "4"
    assert cache.get("companies", "c_4", "changed") is None  # another stored form: not this object
