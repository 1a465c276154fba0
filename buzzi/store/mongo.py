"""MongoDB store for clusters: one collection per document type, `_id` holding the document's `id`.

Built on PyMongo's native asyncio client (Motor reached end of life). Every read-modify-write is a
single server-side operation (find_one_and_update), so concurrent nodes need no locks of their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bson.errors import InvalidDocument
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    InvalidOperation,
    PyMongoError,
    WTimeoutError,
)

from buzzi.crypto import SecretBox
from buzzi.store.base import INDEXES, DuplicateKey, Store, StoreError, StoreUnavailable

_CLAIM_SORT = [("created_at", ASCENDING), ("_id", ASCENDING)]


def _to_mongo(doc: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k != "id"}
    if "id" in doc:
        out["_id"] = doc["id"]
    return out


def _from_mongo(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    if doc is None:
        return None
    out: dict[str, Any] = {"id": doc["_id"]}
    out.update((k, v) for k, v in doc.items() if k != "_id")
    return out


def _filter(where: dict[str, Any]) -> dict[str, Any]:
    # Equality on top-level fields; {field: None} matches null or missing, as IS NULL does in SQLite.
    return {("_id" if k == "id" else k): v for k, v in where.items()}


def _field(name: str) -> str:
    return "_id" if name == "id" else name


class MongoStore(Store):
    def __init__(self, url: str, box: SecretBox, timeout: float = 5.0, database: str = "buzzi") -> None:
        super().__init__(box)
        self._url = url
        self._timeout = timeout
        self._database_default = database
        self._client: AsyncMongoClient | None = None
        self._db: AsyncDatabase | None = None

    @asynccontextmanager
    async def _errors(self) -> AsyncIterator[AsyncDatabase]:
        """Yield the database; translate driver errors into the Store's."""
        if self._db is None:
            raise StoreUnavailable("store is closed")
        try:
            yield self._db
        except DuplicateKeyError as exc:
            raise DuplicateKey(str(exc)) from None
        except (ConnectionFailure, ExecutionTimeout, WTimeoutError) as exc:
            raise StoreUnavailable(f"mongodb: {exc}") from None
        except InvalidDocument as exc:  # a value BSON cannot encode: the caller's bug, as json's TypeError is
            raise TypeError(str(exc)) from None
        except InvalidOperation as exc:  # the client was closed underneath us
            raise StoreUnavailable(f"mongodb: {exc}") from None
        except PyMongoError as exc:
            raise StoreError(f"mongodb: {exc}") from exc

    # ----------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        if self._client is not None:
            return
        ms = max(1, int(self._timeout * 1000))
        # A dead server must answer within `timeout`, not PyMongo's 30 s default.
        client: AsyncMongoClient = AsyncMongoClient(
            self._url, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms, socketTimeoutMS=ms
        )
        self._client = client
        self._db = client.get_default_database(default=self._database_default)
        try:
            async with self._errors() as db:
                for collection, indexes in INDEXES.items():
                    await db[collection].create_indexes([self._index(fields, unique) for fields, unique in indexes])
        except BaseException:
            self._client, self._db = None, None
            await client.close()
            raise

    @staticmethod
    def _index(fields: tuple[str, ...], unique: bool) -> IndexModel:
        options: dict[str, Any] = {"name": f"ix_{'_'.join(fields)}"}
        if unique:
            # Unique only among documents that have the key: many rows may leave it null/missing.
            options.update(unique=True, partialFilterExpression={f: {"$type": "string"} for f in fields})
        return IndexModel([(_field(f), ASCENDING) for f in fields], **options)

    async def close(self) -> None:
        client, self._client, self._db = self._client, None, None
        if client is not None:
            await client.close()

    async def ping(self) -> None:
        if self._client is None:
            raise StoreUnavailable("store is closed")
        async with self._errors():
            await self._client.admin.command("ping")

    # ----------------------------------------------------------------- primitives

    async def _insert(self, collection: str, doc: dict[str, Any]) -> None:
        async with self._errors() as db:
            await db[collection].insert_one(_to_mongo(doc))

    async def _get(self, collection: str, id: str) -> dict[str, Any] | None:
        async with self._errors() as db:
            return _from_mongo(await db[collection].find_one({"_id": id}))

    async def _find(
        self,
        collection: str,
        where: dict[str, Any],
        order_by: str | None,
        descending: bool,
        limit: int | None,
    ) -> list[dict[str, Any]]:
        if limit is not None and limit <= 0:  # Mongo reads limit 0 as "no limit"; SQL as "none"
            return []
        async with self._errors() as db:
            cursor = db[collection].find(_filter(where))
            if order_by:
                direction = DESCENDING if descending else ASCENDING
                cursor = cursor.sort([(_field(order_by), direction), ("_id", direction)])
            if limit is not None:
                cursor = cursor.limit(int(limit))
            return [d for d in map(_from_mongo, await cursor.to_list()) if d is not None]

    async def _update(
        self,
        collection: str,
        id: str,
        set_: dict[str, Any],
        inc: dict[str, int],
        where: dict[str, Any],
    ) -> dict[str, Any] | None:
        if "id" in where and where["id"] != id:
            return None
        query = {**_filter(where), "_id": id}
        change: dict[str, Any] = {}
        if set_:
            change["$set"] = {k: v for k, v in set_.items() if k != "id"}
        if inc:
            change["$inc"] = dict(inc)
        async with self._errors() as db:
            if not change.get("$set") and not inc:
                return _from_mongo(await db[collection].find_one(query))
            doc = await db[collection].find_one_and_update(query, change, return_document=ReturnDocument.AFTER)
            return _from_mongo(doc)

    async def _delete(self, collection: str, where: dict[str, Any]) -> int:
        async with self._errors() as db:
            return (await db[collection].delete_many(_filter(where))).deleted_count

    async def _count(self, collection: str, where: dict[str, Any]) -> int:
        async with self._errors() as db:
            return await db[collection].count_documents(_filter(where))

    async def _claim(self, owner: str, now: float, lease_until: float) -> dict[str, Any] | None:
        # A null lease_until never matches $lt (type bracketing), as NULL < x is not true in SQL.
        # An expired lease is taken whatever the role: a reply scheduled for a later send waits as
        # "processing" until its lease_until (its notBefore).
        query = {
            "$or": [{"state": "pending", "role": "user"}, {"state": "processing", "lease_until": {"$lt": now}}],
        }
        change = {
            "$set": {"state": "processing", "lease_owner": owner, "lease_until": lease_until, "updated_at": now},
            "$inc": {"attempts": 1},
        }
        async with self._errors() as db:
            doc = await db.messages.find_one_and_update(
                query, change, sort=_CLAIM_SORT, return_document=ReturnDocument.AFTER
            )
            return _from_mongo(doc)

    async def _prune(self, collection: str, where: dict[str, Any], order_by: str, keep: int) -> int:
        # Delete by id only what lies beyond the newest `keep`: a concurrent insert is newer than
        # anything selected here, so two pruners never remove each other's fresh documents.
        query = _filter(where)
        sort = [(_field(order_by), DESCENDING), ("_id", DESCENDING)]
        async with self._errors() as db:
            cursor = db[collection].find(query, {"_id": 1}).sort(sort).skip(max(0, int(keep)))
            stale = [d["_id"] for d in await cursor.to_list()]
            if not stale:
                return 0
            return (await db[collection].delete_many({"_id": {"$in": stale}})).deleted_count
