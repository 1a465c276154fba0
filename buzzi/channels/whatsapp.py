"""WhatsApp Business Cloud API (docs/channels.md §2): `entry[].changes[].value.messages[]` and
`statuses[]` in, `POST /{phone_number_id}/messages` out, two-step media download.

Decisions, each from a Meta doc page (developers.facebook.com/documentation/business-messaging/
whatsapp/..., "Meta: <page>" below; the list is in the README's WhatsApp guide):
- Customers are identified by phone number (`from`) when there is one, else by their
  business-scoped user id (BSUID, `from_user_id` / `contacts[].user_id`; Meta: business-scoped-
  user-ids). With both, the phone stays the chat id (as before BSUIDs) and the BSUID is an alias,
  so the intake keeps one conversation when the phone number later disappears. Replies to a BSUID
  go in `recipient` instead of `to`.
- `statuses[]` become Receipts (Meta: webhooks/reference/messages/status): sent, delivered, read;
  `played` (a voice message was played) counts as read, since a message is only reported played
  once it was displayed; failed carries errors[0] and is retryable for the throughput and pair
  limits. `value.errors[]` (asynchronous errors without a message) are logged and dropped.
- reactions, revokes, `system`, `request_welcome` and `ephemeral` are dropped with a reason;
  `unsupported` and unknown types become kind "unsupported" messages (the processor answers them
  politely, Meta: webhooks/reference/messages/unsupported); `order` and Flows replies reach the
  agent as text (whatsapp_content.py).
- `edit` (coexistence numbers only) is kind "edit": its own wamid as id, `edit_of` the original.
- After the 24-hour window a reply is the webhook's re-engagement template (Meta: send template
  messages: `type: "template"`, `template: {"name", "language": {"code"}}`).
- replies quote the inbound message (`context.message_id`) when there is one.
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any

from buzzi.channels.base import (
    Attachment,
    CredentialField,
    CredentialsError,
    InboundMessage,
    ParseResult,
    PayloadError,
    Receipt,
    ReplyTarget,
    SampleEvent,
    SendError,
    WebhookRequest,
)
from buzzi.channels.meta import GRAPH_ID, GRAPH_RATE_LIMITS, TOKEN, ErrorClasses, MetaAdapter, require_field
from buzzi.channels.outbound import USER_AGENT, MediaTooLargeError, download
from buzzi.channels.pacing import SendLimits
from buzzi.channels.payload import as_dict, as_float, as_str, as_text, dicts_in, list_of_dicts
from buzzi.channels.whatsapp_content import content, sha256_matches
from buzzi.models import Webhook

log = logging.getLogger("buzzi.channels")

# docs/channels.md §2.3 (Meta: support/error-codes; Graph rate limiting for 4, 17, 32, 613, 80001-80014).
WHATSAPP_ERRORS = ErrorClasses(
    retryable=frozenset({130429, 131056, 131000, 131016, 2, 131057, 133016, *GRAPH_RATE_LIMITS}),
    permanent=frozenset({
        131047, 131026, 131050, 131049, 131051, 100, 131008, 131009, 33, 190, 0, 10, 131005,
        368, 131031, 130497, 132000, 132001, 131052, 131062, *range(200, 300),
    }),
    # Pair rate limit: about one message every 6 s to one user, bursts allowed and then paid back
    # at that rate (Meta: throughput, which suggests retrying after 4^n seconds): the first retry
    # waits a minute (4^3 s), never seconds, and goes through the inbox, not a sleeping worker.
    min_wait={131056: 60.0},
)
# A business-scoped user id: ISO country code, a dot, up to 128 alphanumerics; a parent BSUID has
# "ENT." after the country (Meta: business-scoped-user-ids). Checked before it goes anywhere.
BSUID = re.compile(r"^[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}$")
# Template names are lowercase alphanumerics and underscores, at most 512 (Meta: message templates);
# languages are codes like en, en_US, pt_BR, zh_Hant_HK-style variants kept short.
TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
TEMPLATE_LANGUAGE = re.compile(r"^[a-z]{2,3}(?:_[A-Za-z]{2,4}){0,2}$")
# messages[].type values that are events, not something to answer: drop reasons.
DROPPED_TYPES = {"reaction": "reaction", "revoke": "revoke", "system": "system",
                 "request_welcome": "request_welcome", "ephemeral": "ephemeral"}
# statuses[].status -> Receipt status.
RECEIPT_OF = {"sent": "sent", "delivered": "delivered", "read": "read", "played": "read", "failed": "failed"}
MAX_ID_CHARS = 256  # wamids are about 60 characters; anything longer is not one
# Throughput per business number (Meta: WhatsApp Business Platform, "Throughput"): 80 messages/s by
# default, up to 1,000 after Meta's automatic upgrade, 20 for numbers shared with the Business app.
# settings.throughput states the number's level; the send pacing uses it (docs/channels.md §2.3).
DEFAULT_THROUGHPUT = 80.0
MIN_THROUGHPUT, MAX_THROUGHPUT = 1, 1000


def bsuid(value: Any) -> str | None:
    text = as_text(value)
    return text if text and BSUID.match(text) else None


def template_setting(value: Any) -> dict[str, str]:
    """The re-engagement template {"name", "language"} of a webhook's settings, or CredentialsError
    naming the field (settings.reengagementTemplate.name / .language)."""
    where = "settings.reengagementTemplate"
    if not isinstance(value, dict):
        raise CredentialsError(where, 'expected {"name": ..., "language": ...}')
    for key in value:
        if key not in ("name", "language"):
            raise CredentialsError(f"{where}.{str(key)[:64]}", "unknown field")
    name, language = value.get("name"), value.get("language")
    if not isinstance(name, str) or not name.strip():
        raise CredentialsError(f"{where}.name", "required")
    if not TEMPLATE_NAME.match(name.strip()):
        raise CredentialsError(f"{where}.name", "expected the approved template's name: a-z, 0-9 and _")
    if not isinstance(language, str) or not language.strip():
        raise CredentialsError(f"{where}.language", "required")
    if not TEMPLATE_LANGUAGE.match(language.strip()):
        raise CredentialsError(f"{where}.language", "expected a template language code such as en_US")
    return {"name": name.strip(), "language": language.strip()}


def throughput_setting(value: Any) -> int:
    """The number's throughput in messages per second (settings.throughput): an integer 1..1000, given
    as a number by the API or as digits by the dashboard form, or CredentialsError naming the field."""
    text = str(value).strip() if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    if not text.isdigit() or not MIN_THROUGHPUT <= int(text) <= MAX_THROUGHPUT:
        raise CredentialsError("settings.throughput", f"expected whole messages per second from {MIN_THROUGHPUT} "
                                                      f"to {MAX_THROUGHPUT} (default {DEFAULT_THROUGHPUT:.0f})")
    return int(text)


class WhatsAppAdapter(MetaAdapter):
    channel = "whatsapp"
    display_name = "WhatsApp"
    credential_fields = (CredentialField("phoneNumberId", "Phone number ID"),
                         CredentialField("accessToken", "Access token", secret=True))
    # The approved template sent when the 24-hour window has closed (validate_settings checks it).
    setting_fields = (CredentialField("reengagementTemplate.name", "Re-engagement template name", required=False),
                      CredentialField("reengagementTemplate.language", "Template language (e.g. en_US)",
                                      required=False),
                      CredentialField("throughput", "Throughput, messages per second (1-1000, default 80)",
                                      required=False, kind="integer"))
    text_limit = 4096  # text.body maximum (docs/channels.md §2.3)
    api_base_setting = "whatsapp_api_base"
    token_field = "accessToken"
    error_classes = WHATSAPP_ERRORS
    # Default throughput per business number (docs/channels.md §2.3); account_rate reads settings.throughput.
    send_limits = SendLimits(per_account=DEFAULT_THROUGHPUT)
    paces_typing = True  # the typing indicator is a POST to the number's /messages too
    # The indicator is dismissed after 25 s or at the reply (Meta: typing-indicators): refreshed before.
    typing_interval = 20.0
    # Free-form messages within 24 h of the customer's last message, then only a template
    # (Meta: send messages, "customer service window"; 131047 otherwise).
    service_window = 24 * 3600.0
    template_reengagement = True

    def validate_credentials(self, credentials: Any) -> dict[str, Any]:
        return {
            "phoneNumberId": require_field(credentials, "phoneNumberId", GRAPH_ID, "the numeric phone number id"),
            "accessToken": require_field(credentials, "accessToken", TOKEN, "an access token"),
        }

    def validate_settings(self, settings: Any) -> dict[str, Any]:
        if settings in (None, {}):
            return {}
        if not isinstance(settings, dict):
            raise CredentialsError("settings", "expected an object")
        for key in settings:
            if key not in ("reengagementTemplate", "throughput"):
                raise CredentialsError(f"settings.{str(key)[:64]}", "the whatsapp channel has no such setting")
        out: dict[str, Any] = {}
        # Left out or empty: removed; a reply after the window then fails visibly ("needs a template").
        if settings.get("reengagementTemplate") not in (None, {}):
            out["reengagementTemplate"] = template_setting(settings["reengagementTemplate"])
        if settings.get("throughput") not in (None, ""):
            out["throughput"] = throughput_setting(settings["throughput"])
        return out

    def account_rate(self, webhook: Webhook) -> float | None:
        # The number's throughput as the webhook's settings state it (80 unless upgraded).
        return float(webhook.settings.get("throughput") or DEFAULT_THROUGHPUT)

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
                    result.drop("unsupported_event")  # account_update, template status...: not conversations
                    continue
                self._parse_value(value, result)
        return result

    def _parse_value(self, value: dict[str, Any], result: ParseResult) -> None:
        metadata = as_dict(value.get("metadata"))
        contacts = list_of_dicts(value, "contacts", "value")
        messages = list_of_dicts(value, "messages", "value")
        statuses = list_of_dicts(value, "statuses", "value")
        errors = list_of_dicts(value, "errors", "value")
        for status in statuses:
            self._status(status, result)
        for error in errors:
            # An asynchronous failure not tied to a message (Meta: support/error-codes, "value.errors").
            log.warning("whatsapp asynchronous error %s: %s", as_str(error.get("code")),
                        (as_text(error.get("title")) or "")[:200],
                        extra={"fields": {"phone_number_id": as_str(metadata.get("phone_number_id"))}})
            result.drop("async_error")
        if not messages and not statuses and not errors:
            result.drop("empty_change")
        for item in messages:
            self._item(item, metadata, contacts, result)

    def _status(self, status: dict[str, Any], result: ParseResult) -> None:
        wamid, state = as_str(status.get("id")), RECEIPT_OF.get(as_str(status.get("status")) or "")
        if not wamid or len(wamid) > MAX_ID_CHARS or state is None:
            result.drop("unsupported_receipt")  # "deleted", "warning", or not a status of ours
            return
        receipt = Receipt(status=state, message_ids=[wamid], timestamp=as_float(status.get("timestamp")))
        if state == "failed":
            error = next(iter(dicts_in(status.get("errors"))), {})
            code = _code(error.get("code"))
            receipt.error = _error(code, error)
            receipt.retryable = code in WHATSAPP_ERRORS.retryable
            receipt.retry_after = WHATSAPP_ERRORS.min_wait.get(code) if receipt.retryable and code else None
        result.receipts.append(receipt)
        result.drop("receipt")  # applied to our replies' delivery, never answered

    def _item(self, item: dict[str, Any], metadata: dict[str, Any], contacts: list[dict[str, Any]],
              result: ParseResult) -> None:
        wamid, kind = as_str(item.get("id")), as_str(item.get("type")) or "unsupported"
        if not wamid or len(wamid) > MAX_ID_CHARS:
            result.drop("malformed")
            return
        if kind in DROPPED_TYPES:
            result.drop(DROPPED_TYPES[kind])
            return
        who = _sender(item, contacts)
        if who is None:
            result.drop("no_sender")
            return
        message = self._message(wamid, kind, item, who)
        if message is None:
            result.drop("unsupported_edit")
            return
        meta = {"phone_number_id": as_str(metadata.get("phone_number_id")),
                "display_phone_number": as_str(metadata.get("display_phone_number")),
                "wamid": wamid, **who.meta, **message.meta}
        message.meta = {k: v for k, v in meta.items() if v is not None}
        result.messages.append(message)

    def _message(self, wamid: str, kind: str, item: dict[str, Any], who: Sender) -> InboundMessage | None:
        base = {"channel": self.channel, "message_id": wamid, "chat_id": who.chat_id, "sender_id": who.chat_id,
                "sender_name": who.name, "chat_aliases": who.aliases, "timestamp": as_float(item.get("timestamp"))}
        reply_to = as_str(as_dict(item.get("context")).get("id"))
        if kind == "edit":
            edit = as_dict(item.get("edit"))
            original, inner = as_str(edit.get("original_message_id")), as_dict(edit.get("message"))
            inner_kind = as_str(inner.get("type")) or "text"
            found = content(inner_kind, inner) if original and inner_kind != "edit" else None
            if found is None:
                return None  # an edit we cannot read changes nothing the agent saw
            text, attachments, extra = found
            return InboundMessage(text=text, kind="edit", attachments=attachments, reply_to_id=original,
                                  edit_of=original, meta={**extra, "original_message_id": original,
                                                          "edited_type": inner_kind}, **base)
        found = content(kind, item)
        if found is None:
            return InboundMessage(text="", kind="unsupported", reply_to_id=reply_to,
                                  meta=_unsupported_meta(kind, item), **base)
        text, attachments, extra = found
        return InboundMessage(text=text, kind=kind, attachments=attachments, reply_to_id=reply_to, meta=extra, **base)

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

    @staticmethod
    def _recipient(chat_id: str) -> dict[str, str]:
        # A BSUID goes in `recipient`, a phone number in `to` (Meta: business-scoped-user-ids,
        # "Messages API requests"); with both, `to` would win, so only one is ever sent.
        return {"recipient": chat_id} if BSUID.match(chat_id) else {"to": chat_id}

    async def send(self, webhook: Webhook, target: ReplyTarget, text: str) -> list[str]:
        if not target.chat_id:
            raise SendError("whatsapp: the conversation has no recipient", retryable=False)
        url = self._messages_url(webhook, target)
        body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual",
                                **self._recipient(target.chat_id)}
        if target.mode == "template":
            # The window has closed: the approved template re-opens the conversation; the reply's
            # own text cannot be sent (Meta: send template messages).
            try:
                template = template_setting(target.template)
            except CredentialsError as exc:
                raise SendError(f"whatsapp: no usable re-engagement template ({exc})", retryable=False,
                                code="window_closed") from None
            body.update(type="template", template={"name": template["name"],
                                                   "language": {"code": template["language"]}})
        else:
            body.update(type="text", text={"preview_url": False, "body": text})
            inbound = self._inbound_id(target)
            if inbound:
                body["context"] = {"message_id": inbound}
        answer = await self.graph_call("whatsapp send", "POST", url, self.token(webhook), body)
        return [i for i in (as_str(m.get("id")) for m in list_of_dicts(answer, "messages", "answer")) if i]

    async def typing(self, webhook: Webhook, target: ReplyTarget, *, first: bool = True) -> None:
        # The indicator IS the read call (status "read" + typing_indicator): one call per refresh,
        # whether first or not (Meta: typing-indicators).
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
        # The digest comes base64 in the webhook and hex on other pages: compared as bytes (§2.4).
        expected = as_str(info.get("sha256")) or attachment.extra.get("sha256")
        if isinstance(expected, str) and not sha256_matches(data, expected):
            raise SendError("whatsapp: downloaded media does not match its sha256", retryable=True)
        return data, as_str(info.get("mime_type")) or attachment.mime_type or mime


# ---------------------------------------------------------------------------- helpers

class Sender:
    """Who wrote: the chat id replies go to, other ids of the same chat, name and meta."""

    __slots__ = ("aliases", "chat_id", "meta", "name")

    def __init__(self, chat_id: str, aliases: list[str], name: str | None, meta: dict[str, Any]) -> None:
        self.chat_id, self.aliases, self.name, self.meta = chat_id, aliases, name, meta


def _contact(contacts: list[dict[str, Any]], phone: str | None, user_id: str | None) -> dict[str, Any]:
    """The contacts[] entry of the sender: the one with its phone or BSUID, else the only one
    unless it names another phone."""
    for contact in contacts:
        if (phone and as_str(contact.get("wa_id")) == phone) or (user_id and contact.get("user_id") == user_id):
            return contact
    if len(contacts) == 1 and as_str(contacts[0].get("wa_id")) in (None, phone):
        return contacts[0]
    return {}


def _sender(item: dict[str, Any], contacts: list[dict[str, Any]]) -> Sender | None:
    """The phone number (`from`) is the chat id when there is one, as before BSUIDs; a username
    user without one is the BSUID (Meta: business-scoped-user-ids, incoming messages webhooks)."""
    phone = as_str(item.get("from")) or None
    contact = _contact(contacts, phone, bsuid(item.get("from_user_id")))
    user_id = bsuid(item.get("from_user_id")) or bsuid(contact.get("user_id"))
    parent = bsuid(item.get("from_parent_user_id")) or bsuid(contact.get("parent_user_id"))
    profile = as_dict(contact.get("profile"))
    name = as_text(profile.get("name"))
    if name is None and len(contacts) == 1:
        name = as_text(as_dict(contacts[0].get("profile")).get("name"))
    meta = {"user_id": user_id, "parent_user_id": parent, "username": (as_text(profile.get("username")) or "")[:100]}
    meta = {k: v for k, v in meta.items() if v}
    if phone:
        return Sender(phone, [user_id] if user_id else [], name, meta)
    if user_id:
        return Sender(user_id, [], name, meta)
    return None


def _code(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(value) if isinstance(value, str) and value.isdigit() and len(value) < 10 else None


def _error(code: int | None, error: dict[str, Any]) -> dict[str, Any]:
    """{"code", "title", "details"?} of a status error (Meta: webhooks/reference/messages/status)."""
    title = (as_text(error.get("title")) or as_text(error.get("message")) or "Message failed")[:200]
    details = as_text(as_dict(error.get("error_data")).get("details")) or as_text(error.get("message"))
    found: dict[str, Any] = {"code": code, "title": title}
    if details and details != title:
        found["details"] = details[:500]
    return found


def _unsupported_meta(kind: str, item: dict[str, Any]) -> dict[str, Any]:
    """What WhatsApp says about a message the agent cannot read: the type the customer used
    (`unsupported.type`, e.g. poll_creation) and the error it attached (131051)."""
    shown = as_str(as_dict(item.get("unsupported")).get("type")) if kind == "unsupported" else kind
    error = next(iter(dicts_in(item.get("errors"))), None)
    meta: dict[str, Any] = {"unsupported_type": (shown or "unknown")[:64]}
    if error is not None:
        meta["error"] = _error(_code(error.get("code")), error)
    return meta
