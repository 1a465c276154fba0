"""SQLite store: the embedded default. One JSON document per row, expression indexes on the queried fields.

Every call runs on one dedicated thread that owns the connection, so the event loop never waits
on disk and the calls of this process are serialised; BEGIN IMMEDIATE makes the read-modify-write
operations atomic against other processes sharing the file too.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from buzzi.crypto import SecretBox
from buzzi.models import Conversation, Message
from buzzi.store.base import COLLECTIONS, INDEXES, DuplicateKey, Store, StoreUnavailable, merge_conversation

R = TypeVar("R")
_FIELD = re.compile(r"^[a-z_][a-z0-9_]*$")


def _path(field: str) -> str:
    if not _FIELD.match(field):
        raise ValueError(f"bad field name {field!r}")
    return f"json_extract(doc, '$.{field}')"


def _sql_value(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    return value


def _where_sql(where: dict[str, Any]) -> tuple[str, list[Any]]:
    clauses, params = [], []
    for key, value in where.items():
        column = "id" if key == "id" else _path(key)
        if value is None:
            clauses.append(f"{column} IS NULL")
        else:
            clauses.append(f"{column} = ?")
            params.append(_sql_value(value))
    return (" AND ".join(clauses) or "1=1"), params


def _dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"))


def _matches(doc: dict[str, Any], where: dict[str, Any]) -> bool:
    return all(doc.get(k) == v for k, v in where.items())


class SQLiteStore(Store):
    def __init__(self, path: str | Path, box: SecretBox, timeout: float = 5.0) -> None:
        super().__init__(box)
        self._path = str(path)
        self._timeout = timeout
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    @classmethod
    def from_url(cls, url: str, box: SecretBox, timeout: float = 5.0, base_dir: Path | None = None) -> SQLiteStore:
        path = url.removeprefix("sqlite:///")
        if path != ":memory:" and not Path(path).is_absolute() and base_dir is not None:
            path = str(base_dir / path)
        return cls(path, box, timeout)

    async def _run(self, fn: Callable[[sqlite3.Connection], R]) -> R:
        if self._executor is None or self._conn is None:
            raise StoreUnavailable("store is closed")
        conn = self._conn

        def call() -> R:
            try:
                return fn(conn)
            except sqlite3.IntegrityError as exc:
                conn.rollback()
                if "UNIQUE" in str(exc):
                    raise DuplicateKey(str(exc)) from None
                raise
            except sqlite3.OperationalError as exc:
                conn.rollback()
                raise StoreUnavailable(f"sqlite: {exc}") from None
            except sqlite3.ProgrammingError as exc:  # closed underneath us
                raise StoreUnavailable(f"sqlite: {exc}") from None
            except Exception:
                # e.g. a value json cannot encode inside BEGIN IMMEDIATE: never leave the write lock held
                if conn.in_transaction:
                    conn.rollback()
                raise

        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, call)
        except RuntimeError as exc:  # executor shut down
            raise StoreUnavailable(str(exc)) from None

    async def open(self) -> None:
        if self._conn is not None:
            return
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(
                self._path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
            for collection in COLLECTIONS:
                conn.execute(f"CREATE TABLE IF NOT EXISTS {collection} (id TEXT PRIMARY KEY, doc TEXT NOT NULL)")
            for collection, indexes in INDEXES.items():
                for fields, unique in indexes:
                    name = f"ix_{collection}_{'_'.join(fields)}"
                    columns = ", ".join(_path(f) for f in fields)
                    kind = "UNIQUE INDEX" if unique else "INDEX"
                    conn.execute(f"CREATE {kind} IF NOT EXISTS {name} ON {collection} ({columns})")
            return conn

        loop = asyncio.get_running_loop()
        try:
            self._conn = await loop.run_in_executor(self._executor, connect)
        except sqlite3.Error as exc:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise StoreUnavailable(f"cannot open SQLite database {self._path}: {exc}") from None

    async def close(self) -> None:
        if self._conn is None or self._executor is None:
            return
        conn, executor = self._conn, self._executor
        self._conn = None
        await asyncio.get_running_loop().run_in_executor(executor, conn.close)
        executor.shutdown(wait=True)
        self._executor = None

    async def ping(self) -> None:
        await self._run(lambda c: c.execute("SELECT 1").fetchone())

    async def _insert(self, collection: str, doc: dict[str, Any]) -> None:
        text = json.dumps(doc, separators=(",", ":"))
        await self._run(
            lambda c: c.execute(f"INSERT INTO {collection} (id, doc) VALUES (?, ?)", (doc["id"], text))
        )

    async def _get(self, collection: str, id: str) -> dict[str, Any] | None:
        row = await self._run(lambda c: c.execute(f"SELECT doc FROM {collection} WHERE id = ?", (id,)).fetchone())
        return None if row is None else json.loads(row[0])

    async def _find(self, collection, where, order_by, descending, limit):
        clause, params = _where_sql(where)
        sql = f"SELECT doc FROM {collection} WHERE {clause}"
        if order_by:
            direction = "DESC" if descending else "ASC"
            sql += f" ORDER BY {_path(order_by)} {direction}, id {direction}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        rows = await self._run(lambda c: c.execute(sql, params).fetchall())
        return [json.loads(r[0]) for r in rows]

    async def _update(self, collection, id, set_, inc, where):
        def tx(c: sqlite3.Connection) -> dict[str, Any] | None:
            c.execute("BEGIN IMMEDIATE")
            row = c.execute(f"SELECT doc FROM {collection} WHERE id = ?", (id,)).fetchone()
            if row is None or not _matches(doc := json.loads(row[0]), where):
                c.execute("COMMIT")
                return None
            doc.update(set_)
            for key, by in inc.items():
                doc[key] = (doc.get(key) or 0) + by
            text = json.dumps(doc, separators=(",", ":"))
            c.execute(f"UPDATE {collection} SET doc = ? WHERE id = ?", (text, id))
            c.execute("COMMIT")
            return doc

        return await self._run(tx)

    async def _delete(self, collection, where):
        clause, params = _where_sql(where)
        return await self._run(lambda c: c.execute(f"DELETE FROM {collection} WHERE {clause}", params).rowcount)

    async def _count(self, collection, where):
        clause, params = _where_sql(where)
        sql = f"SELECT COUNT(*) FROM {collection} WHERE {clause}"
        row = await self._run(lambda c: c.execute(sql, params).fetchone())
        return int(row[0])

    async def _claim(self, owner, now, lease_until):
        state, created, until, role = (_path("state"), _path("created_at"), _path("lease_until"), _path("role"))
        # The oldest of two index searches, not one OR: the OR made SQLite read and sort every
        # pending and processing message on each claim.
        pending = f"{state} = 'pending'"
        expired = f"{state} = 'processing' AND {until} < ?"
        legs = [
            f"SELECT * FROM (SELECT id, doc, {created} AS created FROM messages "
            f"WHERE {cond} AND {role} = 'user' ORDER BY {created}, id LIMIT 1)"
            for cond in (pending, expired)
        ]
        select = f"SELECT id, doc FROM ({legs[0]} UNION ALL {legs[1]}) ORDER BY created, id LIMIT 1"

        def tx(c: sqlite3.Connection) -> dict[str, Any] | None:
            c.execute("BEGIN IMMEDIATE")
            row = c.execute(select, (now,)).fetchone()
            if row is None:
                c.execute("COMMIT")
                return None
            doc = json.loads(row[1])
            doc.update(state="processing", lease_owner=owner, lease_until=lease_until,
                       attempts=(doc.get("attempts") or 0) + 1, updated_at=now)
            c.execute("UPDATE messages SET doc = ? WHERE id = ?", (json.dumps(doc, separators=(",", ":")), row[0]))
            c.execute("COMMIT")
            return doc

        return await self._run(tx)

    async def _incr_counter(self, name, by):
        def tx(c: sqlite3.Connection) -> int:
            row = c.execute(
                "INSERT INTO counters (id, doc) VALUES (?, json_object('value', ?)) "
                "ON CONFLICT(id) DO UPDATE SET doc = json_set(doc, '$.value', json_extract(doc, '$.value') + ?) "
                "RETURNING json_extract(doc, '$.value')",
                (name, by, by),
            ).fetchone()
            return int(row[0])

        return await self._run(tx)

    async def _get_many(self, wanted):
        def read(c: sqlite3.Connection) -> list[dict[str, Any] | None]:
            out = []
            for collection, id in wanted:
                row = c.execute(f"SELECT doc FROM {collection} WHERE id = ?", (id,)).fetchone()
                out.append(None if row is None else json.loads(row[0]))
            return out

        return await self._run(read)

    async def ingest_message(self, conversation: Conversation, message: Message) -> Message | None:
        """The whole intake in one transaction on the store thread: one round trip per message."""
        chat_key, dedupe_key = _path("chat_key"), _path("dedupe_key")

        def tx(c: sqlite3.Connection) -> Message | None:
            c.execute("BEGIN IMMEDIATE")
            if message.dedupe_key and c.execute(
                    f"SELECT 1 FROM messages WHERE {dedupe_key} = ?", (message.dedupe_key,)).fetchone():
                c.execute("COMMIT")
                return None
            row = c.execute(f"SELECT doc FROM conversations WHERE {chat_key} = ?",
                            (conversation.chat_key,)).fetchone() if conversation.chat_key else None
            if row is None:
                doc = self._seal(conversation)
                doc.update(message_count=1, last_message_at=message.created_at)
                c.execute("INSERT INTO conversations (id, doc) VALUES (?, ?)", (doc["id"], _dumps(doc)))
            else:
                doc = json.loads(row[0])
                doc.update(merge_conversation(doc, conversation))
                doc.update(message_count=(doc.get("message_count") or 0) + 1,
                           last_message_at=message.created_at, updated_at=message.created_at)
                c.execute("UPDATE conversations SET doc = ? WHERE id = ?", (_dumps(doc), doc["id"]))
            message.conversation_id = doc["id"]
            c.execute("INSERT INTO messages (id, doc) VALUES (?, ?)", (message.id, _dumps(self._seal(message))))
            c.execute("COMMIT")
            return message

        return await self._run(tx)

    async def _prune(self, collection, where, order_by, keep):
        clause, params = _where_sql(where)
        sql = (
            f"DELETE FROM {collection} WHERE {clause} AND id NOT IN (SELECT id FROM {collection} "
            f"WHERE {clause} ORDER BY {_path(order_by)} DESC, id DESC LIMIT ?)"
        )
        return await self._run(lambda c: c.execute(sql, [*params, *params, keep]).rowcount)
