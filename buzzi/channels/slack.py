"""Slack Events API adapter (docs/channels.md §6).

Inbound: v0 HMAC over the raw body with the app's Signing Secret, 5-minute window.
Dedupe id: "{channel}:{ts}" rather than event_id. A message's ts is unique within its channel and
is the same in every delivery of it: Slack's retries (same event_id) AND the app_mention + message
pair that one @mention produces (two event_ids, §10.2). Keying on event_id alone would answer such a
mention twice; event_id is kept in meta for the delivery log.

Outbound: chat.postMessage. Slack answers most errors with HTTP 200 and ok:false. There is no
typing indicator for Events API bots (assistant.threads.setStatus exists only for AI-assistant
apps), so `typing` is the base no-op.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from typing import Any
from urllib.parse import parse_qs, urlparse

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
from buzzi.channels.outbound import download, parse_retry_after
from buzzi.channels.pacing import SendLimits
from buzzi.channels.payload import as_dict, as_float, as_str, as_text, compact_json, dicts_in, json_object
from buzzi.models import Webhook
from buzzi.signing import slack_signature, slack_verify

log = logging.getLogger(__name__)

MESSAGE_EVENTS = ("message", "app_mention")
KEPT_SUBTYPES = (None, "file_share", "thread_broadcast")
RETRYABLE_ERRORS = {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable",
                    "request_timeout"}
MENTION_RE = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
LEADING_MENTION_RE = re.compile(r"^\s*<@[UW][A-Z0-9]+(?:\|[^>]*)?>[\s,:]*")
LINK_RE = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|([^>]*))?>")


class SlackAdapter(ChannelAdapter):
    channel = "slack"
    display_name = "Slack"
    credential_fields = (CredentialField("botToken", "Bot User OAuth Token (xoxb-...)", secret=True),)
    secret_source = "given"
    secret_hint = "The app's Signing Secret (Basic Information). Required."
    # Slack truncates at 40,000 characters, but its guidance is to stay under 4,000 for readability
    # (api.slack.com/changelog/2018-04-truncating-really-long-messages; docs/channels.md §6.4).
    text_limit = 4000
    # About 1 message/s per channel with short bursts (docs/channels.md §6).
    send_limits = SendLimits(per_chat=1.0, chat_burst=3.0)

    # ---- configuration
    def validate_credentials(self, credentials: Any) -> dict[str, Any]:
        if not isinstance(credentials, dict):
            raise CredentialsError("credentials", "expected an object with botToken")
        token = credentials.get("botToken")
        if not isinstance(token, str) or not token.strip():
            raise CredentialsError("botToken", "required (the app's Bot User OAuth Token, xoxb-...)")
        token = token.strip()
        if not token.startswith("xoxb-") or any(c.isspace() for c in token):
            raise CredentialsError("botToken", "expected a bot token starting with xoxb-")
        return {"botToken": token}

    def generate_secrets(
        self, given_secret: str | None, given_verify_token: str | None
    ) -> tuple[str | None, str | None]:
        # Slack chooses the Signing Secret; we cannot generate one.
        if not given_secret or not given_secret.strip():
            raise CredentialsError("secret", "the Slack app's Signing Secret is required (Basic Information page)")
        return given_secret.strip(), None

    def sample_event(self, webhook: Webhook, now: float) -> SampleEvent:
        ts = int(now)
        body = compact_json({"type": "event_callback", "team_id": "T0TEST", "api_app_id": "A0TEST",
                             "event_id": f"Ev{secrets.token_hex(6).upper()}", "event_time": ts,
                             "event": {"type": "reaction_added", "user": "U0TEST", "reaction": "thumbsup",
                                       "item": {"type": "message", "channel": "C0TEST", "ts": f"{ts}.000100"},
                                       "event_ts": f"{ts}.000200"}})
        headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": str(ts),
                   "X-Slack-Signature": slack_signature(webhook.secret or "", str(ts), body)}
        return SampleEvent(body, headers, "a reaction_added event, signed with Slack's v0 signature")

    # ---- input side
    async def verify(self, webhook: Webhook, request: WebhookRequest) -> None:
        ok = slack_verify(webhook.secret or "", request.headers.get("x-slack-request-timestamp"),
                          request.headers.get("x-slack-signature"), request.body, request.now, self.replay_window)
        if not ok:
            raise VerificationError("invalid Slack signature or timestamp")

    def parse(self, webhook: Webhook, request: WebhookRequest) -> ParseResult:
        content_type = request.headers.get("content-type", "")
        if "application/x-www-form-urlencoded" in content_type:
            return self._parse_form(request.body)
        envelope = request.json()
        if not isinstance(envelope.get("type"), str):
            raise PayloadError("not a Slack Events API payload (no type)")
        if envelope["type"] == "url_verification":
            challenge = envelope.get("challenge")
            if not isinstance(challenge, str):
                raise PayloadError("url_verification without a challenge")
            return ParseResult(response={"challenge": challenge})
        if envelope["type"] != "event_callback":
            return ParseResult(ignored=1)  # app_rate_limited, ...
        event = envelope.get("event")
        if not isinstance(event, dict):
            raise PayloadError("event_callback without an event")
        message = _from_event(envelope, event, self._bot_user_ids(webhook, envelope))
        return ParseResult(messages=[message]) if message else ParseResult(ignored=1)

    def _parse_form(self, body: bytes) -> ParseResult:
        """Interactivity: one `payload` field of JSON (block_actions carries the pressed button)."""
        fields = parse_qs(body.decode("utf-8", "replace"))
        raw = fields.get("payload", [None])[0]
        if raw is None:
            return ParseResult(ignored=1)  # slash commands and the like are not conversations
        message = _from_block_action(json_object(raw))
        return ParseResult(messages=[message]) if message else ParseResult(ignored=1)

    # ---- output side
    def format(self, text: str) -> str:
        """mrkdwn control characters: only &, < and > need escaping (Slack 'Escaping text')."""
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    async def send(self, webhook: Webhook, target: ReplyTarget, text: str) -> list[str]:
        payload: dict[str, Any] = {"channel": target.chat_id, "text": text}
        thread_ts = target.meta.get("thread_ts")
        if thread_ts:
            payload["thread_ts"] = thread_ts  # always the parent's ts, never a reply's
        result = await self._call(webhook, "chat.postMessage", payload)
        return [str(result["ts"])] if result.get("ts") else []

    async def download_media(self, webhook: Webhook, attachment: Attachment) -> tuple[bytes, str | None]:
        """url_private with the bot token. Without files:read Slack answers a login page (HTTP 200,
        text/html) instead of the file: that is refused, not stored as the media (§10.13)."""
        url = attachment.url or ""
        if not self._is_slack_url(url):
            raise SendError("attachment URL is not a Slack file URL", retryable=False)
        headers = {"Authorization": f"Bearer {self._token(webhook)}"}
        # The configured API host is trusted config; a *.slack.com URL came in the payload.
        http = self.http.session if self._is_api_host(url) else self.http.tenant_session
        try:
            body, mime = await download(http(self.channel), url, self.settings.media_max_bytes, headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SendError(f"network error: {exc.__class__.__name__}", retryable=True) from None
        if mime == "text/html" and attachment.mime_type != "text/html":
            raise SendError("Slack answered an HTML page instead of the file (does the token have files:read?)",
                            retryable=False)
        return body, attachment.mime_type or mime

    # ---- helpers
    def _token(self, webhook: Webhook) -> str:
        token = webhook.credentials.get("botToken")
        if not token:
            raise SendError("webhook has no botToken", retryable=False)
        return token

    def _is_api_host(self, url: str) -> bool:
        host = (urlparse(url).hostname or "").lower()
        return bool(host) and host == (urlparse(self.settings.slack_api_base).hostname or "").lower()

    def _is_slack_url(self, url: str) -> bool:
        # The bot token only ever goes to Slack (or to the configured API host, a test double).
        parsed = urlparse(url)
        host = (parsed.hostname or "").lower()
        if self._is_api_host(url):
            return parsed.scheme in ("http", "https")
        return parsed.scheme == "https" and (host == "slack.com" or host.endswith(".slack.com"))

    def _bot_user_ids(self, webhook: Webhook, envelope: dict[str, Any]) -> set[str]:
        ids = {str(v) for v in (webhook.state.get("botUserId"), webhook.state.get("bot_user_id")) if v}
        for auth in dicts_in(envelope.get("authorizations")):
            if auth.get("is_bot") and auth.get("user_id"):
                ids.add(str(auth["user_id"]))
        return ids

    async def _call(self, webhook: Webhook, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.settings.slack_api_base.rstrip('/')}/{method}"
        headers = {"Authorization": f"Bearer {self._token(webhook)}",
                   "Content-Type": "application/json; charset=utf-8"}
        try:
            async with self.http.session(self.channel).post(url, data=json.dumps(payload).encode(),
                                                            headers=headers) as response:
                status = response.status
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SendError(f"{method}: network error: {exc.__class__.__name__}", retryable=True) from None
        if status == 200 and isinstance(body, dict) and body.get("ok") is True:
            return body
        raise _error(method, status, body, retry_after)


def _error(method: str, status: int, body: Any, retry_after: float | None) -> SendError:
    code = body.get("error") if isinstance(body, dict) else None
    if status == 429 or code in ("ratelimited", "rate_limited"):
        return SendError(f"{method}: ratelimited", retryable=True, retry_after=retry_after, status=status,
                         code=code or "ratelimited")
    if status >= 500:
        return SendError(f"{method}: HTTP {status}", retryable=True, retry_after=retry_after, status=status,
                         code=code)
    if code:
        # channel_not_found, not_in_channel, is_archived, invalid_auth, account_inactive, token_revoked,
        # missing_scope, msg_too_long, ...: unknown codes count as permanent too (retrying won't fix them).
        return SendError(f"{method}: {code}", retryable=code in RETRYABLE_ERRORS, status=status, code=code)
    return SendError(f"{method}: HTTP {status}", retryable=False, status=status)


def _clean_text(text: str, bot_ids: set[str], strip_leading: bool) -> str:
    """Slack text to plain text: drop the bot's mention, unwrap links, undo the three escapes."""
    if bot_ids:
        text = MENTION_RE.sub(lambda m: "" if m.group(1) in bot_ids else m.group(0), text)
    elif strip_leading:
        text = LEADING_MENTION_RE.sub("", text)  # app_mention: the mention that woke us comes first
    text = LINK_RE.sub(lambda m: m.group(1).removeprefix("mailto:") if not m.group(2) or m.group(2) == m.group(1)
                       else f"{m.group(2)} ({m.group(1)})", text)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def _file_kind(mime: str) -> str:
    for prefix, kind in (("image/", "image"), ("audio/", "audio"), ("video/", "video")):
        if mime.startswith(prefix):
            return kind
    return "document"


def _files(event: dict[str, Any]) -> list[Attachment]:
    found = []
    for item in dicts_in(event.get("files")):
        url = as_text(item.get("url_private_download")) or as_text(item.get("url_private"))
        if not url:
            continue  # tombstoned or hidden_by_limit files carry no URL
        mime = as_text(item.get("mimetype")) or "application/octet-stream"
        found.append(Attachment(kind=_file_kind(mime), mime_type=mime, name=as_text(item.get("name")), url=url,
                                media_id=item.get("id"), size=item.get("size"),
                                extra={"filetype": item["filetype"]} if item.get("filetype") else {}))
    return found


def _from_event(envelope: dict[str, Any], event: dict[str, Any], bot_ids: set[str]) -> InboundMessage | None:
    if not _is_from_a_person(event, bot_ids):
        return None
    user, channel, ts = event["user"], event["channel"], str(event["ts"])
    attachments = _files(event)
    text = _clean_text(as_text(event.get("text")) or "", bot_ids, strip_leading=event["type"] == "app_mention")
    if not text and not attachments:
        return None
    thread_ts = as_str(event.get("thread_ts"))
    # Reply in the thread; in a direct message only when the user wrote in one (a threaded answer to
    # every DM would hide the conversation in thread panes).
    reply_thread = thread_ts or (None if event.get("channel_type") == "im" else ts)
    meta = {"event_id": envelope.get("event_id"), "ts": ts, "thread_ts": reply_thread,
            "team_id": envelope.get("team_id"), "channel_type": event.get("channel_type"),
            "event_type": event["type"]}
    return InboundMessage(
        channel="slack",
        message_id=f"{channel}:{ts}",
        chat_id=str(channel),
        sender_id=str(user),
        text=text,
        kind=attachments[0].kind if attachments else "text",  # as Telegram: a captioned photo is an image
        timestamp=as_float(ts),
        reply_to_id=thread_ts if thread_ts and thread_ts != ts else None,
        thread_id=thread_ts or ts,
        attachments=attachments,
        # thread_ts stays even when None: the conversation's meta is merged from the latest message,
        # and an older thread must not capture replies to a later top-level DM.
        meta={k: v for k, v in meta.items() if v is not None or k == "thread_ts"},
    )


def _is_from_a_person(event: dict[str, Any], bot_ids: set[str]) -> bool:
    """A message or mention a person wrote: not a bot's (ourselves included), not an edit, delete or
    join (§10.3), and with the user, channel and ts a reply needs."""
    if event.get("type") not in MESSAGE_EVENTS or event.get("subtype") not in KEPT_SUBTYPES:
        return False
    if event.get("bot_id") or event.get("bot_profile"):
        return False
    user = as_str(event.get("user"))  # ids are strings: a list or object is no one's id
    return bool(user and as_str(event.get("channel")) and as_str(event.get("ts"))) and user not in bot_ids


def _from_block_action(payload: dict[str, Any]) -> InboundMessage | None:
    if payload.get("type") != "block_actions":
        return None
    actions = dicts_in(payload.get("actions"))
    user, container, message = (as_dict(payload.get(key)) for key in ("user", "container", "message"))
    channel = as_dict(payload.get("channel")).get("id") or container.get("channel_id")
    if not actions or not user.get("id") or not channel:
        return None
    action = actions[0]
    parent = message.get("thread_ts") or container.get("thread_ts") or message.get("ts") or container.get("message_ts")
    return InboundMessage(
        channel="slack",
        message_id=f"{channel}:action:{action.get('action_ts') or payload.get('trigger_id')}",
        chat_id=str(channel),
        sender_id=str(user["id"]),
        sender_name=as_text(user.get("name")) or as_text(user.get("username")),
        text=_action_text(action),
        kind="interactive",
        thread_id=parent,
        # response_url is left out: it lets anyone holding it post into the channel.
        meta={k: v for k, v in {"action_id": action.get("action_id"), "thread_ts": parent}.items() if v},
    )


def _action_text(action: dict[str, Any]) -> str:
    """A button's value, a menu's selected value, or the action id when it carries neither."""
    selected = as_dict(action.get("selected_option"))
    return as_text(action.get("value")) or as_text(selected.get("value")) or as_text(action.get("action_id")) or ""
