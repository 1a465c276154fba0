"""The Store contract, checked on every backend: SQLite and MongoDB (the mongoeco wire server, or
BUZZI_TEST_MONGODB_URL). What only one backend does (SQLite group commit, a MongoDB server going
away) is in tests/store/.

`make_store` opens more stores on the same database, standing in for other processes or nodes
(or, with another SecretBox, for a node configured with another key).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from buzzi import clock
from buzzi.crypto import SecretBox
from buzzi.models import (
    DONE,
    PENDING,
    PROCESSING,
    STORED,
    Agent,
    ChatAlias,
    Company,
    Conversation,
    Message,
    User,
    Webhook,
    WebhookEvent,
)
from buzzi.store import DuplicateKey, Store, open_store
from tests.support.stores import assert_unavailable, conversation, event, message, user, webhook

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


# ---------------------------------------------------------------- typed operations

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


# ---------------------------------------------------------------- messages: intake and claims

async def test_add_message_once_rejects_a_seen_dedupe_key(store: Store) -> None:
    first = message(dedupe_key="wh_1:update-1")
    assert await store.add_message_once(first) is True
    assert await store.add_message_once(message(dedupe_key="wh_1:update-1")) is False
    assert await store.add_message_once(message(dedupe_key="wh_1:update-2")) is True
    # Messages without a dedupe key never clash with each other.
    assert await store.add_message_once(message()) is True
    assert await store.add_message_once(message()) is True
    assert [m.id for m in await store.find(Message, dedupe_key="wh_1:update-1")] == [first.id]


async def test_concurrent_duplicates_are_stored_once(stores: list[Store]) -> None:
    attempts = [s.add_message_once(message(dedupe_key="wh_1:same")) for s in stores[:3] for _ in range(2)]
    results = await asyncio.gather(*attempts)
    assert sorted(results) == [False] * 5 + [True]
    assert await stores[0].count(Message, dedupe_key="wh_1:same") == 1


async def test_concurrent_first_messages_of_one_chat_share_one_conversation(stores: list[Store]) -> None:
    firsts = [s.ingest_message(conversation("wh_1:racy"), message(f"m{i}", dedupe_key=f"wh_1:racy-{i}"))
              for i, s in enumerate(stores * 2)]
    stored = await asyncio.gather(*firsts)
    assert all(m is not None for m in stored)
    (conv,) = await stores[0].find(Conversation, chat_key="wh_1:racy")
    assert {m.conversation_id for m in stored} == {conv.id}
    assert conv.message_count == len(stored) == await stores[0].count(Message, conversation_id=conv.id)


async def test_web_conversation_clash_is_not_answered_with_another_chat(store: Store) -> None:
    # Web chats have no chat_key: a session_hash clash used to return any chat whose chat_key is null.
    await store.add(conversation(None, session_hash="h-2"))
    await store.add(conversation(None, session_hash="h-1"))
    with pytest.raises(DuplicateKey):
        await store.ingest_message(conversation(None, session_hash="h-1"), message(dedupe_key="web:1"))
    assert await store.count(Message) == 0
    assert await store.ingest_message(conversation(None, session_hash="h-3"), message(dedupe_key="web:2"))


async def test_record_message_counts(store: Store, stores: list[Store]) -> None:
    conv = await store.add(conversation("wh_1:c"))
    after = await store.record_message(conv.id, at=123.0)
    assert after is not None and after.message_count == 1 and after.last_message_at == 123.0
    await asyncio.gather(*(s.record_message(conv.id) for s in stores for _ in range(3)))
    assert (await store.get(Conversation, conv.id)).message_count == 13
    assert await store.record_message("cv_missing") is None


async def test_claim_takes_the_oldest_pending_user_message(store: Store) -> None:
    await store.add(message("assistant", role="assistant", state=STORED, created_at=1.0))
    await store.add(message("stored", state=STORED, created_at=2.0))
    await store.add(message("done", state=DONE, created_at=3.0))
    third = await store.add(message("third", created_at=30.0))
    first = await store.add(message("first", created_at=10.0))
    second = await store.add(message("second", created_at=20.0))

    claimed = [await store.claim_next_message("node-a", 60) for _ in range(3)]
    assert [m.id for m in claimed] == [first.id, second.id, third.id]
    assert all(m.state == PROCESSING and m.lease_owner == "node-a" and m.attempts == 1 for m in claimed)
    assert all(m.lease_until is not None and m.lease_until > m.updated_at for m in claimed)
    assert await store.claim_next_message("node-a", 60) is None  # all leased, nothing else claimable
    assert (await store.get(Message, first.id)).state == PROCESSING


async def test_concurrent_claimers_take_each_message_once(stores: list[Store]) -> None:
    added = [await stores[0].add(message(f"m{i}", created_at=float(i))) for i in range(20)]

    async def drain(store: Store, owner: str) -> list[str]:
        taken = []
        while (claimed := await store.claim_next_message(owner, 60)) is not None:
            taken.append(claimed.id)
            assert await store.finish_message(claimed.id, owner, DONE) is True
        return taken

    per_node = await asyncio.gather(*(drain(s, f"node-{i}") for i, s in enumerate(stores)))
    taken = [mid for ids in per_node for mid in ids]
    assert sorted(taken) == sorted(m.id for m in added)
    assert await stores[0].count(Message, state=DONE) == 20


async def test_expired_lease_is_reclaimed_and_the_stale_owner_is_fenced(store: Store) -> None:
    msg = await store.add(message())
    stale = await store.claim_next_message("node-a", -1)  # a lease that has already run out
    assert stale is not None and stale.id == msg.id and stale.attempts == 1

    taken = await store.claim_next_message("node-b", 60)
    assert taken is not None and taken.id == msg.id
    assert taken.lease_owner == "node-b" and taken.attempts == 2

    assert await store.extend_lease(msg.id, "node-a", 60) is False
    assert await store.finish_message(msg.id, "node-a", DONE) is False
    assert await store.release_message(msg.id, "node-a") is False
    assert (await store.get(Message, msg.id)).lease_owner == "node-b"

    assert await store.extend_lease(msg.id, "node-b", 120) is True
    assert (await store.get(Message, msg.id)).lease_until > taken.lease_until
    assert await store.finish_message(msg.id, "node-b", DONE, metadata={"reply": "m_2"}) is True
    done = await store.get(Message, msg.id)
    assert done.state == DONE and done.lease_until is None and done.metadata == {"reply": "m_2"}
    assert await store.finish_message(msg.id, "node-b", DONE) is False  # not processing any more
    assert await store.claim_next_message("node-c", 60) is None


async def test_live_lease_is_not_taken_by_another_node(store: Store) -> None:
    await store.add(message())
    assert await store.claim_next_message("node-a", 60) is not None
    assert await store.claim_next_message("node-b", 60) is None


async def test_released_message_is_claimable_at_once(store: Store) -> None:
    msg = await store.add(message())
    await store.claim_next_message("node-a", 60)
    assert await store.release_message(msg.id, "node-a") is True
    released = await store.get(Message, msg.id)
    assert released.state == PENDING and released.lease_owner is None and released.lease_until is None
    again = await store.claim_next_message("node-b", 60)
    assert again is not None and again.id == msg.id and again.attempts == 2


async def test_defer_hands_a_claim_back_for_later_without_counting_it(store: Store) -> None:
    first = message("first", created_at=1.0)
    second = message("second", created_at=2.0)
    await store.add(first)
    await store.add(second)
    assert await store.earlier_unanswered(second) is True
    assert await store.earlier_unanswered(first) is False
    claimed = await store.claim_next_message("node-a", 30)
    assert claimed is not None and claimed.id == first.id
    taken = await store.claim_next_message("node-b", 30)
    assert taken is not None and taken.id == second.id
    assert await store.defer_message(second.id, "node-a", 0.0) is False  # not its claim
    assert await store.defer_message(second.id, "node-b", 0.0) is True
    deferred = await store.get(Message, second.id)
    assert deferred.attempts == 0 and deferred.lease_owner is None
    again = await store.claim_next_message("node-b", 30)  # its short lease is already over
    assert again is not None and again.id == second.id and again.attempts == 1
    assert await store.finish_message(first.id, "node-a", DONE)
    assert await store.earlier_unanswered(again) is False


# A reply scheduled for a later send (a Retry-After longer than the inline wait) waits as
# "processing" with no owner and lease_until = its notBefore; the inbox claim takes it after that.

def scheduled_reply(not_before: float, **kw: object) -> Message:
    return message("later", role="assistant", state=PROCESSING, lease_owner=None, lease_until=not_before,
                   delivery={"status": "pending", "notBefore": not_before}, **kw)


async def test_a_scheduled_reply_is_claimed_only_after_its_time_and_once(store: Store) -> None:
    reply = await store.add(scheduled_reply(clock.now() + 60))
    await store.add(message("not yet sent", role="assistant", state=PENDING))  # only user messages wait as pending
    assert await store.claim_next_message("node-a", 30) is None  # its time has not come

    await store.update(Message, reply.id, {"lease_until": clock.now() - 0.001})
    taken = await store.claim_next_message("node-a", 30)
    assert taken is not None and taken.id == reply.id and taken.role == "assistant"
    assert taken.state == PROCESSING and taken.lease_owner == "node-a" and taken.attempts == 1
    assert taken.lease_until is not None and taken.lease_until > clock.now() + 20
    assert taken.delivery == {"status": "pending", "notBefore": reply.lease_until}
    assert await store.claim_next_message("node-b", 30) is None  # not twice
    assert await store.claim_message(reply.id, "node-b", 30) is None  # nor by the fast path

    assert await store.finish_message(reply.id, "node-a", STORED) is True
    assert (await store.get(Message, reply.id)).state == STORED
    assert await store.claim_next_message("node-b", 30) is None


async def test_a_rescheduled_reply_is_fenced_from_its_old_owner(store: Store) -> None:
    reply = await store.add(scheduled_reply(clock.now() - 1))
    assert (await store.claim_next_message("node-a", 30)).id == reply.id
    # The resend was put off again: the delivery service hands the claim back with a new notBefore.
    later = clock.now() + 60
    assert await store.update(Message, reply.id, {"lease_owner": None, "lease_until": later},
                              expect={"lease_owner": "node-a", "state": PROCESSING}) is not None
    assert await store.finish_message(reply.id, "node-a", STORED) is False  # no longer its claim
    assert await store.extend_lease(reply.id, "node-a", 30) is False
    assert (await store.get(Message, reply.id)).lease_until == later
    assert await store.claim_next_message("node-b", 30) is None


async def test_due_replies_and_user_messages_are_claimed_oldest_first(store: Store) -> None:
    now = clock.now()
    user = await store.add(message("question", created_at=now - 5))
    due = await store.add(scheduled_reply(now - 1, created_at=now - 10))
    await store.add(scheduled_reply(now + 60, created_at=now - 20))  # not due
    claimed = [await store.claim_next_message("node-a", 30) for _ in range(3)]
    assert [m.id if m else None for m in claimed] == [due.id, user.id, None]


async def test_concurrent_claimers_take_a_due_reply_once(stores: list[Store]) -> None:
    replies = [await stores[0].add(scheduled_reply(clock.now() - 1, created_at=float(i))) for i in range(6)]
    claimed = await asyncio.gather(*(s.claim_next_message(f"node-{i}", 30) for i, s in enumerate(stores * 3)))
    taken = [m.id for m in claimed if m is not None]
    assert sorted(taken) == sorted(r.id for r in replies)  # each exactly once


async def test_ingest_message_creates_counts_merges_and_dedupes(store: Store) -> None:
    first = message("hello", dedupe_key="wh_1:m-1", created_at=10.0)
    incoming = conversation("wh_1:chat-9", customer={"id": "u1"}, meta={"service_url": "https://a"})
    stored = await store.ingest_message(incoming, first)
    assert stored is not None and stored.conversation_id == incoming.id
    conv = await store.get(Conversation, incoming.id)
    assert (conv.message_count, conv.last_message_at, conv.meta) == (1, 10.0, {"service_url": "https://a"})

    # The same chat again: same conversation, counted, newest routing facts and name merged in.
    later = conversation("wh_1:chat-9", customer={"id": "u1", "name": "Ana"}, meta={"service_url": "https://b"})
    second = await store.ingest_message(later, message("again", dedupe_key="wh_1:m-2", created_at=11.0))
    assert second is not None and second.conversation_id == incoming.id
    conv = await store.get(Conversation, incoming.id)
    assert conv.message_count == 2 and conv.last_message_at == 11.0
    assert conv.meta == {"service_url": "https://b"} and conv.customer == {"id": "u1", "name": "Ana"}

    # A redelivery writes nothing.
    assert await store.ingest_message(later, message("hello", dedupe_key="wh_1:m-1")) is None
    assert (await store.get(Conversation, incoming.id)).message_count == 2
    assert await store.count(Message, conversation_id=incoming.id) == 2
    assert await store.count(Conversation) == 1


async def test_concurrent_ingest_of_one_delivery_stores_it_once(stores: list[Store]) -> None:
    attempts = [
        s.ingest_message(conversation("wh_1:chat-1"), message("hi", dedupe_key="wh_1:storm"))
        for s in stores for _ in range(2)
    ]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    stored = [r for r in results if isinstance(r, Message)]
    assert len(stored) == 1, results
    assert await stores[0].count(Message, dedupe_key="wh_1:storm") == 1
    assert await stores[0].count(Conversation, chat_key="wh_1:chat-1") == 1


async def test_get_many_reads_several_kinds(store: Store) -> None:
    conv = await store.add(conversation("wh_1:chat-2"))
    msg = await store.add(message("x"))
    got = await store.get_many((Conversation, conv.id), (Message, "m_missing"), (Message, msg.id))
    assert [g.id if g else None for g in got] == [conv.id, None, msg.id]


async def test_claim_message_takes_that_one_message_once(store: Store, stores: list[Store]) -> None:
    older = await store.add(message("older", created_at=1.0))
    mine = await store.add(message("mine", created_at=2.0))
    # Several nodes race for the message one of them just stored: exactly one gets it.
    results = await asyncio.gather(*(s.claim_message(mine.id, f"node-{i}", 60) for i, s in enumerate(stores)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    (won,) = winners
    assert won.id == mine.id and won.state == PROCESSING and won.attempts == 1
    assert won.lease_until is not None and won.lease_owner.startswith("node-")
    # Neither the loop nor a later fast path takes it again; the older message is untouched.
    assert await store.claim_message(mine.id, "node-x", 60) is None
    assert (await store.claim_next_message("node-x", 60)).id == older.id
    assert await store.claim_message("m_missing", "node-x", 60) is None


async def test_claim_message_skips_a_message_the_loop_claimed(store: Store) -> None:
    msg = await store.add(message())
    assert (await store.claim_next_message("node-a", 60)).id == msg.id
    assert await store.claim_message(msg.id, "node-b", 60) is None
    assert (await store.get(Message, msg.id)).lease_owner == "node-a"


async def test_add_user_message_stores_and_counts(store: Store) -> None:
    conv = await store.add(conversation("wh_1:counted"))
    msg = message(created_at=50.0)
    msg.conversation_id = conv.id
    added = await store.add_user_message(msg)
    assert (await store.get(Message, added.id)).state == PENDING
    counted = await store.get(Conversation, conv.id)
    assert counted.message_count == 1 and counted.last_message_at == 50.0


# ---------------------------------------------------------------- the delivery log

async def test_webhook_events_are_pruned_to_retention(store: Store) -> None:
    for i in range(6):
        await store.add_webhook_events([event("wh_1", received_at=100.0 + i)], retention=3, prune={"wh_1"})
    await store.add_webhook_events([event("wh_2", received_at=50.0)], retention=3, prune={"wh_2"})
    # Entries without a webhook are kept, and a webhook not named in `prune` is not trimmed yet.
    await store.add_webhook_events([event(None, received_at=10.0 + i) for i in range(4)], retention=3)
    await store.add_webhook_events([event("wh_2", received_at=51.0 + i) for i in range(4)], retention=3)

    kept = await store.find(WebhookEvent, order_by="received_at", webhook_id="wh_1")
    assert [e.received_at for e in kept] == [103.0, 104.0, 105.0]
    assert await store.count(WebhookEvent, webhook_id="wh_2") == 5
    assert await store.count(WebhookEvent, webhook_id=None) == 4


async def test_concurrent_pruning_never_removes_the_newest(stores: list[Store]) -> None:
    await asyncio.gather(*(
        s.add_webhook_events([event("wh_1", received_at=float(n * 10 + i))], retention=5, prune={"wh_1"})
        for i, s in enumerate(stores) for n in range(5)
    ))
    kept = {e.received_at for e in await stores[0].find(WebhookEvent, webhook_id="wh_1")}
    assert {33.0, 40.0, 41.0, 42.0, 43.0} <= kept
    await stores[0].add_webhook_events([event("wh_1", received_at=1000.0)], retention=5, prune={"wh_1"})
    kept_after = await stores[0].find(WebhookEvent, order_by="received_at", webhook_id="wh_1")
    assert [e.received_at for e in kept_after] == [40.0, 41.0, 42.0, 43.0, 1000.0]


# ---------------------------------------------------------------- sealed secrets

SECRET, TOKEN, BOT_TOKEN = "plain-secret-4f1c", "plain-verify-9a2e", "plain-bot-token-77d0"


def _assert_sealed(raw: dict, *plaintexts: str) -> None:
    text = json.dumps(raw)
    for plain in plaintexts:
        assert plain not in text
    for key in Webhook.SEALED:  # None stays None: there is nothing to hide
        assert raw[key] is None or raw[key].startswith(SecretBox.PREFIX)


async def test_webhook_secrets_are_sealed_at_rest(store: Store) -> None:
    hook = await store.add(webhook(secret=SECRET, verify_token=TOKEN, credentials={"bot_token": BOT_TOKEN}))
    _assert_sealed(await store._get("webhooks", hook.id), SECRET, TOKEN, BOT_TOKEN)
    loaded = await store.get(Webhook, hook.id)
    assert loaded is not None
    assert (loaded.secret, loaded.verify_token, loaded.credentials) == (SECRET, TOKEN, {"bot_token": BOT_TOKEN})
    assert (await store.find_one(Webhook, agent_id="a_1")).secret == SECRET


async def test_updated_secrets_are_sealed_too(store: Store) -> None:
    hook = await store.add(webhook(secret=SECRET))
    updated = await store.update(Webhook, hook.id, {"secret": "rotated-secret-0b9", "credentials": {"k": BOT_TOKEN}})
    assert updated is not None and updated.secret == "rotated-secret-0b9" and updated.credentials == {"k": BOT_TOKEN}
    raw = await store._get("webhooks", hook.id)
    _assert_sealed(raw, "rotated-secret-0b9", BOT_TOKEN, SECRET)
    assert raw["secret"] is not None and raw["credentials"] is not None


async def test_a_store_with_another_key_cannot_read_secrets(store: Store, make_store: MakeStore) -> None:
    hook = await store.add(webhook(secret=SECRET, verify_token=TOKEN, credentials={"bot_token": BOT_TOKEN}))
    stranger = await make_store(SecretBox(secrets.token_urlsafe(32)))
    with pytest.raises(ValueError, match="another secret key"):
        await stranger.get(Webhook, hook.id)
    _assert_sealed(await stranger._get("webhooks", hook.id), SECRET, TOKEN, BOT_TOKEN)

async def test_agent_secret_settings_are_sealed_at_rest(store: Store) -> None:
    agent = Agent(id="a_1", company_id="c_1", name="Bot", kind="openai",
                  settings={"apiKey": "sk-plain-5e1", "model": "gpt", "secret": None})
    await store.add(agent)
    raw = await store._get("agents", "a_1")
    assert "sk-plain-5e1" not in json.dumps(raw) and raw["settings"]["model"] == "gpt"
    assert raw["settings"]["secret"] is None
    assert (await store.get(Agent, "a_1")).settings == agent.settings

    await store.update(Agent, "a_1", {"settings": {"apiKey": "sk-rotated-77", "model": "gpt"}})
    raw = await store._get("agents", "a_1")
    assert "sk-rotated-77" not in json.dumps(raw) and raw["settings"]["apiKey"].startswith(SecretBox.PREFIX)
    assert (await store.find_one(Agent, company_id="c_1")).settings["apiKey"] == "sk-rotated-77"


async def test_models_without_secrets_are_stored_as_they_are(store: Store) -> None:
    conv = await store.add(conversation("wh:plain", customer={"name": "Ana"}, meta={"token": "t-1"}))
    assert (await store._get("conversations", conv.id))["meta"] == {"token": "t-1"}


# ---------------------------------------------------------------- outages

async def test_closed_store_is_unavailable(store: Store) -> None:
    await store.add(Company(id="c_1", name="One"))
    await store.ping()
    await store.close()
    await assert_unavailable(store)


async def test_a_rejected_write_leaves_the_store_usable(store: Store, stores: list[Store]) -> None:
    await store.add(Company(id="c_1", name="One"))
    with pytest.raises(TypeError):
        await store.update(Company, "c_1", {"name": object()})
    assert (await store.update(Company, "c_1", {"name": "Two"})).name == "Two"
    assert (await stores[0].update(Company, "c_1", {"name": "Three"})).name == "Three"


# ---------------------------------------------------------------- chats known by several ids, moves, edits

def chat(key: str, chat_id: str, **kw: object) -> Conversation:
    return conversation(f"wh_1:{key}", external_chat_id=chat_id, webhook_id="wh_1", **kw)


async def _ingest(store: Store, chat_id: str, aliases: list[str], n: int, at: float) -> Message:
    inbound = message(f"m{n}", dedupe_key=f"wh_1:m{n}", created_at=at)
    stored = await store.ingest_message(chat(chat_id, chat_id), inbound, [f"wh_1:{a}" for a in aliases])
    assert stored is not None
    return stored


# WhatsApp: the phone number when the customer shows one, the business-scoped user id (BSUID) always.
PHONE, BSUID = "16505551234", "US.13491208655302741918"


@pytest.mark.parametrize("order", ["phone_disappears", "phone_appears"])
async def test_one_conversation_per_customer_whichever_id_comes_first(store: Store, order: str) -> None:
    steps = ([(PHONE, [BSUID]), (BSUID, []), (PHONE, [])] if order == "phone_disappears"
             else [(BSUID, []), (PHONE, [BSUID]), (PHONE, []), (BSUID, [])])
    stored = []
    for n, (chat_id, aliases) in enumerate(steps):
        stored.append(await _ingest(store, chat_id, aliases, n, at=100.0 + n))
        conv = await store.get(Conversation, stored[-1].conversation_id)
        assert conv.external_chat_id == chat_id  # replies go to the id the latest message came from
        assert conv.last_inbound_at == conv.last_message_at == 100.0 + n
    assert len({m.conversation_id for m in stored}) == 1
    assert await store.count(Conversation) == 1
    conv = await store.get(Conversation, stored[0].conversation_id)
    assert conv.message_count == len(steps)
    # The id the conversation was not created with is an alias of it (found by primary key).
    other = BSUID if conv.chat_key == f"wh_1:{PHONE}" else PHONE
    alias = await store.get(ChatAlias, f"wh_1:{other}")
    assert alias is not None and alias.conversation_id == conv.id and alias.company_id == "c_1"
    assert await store.count(ChatAlias) == 1


async def test_aliases_are_per_webhook_and_never_taken_over(store: Store) -> None:
    first = await _ingest(store, PHONE, [BSUID], 1, at=1.0)
    # Another webhook's chat with the same ids is another customer relationship.
    other = await store.ingest_message(conversation(f"wh_2:{BSUID}", external_chat_id=BSUID),
                                       message("x", dedupe_key="wh_2:m1"), [f"wh_2:{PHONE}"])
    assert other is not None and other.conversation_id != first.conversation_id
    # An alias already pointing at a conversation stays there.
    await store.add(chat("someone-else", "someone-else"))
    await _ingest(store, "someone-else", [BSUID], 2, at=2.0)
    assert (await store.get(ChatAlias, f"wh_1:{BSUID}")).conversation_id == first.conversation_id


async def test_a_moved_chat_keeps_its_conversation(store: Store) -> None:
    first = await _ingest(store, "-100", [], 1, at=1.0)
    kept = await store.move_chat("wh_1:-100", "wh_1:-1001", old_chat_id="-100", new_chat_id="-1001")
    assert kept == first.conversation_id
    conv = await store.get(Conversation, kept)
    assert (conv.chat_key, conv.external_chat_id) == ("wh_1:-1001", "-1001")
    assert conv.meta["migratedFrom"] == "-100"
    # Messages of the new chat, and a late one of the old chat, join it.
    assert (await _ingest(store, "-1001", [], 2, at=2.0)).conversation_id == kept
    assert (await _ingest(store, "-100", [], 3, at=3.0)).conversation_id == kept
    assert (await store.get(Conversation, kept)).external_chat_id == "-100"  # the latest message's id, as always
    # A redelivered move finds nothing left to move.
    assert await store.move_chat("wh_1:-100", "wh_1:-1001", old_chat_id="-100", new_chat_id="-1001") is None
    assert await store.count(Conversation) == 1


async def test_a_move_onto_a_chat_with_a_conversation_keeps_that_one(store: Store) -> None:
    old = await _ingest(store, "-200", [], 1, at=1.0)
    new = await _ingest(store, "-2001", [], 2, at=2.0)
    kept = await store.move_chat("wh_1:-200", "wh_1:-2001", old_chat_id="-200", new_chat_id="-2001")
    assert kept == new.conversation_id
    assert (await store.get(Conversation, kept)).meta["migratedFrom"] == "-200"
    retired = await store.get(Conversation, old.conversation_id)
    assert retired.chat_key is None and retired.meta["migratedTo"] == "-2001" and retired.message_count == 1
    assert (await _ingest(store, "-200", [], 3, at=3.0)).conversation_id == kept


async def test_a_move_of_an_unknown_chat_changes_nothing(store: Store) -> None:
    assert await store.move_chat("wh_1:-300", "wh_1:-3001", old_chat_id="-300", new_chat_id="-3001") is None
    assert await store.count(Conversation) == 0 and await store.count(ChatAlias) == 0


async def test_edits_are_recorded_on_the_original_bounded_and_once(store: Store) -> None:
    original = await store.add(message("What is the price?", dedupe_key="wh_1:m-1"))
    for n in range(12):
        assert await store.record_edit("wh_1:m-1", {"id": f"e{n}", "text": f"edit {n}", "at": float(n)}) is True
    assert await store.record_edit("wh_1:m-1", {"id": "e11", "text": "edit 11", "at": 11.0}) is False
    assert await store.record_edit("wh_1:unknown", {"id": "e1", "text": "x", "at": 1.0}) is None
    after = await store.get(Message, original.id)
    assert after.content == "What is the price?"
    assert [e["id"] for e in after.metadata["edits"]] == [f"e{n}" for n in range(2, 12)]
    assert after.metadata["edits"][-1] == {"id": "e11", "text": "edit 11", "at": 11.0}


async def test_concurrent_edits_are_all_recorded(stores: list[Store]) -> None:
    original = await stores[0].add(message("hi", dedupe_key="wh_1:m-2"))
    edits = [s.record_edit("wh_1:m-2", {"id": f"e{i}-{n}", "text": "x", "at": 1.0})
             for i, s in enumerate(stores) for n in range(2)]
    assert await asyncio.gather(*edits) == [True] * 8
    after = await stores[0].get(Message, original.id)
    assert sorted(e["id"] for e in after.metadata["edits"]) == sorted(f"e{i}-{n}" for i in range(4) for n in range(2))
