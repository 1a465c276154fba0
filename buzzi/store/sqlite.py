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
import functools
import queue
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from buzzi import clock, jsoncodec
from buzzi.crypto import SecretBox
from buzzi.models import Conversation, Message, WebhookEvent
from buzzi.store.base import INDEXES, DuplicateKey, Store, StoreUnavailable, merge_conversation
from buzzi.store.private_files import make_private
from buzzi.store.steps import FindOne, Insert, Step, Steps, run_steps

R = TypeVar("R")
_FIELD = re.compile(r"^[a-z_][a-z0-9_]*$")
# Calls per transaction at most: bounds how long one batch holds the write lock (and the wait of
# its first caller) when the queue is deep.
MAX_BATCH = 128
# Waiting for another process's write lock (several processes on one file): SQLite's own busy
# handler sleeps 1, 2, 5, 10, 15, 20, 25... ms between tries, so a lock held for 0.2 ms cost a
# waiter milliseconds and wrecked p99. The store thread tries again itself after these pauses
# instead (jittered, doubling up to the cap), until the store timeout. A busy_timeout of 0 turns
# SQLite's handler off (https://sqlite.org/c3ref/busy_timeout.html).
LOCK_RETRY_FIRST = 0.00005
LOCK_RETRY_CAP = 0.001


def _path(field: str) -> str:
    if not _FIELD.match(field):
        raise ValueError(f"bad field name {field!r}")
    return f"json_extract(doc, '$.{field}')"


def _sql_value(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    return value


def _where_sql(where: dict[str, Any]) -> tuple[str, list[Any]]:
    clause = _clause(tuple((key, value is None) for key, value in where.items()))
    return clause, [_sql_value(value) for value in where.values() if value is not None]


@functools.lru_cache(maxsize=512)
def _clause(shape: tuple[tuple[str, bool], ...]) -> str:
    """The WHERE clause for these (field, is None) pairs: built once per shape (the hot paths ask
    the same few), not per call."""
    clauses = []
    for key, is_null in shape:
        column = "id" if key == "id" else _path(key)
        clauses.append(f"{column} IS NULL" if is_null else f"{column} = ?")
    return " AND ".join(clauses) or "1=1"


def _dumps(doc: dict[str, Any]) -> str:
    # str, never bytes: SQLite (>= 3.45) would read a BLOB as JSONB in json_extract.
    return jsoncodec.dumps(doc)


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
    return [jsoncodec.loads(r[0]) for r in c.execute(sql, params).fetchall()]


def _update(c: sqlite3.Connection, collection: str, id: str, set_: dict[str, Any], inc: dict[str, int],
            where: dict[str, Any]) -> dict[str, Any] | None:
    if _in_sql(set_, inc, where):
        return _update_in_sql(c, collection, id, set_, inc, where)
    return _update_in_python(c, collection, id, set_, inc, where)


# Values whose SQL comparison with json_extract() is exactly Python's ==, so `where` can be SQL:
# not float (SQLite parses a JSON real its own way, and record_edit compares timestamps).
_SQL_EQUAL = (str, int, type(None))


def _in_sql(set_: dict[str, Any], inc: dict[str, int], where: dict[str, Any]) -> bool:
    return (all(type(v) in _SQL_EQUAL for v in where.values())
            and all(_FIELD.match(k) for k in (*set_, *inc, *where)))


def _update_in_sql(c: sqlite3.Connection, collection: str, id: str, set_: dict[str, Any], inc: dict[str, int],
                   where: dict[str, Any], *, returning: bool = True) -> dict[str, Any] | None:
    """The same change as _update_in_python, applied by SQLite's json_set in C (no Python decode and
    re-encode of the stored document; sqlite3 lets go of the GIL meanwhile, so the event loop runs).
    Each set value goes in as JSON text through json() (https://sqlite.org/json1.html: a value
    that comes from another JSON function is inserted as JSON, plain text as a string): a float
    keeps all its digits (a bound REAL would be written with 15), a dict or list stays a JSON value."""
    args: list[str] = []
    params: list[Any] = []
    for key, value in set_.items():
        args.append(f"'$.{key}', json(?)")
        params.append(jsoncodec.dumps(value))
    for key, by in inc.items():
        args.append(f"'$.{key}', coalesce(json_extract(doc, '$.{key}'), 0) + ?")
        params.append(by)
    clause, where_params = _where_sql(where)
    change = f"json_set(doc, {', '.join(args)})" if args else "doc"
    sql = f"UPDATE {collection} SET doc = {change} WHERE id = ? AND {clause}"
    if not returning:
        c.execute(sql, [*params, id, *where_params])
        return None
    row = c.execute(sql + " RETURNING doc", [*params, id, *where_params]).fetchone()
    return None if row is None else jsoncodec.loads(row[0])


def _update_in_python(c: sqlite3.Connection, collection: str, id: str, set_: dict[str, Any], inc: dict[str, int],
                      where: dict[str, Any]) -> dict[str, Any] | None:
    row = c.execute(f"SELECT doc FROM {collection} WHERE id = ?", (id,)).fetchone()
    if row is None or not _matches(doc := jsoncodec.loads(row[0]), where):
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


_SEEN = f"SELECT 1 FROM messages WHERE {_path('dedupe_key')} = ? LIMIT 1"
_CHAT = (f"SELECT id, json_extract(doc, '$.meta'), json_extract(doc, '$.customer'), "
         f"json_extract(doc, '$.external_chat_id') FROM conversations WHERE {_path('chat_key')} = ?")
_UNKNOWN_CHAT = object()


def _ingest_into_known_chat(c: sqlite3.Connection, conversation: Conversation, message: Message,
                            seal: Callable[[Message], dict[str, Any]]) -> Message | object | None:
    """Store._intake's usual case done with fewer Python steps: a message not seen before, of a chat
    whose conversation is found by its chat_key. The dedupe key and the chat are looked up by
    index without decoding documents, and the count and merge are applied by json_set. Any other
    case (a new chat, one known only by an alias) returns _UNKNOWN_CHAT having written nothing,
    and the caller runs the steps, which stay the one statement of the rule."""
    if message.dedupe_key and c.execute(_SEEN, (message.dedupe_key,)).fetchone():
        return None
    row = c.execute(_CHAT, (conversation.chat_key,)).fetchone() if conversation.chat_key else None
    if row is None:
        return _UNKNOWN_CHAT
    stored = {"id": row[0], "meta": _json_or_none(row[1]), "customer": _json_or_none(row[2]),
              "external_chat_id": row[3]}
    message.conversation_id = row[0]
    try:
        _insert(c, Message.collection, seal(message))
    except sqlite3.IntegrityError as exc:
        if isinstance(_store_error(exc), DuplicateKey):  # the dedupe key again, as the steps see it
            return None
        raise
    changes = merge_conversation(stored, conversation)
    _update_in_sql(c, Conversation.collection, row[0],
                   {**changes, "last_message_at": message.created_at, "last_inbound_at": message.created_at,
                    "updated_at": clock.now()}, {"message_count": 1}, {}, returning=False)
    return message


def _json_or_none(text: str | None) -> Any:
    return None if text is None else jsoncodec.loads(text)


def _store_error(exc: Exception) -> Exception:
    """What a caller sees for an exception raised by its call on the store thread."""
    if isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc):
        return DuplicateKey(str(exc))
    if isinstance(exc, sqlite3.OperationalError | sqlite3.ProgrammingError):  # ProgrammingError: closed
        return StoreUnavailable(f"sqlite: {exc}")
    return exc


def _prepare(conn: sqlite3.Connection, timeout: float) -> None:
    """WAL, the tables and their indexes (all idempotent)."""
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
    for collection in INDEXES:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {collection} (id TEXT PRIMARY KEY, doc TEXT NOT NULL)")
    for collection, indexes in INDEXES.items():
        for fields, unique in indexes:
            name = f"ix_{collection}_{'_'.join(fields)}"
            columns = ", ".join(_path(f) for f in fields)
            kind = "UNIQUE INDEX" if unique else "INDEX"
            conn.execute(f"CREATE {kind} IF NOT EXISTS {name} ON {collection} ({columns})")
    conn.execute("PRAGMA busy_timeout=0")  # from now on the store thread waits (_StoreThread._locked)


def _retry_busy(attempt: Callable[[], R], timeout: float) -> R:
    """`attempt()`, tried again while another process holds the lock it needs (SQLITE_BUSY),
    after short jittered pauses, until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    pause = LOCK_RETRY_FIRST
    while True:
        try:
            return attempt()
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause * (0.5 + random.random()))  # jitter: waiters do not retry in step
        pause = min(pause * 2, LOCK_RETRY_CAP)


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

    def __init__(self, conn: sqlite3.Connection, timeout: float) -> None:
        self.conn = conn
        self.timeout = timeout
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
            self._locked(lambda: conn.execute("BEGIN IMMEDIATE"))
        except Exception as exc:  # noqa: BLE001 - locked by another process past the timeout, or closed
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
            # Outside a transaction the call only reads, so running it again is safe; inside one it
            # holds the write lock and meets no other process's lock.
            call.result = call.fn(self.conn) if self.conn.in_transaction else self._locked(lambda: call.fn(self.conn))
        except Exception as exc:  # noqa: BLE001 - handed to its caller
            call.error = _store_error(exc)

    def _locked(self, attempt: Callable[[], R]) -> R:
        """`attempt()`, tried again while another process holds the lock it needs (SQLITE_BUSY;
        the connection's busy_timeout is 0, so SQLite itself never sleeps), until the store timeout."""
        return _retry_busy(attempt, self.timeout)

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
                # Several processes may open a new file at once: switching it to WAL and creating
                # the schema can meet SQLITE_BUSY without SQLite's busy handler ever waiting (lock
                # upgrades it refuses to wait for), so the whole idempotent setup is tried again.
                _retry_busy(lambda: _prepare(conn, self._timeout), self._timeout)
            except BaseException:
                conn.close()
                raise
            return conn

        try:
            conn = await asyncio.to_thread(connect)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite database {self._path}: {exc}") from None
        self._thread = _StoreThread(conn, self._timeout)

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
        return None if row is None else jsoncodec.loads(row[0])

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
            f"SELECT * FROM (SELECT id, {created} AS created FROM messages "
            f"WHERE {cond} ORDER BY {created}, id LIMIT 1)"
            for cond in (pending, expired)
        ]
        oldest = f"SELECT id FROM ({legs[0]} UNION ALL {legs[1]}) ORDER BY created, id LIMIT 1"
        # Changed in place by json_set (see _update_in_sql): no decode and re-encode in Python.
        claim = ("UPDATE messages SET doc = json_set(doc, '$.state', 'processing', '$.lease_owner', ?, "
                 "'$.lease_until', json(?), '$.attempts', coalesce(json_extract(doc, '$.attempts'), 0) + 1, "
                 f"'$.updated_at', json(?)) WHERE id = ({oldest}) RETURNING doc")
        params = (owner, jsoncodec.dumps(lease_until), jsoncodec.dumps(now), now)

        def tx(c: sqlite3.Connection) -> dict[str, Any] | None:
            row = c.execute(claim, params).fetchone()
            return None if row is None else jsoncodec.loads(row[0])

        return await self._run(tx, write=True)

    async def _get_many_raw(self, wanted):
        # The row texts, decoded by the caller only when the config cache does not hold them.
        def read(c: sqlite3.Connection) -> list[str | None]:
            out = []
            for collection, id in wanted:
                row = c.execute(f"SELECT doc FROM {collection} WHERE id = ?", (id,)).fetchone()
                out.append(None if row is None else row[0])
            return out

        return await self._run(read)

    def _decode(self, raw: str) -> dict[str, Any]:
        return jsoncodec.loads(raw)

    async def ingest_message(self, conversation: Conversation, message: Message,
                             aliases: Sequence[str] = ()) -> Message | None:
        if aliases:  # a chat known by several ids: the steps, in one transaction
            return await super().ingest_message(conversation, message, aliases)

        def tx(c: sqlite3.Connection) -> Message | None:
            done = _ingest_into_known_chat(c, conversation, message, self._seal)
            if done is _UNKNOWN_CHAT:
                return run_steps(self._intake(conversation, message), lambda step: _apply(c, step))
            return done  # type: ignore[return-value]

        return await self._run(tx, write=True)

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
