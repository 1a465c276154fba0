"""SQLite's own ingest (the usual case without the steps: a known chat, done with index lookups and
json_set) writes exactly what the steps of Store._intake write, the rule's one statement, which
MongoDB runs. Each delivery below goes through both on two databases; the documents must agree."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from buzzi import clock
from buzzi.crypto import SecretBox
from buzzi.models import Conversation, Message
from buzzi.store import Store
from buzzi.store.sqlite import SQLiteStore

# (chat_key, dedupe_key, meta, customer name, external chat id)
DELIVERIES: list[tuple[str | None, str, dict[str, Any], str | None, str]] = [
    ("wh_1:c1", "wh_1:m1", {}, None, "c1"),  # a new chat: the steps on both sides
    ("wh_1:c1", "wh_1:m2", {}, None, "c1"),  # a known chat: SQLite's own path
    ("wh_1:c1", "wh_1:m2", {"x": 1}, "Ann", "c1"),  # a redelivery: nothing written
    ("wh_1:c1", "wh_1:m3", {"thread": "t-1"}, "Ann", "c1"),  # routing meta and a name arrive
    ("wh_1:c1", "wh_1:m4", {"thread": "t-1"}, "Ann", "c1"),  # nothing to merge, only counted
    ("wh_1:c1", "wh_1:m5", {"service": "https://s"}, "Ann B", "c1-new"),  # meta merged, renamed, readdressed
    ("wh_1:c2", "wh_1:m6", {"a": [1, {"b": None}]}, "Bo \u00e9\u263a", "c2"),
    ("wh_1:c2", "wh_1:m7", {"a": [2], "n": 1.0000000000000002}, "Bo \u00e9\u263a", "c2"),
    (None, "web:m8", {}, None, ""),  # no chat key: always a new conversation
    ("wh_1:c1", "", {}, None, "c1-new"),  # no dedupe key: always stored
]


def _restart_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """clock.now() counts up from the same start on each side, so updated_at agrees too."""
    ticks = itertools.count(1_700_000_000.123456)
    monkeypatch.setattr(clock, "now", lambda: next(ticks))


async def _deliver_all(store: SQLiteStore, through_steps: bool) -> tuple[list[Any], list[dict], list[dict]]:
    ingest = Store.ingest_message if through_steps else SQLiteStore.ingest_message
    results = []
    for n, (chat_key, dedupe_key, meta, name, chat_id) in enumerate(DELIVERIES):
        chat = Conversation(id=f"cv_{n}", company_id="c_1", agent_id="a_1", channel="telegram", chat_key=chat_key,
                            meta=meta, external_chat_id=chat_id, customer={"name": name} if name else {},
                            created_at=float(n), updated_at=float(n))
        inbound = Message(id=f"m_{n}", conversation_id="", company_id="c_1", agent_id="a_1", role="user",
                          content=f"text {n}", dedupe_key=dedupe_key or None, created_at=1000.0 + n + 0.123456789,
                          updated_at=float(n))
        stored = await ingest(store, chat, inbound)
        results.append(None if stored is None else stored.conversation_id)
    conversations = await store._find(Conversation.collection, {}, "id", False, None)
    messages = await store._find(Message.collection, {}, "id", False, None)
    return results, conversations, messages


async def test_sqlite_ingest_writes_what_the_steps_write(tmp_path: Path, box: SecretBox,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    sides = []
    for through_steps in (True, False):
        store = SQLiteStore(tmp_path / f"steps-{through_steps}.sqlite3", box)
        await store.open()
        try:
            _restart_clock(monkeypatch)
            sides.append(await _deliver_all(store, through_steps))
        finally:
            await store.close()
    (results, conversations, messages), (fast_results, fast_conversations, fast_messages) = sides
    assert fast_results == results
    assert results[2] is None and results[1] == results[0]  # the redelivery, and a known chat
    assert fast_messages == messages
    assert fast_conversations == conversations
    assert [c["message_count"] for c in conversations] == [6, 2, 1]
