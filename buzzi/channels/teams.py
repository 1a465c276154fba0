"""Microsoft Teams adapter through the Bot Framework connector (docs/channels.md §7).

Inbound: every activity carries a Bot Framework JWT (RS256), checked against Microsoft's published
keys: issuer, audience = our appId, expiry with 5 min skew, the key's endorsements must name the
activity's channelId, and the `serviceurl` claim must equal activity.serviceUrl, the URL replies
go to (so an unauthenticated serviceUrl is never trusted, §10.12).
Outbound: a client-credentials token from the bot's tenant (cached until shortly before expiry;
teams_login.py), then the reply activity POSTed to {serviceUrl}v3/conversations/{id}/activities/
{activityId}, split so that each whole activity stays within Teams' byte limit (teams_size.py).
The credentials are proven when the webhook is created: a token is fetched (check_credentials).

Adapters are long-lived (one per channel): the key and token caches live on the instance.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import jwt
import yarl

from buzzi.channels import teams_login, teams_size
from buzzi.channels.base import (
    Attachment,
    CannotSimulate,
    ChannelAdapter,
    CredentialField,
    CredentialsError,
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
from buzzi.channels.payload import as_dict, as_str, as_text, dicts_in
from buzzi.clock import parse_iso
from buzzi.config import ChannelSettings
from buzzi.models import Webhook

log = logging.getLogger(__name__)

ISSUER = "https://api.botframework.com"
ALGORITHMS = ("RS256", "RS384", "RS512")
LEEWAY_SECONDS = 300
AT_RE = re.compile(r"<at[^>]*>(.*?)</at>", re.IGNORECASE | re.DOTALL)
TAG_RE = re.compile(r"<[^>]+>")
RETRYABLE_STATUSES = {412, 429, 500, 502, 503, 504}
# Personal chats, with the RSC permission ChatMessageReadReceipt.Read.Chat in the manifest: "the user
# has read up to lastReadMessageId" (spark.js 9.activity/5.event/1.read-receipt; botbuilder
# TeamsActivityHandler.OnTeamsReadReceiptAsync / ReadReceiptInfo).
READ_RECEIPT = "application/vnd.microsoft.readReceipt"
# Activity type -> why it is not answered (docs/channels.md §7.2; msteams-docs bots-notifications,
# subscribe-to-conversation-events, conversation-messages). messageUpdate is handled apart (edits).
NOT_ANSWERED = {
    "messageDelete": "revoke",  # channelData.eventType softDeleteMessage
    "messageReaction": "reaction",
    "conversationUpdate": "membership",  # members added/removed, channel and team events
    "installationUpdate": "installation",
    "typing": "typing",
    "invoke": "invoke",  # Action.Execute, message extensions: need an invoke response we do not give
}


class BotFrameworkKeys:
    """The OpenID metadata's JWKS, cached for `ttl`; refetched on an unknown kid at most every
    `min_refresh` seconds, so made-up kids cannot turn every request into two fetches."""

    ttl = 24 * 3600.0
    min_refresh = 60.0

    def __init__(self, openid_url: str, session: Callable[[], aiohttp.ClientSession],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.openid_url = openid_url
        self._session = session
        self._clock = clock
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    async def get(self, kid: str) -> dict[str, Any] | None:
        if self._fetched_at is None:
            await self._refresh(None)
        elif self._clock() - self._fetched_at > self.ttl:
            try:
                await self._refresh(self._fetched_at)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                # Microsoft's keys live for weeks: a day-old copy beats rejecting every activity.
                log.warning("teams: key refresh failed, keeping cached keys: %s", exc.__class__.__name__)
        key = self._keys.get(kid)
        if key is None and self._fetched_at is not None and self._clock() - self._fetched_at >= self.min_refresh:
            await self._refresh(self._fetched_at)  # keys rotate: a new kid may be live already
            key = self._keys.get(kid)
        return key

    async def _refresh(self, seen: float | None) -> None:
        async with self._lock:
            if self._fetched_at != seen:
                return  # another request refreshed while this one waited
            session = self._session()
            async with session.get(self.openid_url) as response:
                response.raise_for_status()
                metadata = await response.json(content_type=None)
            jwks_uri = metadata.get("jwks_uri") if isinstance(metadata, dict) else None
            if not isinstance(jwks_uri, str):
                raise ValueError("OpenID metadata has no jwks_uri")
            async with session.get(jwks_uri) as response:
                response.raise_for_status()
                jwks = await response.json(content_type=None)
            keys = jwks.get("keys") if isinstance(jwks, dict) else None
            if not isinstance(keys, list):
                raise ValueError("JWKS has no keys")
            self._keys = {k["kid"]: k for k in keys if isinstance(k, dict) and isinstance(k.get("kid"), str)}
            self._fetched_at = self._clock()


@dataclass
class _Token:
    value: str
    refresh_at: float


class TeamsAdapter(ChannelAdapter):
    channel = "teams"
    display_name = "Teams"
    credential_fields = (CredentialField("appId", "Microsoft App ID"),
                         CredentialField("appPassword", "App password (client secret)", secret=True),
                         CredentialField("tenantId", "Tenant ID (or botframework.com for a legacy multi-tenant bot)"))
    secret_source = "none"
    secret_hint = "None: Teams requests are authenticated by Microsoft's JWT."
    # The longest text one activity carries, in UTF-16 units; `split` measures bytes (teams_size.py).
    text_limit = teams_size.TEXT_BUDGET_BYTES // 2
    # Typing activities are shown for about 3 s; a sender should not send them more often than every
    # 3 s (Activity protocol A6000/A6001: microsoft.github.io/spark.js 9.activity/2.typing). Each is one
    # connector operation, within the per-conversation limits below (10 per 30 s).
    typing_interval = 3.0
    # Per bot per conversation: 7 ops/1 s, 60 ops/30 s (docs/channels.md §7.4): 2/s sustained, bursts of 7.
    send_limits = SendLimits(per_chat=2.0, chat_burst=7.0)

    def __init__(self, settings: ChannelSettings, http: Any, **options: Any) -> None:
        super().__init__(settings, http, **options)
        self.keys = BotFrameworkKeys(settings.teams_openid_url, lambda: self.http.session(self.channel))
        self._tokens: dict[tuple[str, str, str], _Token] = {}
        self._token_lock = asyncio.Lock()
        self.clock: Callable[[], float] = time.monotonic  # token expiry; tests move it

    # ---- configuration
    def validate_credentials(self, credentials: Any) -> dict[str, Any]:
        if not isinstance(credentials, dict):
            raise CredentialsError("credentials", "expected an object with appId, appPassword and tenantId")
        app_id = credentials.get("appId")
        try:
            app_id = str(uuid.UUID(str(app_id).strip())) if isinstance(app_id, str) and app_id.strip() else None
        except ValueError:
            app_id = None
        if not app_id:
            raise CredentialsError("appId", "expected the bot's Microsoft App ID (a GUID)")
        password = credentials.get("appPassword")
        if not isinstance(password, str) or not password:
            raise CredentialsError("appPassword", "required (the App registration's client secret)")
        # Required: new bots are single-tenant, and a legacy multi-tenant bot says so with
        # botframework.com (teams_login.py). A wrong tenant would otherwise fail only at the first reply.
        tenant = teams_login.normalise_tenant(credentials.get("tenantId"))
        return {"appId": app_id, "appPassword": password, "tenantId": tenant}

    async def check_credentials(self, credentials: dict[str, Any]) -> None:
        """Fetch a token with them: a wrong app id, secret or tenant is a CredentialsError on that
        field, in Entra ID's words (AADSTS code). An unreachable or failing login server is a
        retryable SendError (the admin service answers 502: nothing is known about the credentials)."""
        status, retry_after, body, token = await self._request_token(credentials)
        if token is not None:
            self._tokens[self._token_key(credentials)] = token  # the first reply needs no second request
            return
        if status == 429 or status >= 500:
            raise SendError(f"Microsoft's token endpoint answered HTTP {status}: try again", retryable=True,
                            retry_after=retry_after, status=status)
        raise teams_login.credentials_error(status, body, credentials)

    def split(self, text: str) -> list[str]:
        """Parts whose JSON text stays within the activity byte budget (teams_size.py); send()
        measures the whole activity and cuts again in the rare case the envelope is larger."""
        return teams_size.split_by_size(text, teams_size.TEXT_BUDGET_BYTES)

    def generate_secrets(
        self, given_secret: str | None, given_verify_token: str | None
    ) -> tuple[str | None, str | None]:
        return None, None  # authenticated by Microsoft's JWT, nothing shared

    def sample_event(self, webhook: Webhook, now: float) -> SampleEvent:
        raise CannotSimulate("Teams requests are signed by Microsoft (a Bot Framework JWT from Microsoft's keys): "
                             "we cannot produce a valid one. Use the Bot Framework Emulator or a Teams chat.")

    # ---- input side
    async def verify(self, webhook: Webhook, request: WebhookRequest) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise VerificationError("missing Bearer token")
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise VerificationError("malformed token") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS or not isinstance(kid, str):
            raise VerificationError("unsupported token algorithm or no kid")
        try:
            key = await self.keys.get(kid)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("teams: cannot fetch Bot Framework keys: %s", exc.__class__.__name__)
            raise VerificationError("signing keys unavailable") from None
        if key is None:
            raise VerificationError("unknown signing key")
        try:
            public = jwt.PyJWK(key, algorithm=alg).key
            claims = jwt.decode(token, public, algorithms=[alg], audience=webhook.credentials.get("appId"),
                                issuer=ISSUER, leeway=LEEWAY_SECONDS,
                                options={"require": ["exp", "iss", "aud"]})
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise VerificationError(f"invalid token: {exc.__class__.__name__}") from None
        # The body is parsed only once Microsoft's signature holds: nothing an anonymous sender
        # posts reaches the JSON decoder.
        try:
            activity = request.json()  # parsed once: parse() reads the same object
        except PayloadError:
            raise VerificationError("body is not an activity: serviceUrl cannot be checked") from None
        endorsements = key.get("endorsements")
        if isinstance(endorsements, list) and activity.get("channelId") not in endorsements:
            raise VerificationError("signing key not endorsed for this channel")
        if not activity.get("serviceUrl") or claims.get("serviceurl") != activity.get("serviceUrl"):
            raise VerificationError("serviceurl claim does not match the activity")

    def parse(self, webhook: Webhook, request: WebhookRequest) -> ParseResult:
        activity = request.json()
        if not isinstance(activity.get("type"), str):
            raise PayloadError("not a Bot Framework activity (no type)")
        result = ParseResult()
        kind = activity["type"]
        if kind in ("message", "messageUpdate"):
            message, reason = _from_activity(activity)
            if message is not None and kind == "messageUpdate":
                message, reason = _as_edit(activity, message)
            if message is not None:
                result.messages.append(message)
            else:
                result.drop(reason)
        elif kind == "event" and activity.get("name") == READ_RECEIPT:
            _read_receipt(activity, result)
        else:
            # Teams may add activity types at any time ("design your bot to receive unexpected events").
            result.drop(NOT_ANSWERED.get(kind, "unsupported_event"))
        return result

    # ---- output side
    async def send(self, webhook: Webhook, target: ReplyTarget, text: str) -> list[str]:
        activity = self._activity(webhook, target, "message")
        activity["textFormat"] = "plain"  # agent text arrives as written, not rendered as markdown
        if target.meta.get("locale"):
            activity["locale"] = target.meta["locale"]
        reply_to = self._reply_to(target)
        if reply_to:
            activity["replyToId"] = reply_to
        ids: list[str] = []
        for piece in _fit(activity, text):
            result = await self._post(webhook, target, {**activity, "text": piece})
            if isinstance(result, dict) and result.get("id"):
                ids.append(str(result["id"]))
        return ids

    async def typing(self, webhook: Webhook, target: ReplyTarget, *, first: bool = True) -> None:
        """One typing activity per call, refreshes included: Teams has no read receipt to send."""
        try:
            await self._post(webhook, target, self._activity(webhook, target, "typing"), reply=False)
        except SendError as exc:
            log.info("teams typing failed: %s", exc)

    async def download_media(self, webhook: Webhook, attachment: Attachment) -> tuple[bytes, str | None]:
        """Personal-chat files come as pre-authorised (tempauth) URLs: no token goes there. Inline
        images need the bot token, sent only to the origin of the activity's serviceUrl, the one
        the JWT's `serviceurl` claim vouched for (docs/channels.md §7.5). No host suffix is trusted:
        anyone can create a *.trafficmanager.net name, and an activity's contentUrl may name any."""
        url = attachment.url or ""
        origin = _origin(url)
        if origin is None:
            raise SendError("attachment has no downloadable URL", retryable=False)
        headers: dict[str, str] = {}
        if not attachment.extra.get("tempauth") and origin == attachment.extra.get("service_origin"):
            headers["Authorization"] = f"Bearer {await self._token(webhook)}"
        try:
            # contentUrl comes from the activity, which may point anywhere: a tenant session.
            body, mime = await download(self.http.tenant_session(self.channel), url, self.settings.media_max_bytes,
                                        headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SendError(f"network error: {exc.__class__.__name__}", retryable=True) from None
        return body, attachment.mime_type or mime

    # ---- helpers
    def _activity(self, webhook: Webhook, target: ReplyTarget, kind: str) -> dict[str, Any]:
        meta = target.meta
        bot = meta.get("recipient") or {"id": f"28:{webhook.credentials.get('appId')}"}
        activity: dict[str, Any] = {"type": kind, "from": bot, "conversation": {"id": target.chat_id}}
        if meta.get("from"):
            activity["recipient"] = meta["from"]
        return activity

    def _reply_to(self, target: ReplyTarget) -> str | None:
        if target.in_reply_to is None:
            return None
        channel_meta = target.in_reply_to.metadata.get("channel", {})
        return channel_meta.get("activity_id") or target.in_reply_to.channel_message_id

    async def _post(self, webhook: Webhook, target: ReplyTarget, activity: dict[str, Any],
                    reply: bool = True) -> Any:
        service_url = target.meta.get("service_url")
        if not service_url or not target.chat_id:
            raise SendError("no serviceUrl or conversation stored for this Teams conversation", retryable=False)
        url = f"{service_url.rstrip('/')}/v3/conversations/{quote(target.chat_id, safe='')}/activities"
        reply_to = self._reply_to(target) if reply else None
        if reply_to:
            url += f"/{quote(reply_to, safe='')}"
            activity["replyToId"] = reply_to
        token = await self._token(webhook)
        status, retry_after, body = await self._http_post(
            "network error",
            yarl.URL(url, encoded=True),  # keep our percent-encoding of ':' and ';'
            data=teams_size.encode(activity),  # UTF-8, not \uXXXX escapes: what Teams counts (teams_size.py)
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json; charset=utf-8"},
        )
        if 200 <= status < 300:
            return body
        if status == 401:
            self._tokens.pop(self._token_key(webhook.credentials), None)  # a revoked token must not stay cached
        error = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), dict) else {}
        code = error.get("code")
        # 412 (concurrent operations), 429 (throttled), 5xx retry; 401/403/404/413 and other 4xx do not
        # (413 MessageSizeTooBig cannot happen to a split reply unless Teams lowers its limit).
        raise SendError(f"Teams send: HTTP {status}" + (f" {code}" if code else ""),
                        retryable=status in RETRYABLE_STATUSES or status >= 500,
                        retry_after=retry_after, status=status, code=code)

    def _token_url(self, credentials: dict[str, Any]) -> str:
        return teams_login.token_url(self.settings.teams_token_url, credentials.get("tenantId"))

    def _token_key(self, credentials: dict[str, Any]) -> tuple[str, str, str]:
        password = str(credentials.get("appPassword") or "")
        return (self._token_url(credentials), str(credentials.get("appId")),
                hashlib.sha256(password.encode()).hexdigest())

    async def _token(self, webhook: Webhook) -> str:
        key = self._token_key(webhook.credentials)
        cached = self._tokens.get(key)
        if cached and self.clock() < cached.refresh_at:
            return cached.value
        async with self._token_lock:  # many concurrent sends, one token request
            cached = self._tokens.get(key)
            if cached and self.clock() < cached.refresh_at:
                return cached.value
            token = await self._fetch_token(webhook)
            self._tokens[key] = token
            return token.value

    async def _http_post(self, what: str, url: Any, **kwargs: Any) -> tuple[int, float | None, Any]:
        """POST and read (status, Retry-After, JSON body or None); network failures are retryable."""
        try:
            async with self.http.session(self.channel).post(url, **kwargs) as response:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = None
                return response.status, retry_after, body
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SendError(f"{what}: {exc.__class__.__name__}", retryable=True) from None

    async def _request_token(self, credentials: dict[str, Any]) -> tuple[int, float | None, Any, _Token | None]:
        """(status, Retry-After, body, token or None): one client-credentials request to the bot's tenant."""
        status, retry_after, body = await self._http_post("Teams token: network error", self._token_url(credentials),
                                                data=teams_login.token_form(credentials))
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            return status, retry_after, body, None
        try:
            lifetime = float(body.get("expires_in", 3600))
        except (TypeError, ValueError):
            lifetime = 3600.0
        # Refresh 5 minutes early (half the lifetime for short-lived tokens).
        margin = 300.0 if lifetime > 600 else lifetime / 2
        return status, retry_after, body, _Token(body["access_token"], self.clock() + lifetime - margin)

    async def _fetch_token(self, webhook: Webhook) -> _Token:
        status, retry_after, body, token = await self._request_token(webhook.credentials)
        if token is not None:
            return token
        code = body.get("error") if isinstance(body, dict) else None
        words = teams_login.refusal_words(status, body, str(webhook.credentials.get("appPassword") or ""))
        # A refused secret or app id stays refused: not retried (the admin fixes the webhook).
        raise SendError(f"Teams token request refused: HTTP {status}: {words}",
                        retryable=status == 429 or status >= 500, retry_after=retry_after, status=status, code=code)


def _clean_text(text: str, bot_names: set[str]) -> str:
    """Drop the bot's <at>Name</at> mention, keep other people's names, undo HTML escapes."""
    text = AT_RE.sub(lambda m: "" if html.unescape(m.group(1)).strip() in bot_names else m.group(1), text)
    text = TAG_RE.sub("", text)
    return re.sub(r"[ \t]{2,}", " ", html.unescape(text).replace("\xa0", " ")).strip()


def _origin(url: Any) -> str | None:
    """scheme://host:port of an http(s) URL as aiohttp will read it (yarl, not urllib: one parser
    for the check and the request); None for anything else."""
    try:
        parsed = yarl.URL(url) if isinstance(url, str) else None
    except (ValueError, TypeError):
        return None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        return None
    return f"{parsed.scheme}://{parsed.host.lower()}:{parsed.port}"


def _attachments(activity: dict[str, Any], service_origin: str | None) -> list[Attachment]:
    found: list[Attachment] = []
    for item in dicts_in(activity.get("attachments")):
        ctype = str(item.get("contentType") or "")
        content = item.get("content") if isinstance(item.get("content"), dict) else {}
        if ctype == "application/vnd.microsoft.teams.file.download.info" and content.get("downloadUrl"):
            found.append(Attachment(kind="document", name=item.get("name"), url=content["downloadUrl"],
                                    media_id=content.get("uniqueId"),
                                    extra={"tempauth": True, "fileType": content.get("fileType")}))
        elif ctype.startswith(("image/", "audio/", "video/")) and item.get("contentUrl"):
            found.append(Attachment(kind=ctype.split("/", 1)[0], mime_type=ctype, name=item.get("name"),
                                    url=item["contentUrl"],
                                    extra={"service_origin": service_origin} if service_origin else {}))
        # text/html duplicates `text`; cards are the bot's own or carry data in `value`.
    return found


def _from_activity(activity: dict[str, Any]) -> tuple[InboundMessage | None, str]:
    """The message an activity carries, or None and why it is not answered."""
    sender, bot, conversation = (as_dict(activity.get(key)) for key in ("from", "recipient", "conversation"))
    # Ids and text are strings on the wire: anything else would be stored as its Python repr.
    if not as_str(activity.get("id")) or not as_str(sender.get("id")) or not as_str(conversation.get("id")):
        return None, "malformed_event"
    if bot.get("id") and sender.get("id") == bot.get("id"):
        return None, "own_message"  # our own activity echoed back
    text = _clean_text(as_text(activity.get("text")) or "", _bot_names(activity, bot) - {""})
    service_url = as_text(activity.get("serviceUrl")) or ""
    attachments = _attachments(activity, _origin(service_url))
    value = activity.get("value")
    kind, text = _kind_and_text(text, value, attachments)
    if not text and not attachments:
        return None, "empty_message"
    meta = _routing(activity, sender, bot, conversation, service_url)
    if kind == "interactive":
        meta["value"] = value
    return InboundMessage(
        channel="teams",
        message_id=str(activity["id"]),
        chat_id=str(conversation["id"]),
        sender_id=str(sender["id"]),
        sender_name=as_text(sender.get("name")),
        text=text,
        kind=kind,
        timestamp=_timestamp(activity.get("timestamp")),
        reply_to_id=activity.get("replyToId"),
        attachments=attachments,
        meta={k: v for k, v in meta.items() if v not in (None, "", {})},
    ), ""


def _read_receipt(activity: dict[str, Any], result: ParseResult) -> None:
    """Teams message ids in a chat are the message's server time in ms (the doc sample: id
    1485983408511, timestamp 2017-02-01T21:10:07.437Z): the last read id is also a watermark, so the
    replies sent before it count as read even when their own ids are not named."""
    last = as_str(as_dict(activity.get("value")).get("lastReadMessageId"))
    chat = as_str(as_dict(activity.get("conversation")).get("id"))
    if not last or not chat:
        result.drop("malformed_event")
        return
    watermark = int(last) / 1000 if last.isdigit() and len(last) == 13 else None
    result.receipts.append(Receipt("read", message_ids=[last], chat_id=chat, watermark=watermark,
                                   timestamp=_timestamp(activity.get("timestamp"))))
    result.drop("receipt")


def _as_edit(activity: dict[str, Any], message: InboundMessage) -> tuple[InboundMessage | None, str]:
    """A messageUpdate: an edit (channelData.eventType editMessage) or an undelete (undeleteMessage).
    Its `id` is the changed message's own id (Activity protocol, messageUpdate: "the updated activity
    is referred to by the id and conversation fields"; msteams-docs conversation-messages, "Receive
    edit message activity"), so the edit names its original by that id and gets a dedupe id of its
    own: the same edit redelivered after 15 s is a duplicate, a second edit is not."""
    event = as_dict(activity.get("channelData")).get("eventType")
    if event not in (None, "editMessage"):
        return None, "undelete" if event == "undeleteMessage" else "unsupported_event"
    original = message.message_id
    version = as_str(activity.get("timestamp")) or hashlib.sha256(message.text.encode()).hexdigest()[:16]
    message.edit_of = original
    message.message_id = f"{original}:edit:{version}"
    return message, ""


def _fit(activity: dict[str, Any], text: str) -> list[str]:
    """The text of each activity to send: `text` itself when the whole activity fits the byte
    budget (split() made sure of that unless the envelope is unusually large), else cut again."""
    envelope = teams_size.activity_bytes({**activity, "text": ""})
    if envelope + teams_size.MIN_TEXT_BYTES > teams_size.SAFE_BYTES:
        raise SendError(f"Teams activity without text is already {envelope} bytes", retryable=False,
                        code="MessageSizeTooBig")
    if teams_size.activity_bytes({**activity, "text": text}) <= teams_size.SAFE_BYTES:
        return [text]
    return teams_size.split_by_size(text, teams_size.SAFE_BYTES - envelope)


def _kind_and_text(text: str, value: Any, attachments: list[Attachment]) -> tuple[str, str]:
    if not text and value not in (None, {}, []):
        # Adaptive Card Action.Submit: empty text, the card's data in `value` (§10.11).
        return "interactive", value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                                              sort_keys=True)
    return (attachments[0].kind if attachments else "text"), text


def _bot_names(activity: dict[str, Any], bot: dict[str, Any]) -> set[str]:
    """The names the bot is @mentioned by in this activity (the mention's text), and its own name."""
    texts = {str(e.get("text") or "") for e in dicts_in(activity.get("entities"))
             if e.get("type") == "mention" and as_dict(e.get("mentioned")).get("id") == bot.get("id")
             and isinstance(e.get("mentioned"), dict)}
    names = {AT_RE.sub(lambda m: html.unescape(m.group(1)).strip(), t) for t in texts if t}
    names.add(str(bot.get("name") or ""))
    return names


def _routing(activity: dict[str, Any], sender: dict[str, Any], bot: dict[str, Any],
             conversation: dict[str, Any], service_url: str) -> dict[str, Any]:
    """What a reply needs: where to post it (serviceUrl, conversation) and who is who."""
    tenant = as_dict(as_dict(activity.get("channelData")).get("tenant")).get("id")
    return {
        "service_url": service_url,
        "activity_id": activity["id"],
        "channel_id": activity.get("channelId"),
        "from": {k: sender[k] for k in ("id", "name", "aadObjectId") if sender.get(k)},
        "recipient": {k: bot[k] for k in ("id", "name") if bot.get(k)},
        "conversation": {k: conversation[k] for k in ("id", "conversationType", "tenantId", "isGroup")
                         if conversation.get(k) is not None},
        "tenant_id": tenant or conversation.get("tenantId"),
        "locale": activity.get("locale"),
    }


def _timestamp(value: Any) -> float | None:
    try:
        return parse_iso(value) if isinstance(value, str) else None
    except ValueError:
        return None
