"""What WhatsApp, Messenger and Instagram share (docs/channels.md §1-§4): the Graph webhook
handshake (GET hub.*), X-Hub-Signature-256 over the raw body with the App Secret, the Graph
error format and its retry classes, and (Messenger and Instagram) the `entry[].messaging[]`
event shape and the `/me/messages` Send API.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, ClassVar

from buzzi.channels.base import (
    Attachment,
    ChannelAdapter,
    CredentialsError,
    HandshakeResult,
    InboundMessage,
    ParseResult,
    PayloadError,
    Receipt,
    ReplyTarget,
    SampleEvent,
    SendError,
    VerificationError,
    WebhookRequest,
)
from buzzi.channels.outbound import download, parse_retry_after
from buzzi.channels.pacing import SendLimits
from buzzi.channels.payload import as_dict, as_float, as_str, compact_json, json_or_none, list_of_dicts
from buzzi.models import Webhook
from buzzi.signing import hub_signature, hub_verify

log = logging.getLogger("buzzi.channels")

GRAPH_ID = re.compile(r"^[0-9]{1,32}$")  # Graph ids are numeric; they end up in URL paths
TOKEN = re.compile(r"^[\x21-\x7e]{8,4096}$")  # printable ASCII, no spaces: safe in a header


# ---------------------------------------------------------------------------- configuration

def require_field(credentials: Any, name: str, pattern: re.Pattern[str], expected: str) -> str:
    if not isinstance(credentials, dict):
        raise CredentialsError("credentials", "expected an object")
    value = credentials.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # a numeric id pasted as a JSON number
    if not isinstance(value, str) or not value.strip():
        raise CredentialsError(name, "required")
    value = value.strip()
    if not pattern.match(value):
        raise CredentialsError(name, f"expected {expected}")
    return value


# ---------------------------------------------------------------------------- errors

# Graph rate limits (app, account, Page and business-use-case limits): retryable later, whatever the
# HTTP status they come with (often 400). docs/channels.md §8a.
GRAPH_RATE_LIMITS = frozenset({4, 17, 32, 613, *range(80001, 80015)})


@dataclass(frozen=True)
class ErrorClasses:
    """Graph `error.code`s by outcome; codes in neither set fall back to the HTTP status. `min_wait`
    holds codes whose retry must wait at least that many seconds (WhatsApp's pair limit 131056)."""

    retryable: frozenset[int]
    permanent: frozenset[int]
    min_wait: dict[int, float] = field(default_factory=dict)


# Code 10 with this subcode: "This message is sent outside of allowed window" (Messenger Platform,
# Send API error codes: developers.facebook.com/docs/messenger-platform/reference/send-api/error-codes).
WINDOW_SUBCODES = frozenset({2018278})
WINDOW_TITLE = ("Outside the messaging window: the customer's last message is more than 24 hours old "
                "(a person's reply may use the HUMAN_AGENT tag within 7 days)")


def outside_window(code: int | None, subcode: Any, message: str) -> bool:
    # Instagram answers the same condition with other subcodes but the same wording.
    return code == 10 and (subcode in WINDOW_SUBCODES or "allowed window" in message.lower())


def graph_error(what: str, status: int, payload: Any, retry_after: str | None,
                classes: ErrorClasses) -> SendError:
    """The SendError for a Graph error answer. The class follows `error.code` whatever the HTTP
    status (rate limits come as 400); `retry_after` is never shorter than the code's min_wait."""
    error = as_dict(as_dict(payload).get("error"))
    code = error.get("code") if isinstance(error.get("code"), int) else None
    subcode = error.get("error_subcode")
    message = str(error.get("message") or "")[:300]
    if code in classes.retryable:
        retryable = True
    elif code in classes.permanent:
        retryable = False
    else:
        retryable = status == 429 or status >= 500
    wait = parse_retry_after(retry_after)
    if code in classes.min_wait:
        wait = max(wait or 0.0, classes.min_wait[code])
    detail = f"{what} failed: HTTP {status}"
    if code is not None:
        detail += f", code {code}" + (f"/{subcode}" if subcode else "")
    if message:
        detail += f": {message}"
    if outside_window(code, subcode, message):
        detail = f"{WINDOW_TITLE} ({detail})"  # permanent: the send must not be repeated blind
    return SendError(detail, retryable=retryable, retry_after=wait, status=status, code=code)


# ---------------------------------------------------------------------------- the adapter

class MetaAdapter(ChannelAdapter):
    """Graph webhooks: handshake, signature, secrets, and one JSON call with error classes."""

    # Every Graph webhook is signed with the Meta App Secret and has a verify-token handshake.
    secret_source = "given"
    secret_hint = "The Meta App Secret (App Dashboard > Basic settings). Required."
    has_verify_token = True
    api_base_setting: ClassVar[str]  # ChannelSettings field with this channel's Graph base URL
    token_field: ClassVar[str]  # credentials key of the access token
    error_classes: ClassVar[ErrorClasses]

    @property
    def api_base(self) -> str:
        return str(getattr(self.settings, self.api_base_setting)).rstrip("/")

    def generate_secrets(self, given_secret: str | None,
                         given_verify_token: str | None) -> tuple[str | None, str | None]:
        # The App Secret is Meta's, never ours to choose; the verify token is any string we like.
        if not given_secret or not given_secret.strip():
            raise CredentialsError("secret", "the Meta App Secret is required (App Dashboard > Basic settings)")
        verify_token = (given_verify_token or "").strip() or secrets.token_urlsafe(24)
        return given_secret.strip(), verify_token

    def handshake(self, webhook: Webhook, request: WebhookRequest) -> HandshakeResult | None:
        query = request.query
        expected = (webhook.verify_token or "").encode()
        given = (query.get("hub.verify_token") or "").encode()
        challenge = query.get("hub.challenge")
        # compare_digest first and unconditionally: the answer time must not depend on the mode
        token_ok = hmac.compare_digest(given, expected) and bool(expected)
        if token_ok and query.get("hub.mode") == "subscribe" and challenge is not None:
            return HandshakeResult(200, challenge)
        return HandshakeResult(403, json.dumps({"error": "Forbidden"}), "application/json")

    @staticmethod
    def signed_sample(webhook: Webhook, data: dict[str, Any], what: str) -> SampleEvent:
        body = compact_json(data)
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": hub_signature(webhook.secret or "", body)}
        return SampleEvent(body, headers, f"{what}, signed with X-Hub-Signature-256")

    async def verify(self, webhook: Webhook, request: WebhookRequest) -> None:
        if not hub_verify(webhook.secret or "", request.headers.get("x-hub-signature-256"), request.body):
            raise VerificationError("invalid X-Hub-Signature-256")

    async def graph_call(self, what: str, method: str, url: str, token: str,
                         body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One Graph call with the token in the Authorization header (never in the URL, so it
        cannot reach a log line through an exception's request URL)."""
        session = self.http.session(self.channel)
        async with session.request(method, url, json=body, allow_redirects=False,
                                   headers={"Authorization": f"Bearer {token}"}) as response:
            raw = await response.read()
            payload = json_or_none(raw) or {}
            if 200 <= response.status < 300:
                return as_dict(payload)
            raise graph_error(what, response.status, payload, response.headers.get("Retry-After"),
                              self.error_classes)

    def token(self, webhook: Webhook) -> str:
        token = webhook.credentials.get(self.token_field)
        if not token:
            raise SendError(f"{self.channel}: {self.token_field} is not configured", retryable=False)
        return str(token)


# ---------------------------------------------------------------------------- Messenger and Instagram

# Messenger Send API error codes (docs/channels.md §3.3); Instagram uses the same families (§4.2).
# Every Graph rate limit (4, 17, 32, 613, 80001-80014, e.g. 80006 for Messenger) is retryable later,
# whatever its HTTP status (Graph API "Rate Limits"; Messenger Platform "Common Error Codes").
MESSAGING_ERRORS = ErrorClasses(
    retryable=frozenset({1200, 2, *GRAPH_RATE_LIMITS}),
    permanent=frozenset({10, 100, 551, 190, 230, 200}),
)
ATTACHMENT_KINDS = {"image": "image", "video": "video", "audio": "audio", "file": "file", "location": "location"}
DAY = 24 * 3600.0
MAX_RECEIPT_IDS = 100  # mids named by one delivery event; a hostile body must not grow a query
MAX_MID_CHARS = 512
# Events that are neither a message nor a receipt, by their key, with the drop reason each is counted
# under (Messenger "Webhook Events Reference"; Instagram "Webhooks for Instagram Messaging").
DROPPED_EVENTS = (
    ("reaction", "reaction"),
    ("referral", "referral"),
    ("optin", "optin"),
    ("pass_thread_control", "handover"),
    ("take_thread_control", "handover"),
    ("request_thread_control", "handover"),
    ("app_roles", "handover"),
    ("policy_enforcement", "policy_enforcement"),
    ("account_linking", "account_linking"),
)


def millis_to_seconds(value: Any) -> float | None:
    """A Graph millisecond timestamp as Unix seconds; None unless a plausible positive number."""
    if isinstance(value, bool):
        return None
    millis = as_float(value)
    if millis is None or not 0 < millis < 1e14:  # also rules out nan and inf
        return None
    return millis / 1000


def receipt_mids(value: Any) -> list[str]:
    mids = [m for m in value if isinstance(m, str) and 0 < len(m) <= MAX_MID_CHARS] if isinstance(value, list) else []
    return mids[:MAX_RECEIPT_IDS]


class MessagingAdapter(MetaAdapter):
    """Messenger and Instagram: `entry[].messaging[]` events in, `/me/messages` out."""

    object_name: ClassVar[str]  # the envelope's "object"
    account_key: ClassVar[str]  # meta key naming our side of the chat (page_id / ig_user_id)
    account_field: ClassVar[str]  # credentials key of our side's id (pageId / igUserId)
    error_classes = MESSAGING_ERRORS
    # Send API calls per second per Page or IG account (one webhook) for text (docs/channels.md §3.3, §4.2).
    send_limits = SendLimits(per_account=300.0)
    # "Typing indicators are automatically turned off after 20 seconds, or when the bot sends a
    # message" (Messenger Platform, Sender Actions): refreshed well inside that.
    typing_interval = 15.0
    # Standard messaging within 24 h of the customer's last message; a person's reply with the
    # HUMAN_AGENT tag within 7 days (Messenger Platform "Send a Message" and message tags policy;
    # the same for Instagram Messaging).
    service_window = DAY
    human_window = 7 * DAY
    # Whether a standard send names `messaging_type: RESPONSE` (required by the Messenger Send API;
    # the Instagram send-message doc sample has no messaging_type).
    names_response_type: ClassVar[bool] = True

    def sample_event(self, webhook: Webhook, now: float) -> SampleEvent:
        account = str(webhook.credentials.get(self.account_field) or "0")
        millis = int(now) * 1000
        return self.signed_sample(webhook, {"object": self.object_name, "entry": [{
            "id": account, "time": millis, "messaging": [{
                "sender": {"id": "1000000000000001"}, "recipient": {"id": account}, "timestamp": millis,
                "read": {"watermark": millis},
            }]}]}, "a read receipt")

    # ---- input side
    def parse(self, webhook: Webhook, request: WebhookRequest) -> ParseResult:
        data = request.json()
        if data.get("object") != self.object_name:
            raise PayloadError(f'expected "object": "{self.object_name}"')
        if not isinstance(data.get("entry"), list):
            raise PayloadError("expected an entry list")
        result = ParseResult()
        for entry in list_of_dicts(data, "entry", "body"):
            # standby[] carries threads another app owns (handover protocol): not ours to answer
            if standby := list_of_dicts(entry, "standby", "entry"):
                result.drop("standby", len(standby))
            if changes := list_of_dicts(entry, "changes", "entry"):
                result.drop("unsupported_event", len(changes))  # feed/comment fields
            for event in list_of_dicts(entry, "messaging", "entry"):
                self.parse_event(event, entry, result)
        return result

    def parse_event(self, event: dict[str, Any], entry: dict[str, Any], result: ParseResult) -> None:
        """One `messaging[]` event: a message for `result.messages`, a receipt for `result.receipts`,
        or a drop with its reason."""
        sender = as_str(as_dict(event.get("sender")).get("id"))
        if not sender:
            result.drop("malformed_event")
            return
        account = as_str(as_dict(event.get("recipient")).get("id")) or as_str(entry.get("id"))
        base = {"channel": self.channel, "chat_id": sender, "sender_id": sender,
                "timestamp": millis_to_seconds(event.get("timestamp"))}
        meta: dict[str, Any] = {self.account_key: account}
        message: InboundMessage | None = None
        if isinstance(event.get("message"), dict):
            message = self._message(event["message"], base, meta, result)
        elif isinstance(event.get("postback"), dict):
            message = self._postback(event["postback"], event, base, meta, result)
        elif isinstance(event.get("message_edit"), dict):
            message = self._edit(event["message_edit"], base, meta, result)
        elif isinstance(event.get("delivery"), dict) or isinstance(event.get("read"), dict):
            self._receipt(event, sender, base["timestamp"], result)
        else:
            result.drop(next((reason for key, reason in DROPPED_EVENTS if key in event), "unsupported_event"))
        if message is not None:
            result.messages.append(message)

    def _receipt(self, event: dict[str, Any], sender: str, timestamp: float | None, result: ParseResult) -> None:
        """Messenger `delivery` {mids?, watermark} and `read` {watermark} (message_deliveries and
        message_reads webhook references: everything sent before the watermark, in ms, is
        delivered/read); Instagram `messaging_seen` arrives as `read` {mid} naming the last message
        seen. The sender is the customer, so the chat is theirs."""
        key = "delivery" if isinstance(event.get("delivery"), dict) else "read"
        status = "delivered" if key == "delivery" else "read"
        body = as_dict(event.get(key))
        mids = receipt_mids(body.get("mids"))
        if status == "read" and isinstance(body.get("mid"), str):
            mids = receipt_mids([body["mid"]])
        watermark = millis_to_seconds(body.get("watermark"))
        if not mids and watermark is None:
            result.drop("malformed_event")
            return
        result.receipts.append(Receipt(status, message_ids=mids, chat_id=sender, watermark=watermark,
                                       timestamp=timestamp if timestamp is not None else watermark))
        result.drop("receipt")

    def _message(self, message: dict[str, Any], base: dict[str, Any], meta: dict[str, Any],
                 result: ParseResult) -> InboundMessage | None:
        mid = as_str(message.get("mid"))
        if message.get("is_echo"):
            result.drop("echo")  # our own sends echoed back: answering them would loop
            return None
        if message.get("is_deleted"):
            result.drop("revoke")  # the customer unsent a message
            return None
        if not mid:
            result.drop("malformed_event")
            return None
        meta["mid"] = mid
        if message.get("is_unsupported"):
            # Content the API cannot show us (Instagram): answered with channels.unreadable_message.
            return InboundMessage(message_id=mid, text="", kind="unsupported", meta=meta, **base)
        text = message.get("text") if isinstance(message.get("text"), str) else ""
        attachments = [self._attachment(a) for a in list_of_dicts(message, "attachments", "message")]
        kind = "text" if text or not attachments else attachments[0].kind
        payload = as_str(as_dict(message.get("quick_reply")).get("payload"))
        if payload is not None:
            kind = "interactive"
            meta["payload"] = payload
        reply_to = as_dict(message.get("reply_to"))
        if isinstance(reply_to.get("story"), dict):
            meta["story"] = {k: v for k, v in reply_to["story"].items() if k in ("id", "url")}
        return InboundMessage(message_id=mid, text=text, kind=kind, attachments=attachments,
                              reply_to_id=as_str(reply_to.get("mid")), meta=meta, **base)

    def _postback(self, postback: dict[str, Any], event: dict[str, Any], base: dict[str, Any],
                  meta: dict[str, Any], result: ParseResult) -> InboundMessage | None:
        payload = as_str(postback.get("payload")) or ""
        if not payload and not as_str(postback.get("title")):
            result.drop("empty_postback")  # a button with neither title nor payload: nothing to answer
            return None
        mid = as_str(postback.get("mid"))
        if not mid:
            # Postbacks before v11.0 carry no mid: the same click redelivered must get the same id.
            seed = f"{base['sender_id']}|{event.get('timestamp')}|{payload}".encode()
            mid = "postback." + hashlib.sha256(seed).hexdigest()[:32]
        meta.update({"payload": payload, "mid": mid})
        title = as_str(postback.get("title")) or payload
        return InboundMessage(message_id=mid, text=title, kind="postback", meta=meta, **base)

    def _edit(self, edit: dict[str, Any], base: dict[str, Any], meta: dict[str, Any],
              result: ParseResult) -> InboundMessage | None:
        """message_edit {mid, text, num_edit} (Messenger "message_edits" webhook reference): the mid
        is the original's, so the intake records the edit on it (edit_of) instead of answering again."""
        mid = as_str(edit.get("mid"))
        if not mid:
            result.drop("malformed_event")
            return None
        # The edit carries the original's mid: keep the dedupe id distinct per edit.
        number = as_str(edit.get("num_edit")) or "1"
        meta.update({"mid": mid, "original_message_id": mid, "num_edit": number})
        text = edit.get("text") if isinstance(edit.get("text"), str) else ""
        return InboundMessage(message_id=f"{mid}:edit:{number}", text=text, kind="edit",
                              reply_to_id=mid, edit_of=mid, meta=meta, **base)

    @staticmethod
    def _attachment(item: dict[str, Any]) -> Attachment:
        kind = str(item.get("type") or "file")
        payload = as_dict(item.get("payload"))
        extra: dict[str, Any] = {}
        if kind == "location":
            extra = {k: v for k, v in as_dict(payload.get("coordinates")).items() if k in ("lat", "long")}
        if payload.get("sticker_id") is not None:
            kind = "sticker"
            extra["sticker_id"] = payload["sticker_id"]
        title = as_str(payload.get("title")) or as_str(item.get("title"))
        if title:
            extra["title"] = title  # link shares (fallback) carry only a title and a URL
        return Attachment(kind=ATTACHMENT_KINDS.get(kind, kind), url=as_str(payload.get("url")), extra=extra)

    # ---- output side
    def message_body(self, target: ReplyTarget, text: str) -> dict[str, Any]:
        """The Send API body for `target.mode` (buzzi/windows.py chose it from the window): a person's
        reply after 24 h goes as `messaging_type: MESSAGE_TAG` + `tag: HUMAN_AGENT` (Messenger
        Platform "Send a Message", message tags; Instagram Messaging the same)."""
        body: dict[str, Any] = {"recipient": {"id": target.chat_id}, "message": {"text": text}}
        if target.mode == "human_agent":
            body.update({"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"})
        elif target.mode != "standard":
            raise SendError(f"{self.channel}: cannot send a {target.mode!r} message (templates are WhatsApp's)",
                            retryable=False)
        elif self.names_response_type:
            body["messaging_type"] = "RESPONSE"  # an answer inside the 24-hour window
        return body

    async def send(self, webhook: Webhook, target: ReplyTarget, text: str) -> list[str]:
        if not target.chat_id:
            raise SendError(f"{self.channel}: the conversation has no recipient id", retryable=False)
        answer = await self.graph_call(f"{self.channel} send", "POST", f"{self.api_base}/me/messages",
                                       self.token(webhook), self.message_body(target, text))
        message_id = as_str(answer.get("message_id"))
        return [message_id] if message_id else []

    async def typing(self, webhook: Webhook, target: ReplyTarget, *, first: bool = True) -> None:
        """`mark_seen` once, with the first call, then `typing_on`; a refresh sends only `typing_on`.
        Each sender action is its own request with only `recipient` and `sender_action`
        (Messenger Platform and Instagram "Sender Actions")."""
        if not target.chat_id:
            return
        if first:
            await self._sender_action(webhook, target, "mark_seen")
        await self._sender_action(webhook, target, "typing_on")

    async def _sender_action(self, webhook: Webhook, target: ReplyTarget, action: str) -> None:
        body = {"recipient": {"id": target.chat_id}, "sender_action": action}
        try:
            await self.graph_call(f"{self.channel} {action}", "POST", f"{self.api_base}/me/messages",
                                  self.token(webhook), body)
        except Exception as exc:  # noqa: BLE001 - best effort: a missing indicator must never fail the reply
            log.info("%s %s failed: %s", self.channel, action, exc.__class__.__name__,
                     extra={"fields": {"webhook_id": webhook.id, "error": str(exc)[:200]}})

    async def download_media(self, webhook: Webhook, attachment: Attachment) -> tuple[bytes, str | None]:
        # payload.url is a public, expiring CDN URL: no Graph auth (docs/channels.md §3.4)
        if not attachment.url or not attachment.url.startswith(("https://", "http://")):
            raise SendError(f"{self.channel}: attachment has no downloadable URL", retryable=False)
        return await download(self.http.tenant_session(self.channel), attachment.url, self.settings.media_max_bytes)
