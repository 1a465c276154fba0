"""One OS process ingesting inbound messages into a shared SQLite file, for
tests/store/test_sqlite_processes.py: `python -m tests.store.ingest_worker CONFIG.json`.

It opens the store, writes `ready`, waits for the `go` file (so both processes write at the same
time), ingests the shared keys and its own keys interleaved, 32 at a time (so its group commits
compete with the other process's for the write lock), and writes what each ingest returned.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from buzzi.crypto import SecretBox
from buzzi.store.sqlite import SQLiteStore
from tests.support.stores import conversation, message
from tests.support.waiting import wait_until

CHATS = 20


async def ingest_all(config: dict[str, Any]) -> dict[str, Any]:
    store = SQLiteStore(config["db"], SecretBox(config["key"]), timeout=30.0)
    await store.open()
    Path(config["ready"]).write_text("ready")
    go = Path(config["go"])
    await wait_until(go.exists, timeout=60, interval=0.001)
    keys = [f"wh_1:{key}" for pair in zip(config["shared"], config["own"], strict=True) for key in pair]
    stored: list[str] = []
    errors: list[str] = []
    pending = iter(enumerate(keys))

    async def worker() -> None:
        for i, key in pending:
            chat = conversation(f"wh_1:chat{i % CHATS}", external_chat_id=f"chat{i % CHATS}")
            try:
                if await store.ingest_message(chat, message(key, dedupe_key=key)) is not None:
                    stored.append(key)
            except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
                errors.append(f"{key}: {exc!r}")

    try:
        await asyncio.gather(*(worker() for _ in range(32)))
    finally:
        await store.close()
    return {"stored": stored, "errors": errors, "finished": time.time()}


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    result = asyncio.run(ingest_all(config))
    Path(config["out"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
