"""The custom (Standard Webhooks) channel's side of a test: signed inbound requests, and a
callback receiver (a ScriptedServer) whose recorded deliveries can be checked for signatures."""

from __future__ import annotations

import json
from typing import Any

from buzzi.channels.base import WebhookRequest
from buzzi.models import Webhook
from buzzi.signing import standard_headers, standard_verify
from tests.support.channel_factories import channel_webhook, inbound_request
from tests.support.fake_meta import Recorded, Reply, ScriptedServer

CALLBACK_PATH = "/hooks/buzzi"
NOW = 1_750_000_000

__all__ = ["CALLBACK_PATH", "NOW", "Reply", "ScriptedServer", "custom_request", "custom_webhook",
           "delivery_is_signed", "message_created"]


def custom_webhook(secret: str, callback_url: str = "http://127.0.0.1:9/hooks") -> Webhook:
    return channel_webhook("custom", secret=secret, credentials={"callbackUrl": callback_url})


def message_created(**data: Any) -> bytes:
    """A docs/contract.md §2 message.created body; `data` overrides the defaults (None removes a key)."""
    fields: dict[str, Any] = {"message_id": "ext-1", "chat_id": "chat-9", "sender": {"id": "u-7", "name": "Ada"},
                              "text": "hello"}
    fields.update(data)
    fields = {k: v for k, v in fields.items() if v is not None}
    return json.dumps({"type": "message.created", "timestamp": "2025-06-15T15:06:40Z", "data": fields},
                      ensure_ascii=False).encode()


def custom_request(body: bytes, secret: str, *, msg_id: str = "msg_1", timestamp: int = NOW,
                   now: float = NOW, signature: str | None = None) -> WebhookRequest:
    headers = {k.lower(): v for k, v in standard_headers(secret, msg_id, timestamp, body).items()}
    if signature is not None:
        headers["webhook-signature"] = signature
    return inbound_request(body, headers, now=now)


def delivery_is_signed(recorded: Recorded, secret: str, now: float, tolerance: float = 300) -> bool:
    """What a Standard Webhooks receiver checks on one of our reply deliveries."""
    h = recorded.headers
    return standard_verify(secret, h.get("webhook-id", ""), h.get("webhook-timestamp", ""),
                           h.get("webhook-signature", ""), recorded.body, now, tolerance)
