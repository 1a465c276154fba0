"""Platform receipts (WhatsApp statuses[], Messenger/Instagram delivery and read events) applied to
the replies they name; the intake (buzzi/webhooks.py) calls `apply` for every delivery that
carries some.

- By id: every platform id we sent is stored as a SentId "{webhook id}:{platform id}" (by
  buzzi/delivery.py), so a batch of receipts finds its replies in one get_many.
- By watermark (Messenger/Instagram `delivery.watermark`, `read.watermark`: "all messages sent
  before or at this timestamp", developers.facebook.com/documentation/business-messaging/
  messenger-platform/webhooks/webhook-events/message-deliveries and .../message-reads): the
  chat's conversation by its chat key, and its replies sent up to the watermark.

Each platform id's status only moves forward (buzzi/delivery_state.py): receipts arrive out of
order (a "delivered" after "read", WhatsApp skips "delivered" when both coincide) and are
redelivered. A late failure the platform calls retryable (throughput, pair rate limit) sends the
failed part again, durably through the inbox, at most channels.send_max_attempts times; any
other failure is shown with the platform's code, title and details.
"""

from __future__ import annotations

import logging
from typing import Any

from buzzi import clock
from buzzi.channels.base import RECEIPT_STATUSES, Receipt
from buzzi.delivery import Plan, ReplyDelivery
from buzzi.delivery_state import FAILED, SENT, error_body, forward, part_ids, scheduled, summarize
from buzzi.logs import log_fields
from buzzi.metrics import Metrics
from buzzi.models import ChatAlias, Conversation, Message, SentId, Webhook
from buzzi.store.base import Store

log = logging.getLogger("buzzi.receipts")

# Bounds on the work one webhook delivery can ask for (Meta batches up to 1000 updates).
MAX_IDS = 1000
LOOKUP_BATCH = 100
WATERMARK_REPLIES = 50  # the newest replies of a chat a watermark is checked against
REPLY_ROLES = ("assistant", "human", "system")

Hit = tuple[str, Receipt]  # (platform id, the receipt naming it)


class ReceiptBook:
    def __init__(self, store: Store, delivery: ReplyDelivery, metrics: Metrics) -> None:
        self.store = store
        self.delivery = delivery  # every change goes through delivery.change, which publishes it
        self.metrics = metrics

    async def apply(self, webhook: Webhook, receipts: list[Receipt]) -> int:
        """Move each named reply's delivery status forward; returns how many replies changed."""
        known = [r for r in receipts if r.status in RECEIPT_STATUSES]
        for receipt in receipts:
            status = receipt.status if receipt.status in RECEIPT_STATUSES else "other"
            self.metrics.delivery_receipts.labels(webhook.channel, status).inc()
        hits: dict[str, list[Hit]] = {}
        await self._by_id(webhook, known, hits)
        await self._by_watermark(webhook, known, hits)
        changed = 0
        for message_id, found in hits.items():
            if await self._apply_to(message_id, found):
                changed += 1
        return changed

    async def _by_id(self, webhook: Webhook, receipts: list[Receipt], hits: dict[str, list[Hit]]) -> None:
        named = [(pid, r) for r in receipts for pid in r.message_ids if isinstance(pid, str) and pid][:MAX_IDS]
        for start in range(0, len(named), LOOKUP_BATCH):
            batch = named[start:start + LOOKUP_BATCH]
            found = await self.store.get_many(*[(SentId, f"{webhook.id}:{pid}") for pid, _ in batch])
            for (pid, receipt), sent in zip(batch, found, strict=True):
                if isinstance(sent, SentId):
                    hits.setdefault(sent.message_id, []).append((pid, receipt))

    async def _by_watermark(self, webhook: Webhook, receipts: list[Receipt], hits: dict[str, list[Hit]]) -> None:
        replies_of: dict[str, list[Message]] = {}
        for receipt in receipts:
            if receipt.chat_id is None or receipt.watermark is None or receipt.status == FAILED:
                continue
            if receipt.chat_id not in replies_of:
                replies_of[receipt.chat_id] = await self._chat_replies(webhook, receipt.chat_id)
            for reply in replies_of[receipt.chat_id]:
                sent_at = reply.delivery.get("sentAt") or reply.created_at
                if sent_at <= receipt.watermark:
                    hits.setdefault(reply.id, []).extend((pid, receipt) for pid in reply.delivery.get("ids") or [])

    async def _chat_replies(self, webhook: Webhook, chat_id: str) -> list[Message]:
        """The newest replies sent to this chat (by its chat key, else by an alias of it)."""
        conversation = await self.store.find_one(Conversation, chat_key=f"{webhook.id}:{chat_id}")
        conversation_id = conversation.id if conversation else None
        if conversation_id is None:
            alias = await self.store.get(ChatAlias, f"{webhook.id}:{chat_id}")
            conversation_id = alias.conversation_id if alias else None
        if conversation_id is None:
            return []
        recent = await self.store.find(Message, conversation_id=conversation_id, order_by="created_at",
                                       descending=True, limit=WATERMARK_REPLIES)
        return [m for m in recent if m.role in REPLY_ROLES and m.delivery.get("ids")]

    async def _apply_to(self, message_id: str, found: list[Hit]) -> bool:
        """Apply one reply's receipts in one conditional write (planned again on a race). A late
        retryable failure hands the reply to the inbox in the same write."""
        settings = self.delivery.settings
        rescheduled: list[int] = []

        def plan(message: Message) -> Plan:
            delivery, parts, error, wait = _receive(message.delivery, found, settings.send_max_attempts)
            rescheduled[:] = parts
            if parts:
                resends = int(delivery.get("resends") or 0)
                backoff = min(settings.send_backoff_max_seconds, settings.send_backoff_base_seconds * 2 ** resends)
                return scheduled(delivery, clock.now() + max(wait, backoff), error or {}, parts=parts)
            return None if delivery == message.delivery else (delivery, {})

        updated = await self.delivery.change(message_id, plan)
        if updated is not None and rescheduled:
            log_fields(log, logging.WARNING, "late send failure: part sent again later", message=message_id,
                       parts=len(rescheduled), not_before=updated.delivery.get("notBefore"))
        return updated is not None


def _receive(delivery: dict[str, Any], found: list[Hit], max_resends: int
             ) -> tuple[dict[str, Any], list[int], dict[str, Any] | None, float]:
    """The delivery after these receipts: (delivery, part indexes to send again, the error of a
    retryable late failure, its retry_after). Pure, so a race simply plans again."""
    delivery = dict(delivery)
    receipts = dict(delivery.get("receipts") or {})
    owner = {pid: index for index, ids in enumerate(part_ids(delivery)) for pid in ids}
    can_resend = int(delivery.get("resends") or 0) < max_resends
    retry: set[int] = set()
    retry_error: dict[str, Any] | None = None
    wait = 0.0
    for pid, receipt in found:
        current = receipts.get(pid, SENT)
        if not forward(current, receipt.status):
            continue
        if receipt.status == FAILED:
            failure = _error(receipt)
            if receipt.retryable and can_resend and pid in owner:
                retry.add(owner[pid])
                retry_error, wait = failure, max(wait, receipt.retry_after or 0.0)
                continue
            delivery["error"] = failure
        receipts[pid] = receipt.status
    if receipts:
        delivery["receipts"] = receipts
    delivery["status"] = summarize(delivery)
    return delivery, sorted(retry), retry_error, wait


def _error(receipt: Receipt) -> dict[str, Any]:
    error = receipt.error or {}
    code = error.get("code") if error.get("code") not in (None, "") else "failed"
    title = error.get("title") or "The platform reported that the message could not be delivered"
    return error_body(code, title, error.get("details"))
