"""Decoded configuration documents (companies, agents, webhooks), reused while their stored form is unchanged.

Every webhook request resolves its webhook, agent and company; decoding them each time (JSON,
from_doc, AES-opening the secrets) was ~8% of intake CPU. The store still reads each document on
every call; only the work after the read is skipped, and only when the stored form (SQLite: the
row's text; MongoDB: the document, compared as a dict) equals the one the cached object was made
from. So a change written by any process or node is seen by the very next read: nothing goes stale.

Callers get a copy (new object, new top-level dicts and lists), so changing a field of what they
got, or a key of its settings/state/credentials, never changes what the next caller gets. Values
nested deeper are shared: treat them as read-only (no caller writes into them).
"""

from __future__ import annotations

from typing import Any, TypeVar

from buzzi.models import Document

T = TypeVar("T", bound=Document)

# Only these: read on every request, written rarely (by the admin API).
CACHED_COLLECTIONS = frozenset({"companies", "agents", "webhooks"})
# Entries at most (then the oldest go first): the working set of one node is its active webhooks.
MAX_ENTRIES = 4096


def fresh_copy(obj: T) -> T:
    """`obj` with its own top-level containers, built without running __init__ or from_doc."""
    copy = object.__new__(type(obj))
    state = obj.__dict__.copy()
    for key, value in state.items():
        if type(value) is dict:
            state[key] = value.copy()
        elif type(value) is list:
            state[key] = value.copy()
    copy.__dict__.update(state)
    return copy


class ConfigCache:
    """(collection, id) -> (stored form, decoded object). Used from the event loop thread only."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._max = max_entries
        self._entries: dict[tuple[str, str], tuple[Any, Document]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, collection: str, id: str, raw: Any) -> Document | None:
        """A copy of the object decoded from `raw`, if that is still what the store holds."""
        entry = self._entries.get((collection, id))
        if entry is None or entry[0] != raw:
            return None
        return fresh_copy(entry[1])

    def put(self, collection: str, id: str, raw: Any, obj: T) -> T:
        """Remember `obj` as decoded from `raw`; return a copy for the caller."""
        key = (collection, id)
        entries = self._entries
        entries.pop(key, None)
        while len(entries) >= self._max:
            del entries[next(iter(entries))]  # the oldest entry (dicts keep insertion order)
        entries[key] = (raw, obj)
        return fresh_copy(obj)
