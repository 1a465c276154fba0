"""The generic typed operations: add/get/find/find_one/count/update/delete, on every backend."""

from __future__ import annotations

import pytest

from buzzi.models import Agent, Company, Conversation, User
from buzzi.store import DuplicateKey, Store
from tests.store.factories import conversation, user


async def _companies(store: Store) -> list[Company]:
    made = [
        Company(id="c_b", name="Beta", subscription_status="active", created_at=20.0),
        Company(id="c_a", name="Alpha", subscription_status="canceled", created_at=10.0),
        Company(id="c_d", name="Delta", subscription_status="active", created_at=40.0),
        Company(id="c_c", name="Gamma", subscription_status="active", created_at=30.0, subscription_expires_at=99.0),
    ]
    for company in made:
        await store.add(company)
    return made


async def test_add_then_get_round_trips_every_field(store: Store) -> None:
    agent = Agent(id="a_1", company_id="c_1", name="Bot", settings={"faq": [{"q": "hi", "a": "hello"}]},
                  allowed_origins=["https://a.example"])
    assert await store.add(agent) is agent
    assert await store.get(Agent, "a_1") == agent
    raw = await store._get("agents", "a_1")  # callers see `id`, whatever the backend keys on
    assert raw is not None and raw["id"] == "a_1" and "_id" not in raw
    assert await store.get(Agent, "a_missing") is None


async def test_add_with_existing_id_is_a_duplicate(store: Store) -> None:
    await store.add(Company(id="c_1", name="One"))
    with pytest.raises(DuplicateKey):
        await store.add(Company(id="c_1", name="Again"))
    assert (await store.get(Company, "c_1")).name == "One"


async def test_find_filters_orders_and_limits(store: Store) -> None:
    await _companies(store)
    assert [c.id for c in await store.find(Company)] == ["c_a", "c_b", "c_c", "c_d"]
    assert [c.id for c in await store.find(Company, descending=True)] == ["c_d", "c_c", "c_b", "c_a"]
    assert [c.id for c in await store.find(Company, subscription_status="active")] == ["c_b", "c_c", "c_d"]
    assert [c.id for c in await store.find(Company, order_by="name", descending=True, limit=2)] == ["c_c", "c_d"]
    assert [c.id for c in await store.find(Company, subscription_status="active", limit=1)] == ["c_b"]
    assert await store.find(Company, limit=0) == []
    assert await store.find(Company, name="Nobody") == []


async def test_find_matches_null_and_id(store: Store) -> None:
    await _companies(store)
    no_expiry = await store.find(Company, subscription_expires_at=None)
    assert [c.id for c in no_expiry] == ["c_a", "c_b", "c_d"]
    assert [c.name for c in await store.find(Company, id="c_c")] == ["Gamma"]


async def test_find_one_and_count(store: Store) -> None:
    await _companies(store)
    found = await store.find_one(Company, name="Delta")
    assert found is not None and found.id == "c_d"
    assert await store.find_one(Company, name="Nobody") is None
    assert await store.count(Company) == 4
    assert await store.count(Company, subscription_status="active") == 3
    assert await store.count(Company, subscription_status="past_due") == 0


async def test_update_sets_fields_and_touches_updated_at(store: Store) -> None:
    await store.add(Company(id="c_1", name="One", updated_at=1.0))
    updated = await store.update(Company, "c_1", {"name": "Uno", "subscription_status": "past_due"})
    assert updated is not None and updated.name == "Uno" and updated.updated_at > 1.0
    assert await store.get(Company, "c_1") == updated
    assert await store.update(Company, "c_missing", {"name": "x"}) is None


async def test_update_increments(store: Store) -> None:
    conv = await store.add(conversation("wh:1"))
    await store.update(Conversation, conv.id, inc={"message_count": 2})
    after = await store.update(Conversation, conv.id, {"status": "closed"}, inc={"message_count": 3})
    assert after is not None and after.message_count == 5 and after.status == "closed"


async def test_update_with_expect_is_compare_and_set(store: Store) -> None:
    await store.add(Company(id="c_1", name="One"))
    assert await store.update(Company, "c_1", {"name": "Two"}, expect={"name": "Nope"}) is None
    assert (await store.get(Company, "c_1")).name == "One"
    assert (await store.update(Company, "c_1", {"name": "Two"}, expect={"name": "One"})).name == "Two"
    # The second writer that read "One" loses.
    assert await store.update(Company, "c_1", {"name": "Three"}, expect={"name": "One"}) is None
    assert (await store.get(Company, "c_1")).name == "Two"


async def test_delete_and_delete_where(store: Store) -> None:
    await _companies(store)
    assert await store.delete(Company, "c_a") is True
    assert await store.delete(Company, "c_a") is False
    assert await store.get(Company, "c_a") is None
    assert await store.delete_where(Company, subscription_status="active") == 3
    assert await store.count(Company) == 0
    assert await store.delete_where(Company, subscription_status="active") == 0


async def test_email_is_unique_but_optional_keys_may_repeat_null(store: Store) -> None:
    await store.add(user("a@example.com"))
    with pytest.raises(DuplicateKey):
        await store.add(user("a@example.com"))
    other = await store.add(user("b@example.com"))
    with pytest.raises(DuplicateKey):
        await store.update(User, other.id, {"email": "a@example.com"})
    assert (await store.get(User, other.id)).email == "b@example.com"
    assert await store.count(User) == 2


async def test_unique_keys_ignore_null(store: Store) -> None:
    for _ in range(3):  # web chats: no chat_key; channel chats: no session_hash
        await store.add(conversation(None, session_hash=None))
    await store.add(conversation("wh:1"))
    await store.add(conversation("wh:2"))
    with pytest.raises(DuplicateKey):
        await store.add(conversation("wh:1"))
    await store.add(conversation(None, session_hash="h1"))
    with pytest.raises(DuplicateKey):
        await store.add(conversation(None, session_hash="h1"))
    assert await store.count(Conversation, chat_key=None) == 4
