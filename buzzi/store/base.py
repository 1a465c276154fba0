"""The Store seam: typed operations on the domain, built on a few primitives each backend implements.

Backends (sqlite.py, mongo.py) implement only the `_primitives`; everything typed lives here once,
so both behave the same by construction and one contract suite (tests/contracts/test_store.py)
checks them. Rules that write several documents are steps (steps.py) that a backend may run in
one transaction; secrets are sealed by each model's own hook (Document.seal_fields).
Documents are flat dicts keyed by the dataclass field names; `where` filters are equality on
top-level fields.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Sequence
from typing import Any, TypeVar

from buzzi import clock
from buzzi.crypto import SecretBox
from buzzi.errors import Unavailable
from buzzi.models import PENDING, PROCESSING, ChatAlias, Conversation, Document, Message, WebhookEvent
from buzzi.store.config_cache import CACHED_COLLECTIONS, ConfigCache
from buzzi.store.steps import FindOne, Insert, Step, Steps, Update, run_steps_async

R = TypeVar("R")

T = TypeVar("T", bound=Document)


class StoreError(Exception):
    pass


class StoreUnavailable(StoreError, Unavailable):
    """The backend did not answer: callers answer 503 so that channels retry."""


class DuplicateKey(StoreError):
    """A unique key (id, dedupe key, e-mail, chat key) already exists."""


# Times an edit is recorded again when its message changed between the read and the write.
EDIT_ATTEMPTS = 10


# (fields, unique) per collection. Unique indexes ignore documents where the field is null.
INDEXES: dict[str, list[tuple[tuple[str, ...], bool]]] = {
    "companies": [(("created_at",), False)],
    "users": [(("email",), True), (("company_id",), False)],
    "agents": [(("company_id",), False)],
    "webhooks": [(("agent_id",), False), (("company_id",), False)],
    "conversations": [
        (("chat_key",), True),
        (("session_hash",), True),
        (("company_id", "updated_at"), False),
    ],
    "messages": [
        (("dedupe_key",), True),
        (("conversation_id", "created_at"), False),
        (("state", "created_at"), False),
        (("state", "lease_until"), False),  # finds expired leases without reading every processing message
    ],
    "webhook_events": [(("webhook_id", "received_at"), False), (("received_at",), False)],
    "media": [(("message_id",), False), (("company_id", "created_at"), False)],
    "sent_ids": [(("message_id",), False), (("company_id",), False)],
    "chat_aliases": [(("conversation_id",), False), (("company_id",), False)],
}


class Store(abc.ABC):
    def __init__(self, box: SecretBox) -> None:
        self._box = box
        self._config = ConfigCache()  # decoded companies/agents/webhooks, checked against every read

    # ----------------------------------------------------------------- primitives (per backend)

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and create tables/collections and indexes; idempotent."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise StoreUnavailable unless the backend answers."""

    @abc.abstractmethod
    async def _insert(self, collection: str, doc: dict[str, Any]) -> None:
        """Insert; raise DuplicateKey on any unique-index clash."""

    @abc.abstractmethod
    async def _get(self, collection: str, id: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    async def _find(
        self,
        collection: str,
        where: dict[str, Any],
        order_by: str | None,
        descending: bool,
        limit: int | None,
    ) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    async def _update(
        self,
        collection: str,
        id: str,
        set_: dict[str, Any],
        inc: dict[str, int],
        where: dict[str, Any],
    ) -> dict[str, Any] | None:
        """Atomically apply $set/$inc to the document `id` if it also matches `where`; return it after."""

    @abc.abstractmethod
    async def _delete(self, collection: str, where: dict[str, Any]) -> int: ...

    @abc.abstractmethod
    async def _count(self, collection: str, where: dict[str, Any]) -> int: ...

    @abc.abstractmethod
    async def _claim(self, owner: str, now: float, lease_until: float) -> dict[str, Any] | None:
        """Atomically take the oldest message that is a pending user message, or processing with an
        expired lease (a user message whose node died or deferred it, or a reply scheduled for a
        later send: lease_owner None, lease_until = its notBefore): set state=processing,
        lease_owner, lease_until, attempts+1; return it after."""

    @abc.abstractmethod
    async def _prune(self, collection: str, where: dict[str, Any], order_by: str, keep: int) -> int:
        """Delete all but the newest `keep` matching documents (by `order_by`)."""

    # ----------------------------------------------------------------- typed operations

    async def add(self, obj: T) -> T:
        await self._insert(obj.collection, self._seal(obj))
        return obj

    async def get(self, cls: type[T], id: str) -> T | None:
        if cls.collection in CACHED_COLLECTIONS:
            return (await self.get_many((cls, id)))[0]  # type: ignore[return-value]
        doc = await self._get(cls.collection, id)
        return None if doc is None else self._unseal(cls, doc)

    async def find(
        self,
        cls: type[T],
        *,
        order_by: str | None = "created_at",
        descending: bool = False,
        limit: int | None = None,
        **where: Any,
    ) -> list[T]:
        docs = await self._find(cls.collection, where, order_by, descending, limit)
        return [self._unseal(cls, d) for d in docs]

    async def find_one(self, cls: type[T], **where: Any) -> T | None:
        found = await self.find(cls, order_by=None, limit=1, **where)
        return found[0] if found else None

    async def count(self, cls: type[T], **where: Any) -> int:
        return await self._count(cls.collection, where)

    async def update(
        self,
        cls: type[T],
        id: str,
        changes: dict[str, Any] | None = None,
        *,
        inc: dict[str, int] | None = None,
        expect: dict[str, Any] | None = None,
    ) -> T | None:
        """Change fields atomically; with `expect`, only if the document still has those values.
        Returns the updated object, or None when it does not exist or did not match."""
        set_ = cls.seal_fields(dict(changes or {}), self._box)
        set_["updated_at"] = clock.now()
        doc = await self._update(cls.collection, id, set_, dict(inc or {}), dict(expect or {}))
        return None if doc is None else self._unseal(cls, doc)

    async def delete(self, cls: type[T], id: str) -> bool:
        return await self._delete(cls.collection, {"id": id}) > 0

    async def delete_where(self, cls: type[T], **where: Any) -> int:
        return await self._delete(cls.collection, where)

    # Domain operations that need atomicity --------------------------------------------------

    async def add_message_once(self, message: Message) -> bool:
        """Insert a message; False (and nothing written) if its dedupe key was seen before."""
        try:
            await self.add(message)
        except DuplicateKey:
            return False
        return True

    async def get_many(self, *wanted: tuple[type[Document], str]) -> list[Document | None]:
        """Several documents by (class, id) at once; backends may fetch them in one round trip."""
        raws = await self._get_many_raw([(cls.collection, id) for cls, id in wanted])
        return [None if raw is None else self._from_stored(cls, id, raw)
                for (cls, id), raw in zip(wanted, raws, strict=True)]

    async def _get_many_raw(self, wanted: list[tuple[str, str]]) -> list[Any | None]:
        """The stored form of each document (what `_decode` turns into a dict), None when missing.
        It is what the config cache compares, so it must change whenever the document does."""
        return [await self._get(collection, id) for collection, id in wanted]

    def _decode(self, raw: Any) -> dict[str, Any]:
        return raw

    def _from_stored(self, cls: type[T], id: str, raw: Any) -> T:
        if cls.collection not in CACHED_COLLECTIONS:
            return self._unseal(cls, self._decode(raw))
        hit = self._config.get(cls.collection, id, raw)
        if hit is not None:
            return hit  # type: ignore[return-value]
        return self._config.put(cls.collection, id, raw, self._unseal(cls, self._decode(raw)))

    async def ingest_message(self, conversation: Conversation, message: Message,
                             aliases: Sequence[str] = ()) -> Message | None:
        """Store an inbound channel message and count it on its conversation, which is created from
        `conversation` when its chat is new, else gets its routing meta, customer name and reply
        address merged in. `aliases` are the other chat keys ("{webhook}:{id}") the same chat is known
        by (WhatsApp phone number <-> BSUID): the conversation is found by any of them, and the keys
        it cannot be found by yet are recorded as ChatAlias documents.
        Returns the stored message (with its conversation_id), or None when its dedupe key was
        seen before (nothing is written then)."""
        return await self.transact(self._intake(conversation, message, tuple(aliases)))

    def _intake(self, conversation: Conversation, message: Message, aliases: tuple[str, ...] = ()
                ) -> Steps[Message | None]:
        if message.dedupe_key and (yield FindOne(Message.collection, {"dedupe_key": message.dedupe_key})):
            return None
        stored = yield from self._chat_conversation(conversation, aliases)
        message.conversation_id = stored["id"]
        try:
            yield Insert(Message.collection, self._seal(message))
        except DuplicateKey:  # a concurrent delivery of the same message got there first
            return None
        if aliases and conversation.chat_key:
            for key in dict.fromkeys((conversation.chat_key, *aliases)):
                yield from _alias_chat(key, stored)
        changes = merge_conversation(stored, conversation)  # nothing to merge into a conversation just made
        # last_inbound_at: the platforms' messaging windows count from the customer's last message.
        yield Update(Conversation.collection, stored["id"],
                     {**changes, "last_message_at": message.created_at, "last_inbound_at": message.created_at,
                      "updated_at": clock.now()},
                     {"message_count": 1})
        return message

    def _chat_conversation(self, conversation: Conversation, aliases: tuple[str, ...] = ()
                           ) -> Steps[dict[str, Any]]:
        """The stored conversation of this chat (by chat_key, else by any other id the chat is known
        by), `conversation` itself if it is new."""
        by_chat = FindOne(Conversation.collection, {"chat_key": conversation.chat_key})
        if conversation.chat_key:
            if existing := (yield by_chat):
                return existing
            if known := (yield from _aliased_conversation(conversation.chat_key, aliases)):
                return known
        doc = self._seal(conversation)
        try:
            yield Insert(Conversation.collection, doc)
        except DuplicateKey:  # another delivery of this chat created it meanwhile
            existing = (yield by_chat) if conversation.chat_key else None
            if existing is None:  # the clash was on the id, not the chat key
                raise
            return existing
        return doc

    async def move_chat(self, old_key: str, new_key: str, *, old_chat_id: str, new_chat_id: str) -> str | None:
        """A channel chat moved to a new id (Telegram group -> supergroup, migrate_to_chat_id). Its
        conversation is re-keyed to `new_key` and addressed at `new_chat_id`, with meta.migratedFrom;
        when the new chat has a conversation already, that one is kept (meta.migratedFrom) and the
        old one is unkeyed (meta.migratedTo). Either way the old key becomes an alias of the kept
        one, so a late message of the old chat joins it. Returns the kept conversation's id; None
        when the old chat has no conversation (never written to, or moved already)."""
        return await self.transact(self._move(old_key, new_key, old_chat_id, new_chat_id))

    def _move(self, old_key: str, new_key: str, old_chat_id: str, new_chat_id: str) -> Steps[str | None]:
        old = yield FindOne(Conversation.collection, {"chat_key": old_key})
        if old is None or old_key == new_key:
            return None if old is None else old["id"]
        target = yield FindOne(Conversation.collection, {"chat_key": new_key})
        if target is None:
            try:
                kept = yield Update(Conversation.collection, old["id"], {
                    "chat_key": new_key, "external_chat_id": new_chat_id, "updated_at": clock.now(),
                    "meta": {**(old.get("meta") or {}), "migratedFrom": old_chat_id}})
            except DuplicateKey:  # a message of the new chat created its conversation meanwhile
                target = yield FindOne(Conversation.collection, {"chat_key": new_key})
                if target is None:
                    raise
        if target is not None:
            yield Update(Conversation.collection, old["id"], {
                "chat_key": None, "updated_at": clock.now(),
                "meta": {**(old.get("meta") or {}), "migratedTo": new_chat_id}})
            kept = yield Update(Conversation.collection, target["id"], {
                "updated_at": clock.now(), "meta": {**(target.get("meta") or {}), "migratedFrom": old_chat_id}})
        yield from _alias_chat(old_key, kept)
        return kept["id"]

    async def record_edit(self, dedupe_key: str, edit: dict[str, Any], keep: int = 10) -> bool | None:
        """Append `edit` ({"id", "text", "at"}) to metadata.edits of the message stored under
        `dedupe_key`, keeping the newest `keep`; its content stays as it was. True when recorded,
        False when an edit with that id is there already (a redelivery), None when no message has
        that dedupe key. A concurrent change of the message is read again, never overwritten."""
        for _ in range(EDIT_ATTEMPTS):
            original = await self.find_one(Message, dedupe_key=dedupe_key)
            if original is None:
                return None
            edits = [e for e in original.metadata.get("edits") or [] if isinstance(e, dict)]
            if any(e.get("id") == edit.get("id") for e in edits):
                return False
            metadata = {**original.metadata, "edits": [*edits, edit][-keep:]}
            if await self.update(Message, original.id, {"metadata": metadata},
                                 expect={"updated_at": original.updated_at}):
                return True
        raise StoreUnavailable(f"message {dedupe_key} kept changing while an edit was recorded")

    async def transact(self, steps: Steps[R]) -> R:
        """Run a multi-document rule one step per round trip; unique indexes keep it right under
        races (the steps handle the DuplicateKey). SQLite overrides it with one transaction."""
        return await run_steps_async(steps, self._apply)

    async def _apply(self, step: Step) -> Any:
        if isinstance(step, FindOne):
            found = await self._find(step.collection, step.where, None, False, 1)
            return found[0] if found else None
        if isinstance(step, Insert):
            return await self._insert(step.collection, step.doc)
        return await self._update(step.collection, step.id, step.set_, step.inc, {})

    async def record_message(self, conversation_id: str, at: float | None = None) -> Conversation | None:
        at = clock.now() if at is None else at
        return await self.update(
            Conversation, conversation_id, {"last_message_at": at}, inc={"message_count": 1}
        )

    async def add_user_message(self, message: Message) -> Message:
        """Store a new message and count it on its conversation. Backends may do both in one
        transaction (one round trip on the hot path of a chat POST)."""
        await self.add(message)
        await self.record_message(message.conversation_id, message.created_at)
        return message

    async def claim_message(self, message_id: str, owner: str, lease_seconds: float) -> Message | None:
        """Claim this one message if it is still pending (the node that stored it answers it at once
        instead of waiting for the claim loop); None if another node or the loop took it first."""
        now = clock.now()
        doc = await self._update(
            Message.collection, message_id,
            {"state": PROCESSING, "lease_owner": owner, "lease_until": now + lease_seconds, "updated_at": now},
            {"attempts": 1}, {"state": PENDING},
        )
        return None if doc is None else Message.from_doc(doc)

    async def claim_next_message(self, owner: str, lease_seconds: float) -> Message | None:
        now = clock.now()
        doc = await self._claim(owner, now, now + lease_seconds)
        return None if doc is None else Message.from_doc(doc)

    async def extend_lease(self, message_id: str, owner: str, lease_seconds: float) -> bool:
        done = await self.update(
            Message, message_id, {"lease_until": clock.now() + lease_seconds},
            expect={"lease_owner": owner, "state": PROCESSING},
        )
        return done is not None

    async def finish_message(self, message_id: str, owner: str, state: str, **fields: Any) -> bool:
        """Close a claimed message; False if the lease was lost to another node meanwhile."""
        done = await self.update(
            Message, message_id, {"state": state, "lease_until": None, **fields},
            expect={"lease_owner": owner, "state": PROCESSING},
        )
        return done is not None

    async def release_message(self, message_id: str, owner: str) -> bool:
        """Give a claimed message back (e.g. on shutdown) so another node takes it at once."""
        done = await self.update(
            Message, message_id, {"state": PENDING, "lease_owner": None, "lease_until": None},
            expect={"lease_owner": owner, "state": PROCESSING},
        )
        return done is not None

    async def defer_message(self, message_id: str, owner: str, seconds: float, *, count_attempt: bool = False
                            ) -> bool:
        """Hand a claimed message back to be claimed again after `seconds`. Without count_attempt
        the attempt does not count (its conversation has an earlier message still being answered,
        and answers of one conversation must not interleave); with it, this was a failed attempt
        to be retried later (e.g. the LLM was rate limited)."""
        done = await self.update(
            Message, message_id, {"lease_owner": None, "lease_until": clock.now() + seconds},
            inc={} if count_attempt else {"attempts": -1}, expect={"lease_owner": owner, "state": PROCESSING},
        )
        return done is not None

    async def earlier_unanswered(self, message: Message) -> bool:
        """True if the conversation has an older user message that is pending or being answered."""
        earlier = await self.find(Message, conversation_id=message.conversation_id, role="user",
                                  order_by="created_at", descending=True, limit=50)
        return any(
            other.state in (PENDING, PROCESSING) and (other.created_at, other.id) < (message.created_at, message.id)
            for other in earlier
        )

    async def add_webhook_events(self, events: Sequence[WebhookEvent], retention: int,
                                 prune: Collection[str] = ()) -> None:
        """Append several delivery-log entries, then trim each webhook in `prune` to its newest
        `retention` entries. Backends may do it all in one round trip."""
        for event in events:
            await self.add(event)
        for webhook_id in prune:
            await self._prune(WebhookEvent.collection, {"webhook_id": webhook_id}, "received_at", retention)

    # ----------------------------------------------------------------- sealing

    def _seal(self, obj: Document) -> dict[str, Any]:
        return type(obj).seal_fields(obj.to_doc(), self._box)

    def _unseal(self, cls: type[T], doc: dict[str, Any]) -> T:
        return cls.from_doc(cls.unseal_fields(doc, self._box))


def merge_conversation(current: dict[str, Any], incoming: Conversation) -> dict[str, Any]:
    """The changes a new inbound message brings to an existing conversation: its latest routing
    facts (Teams serviceUrl, Slack thread, ...) and the customer's current name."""
    changes: dict[str, Any] = {}
    meta = {**(current.get("meta") or {}), **incoming.meta}
    if incoming.meta and meta != current.get("meta"):
        changes["meta"] = meta
    customer = current.get("customer") or {}
    name = incoming.customer.get("name")
    if name and customer.get("name") != name:
        changes["customer"] = {**customer, **incoming.customer}
    # The id replies go to follows the chat's latest message (WhatsApp: the phone number when the
    # customer shows one, else the BSUID).
    if incoming.external_chat_id and current.get("external_chat_id") != incoming.external_chat_id:
        changes["external_chat_id"] = incoming.external_chat_id
    return changes


def _aliased_conversation(chat_key: str, aliases: tuple[str, ...]) -> Steps[dict[str, Any] | None]:
    """The conversation a chat already has under another of its ids: by a ChatAlias of its key or
    of an alias, else one keyed by an alias. Primary-key and unique-index lookups only, no scans."""
    for key in dict.fromkeys((chat_key, *aliases)):
        alias = yield FindOne(ChatAlias.collection, {"id": key})
        if alias and (found := (yield FindOne(Conversation.collection, {"id": alias["conversation_id"]}))):
            return found
    for key in dict.fromkeys(aliases):
        if key != chat_key and (found := (yield FindOne(Conversation.collection, {"chat_key": key}))):
            return found
    return None


def _alias_chat(key: str, conversation: dict[str, Any]) -> Steps[None]:
    """Make `conversation` findable by the chat key `key` too, unless it is its own chat_key or the
    key is an alias already (an alias is never moved to another conversation)."""
    if key == conversation.get("chat_key") or (yield FindOne(ChatAlias.collection, {"id": key})):
        return
    alias = ChatAlias(id=key, conversation_id=conversation["id"], company_id=conversation["company_id"])
    try:
        yield Insert(ChatAlias.collection, alias.to_doc())
    except DuplicateKey:  # a concurrent delivery of this chat wrote it
        pass
