"""SQLite store: the embedded default. One JSON document per row, expression indexes on the queried fields.

Every call runs on one dedicated thread that owns the connection, so the event loop never waits
on disk and the calls of this process are serialised; BEGIN IMMEDIATE makes the read-modify-write
operations atomic against other processes sharing the file too.

Group commit: the calls that queue up while the thread is busy run next as one batch in ONE
transaction (a SAVEPOINT per write call, so a failing call is undone alone and the others still
commit), and their results go back to the event loop in one wake-up after the COMMIT. Under load
this turns N BEGIN/COMMITs and N thread hand-offs into one of each without changing what any call
sees or guarantees: a caller hears of its write only once the batch holding it is committed.
"""

from __future__ import annotations

import asyncio
import json
import queue
import re
import sqlite3
import threading
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from buzzi.crypto import SecretBox
from buzzi.models import WebhookEvent
from buzzi.store.base import INDEXES, DuplicateKey, Store, StoreUnavailable
from buzzi.store.private_files import make_private
from buzzi.store.steps import FindOne, Insert, Step, Steps, run_steps

R = TypeVar("R")
_FIELD = re.compile(r"^[a-z_][a-z0-9_]*$")
# Calls per transaction at most: bounds how long one batch holds the write lock (and the wait of
# its first caller) when the queue is deep.
MAX_BATCH = 128


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


# The statements of the primitives, run on the store thread; steps (store/steps.py) use them too.

def _insert(c: sqlite3.Connection, collection: str, doc: dict[str, Any]) -> None:
    c.execute(f"INSERT INTO {collection} (id, doc) VALUES (?, ?)", (doc["id"], _dumps(doc)))


def _find(c: sqlite3.Connection, collection: str, where: dict[str, Any], order_by: str | None = None,
          descending: bool = False, limit: int | None = None) -> list[dict[str, Any]]:
    clause, params = _where_sql(where)
    sql = f"SELECT doc FROM {collection} WHERE {clause}"
    if order_by:
        direction = "DESC" if descending else "ASC"
        sql += f" ORDER BY {_path(order_by)} {direction}, id {direction}"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return [json.loads(r[0]) for r in c.execute(sql, params).fetchall()]


def _update(c: sqlite3.Connection, collection: str, id: str, set_: dict[str, Any], inc: dict[str, int],
            where: dict[str, Any]) -> dict[str, Any] | None:
    row = c.execute(f"SELECT doc FROM {collection} WHERE id = ?", (id,)).fetchone()
    if row is None or not _matches(doc := json.loads(row[0]), where):
        return None
    doc.update(set_)
    for key, by in inc.items():
        doc[key] = (doc.get(key) or 0) + by
    c.execute(f"UPDATE {collection} SET doc = ? WHERE id = ?", (_dumps(doc), id))
    return doc


def _apply(c: sqlite3.Connection, step: Step) -> Any:
    try:
        if isinstance(step, FindOne):
            found = _find(c, step.collection, step.where, limit=1)
            return found[0] if found else None
        if isinstance(step, Insert):
            return _insert(c, step.collection, step.doc)
        return _update(c, step.collection, step.id, step.set_, step.inc, {})
    except sqlite3.Error as exc:  # the steps see the Store's errors (a DuplicateKey they may handle)
        raise _store_error(exc) from None


def _store_error(exc: Exception) -> Exception:
    """What a caller sees for an exception raised by its call on the store thread."""
    if isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc):
        return DuplicateKey(str(exc))
    if isinstance(exc, sqlite3.OperationalError | sqlite3.ProgrammingError):  # ProgrammingError: closed
        return StoreUnavailable(f"sqlite: {exc}")
    return exc


class BatchStats(NamedTuple):
    calls: int  # calls run
    commits: int  # write transactions committed: calls / commits is the mean batch under write load
    queued: int  # calls waiting for the store thread right now


class _Call:
    __slots__ = ("error", "fn", "future", "loop", "result", "write")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any], write: bool, loop: asyncio.AbstractEventLoop,
                 future: asyncio.Future[Any] | None) -> None:
        self.fn = fn
        self.write = write
        self.loop = loop
        self.future = future
        self.result: Any = None
        self.error: Exception | None = None


def _deliver(calls: list[_Call]) -> None:
    for call in calls:
        if call.future is None or call.future.done():  # cancelled while it ran: nobody listens
            continue
        if call.error is not None:
            call.future.set_exception(call.error)
        else:
            call.future.set_result(call.result)


class _StoreThread:
    """The one thread that owns the connection: takes calls off a queue and runs whatever queued up
    meanwhile as one transaction (see the module docstring)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self.calls = 0
        self.commits = 0
        self._thread = threading.Thread(target=self._serve, name="sqlite-store", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def submit(self, fn: Callable[[sqlite3.Connection], R], write: bool) -> asyncio.Future[R]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.put(_Call(fn, write, loop, future))
        return future

    def stop(self) -> None:
        """Let the calls already queued finish, close the connection and end the thread (blocking:
        call it off the event loop)."""
        self._queue.put(None)
        self._thread.join()

    def _serve(self) -> None:
        try:
            self._serve_batches()
        finally:
            self.conn.close()

    def _serve_batches(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            self._execute(batch)
            by_loop: dict[asyncio.AbstractEventLoop, list[_Call]] = {}
            for call in batch:
                by_loop.setdefault(call.loop, []).append(call)
            for loop, calls in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_deliver, calls)
                except RuntimeError:  # that loop is closed: its callers are gone
                    pass

    def _execute(self, batch: list[_Call]) -> None:
        # A caller cancelled before its turn is skipped, as an executor skips a cancelled job.
        # (Reading the flag from this thread may race with a cancel; then the call runs, as before.)
        batch = [call for call in batch if call.future is None or not call.future.cancelled()]
        self.calls += len(batch)
        if not any(call.write for call in batch):
            for call in batch:  # reads alone need no transaction: each statement reads committed data
                self._run_one(call)
            return
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except Exception as exc:  # noqa: BLE001 - locked by another process past busy_timeout, or closed
            for call in batch:
                call.error = _store_error(exc)
            return
        for call in batch:
            if not call.write:
                self._run_one(call)
                continue
            try:
                conn.execute("SAVEPOINT call")
            except Exception as exc:  # noqa: BLE001
                self._abort(batch, exc)
                return
            try:
                call.result = call.fn(conn)
                conn.execute("RELEASE call")
            except Exception as exc:  # noqa: BLE001 - handed to its caller; the batch goes on without it
                call.error = _store_error(exc)
                try:
                    conn.execute("ROLLBACK TO call")
                    conn.execute("RELEASE call")
                except Exception as undo:  # noqa: BLE001
                    self._abort(batch, undo)
                    return
        try:
            conn.execute("COMMIT")
        except Exception as exc:  # noqa: BLE001
            self._abort(batch, exc)
            return
        self.commits += 1

    def _run_one(self, call: _Call) -> None:
        try:
            call.result = call.fn(self.conn)
        except Exception as exc:  # noqa: BLE001 - handed to its caller
            call.error = _store_error(exc)

    def _abort(self, batch: list[_Call], exc: Exception) -> None:
        """The transaction itself failed: nothing in it was committed, so no call may report success."""
        try:
            if self.conn.in_transaction:
                self.conn.rollback()
        except Exception:  # noqa: BLE001 - the connection is gone; the callers hear why below
            pass
        # Even a call's own failure (a DuplicateKey, say) may have come from a write of this batch
        # that is now undone: every caller hears the store was unavailable, and may retry.
        error = StoreUnavailable(f"sqlite: {exc}")
        for call in batch:
            call.error = error


class SQLiteStore(Store):
    def __init__(self, path: str | Path, box: SecretBox, timeout: float = 5.0) -> None:
        super().__init__(box)
        self._path = str(path)
        self._timeout = timeout
        self._thread: _StoreThread | None = None

    @classmethod
    def from_url(cls, url: str, box: SecretBox, timeout: float = 5.0, base_dir: Path | None = None) -> SQLiteStore:
        path = url.removeprefix("sqlite:///")
        if path != ":memory:" and not Path(path).is_absolute() and base_dir is not None:
            path = str(base_dir / path)
        return cls(path, box, timeout)

    async def _run(self, fn: Callable[[sqlite3.Connection], R], *, write: bool = False) -> R:
        """Run `fn` on the store thread. A `write` runs inside a transaction the thread opens and
        commits (possibly with other calls): `fn` must never BEGIN/COMMIT/ROLLBACK itself, and an
        exception it raises undoes exactly its own changes."""
        if self._thread is None:
            raise StoreUnavailable("store is closed")
        return await self._thread.submit(fn, write)

    @property
    def batching(self) -> BatchStats:
        """How well group commit groups, since open (for benches and tests)."""
        thread = self._thread
        return BatchStats(0, 0, 0) if thread is None else BatchStats(thread.calls, thread.commits, thread.queued)

    async def open(self) -> None:
        if self._thread is not None:
            return
        if self._path != ":memory:":
            try:
                make_private(Path(self._path))  # 0700 directory, 0600 database (and -wal/-shm)
            except OSError as exc:
                raise StoreUnavailable(f"cannot open SQLite database {self._path}: {exc.strerror}") from None

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(
                self._path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
                for collection in INDEXES:
                    conn.execute(f"CREATE TABLE IF NOT EXISTS {collection} (id TEXT PRIMARY KEY, doc TEXT NOT NULL)")
                for collection, indexes in INDEXES.items():
                    for fields, unique in indexes:
                        name = f"ix_{collection}_{'_'.join(fields)}"
                        columns = ", ".join(_path(f) for f in fields)
                        kind = "UNIQUE INDEX" if unique else "INDEX"
                        conn.execute(f"CREATE {kind} IF NOT EXISTS {name} ON {collection} ({columns})")
            except BaseException:
                conn.close()
                raise
            return conn

        try:
            conn = await asyncio.to_thread(connect)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite database {self._path}: {exc}") from None
        self._thread = _StoreThread(conn)

    async def close(self) -> None:
        if self._thread is None:
            return
        thread, self._thread = self._thread, None
        await asyncio.to_thread(thread.stop)  # the calls queued before this one still run

    async def ping(self) -> None:
        await self._run(lambda c: c.execute("SELECT 1").fetchone())

    async def _insert(self, collection: str, doc: dict[str, Any]) -> None:
        await self._run(lambda c: _insert(c, collection, doc), write=True)

    async def _get(self, collection: str, id: str) -> dict[str, Any] | None:
        row = await self._run(lambda c: c.execute(f"SELECT doc FROM {collection} WHERE id = ?", (id,)).fetchone())
        return None if row is None else json.loads(row[0])

    async def _find(self, collection, where, order_by, descending, limit):
        return await self._run(lambda c: _find(c, collection, where, order_by, descending, limit))

    async def _update(self, collection, id, set_, inc, where):
        return await self._run(lambda c: _update(c, collection, id, set_, inc, where), write=True)

    async def _delete(self, collection, where):
        clause, params = _where_sql(where)
        return await self._run(lambda c: c.execute(f"DELETE FROM {collection} WHERE {clause}", params).rowcount,
                               write=True)

    async def _count(self, collection, where):
        clause, params = _where_sql(where)
        sql = f"SELECT COUNT(*) FROM {collection} WHERE {clause}"
        row = await self._run(lambda c: c.execute(sql, params).fetchone())
        return int(row[0])

    async def _claim(self, owner, now, lease_until):
        state, created, until, role = (_path("state"), _path("created_at"), _path("lease_until"), _path("role"))
        # The oldest of two index searches, not one OR: the OR made SQLite read and sort every
        # pending and processing message on each claim. The expired leg takes any role: a reply
        # scheduled for a later send waits as "processing" until its lease_until (its notBefore).
        pending = f"{state} = 'pending' AND {role} = 'user'"
        expired = f"{state} = 'processing' AND {until} < ?"
        legs = [
            f"SELECT * FROM (SELECT id, doc, {created} AS created FROM messages "
            f"WHERE {cond} ORDER BY {created}, id LIMIT 1)"
            for cond in (pending, expired)
        ]
        select = f"SELECT id, doc FROM ({legs[0]} UNION ALL {legs[1]}) ORDER BY created, id LIMIT 1"

        def tx(c: sqlite3.Connection) -> dict[str, Any] | None:
            row = c.execute(select, (now,)).fetchone()
            if row is None:
                return None
            doc = json.loads(row[1])
            doc.update(state="processing", lease_owner=owner, lease_until=lease_until,
                       attempts=(doc.get("attempts") or 0) + 1, updated_at=now)
            c.execute("UPDATE messages SET doc = ? WHERE id = ?", (_dumps(doc), row[0]))
            return doc

        return await self._run(tx, write=True)

    async def _get_many(self, wanted):
        def read(c: sqlite3.Connection) -> list[dict[str, Any] | None]:
            out = []
            for collection, id in wanted:
                row = c.execute(f"SELECT doc FROM {collection} WHERE id = ?", (id,)).fetchone()
                out.append(None if row is None else json.loads(row[0]))
            return out

        return await self._run(read)

    async def transact(self, steps: Steps[R]) -> R:
        """All the steps in one transaction on the store thread: one round trip, and no other
        writer sees a half-done rule."""
        return await self._run(lambda c: run_steps(steps, lambda step: _apply(c, step)), write=True)

    async def add_webhook_events(self, events: Sequence[WebhookEvent], retention: int,
                                 prune: Collection[str] = ()) -> None:
        rows = [(event.id, _dumps(self._seal(event))) for event in events]
        webhook_id = _path("webhook_id")
        trim = (f"DELETE FROM webhook_events WHERE {webhook_id} = ? AND id NOT IN (SELECT id FROM webhook_events "
                f"WHERE {webhook_id} = ? ORDER BY {_path('received_at')} DESC, id DESC LIMIT ?)")

        def tx(c: sqlite3.Connection) -> None:
            c.executemany("INSERT INTO webhook_events (id, doc) VALUES (?, ?)", rows)
            c.executemany(trim, [(id, id, retention) for id in prune])

        await self._run(tx, write=True)

    async def _prune(self, collection, where, order_by, keep):
        clause, params = _where_sql(where)
        sql = (
            f"DELETE FROM {collection} WHERE {clause} AND id NOT IN (SELECT id FROM {collection} "
            f"WHERE {clause} ORDER BY {_path(order_by)} DESC, id DESC LIMIT ?)"
        )
        return await self._run(lambda c: c.execute(sql, [*params, *params, keep]).rowcount, write=True)
