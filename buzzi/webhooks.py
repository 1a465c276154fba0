"""The inbound webhook pipeline (docs/contract.md §2): intake only, in the contract's order of checks.

A message is acknowledged only after it is stored: the store's unique dedupe key
"{webhook id}:{channel message id}" decides new vs duplicate before anything else happens, so
channel retries and concurrent duplicates produce one stored message and one answer. Every
request to a known webhook goes to the delivery log (delivery_log.py).

Besides messages a delivery may carry receipts for our sends (applied by receipts.py), chat moves
(Telegram migrate_to_chat_id), edits (recorded on the original message, answered again only when
the agent's settings.answerEdits says so) and events the adapter chose not to answer: every such
drop is named in the delivery log's detail and counted in buzzi_webhook_drops_total.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from buzzi import clock
from buzzi.broker.base import BrokerUnavailable, WakeUps, wake_inboxes
from buzzi.channels.base import (
    ChannelAdapter,
    ChatMove,
    InboundMessage,
    ParseResult,
    PayloadError,
    VerificationError,
    WebhookRequest,
)
from buzzi.channels.payload import valid_unicode
from buzzi.channels.registry import CHANNELS, ChannelRegistry
from buzzi.config import WebhookSettings
from buzzi.delivery_log import DeliveryLog
from buzzi.errors import Forbidden, NotFound, PayloadTooLarge, ServiceError, Unauthorized
from buzzi.ids import new_id
from buzzi.logs import log_fields
from buzzi.media import MediaFetcher
from buzzi.metrics import Metrics, drop_reason
from buzzi.models import PENDING, Agent, Company, Conversation, Message, Webhook, field_names
from buzzi.ratelimit import RateLimited, RateLimiter
from buzzi.receipts import ReceiptBook
from buzzi.store.base import Store, StoreUnavailable

log = logging.getLogger("buzzi.webhooks")

# Senders whose profile lookup failed are not asked again for an hour; the memory is bounded.
PROFILE_RETRY_SECONDS = 3600.0
PROFILE_MEMORY = 10_000
# Other ids one chat may be known by (WhatsApp: phone number and BSUID): a few, never a payload's list.
MAX_CHAT_ALIASES = 4
# Edits kept on the original message (metadata.edits), newest last.
EDITS_KEPT = 10


@dataclass
class WebhookResult:
    status: int
    body: dict[str, Any] | str
    outcome: str
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    detail: str = ""
    message_ids: list[str] = field(default_factory=list)
    drops: dict[str, int] = field(default_factory=dict)  # reason -> events not answered (bounded reasons)


def _json(status: int, outcome: str, body: dict[str, Any], detail: str = "", **kw: Any) -> WebhookResult:
    return WebhookResult(status, body, outcome, detail=detail or str(body.get("error", "")), **kw)


class Refused(Exception):
    """A check said no: the answer the sender gets, with a note for the delivery log."""

    def __init__(self, error: ServiceError, detail: str = "") -> None:
        super().__init__(error.message)
        self.result = _json(error.status, "rejected", error.body(), detail=detail, headers=error.headers)


INVALID = Refused(NotFound("Invalid webhook")).result


def ip_allowed(ip: str, allowlist: list[str]) -> bool:
    if not allowlist:
        return True
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    for cidr in allowlist:
        try:
            if addr in ipaddress.ip_network(cidr, strict=False):
                return True
        except ValueError:
            continue
    return False


def _addressed(webhook: Webhook, company_id: str, agent_id: str, channel: str) -> bool:
    """The URL names this webhook exactly, and it is switched on."""
    return (webhook.status == "active" and webhook.channel == channel
            and webhook.company_id == company_id and webhook.agent_id == agent_id)


def _handshake(adapter: ChannelAdapter, webhook: Webhook, request: WebhookRequest) -> WebhookResult:
    handshake = adapter.handshake(webhook, request)
    if handshake is None:
        raise Refused(ServiceError("Not supported", status=405))
    outcome = "verified" if handshake.status == 200 else "rejected"
    return WebhookResult(handshake.status, handshake.body, outcome, handshake.content_type, detail="handshake")


def _parse(adapter: ChannelAdapter, webhook: Webhook, request: WebhookRequest) -> ParseResult:
    try:
        return adapter.parse(webhook, request)
    except PayloadError as exc:
        raise Refused(ServiceError(str(exc) or "Malformed payload")) from None


def _drops(parsed: ParseResult) -> dict[str, int]:
    """The adapter's drops by bounded reason (metrics.drop_reason); events it counted as ignored
    without a reason are "other"."""
    drops: dict[str, int] = {}
    for reason, count in parsed.drops.items():
        _count(drops, drop_reason(reason), count)
    _count(drops, "other", parsed.ignored - sum(parsed.drops.values()))
    return drops


def _count(drops: dict[str, int], reason: str, count: int = 1) -> None:
    if count > 0:
        drops[reason] = drops.get(reason, 0) + count


def _noted(result: WebhookResult, notes: list[str], drops: dict[str, int]) -> WebhookResult:
    """The result with what else the delivery brought in its delivery-log detail, e.g.
    "receipts: 2 (2 applied); dropped: reaction=1, receipt=2"."""
    parts = [part for part in (result.detail, *notes) if part]
    if drops:
        parts.append("dropped: " + ", ".join(f"{reason}={count}" for reason, count in sorted(drops.items())))
    result.detail = "; ".join(parts)
    result.drops = drops
    return result


def _acknowledges(adapter: ChannelAdapter) -> bool:
    """Whether the adapter does anything on acknowledge (Telegram does): for the others a task per
    message would be created, scheduled and collected only to run the base class's no-op."""
    return type(adapter).acknowledge is not ChannelAdapter.acknowledge


def _chat_key(webhook: Webhook, chat_id: str) -> str:
    return f"{webhook.id}:{chat_id}"


def _dedupe_key(webhook: Webhook, message_id: str) -> str:
    return f"{webhook.id}:{message_id}"


def _alias_keys(webhook: Webhook, inbound: InboundMessage) -> list[str]:
    """The chat keys of the other ids the adapter says this chat is known by (a few at most)."""
    others = [alias for alias in inbound.chat_aliases if isinstance(alias, str) and alias and alias != inbound.chat_id]
    return [_chat_key(webhook, alias) for alias in dict.fromkeys(others[:MAX_CHAT_ALIASES])]


def _edit(inbound: InboundMessage) -> dict[str, Any]:
    return {"id": inbound.message_id, "text": inbound.text,
            "at": inbound.timestamp if inbound.timestamp is not None else clock.now()}


def _valid_fields(record: Any) -> None:
    """Replace lone surrogates in every string, list and dict field of a dataclass instance."""
    for name in field_names(type(record)):
        value = getattr(record, name)
        if isinstance(value, str | dict | list):
            setattr(record, name, valid_unicode(value))


def _admitted(inbound: InboundMessage, max_attachments: int) -> InboundMessage:
    """A normalised message as it may be stored, whichever channel sent it: at most
    `max_attachments` attachments (the rest dropped and counted), and no lone surrogate in any text
    (text, names, ids, attachments, routing meta). "\\ud800" is valid JSON but not Unicode: stored
    as is, every later encode of it fails (the dashboard's JSON, UTF-8 pages, BSON)."""
    if len(inbound.attachments) > max_attachments:
        inbound.attachments_dropped = len(inbound.attachments) - max_attachments
        del inbound.attachments[max_attachments:]
    if _all_valid(inbound):
        return inbound
    _valid_fields(inbound)  # its attachments list holds dataclasses, left alone by valid_unicode
    for attachment in inbound.attachments:
        _valid_fields(attachment)
    return inbound


def _all_valid(inbound: InboundMessage) -> bool:
    """Whether no string in the message (attachments and meta included) holds a lone surrogate or a
    NUL: one orjson call in C proves it for nearly every message (orjson refuses lone surrogates
    and writes NUL as an escape). Anything orjson refuses takes the field-by-field path."""
    try:
        return b"\\u0000" not in orjson.dumps(inbound)
    except TypeError:  # orjson.JSONEncodeError: a lone surrogate, or a value orjson does not know
        return False


def _inbound_records(webhook: Webhook, inbound: InboundMessage) -> tuple[Conversation, Message]:
    """The conversation an inbound message belongs to (as it would be created) and the message."""
    customer = {"id": inbound.sender_id, **({"name": inbound.sender_name} if inbound.sender_name else {})}
    conversation = Conversation(
        id=new_id("conversation"), company_id=webhook.company_id, agent_id=webhook.agent_id,
        channel=webhook.channel, webhook_id=webhook.id, external_chat_id=inbound.chat_id,
        chat_key=_chat_key(webhook, inbound.chat_id), customer=customer, meta=dict(inbound.meta),
    )
    message = Message(
        id=new_id("message"), conversation_id=conversation.id, company_id=webhook.company_id,
        agent_id=webhook.agent_id, role="user", content=inbound.text, channel=webhook.channel,
        webhook_id=webhook.id, attachments=[a.to_dict() for a in inbound.attachments],
        channel_message_id=inbound.message_id, dedupe_key=_dedupe_key(webhook, inbound.message_id),
        state=PENDING, created_at=clock.now(),
        metadata={"kind": inbound.kind, "sender": customer, "channel": dict(inbound.meta),
                  **({"replyToId": inbound.reply_to_id} if inbound.reply_to_id else {}),
                  **({"threadId": inbound.thread_id} if inbound.thread_id else {}),
                  **({"editOf": inbound.edit_of} if inbound.edit_of else {}),
                  **({"attachmentsDropped": inbound.attachments_dropped} if inbound.attachments_dropped else {})},
    )
    return conversation, message


class WebhookIntake:
    def __init__(self, store: Store, broker: WakeUps, channels: ChannelRegistry, limiter: RateLimiter,
                 settings: WebhookSettings, metrics: Metrics, media: MediaFetcher, delivery_log: DeliveryLog,
                 receipts: ReceiptBook) -> None:
        self.store = store
        self.broker = broker
        self.channels = channels
        self.limiter = limiter
        self.settings = settings
        self.metrics = metrics
        self.media = media
        self.delivery_log = delivery_log
        self.receipts = receipts
        self._background: set[asyncio.Task[None]] = set()
        self._profiles_tried: dict[str, float] = {}  # "webhook:sender" -> when its profile was asked

    async def handle(self, company_id: str, agent_id: str, channel: str, webhook_id: str,
                     request: WebhookRequest) -> WebhookResult:
        started = time.perf_counter()
        webhook: Webhook | None = None
        try:
            webhook, agent, company = await self._resolve(company_id, agent_id, channel, webhook_id)
            result = (INVALID if webhook is None or agent is None or company is None
                      else await self._receive(webhook, agent, company, request))
        except Refused as refused:
            result = refused.result
        except (StoreUnavailable, BrokerUnavailable) as exc:
            log_fields(log, logging.WARNING, "webhook refused: dependency unavailable", error=str(exc))
            result = _json(503, "error", {"error": "Unavailable"}, detail=str(exc))
        latency = (time.perf_counter() - started) * 1000
        channel_label = channel if channel in CHANNELS else "unknown"
        self.metrics.labelled(self.metrics.webhooks, channel_label, result.outcome).inc()
        self.metrics.count_drops(channel_label, result.drops)
        if webhook is not None:
            self.delivery_log.record(webhook, request, outcome=result.outcome, status=result.status,
                                     detail=result.detail, message_ids=result.message_ids, latency_ms=latency)
        return result

    async def _resolve(self, company_id: str, agent_id: str, channel: str, webhook_id: str
                       ) -> tuple[Webhook | None, Agent | None, Company | None]:
        """The webhook the URL names, its agent and its company. No webhook when it is unknown,
        disabled or not the one the URL describes (nothing is logged then); no agent and company
        when either is gone or off (logged on the webhook)."""
        if channel not in CHANNELS:
            return None, None, None
        webhook, agent, company = await self.store.get_many(
            (Webhook, webhook_id), (Agent, agent_id), (Company, company_id))
        if not isinstance(webhook, Webhook) or not _addressed(webhook, company_id, agent_id, channel):
            return None, None, None
        if not isinstance(agent, Agent) or agent.status != "active" or not isinstance(company, Company):
            return webhook, None, None
        return webhook, agent, company

    async def _receive(self, webhook: Webhook, agent: Agent, company: Company, request: WebhookRequest
                       ) -> WebhookResult:
        """The checks of docs/contract.md §2 after the webhook is known, in its order; a failed one raises Refused."""
        self._gate(webhook, request)
        adapter = self.channels.adapter(webhook.channel)
        if request.method == "GET":
            return _handshake(adapter, webhook, request)
        await self._verify(adapter, webhook, request)
        await self._limit(company, webhook)
        parsed = _parse(adapter, webhook, request)
        if parsed.response is not None:
            return _json(200, "verified", parsed.response, detail="challenge")
        drops = _drops(parsed)
        # Receipts and moves first: they are bookkeeping of what already happened, whatever the
        # subscription, and a store outage while applying them is a 503 so the platform redelivers.
        notes = await self._bookkeeping(webhook, parsed) if parsed.receipts or parsed.moves else []
        if not company.subscription_active():
            _count(drops, "subscription_inactive", len(parsed.messages))
            result = _json(200, "ignored", {"status": "ignored"}, detail="subscription not active")
        elif not parsed.messages:
            result = _json(200, "ok", {"status": "ok"})
        else:
            result = await self._store_all(adapter, webhook, agent, parsed.messages, drops)
        return _noted(result, notes, drops)

    async def _bookkeeping(self, webhook: Webhook, parsed: ParseResult) -> list[str]:
        """Apply the delivery's receipts and chat moves; notes for the delivery log."""
        notes = []
        if parsed.receipts:
            changed = await self.receipts.apply(webhook, parsed.receipts)
            notes.append(f"receipts: {len(parsed.receipts)} ({changed} applied)")
        for move in parsed.moves:
            notes.append(await self._move(webhook, move))
        return notes

    async def _move(self, webhook: Webhook, move: ChatMove) -> str:
        """Re-key the chat's conversation to its new id (docs/channels.md: Telegram migrate_to_chat_id)."""
        old, new = move.old_chat_id, move.new_chat_id
        kept = await self.store.move_chat(_chat_key(webhook, old), _chat_key(webhook, new),
                                          old_chat_id=old, new_chat_id=new)
        log_fields(log, logging.INFO, "chat moved", channel=webhook.channel, webhook=webhook.id,
                   conversation=kept)
        return f"chat moved: {old} -> {new}" + ("" if kept else " (no conversation yet)")

    def _gate(self, webhook: Webhook, request: WebhookRequest) -> None:
        if not ip_allowed(request.remote_ip, webhook.ip_allowlist):
            raise Refused(Forbidden(), f"ip {request.remote_ip}")
        if len(request.body) > self.settings.max_body_bytes:
            raise Refused(PayloadTooLarge())

    @staticmethod
    async def _verify(adapter: ChannelAdapter, webhook: Webhook, request: WebhookRequest) -> None:
        try:
            await adapter.verify(webhook, request)
        except VerificationError as exc:
            raise Refused(Unauthorized("Invalid signature"), str(exc)) from None

    async def _limit(self, company: Company, webhook: Webhook) -> None:
        try:
            await self.limiter.check_webhook(company.id, webhook.id)
        except RateLimited as exc:
            raise Refused(exc, f"limit {exc.scope}") from None

    async def _store_all(self, adapter: ChannelAdapter, webhook: Webhook, agent: Agent,
                         messages: list[InboundMessage], drops: dict[str, int]) -> WebhookResult:
        new_ids, edits = [], 0
        # Edits are not answered again unless the agent asks for it (docs/contract.md, agents).
        answer_edits = agent.settings.get("answerEdits") is True
        for inbound in messages:
            inbound = _admitted(inbound, self.settings.max_attachments)
            if inbound.attachments_dropped:
                log_fields(log, logging.INFO, "attachments dropped", channel=webhook.channel,
                           webhook=webhook.id, kept=len(inbound.attachments), dropped=inbound.attachments_dropped)
            if inbound.edit_of and not answer_edits:
                recorded = await self.store.record_edit(_dedupe_key(webhook, inbound.edit_of), _edit(inbound),
                                                        keep=EDITS_KEPT)
                if recorded is not None:  # an edit of an unknown message is answered as a new one
                    edits += int(recorded)  # False: this edit was recorded before (a redelivery)
                    continue
            conversation, message = _inbound_records(webhook, inbound)
            if await self.store.ingest_message(conversation, message, _alias_keys(webhook, inbound)) is not None:
                new_ids.append(message.id)
                self._follow_up(adapter, webhook, inbound, message)
        _count(drops, "edit_recorded", edits)
        if new_ids:
            await wake_inboxes(self.broker)
            return _json(200, "ok", {"status": "ok"}, message_ids=new_ids)
        if edits:
            return _json(200, "ok", {"status": "ok"})
        return _json(200, "duplicate", {"status": "duplicate"})

    def _follow_up(self, adapter: ChannelAdapter, webhook: Webhook, inbound: InboundMessage, message: Message
                   ) -> None:
        """What a new message sets off in the background: the 200 never waits on any of it."""
        if _acknowledges(adapter):
            self._spawn(self._acknowledge(adapter, webhook, inbound))
        if adapter.looks_up_profiles and not inbound.sender_name and inbound.sender_id:
            self._spawn(self._learn_name(adapter, webhook, message.conversation_id, inbound.sender_id))
        if self.media.wanted(message):
            self._spawn(self.media.fetch(webhook, message))

    async def _acknowledge(self, adapter: ChannelAdapter, webhook: Webhook, inbound: InboundMessage) -> None:
        try:
            await adapter.acknowledge(webhook, inbound)
        except Exception as exc:  # noqa: BLE001 - a receipt never fails the webhook
            log.debug("acknowledge failed on %s: %s", webhook.channel, exc.__class__.__name__)

    async def _learn_name(self, adapter: ChannelAdapter, webhook: Webhook, conversation_id: str,
                          sender_id: str) -> None:
        """Put the customer's name on the conversation (dashboard, agent context) where the webhook
        has none; once per conversation, and at most once an hour per sender when the API fails."""
        key = f"{webhook.id}:{sender_id}"
        now = time.monotonic()
        if now - self._profiles_tried.get(key, -PROFILE_RETRY_SECONDS) < PROFILE_RETRY_SECONDS:
            return
        if len(self._profiles_tried) >= PROFILE_MEMORY:
            self._profiles_tried = {k: t for k, t in self._profiles_tried.items() if now - t < PROFILE_RETRY_SECONDS}
            if len(self._profiles_tried) >= PROFILE_MEMORY:
                return  # a flood of new senders whose lookups fail: names can wait
        conversation = await self.store.get(Conversation, conversation_id)
        if conversation is None or conversation.customer.get("name"):
            return
        self._profiles_tried[key] = now
        try:
            profile = await adapter.sender_profile(webhook, sender_id)
        except Exception as exc:  # noqa: BLE001 - a name is a nicety: the message is answered anyway
            log.info("%s profile lookup failed: %s", webhook.channel, exc.__class__.__name__,
                     extra={"fields": {"webhook_id": webhook.id, "error": str(exc)[:200]}})
            return
        if profile.get("name"):
            profile = valid_unicode(dict(profile))  # a platform API's answer is channel input too
            await self.store.update(Conversation, conversation_id, {"customer": {**conversation.customer, **profile}})

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def wait_idle(self) -> None:
        """Wait for background bookkeeping (receipts, names, media, delivery log); shutdown and tests."""
        while pending := [task for task in self._background if not task.done()]:
            await asyncio.wait(pending)
        await self.delivery_log.wait_idle()
