"""WhatsApp Business Cloud API (docs/channels.md §2): `entry[].changes[].value.messages[]` in,
`POST /{phone_number_id}/messages` out, two-step media download.

Decisions:
- reactions, revokes (unsend), `system`/`unsupported`/`unknown` and other types without text or
  media are counted as ignored: they are not something the agent should answer.
- `edit` (coexistence numbers only) becomes kind "edit" with the edited content; its id is the
  edit's own wamid and `reply_to_id` / meta `original_message_id` name the edited message.
- replies quote the inbound message (`context.message_id`) when there is one.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from typing import Any

from buzzi.channels.base import (
    Attachment,
    CredentialField,
    InboundMessage,
    ParseResult,
    PayloadError,
    ReplyTarget,
    SampleEvent,
    SendError,
    WebhookRequest,
)
from buzzi.channels.meta import GRAPH_ID, TOKEN, ErrorClasses, MetaAdapter, require_field
from buzzi.channels.outbound import USER_AGENT, MediaTooLargeError, download
from buzzi.channels.pacing import SendLimits
from buzzi.channels.payload import as_dict, as_float, as_str, as_text, list_of_dicts
from buzzi.models import Webhook

log = logging.getLogger("buzzi.channels")

# docs/channels.md §2.3 (source: WhatsApp error codes page).
WHATSAPP_ERRORS = ErrorClasses(
    retryable=frozenset({130429, 131056, 80007, 4, 131000, 131016, 2, 131057, 133016}),
    permanent=frozenset({
        131047, 131026, 131050, 131049, 131051, 100, 131008, 131009, 33, 190, 0, 10, 131005,
        368, 131031, 130497, 132000, 132001, 131052, *range(200, 300),
    }),
)
MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
IGNORED_TYPES = ("reaction", "revoke", "system", "unsupported", "unknown", "ephemeral", "request_welcome")


class WhatsAppAdapter(MetaAdapter):
    channel = "whatsapp"
    display_name = "WhatsApp"
    credential_fields = (CredentialField("phoneNumberId", "Phone number ID"),
                         CredentialField("accessToken", "Access token", secret=True))
    secret_source = "given"
    secret_hint = "The Meta App Secret (App Dashboard > Basic settings). Required."
    has_verify_token = True
    text_limit = 4096  # text.body maximum (docs/channels.md §2.3)
    api_base_setting = "whatsapp_api_base"
    token_field = "accessToken"
    error_classes = WHATSAPP_ERRORS
    send_limits = SendLimits(per_account=80.0)  # default throughput per business number (docs/channels.md §2.3)
    paces_typing = True  # the typing indicator is a POST to the number's /messages too

    def validate_credentials(self, credentials: Any) -> dict[str, Any]:
        return {
            "phoneNumberId": require_field(credentials, "phoneNumberId", GRAPH_ID, "the numeric phone number id"),
            "accessToken": require_field(credentials, "accessToken", TOKEN, "an access token"),
        }

    def sample_event(self, webhook: Webhook, now: float) -> SampleEvent:
        phone_id = str(webhook.credentials.get("phoneNumberId", "0"))
        return self.signed_sample(webhook, {"object": "whatsapp_business_account", "entry": [{"id": "0", "changes": [{
            "field": "messages",
            "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550000000", "phone_number_id": phone_id},
                "statuses": [{"id": f"wamid.TEST{secrets.token_hex(8)}", "status": "delivered",
                              "timestamp": str(int(now)), "recipient_id": "15550000001"}],
            },
        }]}]}, "a delivery receipt")

    # ---- input side
    def parse(self, webhook: Webhook, request: WebhookRequest) -> ParseResult:
        data = request.json()
        if data.get("object") not in (None, "whatsapp_business_account"):
            raise PayloadError('expected "object": "whatsapp_business_account"')
        if not isinstance(data.get("entry"), list):
            raise PayloadError("expected an entry list")
        result = ParseResult()
        for entry in list_of_dicts(data, "entry", "body"):
            for change in list_of_dicts(entry, "changes", "entry"):
                value = change.get("value")
                if change.get("field") != "messages" or not isinstance(value, dict):
                    result.ignored += 1  # account_update, template status...: not conversations
                    continue
                self._parse_value(value, result)
        return result

    def _parse_value(self, value: dict[str, Any], result: ParseResult) -> None:
        metadata = as_dict(value.get("metadata"))
        contacts = list_of_dicts(value, "contacts", "value")
        names = {as_str(c.get("wa_id")): as_str(as_dict(c.get("profile")).get("name")) for c in contacts}
        messages = list_of_dicts(value, "messages", "value")
        # statuses[] are receipts for our sends; errors[]-only payloads are asynchronous failures
        result.ignored += len(list_of_dicts(value, "statuses", "value"))
        if not messages and not value.get("statuses"):
            result.ignored += 1
        for item in messages:
            message = self._message(item, metadata, names)
            if message is None:
                result.ignored += 1
            else:
                result.messages.append(message)

    def _message(self, item: dict[str, Any], metadata: dict[str, Any],
                 names: dict[str | None, str | None]) -> InboundMessage | None:
        wamid, sender, kind = as_str(item.get("id")), as_str(item.get("from")), as_str(item.get("type"))
        if not wamid or not sender or not kind or kind in IGNORED_TYPES:
            return None
        content = self._content(kind, item)
        if content is None:
            return None
        text, attachments, extra = content
        context = as_dict(item.get("context"))
        meta: dict[str, Any] = {
            "phone_number_id": as_str(metadata.get("phone_number_id")),
            "display_phone_number": as_str(metadata.get("display_phone_number")),
            "wamid": wamid,
            **extra,
        }
        reply_to = as_str(context.get("id"))
        if kind == "edit":
            reply_to = extra.get("original_message_id")
        name = names.get(sender) or (next(iter(names.values())) if len(names) == 1 else None)
        return InboundMessage(
            channel=self.channel, message_id=wamid, chat_id=sender, sender_id=sender, sender_name=name,
            text=text, kind=kind, timestamp=as_float(item.get("timestamp")), reply_to_id=reply_to,
            attachments=attachments, meta={k: v for k, v in meta.items() if v is not None},
        )

    def _content(self, kind: str, item: dict[str, Any]) -> tuple[str, list[Attachment], dict[str, Any]] | None:
        """(text, attachments, meta) of one message body, or None when it has nothing to answer."""
        body = as_dict(item.get(kind))
        if kind == "text":
            return as_text(body.get("body")) or "", [], {}
        if kind in MEDIA_TYPES:
            return as_text(body.get("caption")) or "", [self._media(kind, body)], {}
        if kind == "location":
            return self._location(body)
        if kind == "interactive":
            reply_type = as_str(body.get("type")) or ""
            reply = as_dict(body.get(reply_type))
            title = as_str(reply.get("title")) or as_str(reply.get("body")) or ""
            return title, [], {"interactive_type": reply_type, "payload": as_str(reply.get("id"))}
        if kind == "button":
            return as_text(body.get("text")) or "", [], {"payload": as_str(body.get("payload"))}
        if kind == "contacts":
            people = [as_dict(c.get("name")).get("formatted_name") for c in list_of_dicts(item, "contacts", "message")]
            return ", ".join(p for p in people if isinstance(p, str)), [], {}
        if kind == "edit":
            original = as_str(body.get("original_message_id"))
            inner = as_dict(body.get("message"))
            inner_kind = as_str(inner.get("type")) or "text"
            inner_content = self._content(inner_kind, inner) if inner_kind != "edit" else None
            if inner_content is None:
                return None
            text, attachments, extra = inner_content
            return text, attachments, {**extra, "original_message_id": original, "edited_type": inner_kind}
        return None

    @staticmethod
    def _media(kind: str, body: dict[str, Any]) -> Attachment:
        if kind == "audio" and body.get("voice") is True:
            kind = "voice"
        extra = {"sha256": body["sha256"]} if isinstance(body.get("sha256"), str) else {}
        return Attachment(kind=kind, mime_type=as_str(body.get("mime_type")), name=as_str(body.get("filename")),
                          media_id=as_str(body.get("id")), extra=extra)

    @staticmethod
    def _location(body: dict[str, Any]) -> tuple[str, list[Attachment], dict[str, Any]]:
        lat, lon = as_float(body.get("latitude")), as_float(body.get("longitude"))
        label = ", ".join(str(body[k]) for k in ("name", "address") if isinstance(body.get(k), str) and body[k])
        where = f"({lat}, {lon})" if lat is not None and lon is not None else ""
        extra = {k: body[k] for k in ("latitude", "longitude", "name", "address", "url") if k in body}
        return " ".join(p for p in (label, where) if p), [Attachment(kind="location", extra=extra)], {}

    # ---- output side
    @staticmethod
    def _number(webhook: Webhook, target: ReplyTarget) -> str:
        # Answer from the number the user wrote to (one app may serve several numbers of a WABA).
        return str(target.meta.get("phone_number_id") or webhook.credentials.get("phoneNumberId") or "")

    def pacing_account(self, webhook: Webhook, target: ReplyTarget) -> str:
        return self._number(webhook, target) or webhook.id

    def _messages_url(self, webhook: Webhook, target: ReplyTarget) -> str:
        number = self._number(webhook, target)
        if not number:
            raise SendError("whatsapp: phoneNumberId is not configured", retryable=False)
        return f"{self.api_base}/{number}/messages"

    @staticmethod
    def _inbound_id(target: ReplyTarget) -> str | None:
        """The inbound wamid a reply answers (a human's later reply answers none)."""
        if target.in_reply_to is None:
            return None
        return target.in_reply_to.channel_message_id or as_str(target.meta.get("wamid"))

    async def send(self, webhook: Webhook, target: ReplyTarget, text: str) -> list[str]:
        if not target.chat_id:
            raise SendError("whatsapp: the conversation has no recipient", retryable=False)
        url = self._messages_url(webhook, target)
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": target.chat_id,
            "type": "text",
            "text": {"preview_url": False, "body": text},
        }
        inbound = self._inbound_id(target)
        if inbound:
            body["context"] = {"message_id": inbound}
        answer = await self.graph_call("whatsapp send", "POST", url, self.token(webhook), body)
        return [i for i in (as_str(m.get("id")) for m in list_of_dicts(answer, "messages", "answer")) if i]

    async def typing(self, webhook: Webhook, target: ReplyTarget) -> None:
        inbound = self._inbound_id(target)
        if not inbound:
            return  # the indicator hangs off an inbound message: nothing to show it on
        try:
            url = self._messages_url(webhook, target)
            body = {"messaging_product": "whatsapp", "status": "read", "message_id": inbound,
                    "typing_indicator": {"type": "text"}}
            await self.graph_call("whatsapp typing", "POST", url, self.token(webhook), body)
        except Exception as exc:  # noqa: BLE001 - best effort: never fails the reply
            log.info("whatsapp typing indicator failed: %s", exc.__class__.__name__,
                     extra={"fields": {"webhook_id": webhook.id, "error": str(exc)[:200]}})

    async def download_media(self, webhook: Webhook, attachment: Attachment) -> tuple[bytes, str | None]:
        if not attachment.media_id or not GRAPH_ID.match(attachment.media_id):
            raise SendError("whatsapp: attachment has no media id", retryable=False)
        token = self.token(webhook)
        # Step 1: the media's metadata holds a short-lived (5 min) URL, so always ask afresh.
        info = await self.graph_call("whatsapp media lookup", "GET", f"{self.api_base}/{attachment.media_id}", token)
        url = as_str(info.get("url"))
        if not url or not url.startswith(("https://", "http://")):
            raise SendError("whatsapp: media lookup returned no URL", retryable=False)
        size = as_float(info.get("file_size"))
        if size is not None and size > self.settings.media_max_bytes:
            raise MediaTooLargeError(f"media is {int(size)} bytes, limit {self.settings.media_max_bytes}")
        # Step 2: the same Bearer token, and an explicit User-Agent (downloads fail without one).
        headers = {"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT}
        data, mime = await download(self.http.session(self.channel), url, self.settings.media_max_bytes, headers)
        expected = as_str(info.get("sha256")) or attachment.extra.get("sha256")
        if isinstance(expected, str) and hashlib.sha256(data).hexdigest() != expected.lower():
            raise SendError("whatsapp: downloaded media does not match its sha256", retryable=True)
        return data, as_str(info.get("mime_type")) or attachment.mime_type or mime
