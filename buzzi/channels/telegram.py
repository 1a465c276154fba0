"""Telegram Bot API adapter (docs/channels.md §5).

Inbound: Telegram POSTs one Update per request, authenticated only by the secret_token we chose at
setWebhook time (X-Telegram-Bot-Api-Secret-Token; no body signature, no timestamp).
Dedupe id: "{chat id}:{message_id}" for messages (message_id is unique per chat, docs/channels.md
§10.14), so an edited_message names the message it changes by the same key (InboundMessage.edit_of);
"callback:{id}" for button presses. update_id is not used: it restarts at random after a week
without updates, and an edit's update_id says nothing about the original's.
Every update that is not answered is dropped with a reason (ParseResult.drop). A group that became
a supergroup (Message.migrate_to_chat_id in the old group, migrate_from_chat_id in the new one,
core.telegram.org/bots/api#message) is a ChatMove: the intake re-keys the conversation.

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
    ChatMove,
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
# Updates that are never answered, and the reason the delivery log and /metrics show for each
# (a fixed set: labels never come from the payload). Anything else: "unsupported_event".
UPDATE_DROPS = {
    "channel_post": "channel_post", "edited_channel_post": "channel_post",
    "my_chat_member": "membership", "chat_member": "membership", "chat_join_request": "membership",
    "message_reaction": "reaction", "message_reaction_count": "reaction",
    "poll": "poll", "poll_answer": "poll",
    "inline_query": "inline_query", "chosen_inline_result": "inline_query",
}


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
    # sendChatAction: "The status is set for 5 seconds or less" (core.telegram.org/bots/api#sendchataction):
    # refreshed every 4 s so it does not lapse while the agent works.
    typing_interval = 4.0

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
        result = ParseResult()
        for key in MESSAGE_KEYS:
            if isinstance(update.get(key), dict):
                _read_message(result, update[key], update_id, edited=key == "edited_message", bot_id=bot_id)
                return result
        if isinstance(update.get("callback_query"), dict):
            _add(result, _from_callback(update["callback_query"], update_id, bot_id))
            return result
        # channel_post, my_chat_member, message_reaction, poll, ...: acknowledged, not processed.
        kind = next((key for key in update if key != "update_id"), "")
        result.drop(UPDATE_DROPS.get(kind, "unsupported_event"))
        return result

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
                # The group became a supergroup: same chat, new id (docs/channels.md §5.3;
                # ResponseParameters.migrate_to_chat_id). The reply is resent there; what moves the
                # conversation for good is the migrate_to_chat_id service message the group posts
                # (parse -> ChatMove), so this retry is needed only until that update arrived.
                log.info("telegram sendMessage: chat %s migrated to %s, resending there",
                         payload["chat_id"], exc.migrate_to_chat_id)  # type: ignore[attr-defined]
                payload["chat_id"] = exc.migrate_to_chat_id  # type: ignore[attr-defined]
                result = await self._call(token, "sendMessage", payload)
            else:
                raise
        return [str(result["message_id"])] if isinstance(result, dict) and "message_id" in result else []

    async def typing(self, webhook: Webhook, target: ReplyTarget, *, first: bool = True) -> None:
        """sendChatAction lasts at most 5 s: repeated every `typing_interval` while the agent works.
        Bots have no read receipts, so a refresh (first=False) is the same single call."""
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


def _int_id(value: Any) -> str | None:
    """A Telegram id (an integer on the wire) as text; None for anything else (null, a list, a bool)."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _person(sender: Any, bot_id: int | None) -> dict[str, Any] | str:
    """The sender when a reply may go to them, else the drop reason: another bot, ourselves (no
    reply loops), or no usable sender at all."""
    # Ids are numbers on the wire: anything else (null, a list) would be stored as its Python repr.
    if not isinstance(sender, dict) or not as_str(sender.get("id")):
        return "incomplete_event"
    if bot_id is not None and sender["id"] == bot_id:
        return "own_message"
    return "bot_message" if sender.get("is_bot") else sender


def _chat(msg: dict[str, Any]) -> dict[str, Any] | None:
    chat = msg.get("chat")
    return chat if isinstance(chat, dict) and as_str(chat.get("id")) else None


def _migration(msg: dict[str, Any], chat_id: str) -> ChatMove | None:
    """A group -> supergroup migration, announced twice: migrate_to_chat_id in the old group and
    migrate_from_chat_id in the new supergroup (core.telegram.org/bots/api#message). Either one
    moves the conversation; the second finds it moved already."""
    new_id = _int_id(msg.get("migrate_to_chat_id"))
    if new_id is not None:
        return ChatMove(old_chat_id=chat_id, new_chat_id=new_id)
    old_id = _int_id(msg.get("migrate_from_chat_id"))
    return ChatMove(old_chat_id=old_id, new_chat_id=chat_id) if old_id is not None else None


def _add(result: ParseResult, outcome: InboundMessage | str) -> None:
    """A message to answer, or the reason it is not answered."""
    if isinstance(outcome, str):
        result.drop(outcome)
    else:
        result.messages.append(outcome)


def _read_message(result: ParseResult, msg: dict[str, Any], update_id: int, *, edited: bool,
                  bot_id: int | None) -> None:
    chat = _chat(msg)
    if chat is None:
        result.drop("incomplete_event")
        return
    move = _migration(msg, str(chat["id"]))
    if move is not None:
        result.moves.append(move)
        result.drop("chat_migrated")
        return
    _add(result, _from_message(msg, update_id, chat, edited=edited, bot_id=bot_id))


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


def _from_message(msg: dict[str, Any], update_id: int, chat: dict[str, Any], *, edited: bool,
                  bot_id: int | None) -> InboundMessage | str:
    if msg.get("is_automatic_forward"):
        return "channel_post"  # a linked channel's post copied into its discussion group
    sender = _person(msg.get("from") if isinstance(msg.get("from"), dict) else msg.get("sender_chat"), bot_id)
    if isinstance(sender, str):
        return sender
    text = as_text(msg.get("text")) or as_text(msg.get("caption")) or ""
    attachments = _attachments(msg)
    if not text and not attachments:
        return "service_message"  # new_chat_members, pinned_message, ...
    if _int_id(msg.get("message_id")) is None:
        return "incomplete_event"  # every real Message has one: without it there is no dedupe id
    chat_id = str(chat["id"])
    # message_id is unique per chat only (docs/channels.md §10.14): the chat makes it global.
    key = f"{chat_id}:{msg['message_id']}"
    # message_thread_id is kept even when None: the conversation's meta is merged from the latest
    # message, and a topic left behind must not capture later answers.
    meta: dict[str, Any] = {"update_id": update_id, "message_id": msg.get("message_id"),
                            "chat_type": chat.get("type"), "message_thread_id": _topic(msg)}
    reply = as_dict(msg.get("reply_to_message"))
    return InboundMessage(
        channel="telegram",
        # An edit gets its own id (each edit is its own update); edit_of names the original.
        message_id=f"{key}:edit:{update_id}" if edited else key,
        chat_id=chat_id,
        sender_id=str(sender["id"]),
        sender_name=_name(sender),
        text=text,
        kind="edit" if edited else (attachments[0].kind if attachments else "text"),
        timestamp=as_float(msg.get("edit_date") or msg.get("date")) or None,
        reply_to_id=str(reply["message_id"]) if "message_id" in reply else None,
        thread_id=str(meta["message_thread_id"]) if meta["message_thread_id"] is not None else None,
        attachments=attachments,
        meta=meta,
        edit_of=key if edited else None,
    )


def _from_callback(query: dict[str, Any], update_id: int, bot_id: int | None) -> InboundMessage | str:
    msg = as_dict(query.get("message"))
    # Without a message the button sat on an inline-mode message: there is no chat to answer in.
    chat = _chat(msg)
    if chat is None:
        return "inline_callback"
    sender = _person(query.get("from"), bot_id)
    if isinstance(sender, str):
        return sender
    data = as_text(query.get("data"))
    if not data:
        return "callback_without_data"  # a game button (game_short_name): nothing to answer
    query_id = as_text(query.get("id"))
    if not query_id:
        return "incomplete_event"  # every real CallbackQuery has an id: the dedupe id
    meta: dict[str, Any] = {"update_id": update_id, "callback_query_id": query_id,
                            "chat_type": chat.get("type"), "message_thread_id": _topic(msg)}
    return InboundMessage(
        channel="telegram",
        # The query id is unique and the same in every delivery of the update.
        message_id=f"callback:{query_id}",
        chat_id=str(chat["id"]),
        sender_id=str(sender["id"]),
        sender_name=_name(sender),
        text=data,
        kind="interactive",
        reply_to_id=str(msg["message_id"]) if "message_id" in msg else None,
        attachments=[],
        meta=meta,
    )
