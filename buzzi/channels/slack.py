"""Slack Events API adapter (docs/channels.md §6).

Inbound: v0 HMAC over the raw body with the app's Signing Secret, 5-minute window.
Dedupe id: "{channel}:{ts}" rather than event_id. A message's ts is unique within its channel and
is the same in every delivery of it: Slack's retries (same event_id) AND the app_mention + message
pair that one @mention produces (two event_ids, §10.2). Keying on event_id alone would answer such a
mention twice; event_id is kept in meta for the delivery log.
Edits (subtype message_changed, docs.slack.dev/reference/events/message/message_changed): the
changed message keeps its ts, so the original's dedupe id is "{channel}:{message.ts}" (edit_of);
the edit itself is "{channel}:{message.ts}:edit:{message.edited.ts}". A message_changed whose text
did not change (link unfurls, language detection) is dropped as edit_unchanged.
Every event that is not answered is dropped with a reason (ParseResult.drop).

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
# Why an event or message subtype is not answered (a fixed set: labels never come from the payload).
# Subtypes not listed and not kept: "hidden_subtype" when Slack marks them hidden (not part of the
# visible history, e.g. message_replied), else "unsupported_subtype".
EVENT_DROPS = {"reaction_added": "reaction", "reaction_removed": "reaction",
               "member_joined_channel": "membership", "member_left_channel": "membership"}
SUBTYPE_DROPS = {"bot_message": "bot_message", "message_deleted": "message_deleted",
                 "channel_join": "membership", "channel_leave": "membership",
                 "group_join": "membership", "group_leave": "membership"}
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
        result = ParseResult()
        if envelope["type"] != "event_callback":
            if envelope["type"] == "app_rate_limited":
                # Slack is dropping this app's events (over ~30,000/hour per workspace): worth a warning.
                log.warning("slack app_rate_limited for team %s", as_str(envelope.get("team_id")))
                result.drop("app_rate_limited")
            else:
                result.drop("unsupported_event")
            return result
        event = envelope.get("event")
        if not isinstance(event, dict):
            raise PayloadError("event_callback without an event")
        _add(result, _from_event(envelope, event, self._bot_user_ids(webhook, envelope)))
        return result

    def _parse_form(self, body: bytes) -> ParseResult:
        """Interactivity: one `payload` field of JSON (block_actions carries the pressed button)."""
        fields = parse_qs(body.decode("utf-8", "replace"))
        raw = fields.get("payload", [None])[0]
        result = ParseResult()
        if raw is None:
            # Slash commands and the like are not conversations.
            result.drop("slash_command" if "command" in fields else "unsupported_event")
            return result
        _add(result, _from_block_action(json_object(raw)))
        return result

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


def _add(result: ParseResult, outcome: InboundMessage | str) -> None:
    """A message to answer, or the reason it is not answered."""
    if isinstance(outcome, str):
        result.drop(outcome)
    else:
        result.messages.append(outcome)


def _reply_thread(event: dict[str, Any], message: dict[str, Any], ts: str) -> str | None:
    """Reply in the thread; in a direct message only when the user wrote in one (a threaded answer to
    every DM would hide the conversation in thread panes)."""
    return as_str(message.get("thread_ts")) or (None if event.get("channel_type") == "im" else ts)


def _from_event(envelope: dict[str, Any], event: dict[str, Any], bot_ids: set[str]) -> InboundMessage | str:
    reason = _event_drop(event, bot_ids)
    if reason is not None:
        return reason
    if event.get("subtype") == "message_changed":
        return _from_edit(envelope, event, bot_ids)
    user, channel, ts = event["user"], as_str(event.get("channel")), as_str(event.get("ts"))
    if not channel or not ts:
        return "incomplete_event"
    attachments = _files(event)
    text = _clean_text(as_text(event.get("text")) or "", bot_ids, strip_leading=event["type"] == "app_mention")
    if not text and not attachments:
        return "empty_message"  # e.g. only our mention
    thread_ts = as_str(event.get("thread_ts"))
    meta = {"event_id": envelope.get("event_id"), "ts": ts, "thread_ts": _reply_thread(event, event, ts),
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


def _from_edit(envelope: dict[str, Any], event: dict[str, Any], bot_ids: set[str]) -> InboundMessage | str:
    """message_changed: the new message in `message` (same ts as the original), the old one in
    `previous_message` (docs.slack.dev/reference/events/message/message_changed)."""
    new, old = as_dict(event.get("message")), as_dict(event.get("previous_message"))
    if new.get("subtype") == "tombstone":
        return "message_deleted"  # a deleted thread parent stays as a tombstone
    reason = _sender_drop(new, bot_ids)
    if reason is not None:
        return reason
    channel, ts = as_str(event.get("channel")), as_str(new.get("ts"))
    if not channel or not ts:
        return "incomplete_event"
    raw = as_text(new.get("text")) or ""
    if old and raw == (as_text(old.get("text")) or ""):
        return "edit_unchanged"  # link unfurls and language detection change the message, not its words
    text = _clean_text(raw, bot_ids, strip_leading=False)
    if not text:
        return "empty_message"
    edited_at = as_str(as_dict(new.get("edited")).get("ts")) or as_str(event.get("ts")) or ts
    thread_ts = as_str(new.get("thread_ts"))
    meta = {"event_id": envelope.get("event_id"), "ts": ts, "thread_ts": _reply_thread(event, new, ts),
            "team_id": envelope.get("team_id"), "channel_type": event.get("channel_type"),
            "event_type": "message_changed"}
    return InboundMessage(
        channel="slack",
        message_id=f"{channel}:{ts}:edit:{edited_at}",
        chat_id=channel,
        sender_id=str(new["user"]),
        text=text,
        kind="edit",
        timestamp=as_float(edited_at),
        reply_to_id=thread_ts if thread_ts and thread_ts != ts else None,
        thread_id=thread_ts or ts,
        meta={k: v for k, v in meta.items() if v is not None or k == "thread_ts"},
        edit_of=f"{channel}:{ts}",
    )


def _event_drop(event: dict[str, Any], bot_ids: set[str]) -> str | None:
    """Why the event is not a message or mention a person wrote (§10.3), or None when it is one."""
    kind = event.get("type")
    if kind not in MESSAGE_EVENTS:
        return EVENT_DROPS.get(kind, "unsupported_event") if isinstance(kind, str) else "unsupported_event"
    subtype = event.get("subtype")
    if subtype == "message_changed":
        return None  # judged by the message inside it
    if isinstance(subtype, str) and subtype in SUBTYPE_DROPS:
        return SUBTYPE_DROPS[subtype]
    if subtype not in KEPT_SUBTYPES:
        return "hidden_subtype" if event.get("hidden") else "unsupported_subtype"
    return _sender_drop(event, bot_ids)


def _sender_drop(message: dict[str, Any], bot_ids: set[str]) -> str | None:
    """A bot's message (ourselves included: no reply loops), or one without a user id to answer."""
    user = as_str(message.get("user"))  # ids are strings: a list or object is no one's id
    if user is not None and user in bot_ids:
        return "own_message"
    if message.get("bot_id") or message.get("bot_profile"):
        return "bot_message"
    return None if user else "incomplete_event"


def _from_block_action(payload: dict[str, Any]) -> InboundMessage | str:
    if payload.get("type") != "block_actions":
        return "unsupported_interaction"  # view_submission, shortcut, ...: not a conversation message
    actions = dicts_in(payload.get("actions"))
    user, container, message = (as_dict(payload.get(key)) for key in ("user", "container", "message"))
    channel = as_dict(payload.get("channel")).get("id") or container.get("channel_id")
    if not actions or not user.get("id") or not channel:
        return "incomplete_event"
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
