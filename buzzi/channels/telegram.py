"""Telegram Bot API adapter (docs/channels.md §5).

Inbound: Telegram POSTs one Update per request, authenticated only by the secret_token we chose at
setWebhook time (X-Telegram-Bot-Api-Secret-Token; no body signature, no timestamp).
Outbound: sendMessage with parse_mode HTML. HTML needs only &, < and > escaped, where MarkdownV2
needs 18 characters escaped and fails the whole send on one miss; plain agent text therefore
arrives exactly as written.

The bot token is part of every API URL: no URL is ever put into an error message or a log line.
"""

from __future__ import annotations

import hmac
import html
import logging
import re
import secrets
from typing import Any

import aiohttp

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
from buzzi.channels.outbound import MediaTooLargeError, download
from buzzi.channels.pacing import SendLimits
from buzzi.channels.payload import as_dict, as_float, as_str, as_text, compact_json
from buzzi.models import Webhook

log = logging.getLogger(__name__)

SECRET_HEADER = "x-telegram-bot-api-secret-token"
TOKEN_RE = re.compile(r"^(\d+):[A-Za-z0-9_-]+$")
SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
ALLOWED_UPDATES = ["message", "edited_message", "callback_query"]
MESSAGE_KEYS = ("message", "edited_message")
# Media keys of a Message, in the order that decides the message kind. photo is a list of sizes.
MEDIA_KEYS = ("photo", "voice", "audio", "video", "video_note", "animation", "document", "sticker")
MEDIA_KIND = {"photo": "image", "voice": "voice", "audio": "audio", "video": "video", "video_note": "video",
              "animation": "video", "document": "document", "sticker": "sticker"}
PARSE_ERROR = "can't parse entities"


class TelegramAdapter(ChannelAdapter):
    channel = "telegram"
    display_name = "Telegram"
    credential_fields = (CredentialField("botToken", "Bot token (from BotFather)", secret=True),)
    secret_source = "generated"
    secret_hint = "Leave empty: a secret_token is generated and registered with setWebhook."
    registers_webhook = True
    text_limit = 4096  # characters after entity parsing (docs/channels.md §5.3)
    # Bot FAQ (docs/channels.md §5): about 1 msg/s per chat with short bursts, about 30 msg/s per bot.
    send_limits = SendLimits(per_chat=1.0, chat_burst=3.0, per_account=30.0)

    # ---- configuration
    def validate_credentials(self, credentials: Any) -> dict[str, Any]:
        if not isinstance(credentials, dict):
            raise CredentialsError("credentials", "expected an object with botToken")
        token = credentials.get("botToken")
        if not isinstance(token, str) or not token.strip():
            raise CredentialsError("botToken", "required (the token BotFather gave, e.g. 123456:ABC-DEF...)")
        token = token.strip()
        # The token goes into URL paths: its shape is checked so nothing else can.
        if not TOKEN_RE.match(token):
            raise CredentialsError("botToken", "expected <bot id>:<secret>, e.g. 123456:ABC-DEF...")
        return {"botToken": token}

    def generate_secrets(
        self, given_secret: str | None, given_verify_token: str | None
    ) -> tuple[str | None, str | None]:
        if given_secret:
            if not SECRET_RE.match(given_secret):
                raise CredentialsError("secret", "Telegram secret_token is 1-256 characters of A-Z a-z 0-9 _ -")
            return given_secret, None
        return secrets.token_urlsafe(32), None  # url-safe base64 is exactly Telegram's alphabet

    async def on_created(self, webhook: Webhook, url: str) -> dict[str, Any]:
        """setWebhook with our secret_token. CredentialsError when Telegram refuses (bad token, URL
        not HTTPS or on a port other than 443/80/88/8443), SendError when it cannot be reached."""
        token = self._token(webhook)
        if not webhook.secret:
            raise CredentialsError("secret", "no secret_token to register (generate_secrets was not applied)")
        payload = {"url": url, "secret_token": webhook.secret, "allowed_updates": ALLOWED_UPDATES}
        try:
            await self._call(token, "setWebhook", payload)
        except SendError as exc:
            if exc.retryable:
                raise
            field = "botToken" if exc.status in (401, 404) else "url"
            raise CredentialsError(field, f"Telegram refused setWebhook: {exc}") from None
        match = TOKEN_RE.match(token)
        return {"registered": True, "botId": int(match.group(1)) if match else None,
                "allowedUpdates": ALLOWED_UPDATES}

    def sample_event(self, webhook: Webhook, now: float) -> SampleEvent:
        body = compact_json({"update_id": secrets.randbelow(10**9), "message_reaction": {
            "chat": {"id": 1, "type": "private"}, "message_id": 1, "date": int(now),
            "user": {"id": 1, "is_bot": False, "first_name": "Test"},
            "old_reaction": [], "new_reaction": [{"type": "emoji", "emoji": "\U0001f44d"}]}})
        headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": webhook.secret or ""}
        return SampleEvent(body, headers, "a message_reaction update, with the secret token header")

    # ---- input side
    async def verify(self, webhook: Webhook, request: WebhookRequest) -> None:
        given = request.headers.get(SECRET_HEADER)
        if not webhook.secret or not given:
            raise VerificationError("missing secret token")
        if not hmac.compare_digest(given.encode(), webhook.secret.encode()):
            raise VerificationError("wrong secret token")

    def parse(self, webhook: Webhook, request: WebhookRequest) -> ParseResult:
        update = request.json()
        if not isinstance(update.get("update_id"), int):
            raise PayloadError("not a Telegram Update (no update_id)")
        bot_id = self._bot_id(webhook)
        update_id = update["update_id"]
        message: InboundMessage | None = None
        for key in MESSAGE_KEYS:
            if isinstance(update.get(key), dict):
                message = _from_message(update[key], update_id, edited=key == "edited_message", bot_id=bot_id)
                break
        else:
            if isinstance(update.get("callback_query"), dict):
                message = _from_callback(update["callback_query"], update_id, bot_id)
        # channel_post, my_chat_member, message_reaction, poll, ...: acknowledged, not processed.
        return ParseResult(messages=[message]) if message else ParseResult(ignored=1)

    # ---- output side
    def format(self, text: str) -> str:
        """HTML-escape for parse_mode HTML. Split before formatting: a cut inside &amp; breaks parsing."""
        return html.escape(text, quote=False)

    async def send(self, webhook: Webhook, target: ReplyTarget, text: str) -> list[str]:
        token = self._token(webhook)
        meta = target.meta
        payload: dict[str, Any] = {"chat_id": _chat_id(target.chat_id), "text": text, "parse_mode": "HTML"}
        reply_to = target.in_reply_to.metadata.get("channel", {}).get("message_id") if target.in_reply_to else None
        if reply_to is not None:
            # allow_sending_without_reply: a deleted original must not lose the answer.
            payload["reply_parameters"] = {"message_id": reply_to, "allow_sending_without_reply": True}
        if meta.get("message_thread_id") is not None:
            payload["message_thread_id"] = meta["message_thread_id"]
        try:
            result = await self._call(token, "sendMessage", payload)
        except SendError as exc:
            if exc.status == 400 and PARSE_ERROR in str(exc).lower():
                # Telegram could not parse our HTML: deliver the words rather than nothing.
                payload.pop("parse_mode")
                payload["text"] = html.unescape(text)
                result = await self._call(token, "sendMessage", payload)
            elif getattr(exc, "migrate_to_chat_id", None) is not None:
                # The group became a supergroup: same chat, new id (docs/channels.md §5.3).
                payload["chat_id"] = exc.migrate_to_chat_id  # type: ignore[attr-defined]
                result = await self._call(token, "sendMessage", payload)
            else:
                raise
        return [str(result["message_id"])] if isinstance(result, dict) and "message_id" in result else []

    async def typing(self, webhook: Webhook, target: ReplyTarget) -> None:
        """sendChatAction lasts at most 5 s: callers repeat it every ~4 s while the agent works."""
        payload: dict[str, Any] = {"chat_id": _chat_id(target.chat_id), "action": "typing"}
        if target.meta.get("message_thread_id") is not None:
            payload["message_thread_id"] = target.meta["message_thread_id"]
        await self._best_effort(webhook, "sendChatAction", payload)

    async def acknowledge(self, webhook: Webhook, message: InboundMessage) -> None:
        """answerCallbackQuery, or the user's client keeps showing a progress bar on the button."""
        query_id = message.meta.get("callback_query_id")
        if query_id:
            await self._best_effort(webhook, "answerCallbackQuery", {"callback_query_id": query_id})

    async def download_media(self, webhook: Webhook, attachment: Attachment) -> tuple[bytes, str | None]:
        """getFile, then the file URL (valid >= 1 h; bots may download up to 20 MB)."""
        if not attachment.media_id:
            raise SendError("attachment has no Telegram file_id", retryable=False)
        limit = self.settings.media_max_bytes
        if attachment.size is not None and attachment.size > limit:
            raise MediaTooLargeError(f"media is {attachment.size} bytes, limit {limit}")
        token = self._token(webhook)
        info = await self._call(token, "getFile", {"file_id": attachment.media_id})
        path = info.get("file_path") if isinstance(info, dict) else None
        if not path:
            raise SendError("Telegram getFile returned no file_path", retryable=False)
        url = f"{self.settings.telegram_api_base.rstrip('/')}/file/bot{token}/{path}"
        try:
            body, mime = await download(self.http.session(self.channel), url, limit)
        except aiohttp.ClientError as exc:
            raise SendError(f"network error: {exc.__class__.__name__}", retryable=True) from None
        return body, attachment.mime_type or mime

    # ---- helpers
    def _token(self, webhook: Webhook) -> str:
        token = webhook.credentials.get("botToken")
        if not token:
            raise SendError("webhook has no botToken", retryable=False)
        return token

    def _bot_id(self, webhook: Webhook) -> int | None:
        if isinstance(webhook.state.get("botId"), int):
            return webhook.state["botId"]
        match = TOKEN_RE.match(str(webhook.credentials.get("botToken") or ""))
        return int(match.group(1)) if match else None

    async def _call(self, token: str, method: str, payload: dict[str, Any]) -> Any:
        """One Bot API call; the `result` on ok, else SendError classified per docs/channels.md §5.3."""
        url = f"{self.settings.telegram_api_base.rstrip('/')}/bot{token}/{method}"
        try:
            async with self.http.session(self.channel).post(url, json=payload) as response:
                status = response.status
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = None
        except (aiohttp.ClientError, TimeoutError) as exc:
            # str(exc) may carry the URL, and the URL carries the token.
            raise SendError(f"{method}: network error: {exc.__class__.__name__}", retryable=True) from None
        if isinstance(body, dict) and body.get("ok") is True:
            return body.get("result")
        raise _error(method, status, body)

    async def _best_effort(self, webhook: Webhook, method: str, payload: dict[str, Any]) -> None:
        try:
            await self._call(self._token(webhook), method, payload)
        except SendError as exc:
            log.info("telegram %s failed: %s", method, exc)


def _error(method: str, status: int, body: Any) -> SendError:
    body = body if isinstance(body, dict) else {}
    code = body.get("error_code") if isinstance(body.get("error_code"), int) else status
    description = str(body.get("description") or f"HTTP {status}")
    params = body.get("parameters") if isinstance(body.get("parameters"), dict) else {}
    retry_after = params.get("retry_after")
    retryable = code == 429 or code >= 500 or status >= 500
    error = SendError(f"{method}: {description}", retryable=retryable,
                      retry_after=float(retry_after) if isinstance(retry_after, int | float) else None,
                      status=status, code=code)
    if params.get("migrate_to_chat_id") is not None:
        error.migrate_to_chat_id = params["migrate_to_chat_id"]  # type: ignore[attr-defined]
    return error


def _chat_id(chat_id: str) -> int | str:
    try:
        return int(chat_id)
    except ValueError:
        return chat_id  # @channelusername


def _topic(msg: dict[str, Any]) -> int | None:
    """The forum topic a message sits in: answers must go to the same topic."""
    return msg.get("message_thread_id") if msg.get("is_topic_message") else None


def _name(user: dict[str, Any]) -> str | None:
    first, last, username, title = (as_text(user.get(k)) for k in ("first_name", "last_name", "username", "title"))
    return " ".join(part for part in (first, last) if part) or username or title or None


def _person(sender: Any, bot_id: int | None) -> dict[str, Any] | None:
    """The sender when a reply may go to them: not another bot, not ourselves (no reply loops)."""
    # Ids are numbers on the wire: anything else (null, a list) would be stored as its Python repr.
    if not isinstance(sender, dict) or not as_str(sender.get("id")) or sender.get("is_bot"):
        return None
    return None if bot_id is not None and sender["id"] == bot_id else sender


def _chat(msg: dict[str, Any]) -> dict[str, Any] | None:
    chat = msg.get("chat")
    return chat if isinstance(chat, dict) and as_str(chat.get("id")) else None


def _attachments(msg: dict[str, Any]) -> list[Attachment]:
    found: list[Attachment] = []
    for key in MEDIA_KEYS:
        media = msg.get(key)
        if key == "photo":
            media = media[-1] if isinstance(media, list) and media else None  # sizes ascend: last is largest
        if not isinstance(media, dict) or not media.get("file_id"):
            continue
        mime = media.get("mime_type") or ("image/jpeg" if key == "photo" else None)
        extra = {k: media[k] for k in ("duration", "width", "height", "emoji", "file_unique_id") if k in media}
        found.append(Attachment(kind=MEDIA_KIND[key], mime_type=mime, name=media.get("file_name"),
                                media_id=media["file_id"], size=media.get("file_size"), extra=extra))
    location = msg.get("location")
    if isinstance(location, dict) and "latitude" in location and "longitude" in location:
        found.append(Attachment(kind="location", extra={"latitude": location["latitude"],
                                                        "longitude": location["longitude"]}))
    contact = msg.get("contact")
    if isinstance(contact, dict) and contact.get("phone_number"):
        extra = {k: contact[k] for k in ("phone_number", "first_name", "last_name", "user_id") if k in contact}
        found.append(Attachment(kind="contact", extra=extra))
    return found


def _from_message(msg: dict[str, Any], update_id: int, *, edited: bool, bot_id: int | None) -> InboundMessage | None:
    chat = _chat(msg)
    sender = _person(msg.get("from") if isinstance(msg.get("from"), dict) else msg.get("sender_chat"), bot_id)
    if chat is None or sender is None:
        return None
    text = as_text(msg.get("text")) or as_text(msg.get("caption")) or ""
    attachments = _attachments(msg)
    if not text and not attachments:
        return None  # service message: new_chat_members, pinned_message, ...
    # message_thread_id is kept even when None: the conversation's meta is merged from the latest
    # message, and a topic left behind must not capture later answers.
    meta: dict[str, Any] = {"update_id": update_id, "message_id": msg.get("message_id"),
                            "chat_type": chat.get("type"), "message_thread_id": _topic(msg)}
    reply = as_dict(msg.get("reply_to_message"))
    return InboundMessage(
        channel="telegram",
        message_id=str(update_id),  # message_id is unique per chat only (docs/channels.md §10.14)
        chat_id=str(chat["id"]),
        sender_id=str(sender["id"]),
        sender_name=_name(sender),
        text=text,
        kind="edit" if edited else (attachments[0].kind if attachments else "text"),
        timestamp=as_float(msg.get("edit_date") or msg.get("date")) or None,
        reply_to_id=str(reply["message_id"]) if "message_id" in reply else None,
        thread_id=str(meta["message_thread_id"]) if meta["message_thread_id"] is not None else None,
        attachments=attachments,
        meta=meta,
    )


def _from_callback(query: dict[str, Any], update_id: int, bot_id: int | None) -> InboundMessage | None:
    msg = as_dict(query.get("message"))
    # Without a message the button sat on an inline-mode message: there is no chat to answer in.
    chat = _chat(msg)
    sender = _person(query.get("from"), bot_id)
    if chat is None or sender is None:
        return None
    meta: dict[str, Any] = {"update_id": update_id, "callback_query_id": query.get("id"),
                            "chat_type": chat.get("type"), "message_thread_id": _topic(msg)}
    return InboundMessage(
        channel="telegram",
        message_id=str(update_id),
        chat_id=str(chat["id"]),
        sender_id=str(sender["id"]),
        sender_name=_name(sender),
        text=as_text(query.get("data")) or "",
        kind="interactive",
        reply_to_id=str(msg["message_id"]) if "message_id" in msg else None,
        attachments=[],
        meta=meta,
    )
