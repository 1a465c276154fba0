"""Store implementations behind one interface (base.Store): SQLite embedded, MongoDB for clusters."""

from __future__ import annotations

from pathlib import Path

from buzzi.crypto import SecretBox
from buzzi.store.base import DuplicateKey, Store, StoreError, StoreUnavailable

__all__ = ["DuplicateKey", "Store", "StoreError", "StoreUnavailable", "open_store"]


def open_store(url: str, box: SecretBox, *, timeout: float = 5.0, database: str = "buzzi",
               base_dir: Path | None = None) -> Store:
    """Build (not yet open) the store a URL names."""
    if url.startswith("sqlite:///"):
        from buzzi.store.sqlite import SQLiteStore

        return SQLiteStore.from_url(url, box, timeout=timeout, base_dir=base_dir)
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from buzzi.store.mongo import MongoStore

        return MongoStore(url, box, timeout=timeout, database=database)
    raise ValueError(f"unsupported store URL: {url}")
