"""The inbound webhook pipeline (SPEC §2), in the contract's order of checks.

A message is acknowledged only after it is stored: the store's unique dedupe key
"{webhook id}:{channel message id}" decides new vs duplicate before anything else happens, so
channel retries and concurrent duplicates produce one stored message and one answer.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import itertools
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from buzzi import clock
from buzzi.broker.base import Broker, BrokerUnavailable, wake_inboxes
from buzzi.channels.base import (
    ChannelAdapter,
    InboundMessage,
    PayloadError,
    VerificationError,
    WebhookRequest,
)
from buzzi.channels.registry import ChannelRegistry
from buzzi.config import Settings
from buzzi.ids import new_id
from buzzi.logs import log_fields
from buzzi.media import MediaFetcher
from buzzi.metrics import Metrics
from buzzi.models import CHANNELS, PENDING, Agent, Company, Conversation, Message, Webhook, WebhookEvent
from buzzi.ratelimit import RateLimited, RateLimiter
from buzzi.store.base import Store, StoreUnavailable

log = logging.getLogger("buzzi.webhooks")

SECRET_HEADERS = ("authorization", "x-hub-signature", "x-hub-signature-256", "x-slack-signature",
                  "x-telegram-bot-api-secret-token", "webhook-signature", "cookie")
# Every string value under a key naming a credential (client_secret, appPassword, access_token,
# x-api-key...) anywhere in the body: a custom sender's payload may carry its own secrets, and the
# log is shown in the dashboard. Keys are split into words so "secretary" or "tokens" stay readable.
_JSON_STRING_FIELD = re.compile(r'("((?:[^"\\]|\\.)*)"\s*:\s*)"(?:[^"\\]|\\.)*"')
_KEY_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_SECRET_WORDS = frozenset({"token", "secret", "password", "passwd", "pwd", "apikey", "credential", "credentials"})


# Every key of every delivery-log body goes through this; real payloads use a few hundred names.
@functools.lru_cache(maxsize=4096)
def _names_a_secret(key: str) -> bool:
    words = [w.lower() for w in _KEY_WORDS.findall(key)]
    joined = {a + b for a, b in itertools.pairwise(words)}  # "api" "key" -> "apikey"
    return not _SECRET_WORDS.isdisjoint(words) or not _SECRET_WORDS.isdisjoint(joined)


def _mask(match: re.Match[str]) -> str:
    return f'{match.group(1)}"[redacted]"' if _names_a_secret(match.group(2)) else match.group(0)


BODY_EXCERPT = 4096
# Trimming the delivery log to its retention sorts the kept window: do it every retention/20 events
# per webhook (at most 5% over the retention) instead of on every request.
PRUNE_FRACTION = 20
# Delivery-log entries written per store call at most (the rest wait for the next call).
EVENT_BATCH = 200
# Senders whose profile lookup failed are not asked again for an hour; the memory is bounded.
PROFILE_RETRY_SECONDS = 3600.0
PROFILE_MEMORY = 10_000


@dataclass
class WebhookResult:
    status: int
    body: dict[str, Any] | str
    outcome: str
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    detail: str = ""
    message_ids: list[str] = field(default_factory=list)


def _json(status: int, outcome: str, body: dict[str, Any], detail: str = "", **kw: Any) -> WebhookResult:
    return WebhookResult(status, body, outcome, detail=detail or str(body.get("error", "")), **kw)


INVALID = _json(404, "rejected", {"error": "Invalid webhook"})


def redact_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: ("[redacted]" if k.lower() in SECRET_HEADERS else v[:300]) for k, v in headers.items()}


# Every secret word contains one of these: a body without any of them has nothing to mask.
# (Substring tests on the lower-cased text: several times faster than one case-insensitive regex.)
_SECRET_STEMS = ("token", "secret", "pass", "pwd", "key", "credential")


def redact_body(body: bytes) -> str:
    excerpt = body[:BODY_EXCERPT].decode("utf-8", errors="replace")
    lowered = excerpt.lower()
    if not any(stem in lowered for stem in _SECRET_STEMS):
        return excerpt  # the common case, checked in one pass
    return _JSON_STRING_FIELD.sub(_mask, excerpt)


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


class WebhookService:
    def __init__(self, store: Store, broker: Broker, channels: ChannelRegistry, limiter: RateLimiter,
                 settings: Settings, metrics: Metrics) -> None:
        self.store = store
        self.broker = broker
        self.channels = channels
        self.limiter = limiter
        self.settings = settings
        self.metrics = metrics
        self.media = MediaFetcher(store, channels, settings.channels)
        self._background: set[asyncio.Task[None]] = set()
        self._unpruned: dict[str, int] = {}  # webhook id -> events recorded since its last trim
        # The delivery log is written in batches: one store call takes every entry that came in while
        # the previous call was in flight, so under load it costs one round trip per batch, not per
        # request, and an idle gateway writes each entry at once.
        self._events: list[WebhookEvent] = []
        self._writer: asyncio.Task[None] | None = None
        self._profiles_tried: dict[str, float] = {}  # "webhook:sender" -> when its profile was asked

    async def handle(self, company_id: str, agent_id: str, channel: str, webhook_id: str,
                     request: WebhookRequest) -> WebhookResult:
        started = time.perf_counter()
        webhook: Webhook | None = None
        try:
            webhook, result = await self._handle(company_id, agent_id, channel, webhook_id, request)
        except (StoreUnavailable, BrokerUnavailable) as exc:
            log_fields(log, logging.WARNING, "webhook refused: dependency unavailable", error=str(exc))
            result = _json(503, "error", {"error": "Unavailable"}, detail=str(exc))
        latency = (time.perf_counter() - started) * 1000
        self.metrics.webhooks.labels(channel if channel in CHANNELS else "unknown", result.outcome).inc()
        if webhook is not None:
            self._record(webhook, request, result, latency)
        return result

    async def _handle(self, company_id: str, agent_id: str, channel: str, webhook_id: str,
                      request: WebhookRequest) -> tuple[Webhook | None, WebhookResult]:
        if channel not in CHANNELS:
            return None, INVALID
        webhook, agent, company = await self.store.get_many(
            (Webhook, webhook_id), (Agent, agent_id), (Company, company_id))
        if (webhook is None or webhook.status != "active" or webhook.channel != channel
                or webhook.company_id != company_id or webhook.agent_id != agent_id):
            return None, INVALID
        if agent is None or agent.status != "active" or company is None:
            return webhook, INVALID
        if not ip_allowed(request.remote_ip, webhook.ip_allowlist):
            return webhook, _json(403, "rejected", {"error": "Forbidden"}, detail=f"ip {request.remote_ip}")
        if len(request.body) > self.settings.webhooks.max_body_bytes:
            return webhook, _json(413, "rejected", {"error": "Payload too large"})

        adapter = self.channels.adapter(channel)
        if request.method == "GET":
            handshake = adapter.handshake(webhook, request)
            if handshake is None:
                return webhook, _json(405, "rejected", {"error": "Not supported"})
            outcome = "verified" if handshake.status == 200 else "rejected"
            return webhook, WebhookResult(handshake.status, handshake.body, outcome, handshake.content_type,
                                          detail="handshake")
        try:
            await adapter.verify(webhook, request)
        except VerificationError as exc:
            return webhook, _json(401, "rejected", {"error": "Invalid signature"}, detail=str(exc))
        try:
            await self.limiter.check_webhook(company.id, webhook.id)
        except RateLimited as exc:
            return webhook, _json(429, "rejected", {"error": "Rate limit exceeded", "retryAfter": exc.retry_after},
                                  headers={"Retry-After": str(exc.retry_after)}, detail=f"limit {exc.scope}")
        try:
            parsed = adapter.parse(webhook, request)
        except PayloadError as exc:
            return webhook, _json(400, "rejected", {"error": str(exc) or "Malformed payload"})
        if parsed.response is not None:
            return webhook, _json(200, "verified", parsed.response, detail="challenge")
        if not company.subscription_active():
            return webhook, _json(200, "ignored", {"status": "ignored"}, detail="subscription not active")
        if not parsed.messages:
            return webhook, _json(200, "ok", {"status": "ok"}, detail=f"{parsed.ignored} non-message events")

        new_ids = []
        for inbound in parsed.messages:
            message = await self._store_message(webhook, inbound)
            if message is not None:
                new_ids.append(message.id)
                self._spawn(self._acknowledge(adapter, webhook, inbound))
                if adapter.looks_up_profiles and not inbound.sender_name and inbound.sender_id:
                    self._spawn(self._learn_name(adapter, webhook, message.conversation_id, inbound.sender_id))
                if self.media.wanted(message):  # in the background: the 200 never waits on a download
                    self._spawn(self.media.fetch(webhook, message))
        if not new_ids:
            return webhook, _json(200, "duplicate", {"status": "duplicate"})
        await wake_inboxes(self.broker)
        return webhook, _json(200, "ok", {"status": "ok"}, message_ids=new_ids)

    async def _store_message(self, webhook: Webhook, inbound: InboundMessage) -> Message | None:
        """Store one inbound message unless its dedupe key was seen; None for a duplicate."""
        customer = {"id": inbound.sender_id, **({"name": inbound.sender_name} if inbound.sender_name else {})}
        conversation = Conversation(
            id=new_id("conversation"), company_id=webhook.company_id, agent_id=webhook.agent_id,
            channel=webhook.channel, webhook_id=webhook.id, external_chat_id=inbound.chat_id,
            chat_key=f"{webhook.id}:{inbound.chat_id}", customer=customer, meta=dict(inbound.meta),
        )
        message = Message(
            id=new_id("message"), conversation_id=conversation.id, company_id=webhook.company_id,
            agent_id=webhook.agent_id, role="user", content=inbound.text, channel=webhook.channel,
            webhook_id=webhook.id, attachments=[a.to_dict() for a in inbound.attachments],
            channel_message_id=inbound.message_id, dedupe_key=f"{webhook.id}:{inbound.message_id}",
            state=PENDING, created_at=clock.now(),
            metadata={"kind": inbound.kind, "sender": customer, "channel": dict(inbound.meta),
                      **({"replyToId": inbound.reply_to_id} if inbound.reply_to_id else {}),
                      **({"threadId": inbound.thread_id} if inbound.thread_id else {})},
        )
        return await self.store.ingest_message(conversation, message)

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
            await self.store.update(Conversation, conversation_id, {"customer": {**conversation.customer, **profile}})

    def _record(self, webhook: Webhook, request: WebhookRequest, result: WebhookResult, latency_ms: float) -> None:
        self._events.append(WebhookEvent(
            id=new_id("webhook_event"), webhook_id=webhook.id, company_id=webhook.company_id,
            channel=webhook.channel, outcome=result.outcome, status_code=result.status,
            latency_ms=round(latency_ms, 2), received_at=request.now, detail=result.detail[:500],
            headers=redact_headers(request.headers), body=redact_body(request.body),
            message_ids=result.message_ids,
        ))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_events())
            self._background.add(self._writer)
            self._writer.add_done_callback(self._background.discard)

    async def _write_events(self) -> None:
        retention = self.settings.webhooks.event_retention
        every = max(1, retention // PRUNE_FRACTION)
        while self._events:
            batch, self._events = self._events[:EVENT_BATCH], self._events[EVENT_BATCH:]
            prune = []
            for event in batch:
                if event.webhook_id is None:
                    continue
                unpruned = self._unpruned.get(event.webhook_id, 0) + 1
                if unpruned >= every:
                    prune.append(event.webhook_id)
                    unpruned = 0
                self._unpruned[event.webhook_id] = unpruned
            try:
                await self.store.add_webhook_events(batch, retention, prune=set(prune))
            except Exception as exc:  # noqa: BLE001 - the delivery log is best effort
                log.warning("could not record %d webhook events: %s", len(batch), exc)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def wait_idle(self) -> None:
        """Wait for background bookkeeping (delivery log, receipts, media); used by shutdown and tests."""
        while pending := [task for task in self._background if not task.done()]:
            await asyncio.wait(pending)
