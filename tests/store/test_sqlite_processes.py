"""Several OS processes writing one SQLite file (server.processes > 1): the dedupe key still lets
each inbound message in exactly once, nothing is lost, and a write waits for another process's
lock (without SQLite's millisecond sleeps) until the store timeout, then answers unavailable."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from buzzi.crypto import SecretBox
from buzzi.models import Company, Conversation, Message
from buzzi.store import StoreUnavailable
from buzzi.store.sqlite import SQLiteStore
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
SHARED, OWN = 300, 300


def start_worker(tmp_path: Path, name: str, db: Path, key: str) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    files = {kind: str(tmp_path / f"{name}.{kind}") for kind in ("ready", "out", "config")}
    config = {"db": str(db), "key": key, "ready": files["ready"], "out": files["out"], "go": str(tmp_path / "go"),
              "shared": [f"shared{i}" for i in range(SHARED)], "own": [f"{name}-{i}" for i in range(OWN)]}
    Path(files["config"]).write_text(json.dumps(config))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.store.ingest_worker", files["config"]], cwd=ROOT, env=env)
    return proc, files


async def test_two_processes_ingest_each_message_exactly_once(tmp_path: Path, secret_key: str) -> None:
    db = tmp_path / "shared.sqlite3"
    workers = {name: start_worker(tmp_path, name, db, secret_key) for name in ("a", "b")}
    try:
        await wait_until(lambda: all(Path(files["ready"]).exists() for _, files in workers.values()), timeout=60)
        (tmp_path / "go").write_text("go")
        for proc, _ in workers.values():
            assert await asyncio.to_thread(proc.wait, 120) == 0
    finally:
        for proc, _ in workers.values():
            if proc.poll() is None:
                proc.kill()
    results = {name: json.loads(Path(files["out"]).read_text()) for name, (_, files) in workers.items()}

    assert results["a"]["errors"] == [] and results["b"]["errors"] == []
    shared = {f"wh_1:shared{i}" for i in range(SHARED)}
    taken = {name: {k for k in r["stored"] if k in shared} for name, r in results.items()}
    assert taken["a"] | taken["b"] == shared  # every shared message stored...
    assert taken["a"] & taken["b"] == set()  # ...by one process only
    for name, result in results.items():
        assert set(result["stored"]) - shared == {f"wh_1:{name}-{i}" for i in range(OWN)}

    store = SQLiteStore(db, SecretBox(secret_key))
    await store.open()
    try:
        stored = await store.find(Message, order_by=None)
        assert len(stored) == SHARED + 2 * OWN
        assert {m.dedupe_key for m in stored} == shared | {f"wh_1:{n}-{i}" for n in "ab" for i in range(OWN)}
        conversations = await store.find(Conversation, order_by=None)
        assert len(conversations) == 20  # one per chat, though both processes created chats
        assert sum(c.message_count for c in conversations) == len(stored)
        assert {m.conversation_id for m in stored} == {c.id for c in conversations}
    finally:
        await store.close()


@pytest.fixture
def other_process_lock(tmp_path: Path):
    """Another connection to the file (as another process has) that can take the write lock."""
    conn = sqlite3.connect(tmp_path / "store.sqlite3", isolation_level=None, check_same_thread=False)
    yield conn
    if conn.in_transaction:
        conn.rollback()
    conn.close()


async def test_a_write_waits_for_the_lock_of_another_process(
        sqlite_store: SQLiteStore, other_process_lock: sqlite3.Connection) -> None:
    other_process_lock.execute("BEGIN IMMEDIATE")
    write = asyncio.ensure_future(sqlite_store.add(Company(id="c_1", name="One")))
    await asyncio.sleep(0.3)  # well past where a busy_timeout of 0 would have failed it
    assert not write.done()
    other_process_lock.execute("COMMIT")
    await asyncio.wait_for(write, 10)
    assert (await sqlite_store.get(Company, "c_1")).name == "One"


async def test_a_write_gives_up_at_the_store_timeout(tmp_path: Path, box: SecretBox,
                                                      other_process_lock: sqlite3.Connection) -> None:
    store = SQLiteStore(tmp_path / "store.sqlite3", box, timeout=0.2)
    await store.open()
    try:
        other_process_lock.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable, match="locked"):
            await asyncio.wait_for(store.add(Company(id="c_1", name="One")), 10)
        other_process_lock.execute("COMMIT")
        await store.add(Company(id="c_1", name="One"))  # the lock is free again: nothing stuck
        assert await store.count(Company) == 1
    finally:
        await store.close()
