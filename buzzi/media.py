"""Inbound attachments: downloaded from the channel in the background once their message is stored.

Nothing waits on this: the webhook has already answered and the agent runs on the text. Each
attachment ends with a `download` entry on the message: {"status": "stored", "media_id", "size"},
{"status": "too_large"} or {"status": "failed", "error"}, all written in one update once the last
download ended (rewriting the list after each download cost N² bytes of writes: a 34 KB request
once caused 99 MB). The intake caps the list (webhooks.max_attachments). The bytes go to the store
as a Media document. Platform URLs and errors can carry tokens (Telegram puts the bot token in the file URL),
so only our own error messages are logged and stored, never a raw exception text.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from typing import Any

from buzzi.channels.base import Attachment, ChannelAdapter, SendError
from buzzi.channels.outbound import MediaTooLargeError, SendLater, with_retry
from buzzi.channels.registry import ChannelRegistry
from buzzi.config import ChannelSettings
from buzzi.ids import new_id
from buzzi.logs import log_fields
from buzzi.models import Media, Message, Webhook
from buzzi.store.base import Store

log = logging.getLogger("buzzi.media")

DOWNLOAD_ATTEMPTS = 3
CONCURRENT_DOWNLOADS = 8  # bounds memory: each download holds up to media_max_bytes


async def delete_company_media(store: Store, company_id: str) -> int:
    """Every stored attachment of a company (called after its messages are deleted, see fetch)."""
    return await store.delete_where(Media, company_id=company_id)


def downloadable(attachment: dict[str, Any]) -> bool:
    """Attachments that point at bytes (locations and contacts carry their data inline)."""
    return bool(attachment.get("media_id") or attachment.get("url")) and "download" not in attachment


class MediaFetcher:
    def __init__(self, store: Store, channels: ChannelRegistry, settings: ChannelSettings) -> None:
        self.store = store
        self.channels = channels
        self.settings = settings
        self._slots = asyncio.Semaphore(CONCURRENT_DOWNLOADS)

    @staticmethod
    def wanted(message: Message) -> bool:
        return any(downloadable(a) for a in message.attachments)

    async def fetch(self, webhook: Webhook, message: Message) -> None:
        """Download every attachment of a stored message, one after another, then write the
        message's attachment list once (only this task writes it)."""
        adapter = self.channels.adapter(webhook.channel)
        attachments = [dict(a) for a in message.attachments]
        fetched = 0
        for item in attachments:
            if not downloadable(item):
                continue
            async with self._slots:
                item["download"] = await self._download(adapter, webhook, message, item)
            fetched += 1
        if not fetched:
            return
        try:
            await self.store.update(Message, message.id, {"attachments": attachments})
        except Exception as exc:  # noqa: BLE001 - background work: log and go on
            log_fields(log, logging.WARNING, "media status not saved", message=message.id,
                       attachments=fetched, error=exc.__class__.__name__)

    async def _download(self, adapter: ChannelAdapter, webhook: Webhook, message: Message,
                        item: dict[str, Any]) -> dict[str, Any]:
        attachment = Attachment(**{k: v for k, v in item.items() if k in Attachment.__dataclass_fields__})
        limit = self.settings.media_max_bytes
        try:
            data, mime = await with_retry(
                lambda: adapter.download_media(webhook, attachment), max_attempts=DOWNLOAD_ATTEMPTS,
                base=self.settings.send_backoff_base_seconds, cap=self.settings.send_backoff_max_seconds,
                # A download holds a slot while it waits: a Retry-After past the backoff cap gives up
                # (never retrying before it) instead of sleeping that long.
                inline_wait=self.settings.send_backoff_max_seconds)
            if len(data) > limit:  # adapters enforce it too; a store document must never exceed it
                raise MediaTooLargeError(f"media is {len(data)} bytes, limit {limit}")
        except MediaTooLargeError as exc:
            log_fields(log, logging.INFO, "media not kept: too large", channel=webhook.channel,
                       message=message.id, error=str(exc))
            return {"status": "too_large", "error": str(exc), **({"size": attachment.size} if attachment.size else {})}
        except SendError as exc:
            return self._failed(webhook, message, str(exc))
        except SendLater as exc:
            return self._failed(webhook, message, f"{exc.error} (retry after {exc.delay:.0f} s)")
        except NotImplementedError:
            return self._failed(webhook, message, f"{webhook.channel} has no media download")
        except Exception as exc:  # noqa: BLE001 - the raw text may hold a URL with a token in it
            return self._failed(webhook, message, f"download error: {exc.__class__.__name__}")
        media = Media(
            id=new_id("media"), message_id=message.id, company_id=message.company_id,
            conversation_id=message.conversation_id, channel=webhook.channel,
            mime_type=mime or attachment.mime_type, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
            data=base64.b64encode(data).decode("ascii"), name=attachment.name,
        )
        try:
            await self.store.add(media)
            if await self.store.get(Message, message.id) is None:
                # Its company was deleted while this downloaded (deletion runs messages first, then
                # media): delete the blob ourselves so no bytes outlive their tenant.
                await self.store.delete(Media, media.id)
                return {"status": "failed", "error": "message deleted"}
        except Exception as exc:  # noqa: BLE001 - store down: the message keeps a failed status
            return self._failed(webhook, message, f"store error: {exc.__class__.__name__}")
        return {"status": "stored", "media_id": media.id, "size": media.size, "sha256": media.sha256}

    @staticmethod
    def _failed(webhook: Webhook, message: Message, error: str) -> dict[str, Any]:
        log_fields(log, logging.WARNING, "media download failed", channel=webhook.channel, message=message.id,
                   error=error[:300])
        return {"status": "failed", "error": error[:300]}
