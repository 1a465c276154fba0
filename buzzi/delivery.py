"""Delivering a stored reply on its conversation's channel: the messaging window first, then each
part sent with retries, and the outcome recorded on the message after every part so admins see
it live and a resend continues where the last attempt stopped.

A send the platform says must wait longer than `channels.send_inline_wait_seconds` (Retry-After
is a "not before", docs/channels.md §8a) is not slept on: the reply is handed to the inbox
(state "processing", no lease owner, lease_until = notBefore), so a restart does not lose it, and
the processor calls `resend` once that time has passed (buzzi/processing.py `_resend`, which also
finishes the claim with state "stored").

Every change of a reply's delivery goes through `change`: a conditional write on the version read
(the message's updated_at), retried on a race, so our sends and the platform's receipts
(buzzi/receipts.py) never overwrite each other, and is published on the conversation's stream as
a `notification` for the dashboard."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from buzzi import clock, windows
from buzzi.broker.base import BrokerUnavailable, StreamLog
from buzzi.channels.base import ChannelAdapter, ReplyTarget, SendError
from buzzi.channels.outbound import SendLater, with_retry
from buzzi.channels.registry import ChannelRegistry
from buzzi.chat import conversation_stream
from buzzi.config import ChannelSettings
from buzzi.delivery_state import FAILED, PENDING, error_body, part_ids, scheduled, send_error, summarize, unsent
from buzzi.logs import log_fields
from buzzi.metrics import Metrics
from buzzi.models import PROCESSING, WEB_CHANNEL, Conversation, Message, SentId, Webhook
from buzzi.store.base import DuplicateKey, Store

log = logging.getLogger("buzzi.delivery")

# Conditional writes tried before a change is given up (each retry re-reads the message).
RACE_RETRIES = 8
# A plan for a change: the new delivery and other message fields, or None for "nothing to do".
Plan = tuple[dict[str, Any], dict[str, Any]] | None


class ReplyDelivery:
    def __init__(self, store: Store, channels: ChannelRegistry, settings: ChannelSettings, metrics: Metrics,
                 broker: StreamLog) -> None:
        self.store = store
        self.channels = channels
        self.settings = settings
        self.metrics = metrics
        self.broker = broker

    async def deliver(self, conversation: Conversation, reply: Message, in_reply_to: Message | None) -> bool:
        """Send `reply` on the conversation's channel; True when every part was accepted. Parts an
        earlier attempt sent are not sent again, and a reply scheduled for later is left to the
        inbox (never sent before its notBefore)."""
        if conversation.channel == WEB_CHANNEL:
            return True  # the widget gets it over SSE
        return await self._send(conversation, reply, in_reply_to, resending=False)

    async def resend(self, conversation: Conversation, reply: Message) -> bool:
        """A scheduled reply whose time has come (claimed by the inbox): send the parts not sent
        yet, by the same rules as `deliver`. The caller finishes the claim."""
        in_reply_to = await self.store.get(Message, reply.reply_to) if reply.reply_to else None
        return await self._send(conversation, reply, in_reply_to, resending=True)

    # ------------------------------------------------------------------ sending

    async def _send(self, conversation: Conversation, reply: Message, in_reply_to: Message | None, *,
                    resending: bool) -> bool:
        # A resend re-reads (a receipt may have changed it since the claim); deliver() gets a
        # reply that was just stored or just read.
        current = (await self.store.get(Message, reply.id) or reply) if resending else reply
        not_before = current.delivery.get("notBefore")
        if isinstance(not_before, int | float) and not_before > clock.now():
            if resending:  # claimed early (a receipt put it off again meanwhile): keep it scheduled
                await self._hand_back(reply.id, not_before)
            return False
        if current.delivery.get("status") != FAILED and current.delivery.get("parts") and not unsent(current.delivery):
            return True  # every part went out on an earlier attempt
        webhook = await self.store.get(Webhook, conversation.webhook_id or "")
        if webhook is None or webhook.status != "active":
            await self._fail(reply, error_body("webhook_unavailable", "The channel's webhook is missing or disabled"))
            return False
        adapter = self.channels.adapter(conversation.channel)
        plan = windows.plan(adapter, webhook, conversation, reply.role, clock.now())
        if plan.refusal:
            self.metrics.channel_sends.labels(conversation.channel, "refused").inc()
            await self._fail(reply, error_body(windows.WINDOW_CLOSED, plan.refusal))
            return False
        texts = [adapter.format(part) for part in adapter.split(reply.content)]
        if plan.mode == "template":
            # Outside WhatsApp's 24 hours only the re-engagement template may go: one template
            # stands for every part not sent yet (the text itself cannot be sent).
            texts = texts[: int(current.delivery.get("sentParts") or 0) + 1]
        started = await self.change(reply.id, lambda m: _start(m, len(texts), plan.mode, plan.template))
        todo = unsent(started.delivery) if started else []
        if not todo:  # nothing left to send; a part the platform failed for good stays failed
            return started is not None and started.delivery.get("status") != FAILED
        target = ReplyTarget(conversation, in_reply_to, reply_id=reply.id, mode=plan.mode, template=plan.template)
        for index in todo:
            if not await self._send_part(adapter, webhook, conversation, reply, target, index, texts[index]):
                return False
        self.metrics.channel_sends.labels(conversation.channel, "sent").inc()
        return True

    async def _send_part(self, adapter: ChannelAdapter, webhook: Webhook, conversation: Conversation,
                         reply: Message, target: ReplyTarget, index: int, text: str) -> bool:
        attempts = 0

        async def send_once() -> list[str]:
            nonlocal attempts
            attempts += 1
            await self.channels.pacing.pace(adapter, webhook, target)
            return await adapter.send(webhook, target, text)

        try:
            ids = await with_retry(
                send_once, max_attempts=self.settings.send_max_attempts,
                base=self.settings.send_backoff_base_seconds, cap=self.settings.send_backoff_max_seconds,
                inline_wait=self.settings.send_inline_wait_seconds,
                on_retry=lambda n, err, delay: log_fields(
                    log, logging.WARNING, "send retry", channel=conversation.channel, attempt=n,
                    error=str(err), delay=round(delay, 2)),
            )
        except SendLater as later:
            await self._later(conversation, reply, later)
            return False
        except SendError as exc:
            await self._failed(webhook, conversation, reply, exc, attempts)
            return False
        await self._remember(webhook, conversation, reply, ids)
        await self.change(reply.id, lambda m: _part_sent(m, index, ids, attempts))
        return True

    async def _remember(self, webhook: Webhook, conversation: Conversation, reply: Message, ids: list[str]) -> None:
        """One SentId per platform id, before the delivery names it, so a receipt that arrives at
        once finds the reply in one primary-key lookup."""
        for platform_id in ids:
            try:
                await self.store.add(SentId(id=f"{webhook.id}:{platform_id}", message_id=reply.id,
                                            conversation_id=conversation.id, company_id=conversation.company_id))
            except DuplicateKey:
                pass  # an earlier attempt stored it

    async def _later(self, conversation: Conversation, reply: Message, later: SendLater) -> None:
        """The platform asked us to wait longer than a worker should: schedule the rest durably,
        or give up once the reply was put off channels.send_max_attempts times."""
        error = send_error(later.error)
        current = await self.store.get(Message, reply.id) or reply
        if int(current.delivery.get("resends") or 0) >= self.settings.send_max_attempts:
            self.metrics.channel_sends.labels(conversation.channel, "failed").inc()
            await self._fail(reply, error, attempts=later.attempts)
            return
        self.metrics.channel_sends.labels(conversation.channel, "scheduled").inc()
        log_fields(log, logging.WARNING, "send rescheduled", channel=conversation.channel, conversation=conversation.id,
                   delay=round(later.delay, 2), error=str(later.error))
        await self.schedule(reply.id, later.delay, error, attempts=later.attempts)

    async def _failed(self, webhook: Webhook, conversation: Conversation, reply: Message, exc: SendError,
                      attempts: int) -> None:
        self.metrics.channel_sends.labels(conversation.channel, "failed").inc()
        log_fields(log, logging.ERROR, "send failed", channel=conversation.channel, conversation=conversation.id,
                   error=str(exc), retryable=exc.retryable)
        await self._fail(reply, send_error(exc), attempts=attempts)
        if exc.code == "gone":
            await self._disable(webhook, str(exc))

    async def _disable(self, webhook: Webhook, reason: str) -> None:
        """A receiver that answered 410 Gone asked to be left alone (Standard Webhooks, docs/channels.md
        §8): the webhook is disabled, with the reason the dashboard shows, until an admin enables it."""
        state = {**webhook.state, "disabledReason": reason, "disabledAt": clock.now()}
        await self.store.update(Webhook, webhook.id, {"status": "disabled", "state": state})
        log_fields(log, logging.WARNING, "webhook disabled", webhook=webhook.id, channel=webhook.channel, reason=reason)

    # ------------------------------------------------------------------ recording

    async def schedule(self, reply_id: str, delay: float, error: dict[str, Any], *, attempts: int = 0) -> None:
        """Make the reply durable for a send not before `delay` seconds from now (see
        delivery_state.scheduled): a restart does not lose it."""
        not_before = clock.now() + delay
        await self.change(reply_id, lambda m: scheduled(m.delivery, not_before, error, attempts=attempts))

    async def _hand_back(self, message_id: str, not_before: float) -> None:
        await self.store.update(Message, message_id, {"state": PROCESSING, "lease_owner": None,
                                                      "lease_until": not_before})

    async def _fail(self, reply: Message, error: dict[str, Any], *, attempts: int = 0) -> None:
        def plan(message: Message) -> Plan:
            delivery = dict(message.delivery)
            delivery.pop("notBefore", None)
            delivery.update(status=FAILED, error=error, attempts=int(delivery.get("attempts") or 0) + attempts)
            return delivery, {}

        await self.change(reply.id, plan)

    async def change(self, message_id: str, plan: Callable[[Message], Plan]) -> Message | None:
        """Apply `plan` to the freshest copy of the message, written only if nobody changed it
        meanwhile (else re-read and plan again), then publish the new delivery. Returns the
        updated message, or None when there was nothing to change."""
        for _ in range(RACE_RETRIES):
            current = await self.store.get(Message, message_id)
            if current is None:
                return None
            planned = plan(current)
            if planned is None:
                return None
            delivery, fields = planned
            delivery["updatedAt"] = clock.now()
            updated = await self.store.update(Message, current.id, {"delivery": delivery, **fields},
                                              expect={"updated_at": current.updated_at})
            if updated is not None:
                await self.publish(updated)
                return updated
        log_fields(log, logging.WARNING, "delivery change lost every race", message=message_id)
        return None

    async def publish(self, message: Message) -> None:
        """Tell the conversation's watchers (the dashboard) that this reply's delivery changed.
        Cosmetic: the store has the truth, so a broker outage only costs the live update."""
        data = {"type": "delivery", "data": {"messageId": message.id, "delivery": message.delivery}}
        try:
            await self.broker.publish(conversation_stream(message.conversation_id), "notification", data)
        except BrokerUnavailable as exc:
            log.debug("delivery notification not published: %s", exc)

    # ------------------------------------------------------------------ typing

    async def typing(self, conversation: Conversation, in_reply_to: Message | None, *, first: bool = True) -> None:
        """`first` is False for the refreshes every `adapter.typing_interval` (no second read receipt)."""
        if conversation.channel == WEB_CHANNEL:
            return
        webhook = await self.store.get(Webhook, conversation.webhook_id or "")
        if webhook is None:
            return
        target = ReplyTarget(conversation, in_reply_to)
        try:
            adapter = self.channels.adapter(conversation.channel)
            if adapter.paces_typing:
                await self.channels.pacing.pace(adapter, webhook, target)
            await adapter.typing(webhook, target, first=first)
        except Exception as exc:  # noqa: BLE001 - a typing indicator never fails a reply
            log.debug("typing indicator failed on %s: %s", conversation.channel, exc.__class__.__name__)


# ---------------------------------------------------------------------- delivery changes

def _start(message: Message, parts: int, mode: str, template: dict[str, Any] | None) -> Plan:
    """A send attempt begins: pending, with the parts known, continuing after the parts sent. A
    failure of an earlier attempt stays shown until this one succeeds."""
    delivery = dict(message.delivery)
    sent = min(int(delivery.get("sentParts") or 0), parts)
    delivery.update(parts=parts, sentParts=sent, ids=list(delivery.get("ids") or []),
                    partIds=part_ids({**delivery, "parts": parts}),
                    attempts=int(delivery.get("attempts") or 0))
    delivery.pop("notBefore", None)
    if mode != "standard":
        delivery["via"] = mode
    if template:
        delivery["template"] = dict(template)  # which one went, for the dashboard
    delivery["status"] = summarize({**delivery, "status": PENDING})  # sent at once when there is nothing to send
    return delivery, {}


def _part_sent(message: Message, index: int, ids: list[str], attempts: int) -> Plan:
    delivery = dict(message.delivery)
    parts = part_ids(delivery)
    if index >= len(parts):
        return None
    parts[index] = list(ids)
    delivery["partIds"] = parts
    delivery["ids"] = [*(i for i in delivery.get("ids") or [] if i not in ids), *ids]
    delivery["resend"] = [i for i in delivery.get("resend") or [] if i != index]
    if not delivery["resend"]:
        delivery.pop("resend")
    delivery["sentParts"] = max(int(delivery.get("sentParts") or 0), index + 1)
    delivery["attempts"] = int(delivery.get("attempts") or 0) + attempts
    if not unsent(delivery):
        delivery.pop("error", None)  # a retried send that got through is no longer failing
        delivery["sentAt"] = clock.now()
    delivery["status"] = PENDING  # summarize() reads it as "no failure recorded"
    delivery["status"] = summarize(delivery)
    return delivery, {}

