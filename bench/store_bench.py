"""Store throughput by hand: `.venv/bin/python -m bench.store_bench [--n 1000] [--concurrency 1]`.

Measures insert (add_message_once), get, claim (claim_next_message; claimed messages stay leased, as
during a burst), update (set + inc), ingest (ingest_message: an inbound channel message of one of
500 chats, as a webhook stores it) and resolve (get_many of a webhook, its agent and company, as
each webhook request does) on SQLite (a file under a temp dir) and MongoDB (a mongoeco wire server
it starts, or BUZZI_TEST_MONGODB_URL), and prints markdown tables of ops/s and of process CPU
microseconds per op (the figure that matters when the event loop and the store thread share one
GIL). `--json PATH` writes the SQLite figures (bench/figures.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path

from bench.figures import Figure, write_figures
from buzzi.crypto import SecretBox
from buzzi.models import PENDING, Agent, Company, Conversation, Message, Webhook
from buzzi.store import Store, open_store
from buzzi.store.sqlite import SQLiteStore

OPS = ("insert", "get", "claim", "update", "ingest", "resolve")
CHATS = 500


def _message(i: int) -> Message:
    return Message(
        id=f"m_{i:08d}", conversation_id="cv_bench", company_id="c_bench", agent_id="a_bench",
        role="user", content=f"message {i}", state=PENDING, dedupe_key=f"wh_bench:{i}", created_at=float(i),
    )


def _inbound(i: int) -> tuple[Conversation, Message]:
    chat = i % CHATS
    conversation = Conversation(
        id=f"cv_{i:08d}", company_id="c_bench", agent_id="a_bench", channel="whatsapp",
        chat_key=f"wh_bench:{chat}", external_chat_id=f"{chat}", customer={"name": f"Customer {chat}"},
        meta={"phoneNumberId": "106540352242922"},
    )
    message = Message(
        id=f"mi_{i:08d}", conversation_id="", company_id="c_bench", agent_id="a_bench", role="user",
        content=f"inbound {i}", state=PENDING, dedupe_key=f"wh_bench:wamid.{i}", created_at=float(i),
        metadata={"channel": "whatsapp", "from": f"{chat}"},
    )
    return conversation, message


async def _config(store: Store) -> None:
    await store.add(Company(id="c_bench", name="Bench"))
    await store.add(Agent(id="a_bench", company_id="c_bench", name="Bench", settings={"apiKey": "sk-bench"}))
    await store.add(Webhook(id="wh_bench", company_id="c_bench", agent_id="a_bench", channel="whatsapp",
                            secret="app-secret", verify_token="verify", credentials={"accessToken": "EAAG"}))


async def _timed(n: int, concurrency: int, op: Callable[[int], Awaitable[object]]) -> tuple[float, float]:
    """Run op(0..n-1) on `concurrency` workers; return (ops/s, process CPU microseconds per op)."""
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await op(i)

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - started), (time.process_time() - cpu) / n * 1e6


async def bench_store(store: Store, n: int, concurrency: int) -> dict[str, tuple[float, float]]:
    results: dict[str, tuple[float, float]] = {}
    results["insert"] = await _timed(n, concurrency, lambda i: store.add_message_once(_message(i)))
    results["get"] = await _timed(n, concurrency, lambda i: store.get(Message, f"m_{i:08d}"))

    async def claim(_: int) -> None:
        if await store.claim_next_message("bench-node", 60) is None:
            raise RuntimeError("ran out of messages to claim")

    results["claim"] = await _timed(n, concurrency, claim)
    results["update"] = await _timed(
        n, concurrency, lambda i: store.update(Message, f"m_{i:08d}", {"state": "done"}, inc={"attempts": 1})
    )

    async def ingest(i: int) -> None:
        if await store.ingest_message(*_inbound(i)) is None:
            raise RuntimeError("a new message was taken for a duplicate")

    results["ingest"] = await _timed(n, concurrency, ingest)
    await _config(store)
    wanted = ((Webhook, "wh_bench"), (Agent, "a_bench"), (Company, "c_bench"))
    results["resolve"] = await _timed(n, concurrency, lambda _: store.get_many(*wanted))
    return results


def _mongo_url(stack: ExitStack, database: str) -> tuple[str, str]:
    """(URL, label) of the MongoDB to measure: BUZZI_TEST_MONGODB_URL, else a mongoeco wire server."""
    from tests.support.mongo_server import MongoWireServer, with_database

    external = os.environ.get("BUZZI_TEST_MONGODB_URL")
    if external:
        return with_database(external, database), "mongo (BUZZI_TEST_MONGODB_URL)"
    return stack.enter_context(MongoWireServer(database=database)).url, "mongo (mongoeco wire)"


async def _drop(url: str, database: str) -> None:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient = AsyncMongoClient(url)
    await client.drop_database(database)
    await client.close()


async def run(n: int, concurrency: int, backends: tuple[str, ...] = ("sqlite", "mongo")
              ) -> dict[str, dict[str, tuple[float, float]]]:
    box = SecretBox(secrets.token_urlsafe(32))
    table: dict[str, dict[str, tuple[float, float]]] = {}
    database = f"buzzi_bench_{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        urls: dict[str, tuple[str, str]] = {}
        if "sqlite" in backends:
            urls["sqlite"] = (f"sqlite:///{Path(tmp) / 'bench.sqlite3'}", "sqlite (file, WAL)")
        if "mongo" in backends:
            urls["mongo"] = _mongo_url(stack, database)
        for name, (url, label) in urls.items():
            store = open_store(url, box)
            await store.open()
            try:
                table[label] = await bench_store(store, n, concurrency)
                if isinstance(store, SQLiteStore):
                    stats = store.batching  # how well group commit grouped the writes above
                    print(f"sqlite group commit: {stats.calls} calls in {stats.commits} commits")
            finally:
                if name == "mongo" and os.environ.get("BUZZI_TEST_MONGODB_URL"):
                    await _drop(url, database)
                await store.close()
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000, help="operations per measurement")
    parser.add_argument("--concurrency", type=int, default=1, help="concurrent tasks on one store")
    parser.add_argument("--backends", default="sqlite,mongo", help="comma-separated: sqlite, mongo")
    parser.add_argument("--json", help="write the SQLite figures there (bench/figures.py)")
    args = parser.parse_args()
    table = asyncio.run(run(args.n, args.concurrency, tuple(args.backends.split(","))))
    for title, index, fmt in (("ops/s", 0, "{:,.0f}"), ("process CPU us/op", 1, "{:,.1f}")):
        print(f"\nStore {title} (n={args.n}, concurrency={args.concurrency})\n")
        print("| backend | " + " | ".join(OPS) + " |")
        print("|---|" + "---:|" * len(OPS))
        for backend, results in table.items():
            print(f"| {backend} | " + " | ".join(fmt.format(results[op][index]) for op in OPS) + " |")
    sqlite = next((results for backend, results in table.items() if backend.startswith("sqlite")), {})
    write_figures(args.json, "store", [
        Figure(f"sqlite {op} (concurrency {args.concurrency})", sqlite[op][0], "ops/s",
               note=f"{sqlite[op][1]:.1f} us process CPU per op") for op in OPS if op in sqlite
    ])


if __name__ == "__main__":
    main()
