"""Live views for the admin dashboard, independent of HTTP: one conversation as it happens, and the
cluster's live sessions as periodic snapshots. `LiveViews` hands them out after the tenancy check;
both feeds end when `closed` is set, so a front end ties them to its client's connection."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from buzzi.admin import scope
from buzzi.admin.render import render_conversation, render_message
from buzzi.auth import Principal
from buzzi.broker.base import Presence, StreamEvent, StreamLog, SubscriptionClosed
from buzzi.chat import conversation_stream
from buzzi.models import Company, Conversation, Message
from buzzi.store.base import Store

# Stream events after which the store has news: an answer or a human reply was stored, or the
# conversation changed hands. Deltas come too often to cost a query each.
_SYNC_AFTER = ("complete", "error", "notification")
_IDLE = ("", *_SYNC_AFTER)  # the event before a new answer starts


@dataclass(frozen=True)
class LiveItem:
    """One thing to show: `event` names it; `id` is the broker's event id for stream events."""

    event: str
    data: dict[str, Any]
    id: str | None = None


HEARTBEAT = None  # what the feeds yield when nothing changed for a while (keeps proxies and detection alive)


class ConversationFeed:
    """A conversation for an admin watching it: the live events of its broker stream (thinking, deltas,
    complete, errors, handover and typing notifications) passed through as they come, plus `message`
    items for every stored message that is new or changed and `conversation` items when the
    conversation itself changed. The store is read as well as the stream because user messages and
    delivery outcomes (a failed send on a channel) are stored, not published."""

    poll_seconds = 2.0  # the store is read at least this often (user messages are not published)
    history = 200  # messages sent when the feed starts
    recent = 50  # messages compared on each later read of the store
    buffer = 256  # stream events one slow watcher may fall behind before its feed ends

    def __init__(self, store: Store, broker: StreamLog, conversation: Conversation) -> None:
        self.store = store
        self.broker = broker
        self.conversation = conversation  # as it was when the feed started
        self.conversation_id = conversation.id
        self._seen: dict[str, str] = {}  # message id -> fingerprint of what was last sent
        self._conversation: str | None = None

    async def items(self, closed: asyncio.Event) -> AsyncIterator[LiveItem | None]:
        """Everything stored so far (the latest `history` messages), then changes as they happen.
        Ends when `closed` is set, when the conversation is deleted, or when this consumer falls
        too far behind the stream (the client reconnects and gets a fresh picture)."""
        sub = self.broker.subscribe(conversation_stream(self.conversation_id), maxsize=self.buffer)
        closing = asyncio.ensure_future(closed.wait())
        try:
            synced = await self._sync(self.history)
            if synced is None:
                return
            for item in synced:
                yield item
            previous = ""
            while not closed.is_set():
                getter = asyncio.ensure_future(sub.get())
                done, _ = await asyncio.wait({getter, closing}, timeout=self.poll_seconds,
                                             return_when=asyncio.FIRST_COMPLETED)
                event: StreamEvent | None = None
                if getter in done:
                    try:
                        event = getter.result()
                    except SubscriptionClosed:
                        return
                else:
                    getter.cancel()
                    with contextlib.suppress(asyncio.CancelledError, SubscriptionClosed):
                        await getter
                if closed.is_set():
                    return
                # Read the store before showing an agent's first event: it answers a user message
                # that was stored, not published, and the admin should see the question first.
                starts = event is not None and event.event not in _SYNC_AFTER and previous in _IDLE
                if event is None or starts:
                    # Only the question: an answer stored meanwhile waits for its stream events.
                    synced = await self._sync(self.recent, only_user=starts)
                    if synced is None:
                        return
                    for item in synced:
                        yield item
                    if not synced and event is None:
                        yield HEARTBEAT
                if event is not None:
                    previous = event.event
                    yield LiveItem(event.event, event.data, event.id)
                    if event.event in _SYNC_AFTER:
                        # The answer or the human reply is stored before it is published.
                        synced = await self._sync(self.recent)
                        if synced is None:
                            return
                        for item in synced:
                            yield item
        finally:
            closing.cancel()
            sub.close()

    async def _sync(self, count: int, only_user: bool = False) -> list[LiveItem] | None:
        """What changed in the store since the last look; None once the conversation is gone."""
        conversation = await self.store.get(Conversation, self.conversation_id)
        if conversation is None:
            return None
        items: list[LiveItem] = []
        rendered = render_conversation(conversation)
        fingerprint = _fingerprint({k: v for k, v in rendered.items() if k != "updatedAt"})
        if fingerprint != self._conversation:
            self._conversation = fingerprint
            items.append(LiveItem("conversation", rendered))
        newest = await self.store.find(Message, conversation_id=self.conversation_id, order_by="created_at",
                                       descending=True, limit=count)
        for message in reversed(newest):
            if only_user and message.role != "user":
                continue
            data = render_message(message)
            fingerprint = _fingerprint(data)
            if self._seen.get(message.id) != fingerprint:
                self._seen[message.id] = fingerprint
                items.append(LiveItem("message", data))
        return items


class SessionsFeed:
    """The live sessions a principal may see, with the nodes holding them, as a snapshot every
    `interval` seconds; a snapshot is sent only when it differs from the last one."""

    interval = 1.5  # seconds between looks at the sessions

    def __init__(self, store: Store, broker: Presence, principal: Principal) -> None:
        self.store = store
        self.broker = broker
        self.principal = principal
        self._names: dict[str, str | None] = {}

    async def snapshot(self) -> dict[str, Any]:
        """{"sessions": [...], "nodes": [...]}: sessions newest first, each with its company's name;
        an owner sees every node of the cluster, a company admin only the nodes holding their sessions."""
        sessions = [s for s in await self.broker.list_sessions() if self.principal.can_access(s.get("companyId"))]
        sessions.sort(key=lambda s: (s.get("connectedSince") or "", s.get("conversationId") or ""), reverse=True)
        for session in sessions:
            session["companyName"] = await self._company_name(session.get("companyId"))
        per_node: dict[str, int] = {}
        for session in sessions:
            per_node[session["nodeId"]] = per_node.get(session["nodeId"], 0) + 1
        if self.principal.is_owner:
            nodes = [
                {"nodeId": n["nodeId"], "streams": n.get("streams", 0), "draining": bool(n.get("draining")),
                 "startedAt": n.get("startedAt"), "lastSeen": n.get("lastSeen")}
                for n in await self.broker.list_nodes()
            ]
        else:
            nodes = [{"nodeId": node_id, "streams": count} for node_id, count in per_node.items()]
        nodes.sort(key=lambda n: str(n["nodeId"]))
        return {"sessions": sessions, "nodes": nodes}

    async def snapshots(self, closed: asyncio.Event) -> AsyncIterator[dict[str, Any] | None]:
        """The first snapshot at once, then each changed one; HEARTBEAT on ticks without change."""
        last: str | None = None
        while not closed.is_set():
            current = await self.snapshot()
            # lastSeen moves with every node heartbeat: not a change worth a push.
            fingerprint = _fingerprint({**current, "nodes": [{k: v for k, v in n.items() if k != "lastSeen"}
                                                             for n in current["nodes"]]})
            if fingerprint != last:
                last = fingerprint
                yield current
            else:
                yield HEARTBEAT
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closed.wait(), self.interval)

    async def _company_name(self, company_id: str | None) -> str | None:
        if company_id is None:
            return None
        if company_id not in self._names:
            company = await self.store.get(Company, company_id)
            self._names[company_id] = company.name if company else None
        return self._names[company_id]


class LiveBroker(StreamLog, Presence, Protocol):
    """What the live views use of the broker: conversation streams, and presence for sessions."""


class LiveViews:
    """The live feeds and the names they show, each after the principal's tenancy check."""

    def __init__(self, store: Store, broker: LiveBroker) -> None:
        self.store = store
        self.broker = broker

    async def conversation_feed(self, principal: Principal, conversation_id: str) -> ConversationFeed:
        conversation = await scope.conversation(self.store, principal, conversation_id)
        return ConversationFeed(self.store, self.broker, conversation)

    def sessions_feed(self, principal: Principal) -> SessionsFeed:
        return SessionsFeed(self.store, self.broker, principal)

    async def company_names(self, principal: Principal, company_ids: Iterable[str]) -> dict[str, str]:
        """Display names of the given companies; one the principal may not see, or that is gone,
        shows as its id."""
        names: dict[str, str] = {}
        for company_id in dict.fromkeys(company_ids):
            company = await self.store.get(Company, company_id) if principal.can_access(company_id) else None
            names[company_id] = company.name if company else company_id
        return names


def _fingerprint(data: Any) -> str:
    return json.dumps(data, sort_keys=True, default=str)
