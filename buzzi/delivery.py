"""Delivering a stored reply on its conversation's channel: split, format, send with retries,
and record the outcome on the message so admins see failures."""

from __future__ import annotations

import logging

from buzzi.channels.base import ReplyTarget, SendError
from buzzi.channels.outbound import with_retry
from buzzi.channels.registry import ChannelRegistry
from buzzi.config import ChannelSettings
from buzzi.logs import log_fields
from buzzi.metrics import Metrics
from buzzi.models import WEB_CHANNEL, Conversation, Message, Webhook
from buzzi.store.base import Store

log = logging.getLogger("buzzi.delivery")


class ReplyDelivery:
    def __init__(self, store: Store, channels: ChannelRegistry, settings: ChannelSettings, metrics: Metrics) -> None:
        self.store = store
        self.channels = channels
        self.settings = settings
        self.metrics = metrics

    async def deliver(self, conversation: Conversation, reply: Message, in_reply_to: Message | None) -> bool:
        """Send `reply` on the conversation's channel; True when every part was accepted."""
        if conversation.channel == WEB_CHANNEL:
            return True  # the widget gets it over SSE
        webhook = await self.store.get(Webhook, conversation.webhook_id or "")
        if webhook is None or webhook.status != "active":
            await self._record(reply, {"status": "failed", "error": "webhook missing or disabled", "attempts": 0})
            return False
        adapter = self.channels.adapter(conversation.channel)
        target = ReplyTarget(conversation, in_reply_to, reply_id=reply.id)
        parts = adapter.split(reply.content)
        ids: list[str] = []
        attempts = 0
        try:
            for part in parts:
                text = adapter.format(part)

                async def send_once(text: str = text) -> list[str]:
                    nonlocal attempts
                    attempts += 1
                    await self.channels.pacing.pace(adapter, webhook, target)
                    return await adapter.send(webhook, target, text)

                ids.extend(await with_retry(
                    send_once, max_attempts=self.settings.send_max_attempts,
                    base=self.settings.send_backoff_base_seconds, cap=self.settings.send_backoff_max_seconds,
                    on_retry=lambda n, err, delay: log_fields(
                        log, logging.WARNING, "send retry", channel=conversation.channel, attempt=n,
                        error=str(err), delay=round(delay, 2)),
                ))
        except SendError as exc:
            self.metrics.channel_sends.labels(conversation.channel, "failed").inc()
            log_fields(log, logging.ERROR, "send failed", channel=conversation.channel,
                       conversation=conversation.id, error=str(exc), retryable=exc.retryable)
            await self._record(reply, {"status": "failed", "error": str(exc), "attempts": attempts,
                                       "ids": ids, "code": exc.code})
            return False
        self.metrics.channel_sends.labels(conversation.channel, "sent").inc()
        await self._record(reply, {"status": "sent", "attempts": attempts, "ids": ids, "parts": len(parts)})
        return True

    async def typing(self, conversation: Conversation, in_reply_to: Message | None) -> None:
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
            await adapter.typing(webhook, target)
        except Exception as exc:  # noqa: BLE001 - a typing indicator never fails a reply
            log.debug("typing indicator failed on %s: %s", conversation.channel, exc.__class__.__name__)

    async def _record(self, reply: Message, delivery: dict) -> None:
        await self.store.update(Message, reply.id, {"delivery": delivery})
