"""Store throughput by hand: `.venv/bin/python -m bench.store_bench [--n 1000] [--concurrency 1]`.

Measures insert (add_message_once), get, claim (claim_next_message; claimed messages stay leased, as
during a burst) and update (set + inc) on SQLite (a file under a temp dir) and MongoDB (a mongoeco
wire server it starts, or BUZZI_TEST_MONGODB_URL), and prints a markdown table of ops/s.
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

from buzzi.crypto import SecretBox
from buzzi.models import PENDING, Message
from buzzi.store import Store, open_store
from buzzi.store.sqlite import SQLiteStore

OPS = ("insert", "get", "claim", "update")


def _message(i: int) -> Message:
    return Message(
        id=f"m_{i:08d}", conversation_id="cv_bench", company_id="c_bench", agent_id="a_bench",
        role="user", content=f"message {i}", state=PENDING, dedupe_key=f"wh_bench:{i}", created_at=float(i),
    )


async def _timed(n: int, concurrency: int, op: Callable[[int], Awaitable[object]]) -> float:
    """Run op(0..n-1) on `concurrency` workers; return ops/s."""
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await op(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - started)


async def bench_store(store: Store, n: int, concurrency: int) -> dict[str, float]:
    results: dict[str, float] = {}
    results["insert"] = await _timed(n, concurrency, lambda i: store.add_message_once(_message(i)))
    results["get"] = await _timed(n, concurrency, lambda i: store.get(Message, f"m_{i:08d}"))

    async def claim(_: int) -> None:
        if await store.claim_next_message("bench-node", 60) is None:
            raise RuntimeError("ran out of messages to claim")

    results["claim"] = await _timed(n, concurrency, claim)
    results["update"] = await _timed(
        n, concurrency, lambda i: store.update(Message, f"m_{i:08d}", {"state": "done"}, inc={"attempts": 1})
    )
    return results


async def run(n: int, concurrency: int) -> dict[str, dict[str, float]]:
    box = SecretBox(secrets.token_urlsafe(32))
    table: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        urls = {"sqlite": f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"}
        external = os.environ.get("BUZZI_TEST_MONGODB_URL")
        from tests.support.mongo_server import MongoWireServer, with_database

        database = f"buzzi_bench_{secrets.token_hex(4)}"
        if external:
            urls["mongo"] = with_database(external, database)
            label = "mongo (BUZZI_TEST_MONGODB_URL)"
        else:
            server = stack.enter_context(MongoWireServer(database=database))
            urls["mongo"] = server.url
            label = "mongo (mongoeco wire)"
        for name, url in urls.items():
            store = open_store(url, box)
            await store.open()
            try:
                table[label if name == "mongo" else "sqlite (file, WAL)"] = await bench_store(store, n, concurrency)
                if isinstance(store, SQLiteStore):
                    stats = store.batching  # how well group commit grouped the writes above
                    print(f"sqlite group commit: {stats.calls} calls in {stats.commits} commits")
            finally:
                if name == "mongo" and external:
                    from pymongo import AsyncMongoClient

                    client: AsyncMongoClient = AsyncMongoClient(url)
                    await client.drop_database(database)
                    await client.close()
                await store.close()
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000, help="operations per measurement")
    parser.add_argument("--concurrency", type=int, default=1, help="concurrent tasks on one store")
    args = parser.parse_args()
    table = asyncio.run(run(args.n, args.concurrency))
    print(f"\nStore ops/s (n={args.n}, concurrency={args.concurrency})\n")
    print("| backend | " + " | ".join(OPS) + " |")
    print("|---|" + "---:|" * len(OPS))
    for backend, results in table.items():
        print(f"| {backend} | " + " | ".join(f"{results[op]:,.0f}" for op in OPS) + " |")


if __name__ == "__main__":
    main()
