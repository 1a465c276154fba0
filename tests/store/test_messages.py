"""Inbound message intake: dedupe, one conversation per chat, and leased claiming across nodes."""

from __future__ import annotations

import asyncio

import pytest

from buzzi.models import DONE, PENDING, PROCESSING, STORED, Conversation, Message
from buzzi.store import DuplicateKey, Store
from tests.store.factories import conversation, message


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


async def test_get_or_create_conversation(store: Store) -> None:
    made, created = await store.get_or_create_conversation(conversation("wh_1:chat-1"))
    assert created is True
    again, created = await store.get_or_create_conversation(conversation("wh_1:chat-1"))
    assert created is False and again.id == made.id
    _, created = await store.get_or_create_conversation(conversation("wh_1:chat-2"))
    assert created is True


async def test_get_or_create_conversation_under_concurrency(stores: list[Store]) -> None:
    tries = [s.get_or_create_conversation(conversation("wh_1:racy")) for s in stores[:2] for _ in range(5)]
    results = await asyncio.gather(*tries)
    assert [created for _, created in results].count(True) == 1
    assert len({conv.id for conv, _ in results}) == 1
    assert await stores[0].count(Conversation, chat_key="wh_1:racy") == 1


async def test_web_conversation_clash_is_not_answered_with_another_chat(store: Store) -> None:
    # Web chats have no chat_key: a session_hash clash used to return any chat whose chat_key is null.
    await store.add(conversation(None, session_hash="h-2"))
    await store.add(conversation(None, session_hash="h-1"))
    with pytest.raises(DuplicateKey):
        await store.get_or_create_conversation(conversation(None, session_hash="h-1"))
    _, created = await store.get_or_create_conversation(conversation(None, session_hash="h-3"))
    assert created is True


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
