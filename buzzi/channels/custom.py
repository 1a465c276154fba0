"""The custom channel: any system that speaks Standard Webhooks v1 (docs/channels.md §8, docs/contract.md §2).

In: `{"type": "message.created", "timestamp", "data": {"message_id", "chat_id", "sender": {"id",
"name"}, "text", "reply_to_id"?, "attachments"?: [{"url", "mime_type", "name"}]}}` signed with the
webhook's `whsec_` secret; other types are acknowledged and dropped (reason test_event or
unsupported_event in the delivery log and /metrics).
Out: `{"type": "message.reply", "timestamp", "data": {"chat_id", "reply_to_id", "text"}}` POSTed
to `callbackUrl`, signed the same way. The webhook-id of a reply is derived from the reply, so it
stays the same across retries and the receiver can deduplicate; webhook-timestamp is per attempt.
Answers: 2xx success; 410 permanent (the receiver asks to be disabled); 3xx permanent (redirects
are not followed: the URL should be updated); 408/425/429/5xx retryable with Retry-After; other
4xx permanent (a rejected body or signature does not improve by resending).
callbackUrl and attachment URLs are the tenant's: they are called through the tenant session, so a
non-public address is refused (buzzi/netguard.py), permanently, and already when the URL is saved.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from typing import Any
from urllib.parse import urlparse

import aiohttp

from buzzi import clock
from buzzi.channels.base import (
    Attachment,
    ChannelAdapter,
    CredentialField,
    CredentialsError,
    InboundMessage,
    ParseResult,
    PayloadError,
    ReplyTarget,
    SampleEvent,
    SendError,
    VerificationError,
    WebhookRequest,
)
from buzzi.channels.outbound import MediaTooLargeError, blocked_error, download, parse_retry_after, read_limited
from buzzi.channels.payload import as_dict, as_str, compact_json, json_or_none
from buzzi.models import Webhook
from buzzi.netguard import BlockedAddressError, NetPolicy
from buzzi.signing import STANDARD_PREFIX, new_standard_secret, standard_headers, standard_verify

RETRYABLE_STATUSES = frozenset({408, 425, 429})
MAX_ANSWER_BYTES = 64 * 1024


def is_http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parsed = urlparse(value)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


def mime_kind(mime_type: str | None) -> str:
    major = (mime_type or "").split("/", 1)[0]
    return major if major in ("image", "audio", "video") else "file"


class CustomAdapter(ChannelAdapter):
    channel = "custom"
    display_name = "Custom"
    credential_fields = (CredentialField("callbackUrl", "Callback URL (replies are POSTed here)"),)
    secret_source = "generated"
    secret_hint = "Leave empty: a whsec_ Standard Webhooks secret is generated."
    text_limit = 20000  # Standard Webhooks bodies stay "under about 20 KB" (docs/channels.md §8)
    time_source = staticmethod(clock.now)  # tests may pin it

    # ---- configuration
    def validate_credentials(self, credentials: Any) -> dict[str, Any]:
        if not isinstance(credentials, dict):
            raise CredentialsError("credentials", "expected an object")
        url = credentials.get("callbackUrl")
        if not isinstance(url, str) or not url.strip():
            raise CredentialsError("callbackUrl", "required")
        if not is_http_url(url.strip()):
            raise CredentialsError("callbackUrl", "expected an http(s):// URL")
        # An adapter built without HTTP (parsing only) checks with the strict default policy.
        policy = self.http.net_policy if self.http is not None else NetPolicy()
        try:
            policy.check_url(url)
        except BlockedAddressError as exc:
            raise CredentialsError("callbackUrl", str(exc)) from None
        return {"callbackUrl": url.strip()}

    def generate_secrets(self, given_secret: str | None,
                         given_verify_token: str | None) -> tuple[str | None, str | None]:
        if not given_secret:
            return new_standard_secret(), None
        # A given secret (moving an existing integration over) must be a usable whsec_ key.
        try:
            key = base64.b64decode(given_secret.removeprefix(STANDARD_PREFIX), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if not given_secret.startswith(STANDARD_PREFIX) or not 24 <= len(key) <= 64:
            raise CredentialsError("secret", "expected whsec_ followed by base64 of 24 to 64 bytes")
        return given_secret, None

    def sample_event(self, webhook: Webhook, now: float) -> SampleEvent:
        ts = int(now)
        body = compact_json({"type": "webhook.test", "timestamp": ts, "data": {}})
        headers = {"Content-Type": "application/json",
                   **standard_headers(webhook.secret or "", f"msg_test_{secrets.token_hex(8)}", ts, body)}
        return SampleEvent(body, headers, "a webhook.test event, signed with Standard Webhooks")

    # ---- input side
    async def verify(self, webhook: Webhook, request: WebhookRequest) -> None:
        headers = request.headers
        msg_id, timestamp = headers.get("webhook-id"), headers.get("webhook-timestamp")
        signature = headers.get("webhook-signature")
        if not msg_id or not timestamp or not signature or not webhook.secret:
            raise VerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
        if not standard_verify(webhook.secret, msg_id, timestamp, signature, request.body,
                               request.now, self.replay_window):
            raise VerificationError("invalid webhook-signature or webhook-timestamp outside the window")

    def parse(self, webhook: Webhook, request: WebhookRequest) -> ParseResult:
        envelope = request.json()
        event_type = envelope.get("type")
        if not isinstance(event_type, str):
            raise PayloadError('expected a "type" string')
        if event_type != "message.created":
            # The type is the sender's text: the reason is from a fixed set, never the type itself.
            result = ParseResult()
            result.drop("test_event" if event_type == "webhook.test" else "unsupported_event")
            return result
        data = envelope.get("data")
        if not isinstance(data, dict):
            raise PayloadError("data: expected an object")
        message_id, chat_id = as_str(data.get("message_id")), as_str(data.get("chat_id"))
        if not message_id:
            raise PayloadError("data.message_id: required")
        if not chat_id:
            raise PayloadError("data.chat_id: required")
        sender = data.get("sender")
        if sender is not None and not isinstance(sender, dict):
            raise PayloadError("data.sender: expected an object")
        sender = as_dict(sender)
        text = data.get("text")
        if text is not None and not isinstance(text, str):
            raise PayloadError("data.text: expected a string")
        attachments = self._attachments(data.get("attachments"))
        if not text and not attachments:
            raise PayloadError("data.text: required when there are no attachments")
        reply_to = data.get("reply_to_id")
        if reply_to is not None and as_str(reply_to) is None:
            raise PayloadError("data.reply_to_id: expected a string")
        message = InboundMessage(
            channel=self.channel, message_id=message_id, chat_id=chat_id,
            sender_id=as_str(sender.get("id")) or chat_id, sender_name=as_str(sender.get("name")),
            text=text or "", kind="text" if text or not attachments else attachments[0].kind,
            timestamp=self._timestamp(envelope.get("timestamp")), reply_to_id=as_str(reply_to),
            attachments=attachments, meta={"webhook_message_id": request.headers.get("webhook-id")},
        )
        return ParseResult(messages=[message])

    @staticmethod
    def _attachments(value: Any) -> list[Attachment]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise PayloadError("data.attachments: expected a list")
        attachments = []
        for index, item in enumerate(value):
            if not isinstance(item, dict) or not is_http_url(item.get("url")):
                raise PayloadError(f"data.attachments[{index}]: expected an object with an http(s) url")
            mime = as_str(item.get("mime_type"))
            attachments.append(Attachment(kind=mime_kind(mime), mime_type=mime, name=as_str(item.get("name")),
                                          url=item["url"]))
        return attachments

    @staticmethod
    def _timestamp(value: Any) -> float | None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return clock.parse_iso(value)
            except ValueError:
                return None
        return None

    # ---- output side
    @staticmethod
    def reply_event_id(webhook: Webhook, target: ReplyTarget, text: str) -> str:
        """Stable per reply part: the same part retried keeps its webhook-id (the receiver's
        idempotency key); two parts of one reply, or two replies, get different ids."""
        anchor = target.reply_id or (target.in_reply_to.id if target.in_reply_to else "")
        seed = f"{webhook.id}|{target.conversation.id}|{anchor}|{text}".encode()
        return "msg_" + hashlib.sha256(seed).hexdigest()[:32]

    async def send(self, webhook: Webhook, target: ReplyTarget, text: str) -> list[str]:
        url = webhook.credentials.get("callbackUrl")
        if not is_http_url(url):
            raise SendError("custom: callbackUrl is not configured", retryable=False)
        if not webhook.secret:
            raise SendError("custom: the webhook has no signing secret", retryable=False)
        event_id = self.reply_event_id(webhook, target, text)
        now = int(self.time_source())
        reply_to = target.in_reply_to.channel_message_id if target.in_reply_to else None
        body = json.dumps({
            "type": "message.reply",
            "timestamp": clock.iso(now),
            "data": {"chat_id": target.chat_id, "reply_to_id": reply_to, "text": text},
        }, ensure_ascii=False).encode()
        headers = {**standard_headers(webhook.secret, event_id, now, body), "Content-Type": "application/json"}
        session = self.http.tenant_session(self.channel)
        try:
            async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
                status = response.status
                if 200 <= status < 300:
                    try:
                        answer = json_or_none(await read_limited(response, MAX_ANSWER_BYTES))
                    except MediaTooLargeError:
                        answer = {}
                    return [as_str(as_dict(answer).get("message_id")) or event_id]
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
        except aiohttp.ClientError as exc:
            blocked = blocked_error(exc, "custom: callbackUrl")
            if blocked is None:
                raise
            raise blocked from None
        if status == 410:
            # Standard Webhooks (spec/standard-webhooks.md, "Delivery success and failure"): 410 Gone
            # means the receiver wants no more webhooks; the delivery service disables this webhook
            # on code "gone" (status "disabled", state.disabledReason) instead of retrying.
            raise SendError("custom: callbackUrl answered 410 Gone: the receiver asks to be disabled",
                            retryable=False, status=status, code="gone")
        if 300 <= status < 400:
            raise SendError(f"custom: callbackUrl answered a redirect ({status}); update the URL",
                            retryable=False, status=status, code="redirect")
        retryable = status in RETRYABLE_STATUSES or status >= 500
        raise SendError(f"custom: callbackUrl answered HTTP {status}", retryable=retryable,
                        retry_after=retry_after, status=status)

    async def download_media(self, webhook: Webhook, attachment: Attachment) -> tuple[bytes, str | None]:
        if not is_http_url(attachment.url):
            raise SendError("custom: attachment has no http(s) url", retryable=False)
        data, mime = await download(self.http.tenant_session(self.channel), str(attachment.url),
                                    self.settings.media_max_bytes)
        return data, attachment.mime_type or mime
