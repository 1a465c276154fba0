"""The ChannelAdapter seam: one adapter per channel turns the platform's webhooks into
InboundMessages (input side) and sends replies through the platform's API (output side),
like Rasa's InputChannel/OutputChannel pair. Adapters know nothing of HTTP servers: they get a
WebhookRequest (raw bytes and headers) and an outbound aiohttp session.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

from buzzi.channels.pacing import SendLimits
from buzzi.channels.payload import PayloadError as PayloadError  # re-exported: the adapters' error family
from buzzi.channels.payload import json_object
from buzzi.config import ChannelSettings
from buzzi.models import Conversation, Message, Webhook

DEFAULT_REPLAY_WINDOW = 300.0  # seconds; Slack's own and Standard Webhooks' recommended tolerance
# Escaping (Telegram HTML, Slack mrkdwn) can lengthen a text: split with room to spare.
ESCAPE_HEADROOM = 0.9


class CannotSimulate(Exception):
    """The channel's requests cannot be produced by us (Teams: signed with Microsoft's keys)."""


@dataclass(frozen=True)
class CredentialField:
    """One credential a webhook of the channel holds (docs/contract.md §2), as the admin forms ask for it."""

    name: str
    label: str
    secret: bool = False
    required: bool = True
    kind: str = "string"  # the JSON type the admin API takes: "string" or "integer" (WhatsApp throughput)


@dataclass(frozen=True)
class SampleEvent:
    """A correctly signed request the channel's platform could send, for "Send test event"."""

    body: bytes
    headers: dict[str, str]
    description: str


class VerificationError(Exception):
    """Missing or wrong signature, or a timestamp outside the window: 401, no work done."""


class CredentialsError(ValueError):
    """Webhook credentials are invalid; `field` names the key."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class SendError(Exception):
    """A send failed. `retryable` follows the channel's error classes (docs/channels.md); `retry_after`
    carries the platform's Retry-After (seconds) when it gave one."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None,
                 status: int | None = None, code: str | int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        self.code = code


@dataclass
class WebhookRequest:
    method: str
    headers: dict[str, str]  # keys lower-cased
    body: bytes
    query: dict[str, str]
    remote_ip: str
    now: float
    _json: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)

    def json(self) -> dict[str, Any]:
        """The body as a JSON object (PayloadError otherwise), parsed once however many steps read it."""
        if self._json is None:
            self._json = json_object(self.body)
        return self._json


@dataclass
class HandshakeResult:
    status: int
    body: str
    content_type: str = "text/plain"


@dataclass
class Attachment:
    kind: str  # image | audio | voice | video | document | sticker | file | location
    mime_type: str | None = None
    name: str | None = None
    url: str | None = None  # where to fetch it (may need the adapter's credentials)
    media_id: str | None = None  # platform media id (WhatsApp, Telegram file_id)
    size: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, {}, [])}


@dataclass
class InboundMessage:
    """The unified shape every channel's messages are normalised into."""

    channel: str
    message_id: str  # the channel's stable dedupe id (docs/channels.md §0)
    chat_id: str  # where replies go (user id, chat id, channel id, conversation id)
    sender_id: str
    text: str
    kind: str = "text"  # text | image | audio | video | document | location | interactive | edit | ...
    sender_name: str | None = None
    timestamp: float | None = None
    reply_to_id: str | None = None
    thread_id: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    # Routing facts the adapter needs to answer (Teams serviceUrl and activity, Telegram
    # callback_query id, WhatsApp phone_number_id, Slack thread_ts, ...). Stored on the message.
    meta: dict[str, Any] = field(default_factory=dict)
    # Attachments past webhooks.max_attachments, dropped by the intake (recorded on the message).
    attachments_dropped: int = 0
    # An edit: the channel dedupe id (`message_id`) of the message it changes. The intake records it
    # on that message instead of answering again, unless the agent's settings ask for re-answers.
    edit_of: str | None = None
    # Other ids the same chat is known by (WhatsApp: the phone number and the business-scoped user
    # id): the intake finds the chat's conversation by any of them, so one customer keeps one
    # conversation when a phone number appears or disappears.
    chat_aliases: list[str] = field(default_factory=list)


RECEIPT_STATUSES = ("sent", "delivered", "read", "failed")


@dataclass
class Receipt:
    """The platform's later word on one of our sends (WhatsApp statuses[], Messenger and Instagram
    delivery/read events), matched to the reply by platform message id (delivery.ids)."""

    status: str  # one of RECEIPT_STATUSES
    message_ids: list[str] = field(default_factory=list)  # the platform ids it names (wamid, mids)
    # Watermark receipts (Messenger/Instagram): every send to `chat_id` up to `watermark` (Unix
    # seconds) has reached this status, whether or not its id is named.
    chat_id: str | None = None
    watermark: float | None = None
    timestamp: float | None = None
    error: dict[str, Any] | None = None  # failed: {"code", "title", "details"?}
    # A late failure the platform says may pass (throughput, pair rate limit): the part is sent
    # again, not before `retry_after` seconds.
    retryable: bool = False
    retry_after: float | None = None


@dataclass(frozen=True)
class ChatMove:
    """The platform moved a chat to a new id (Telegram group -> supergroup, migrate_to_chat_id)."""

    old_chat_id: str
    new_chat_id: str


@dataclass
class ParseResult:
    messages: list[InboundMessage] = field(default_factory=list)
    ignored: int = 0  # events that are not messages to answer; drop() counts them by reason
    # Why each non-message was not answered, reason -> count ("receipt", "echo", "reaction",
    # "bot_message", "unsupported_event", ...): the delivery log and /metrics show them.
    drops: dict[str, int] = field(default_factory=dict)
    receipts: list[Receipt] = field(default_factory=list)
    moves: list[ChatMove] = field(default_factory=list)
    # A body to answer with instead of {"status": "ok"} (Slack url_verification challenge).
    response: dict[str, Any] | None = None

    def drop(self, reason: str, count: int = 1) -> None:
        """Count `count` events deliberately not answered, with a short snake_case reason."""
        self.ignored += count
        self.drops[reason] = self.drops.get(reason, 0) + count


@dataclass
class ReplyTarget:
    """Where a reply goes: the conversation, and the inbound message it answers (if any)."""

    conversation: Conversation
    in_reply_to: Message | None = None
    # The outbound Message id of this reply: a stable idempotency key across send retries
    # (the custom channel's webhook-id derives from it).
    reply_id: str | None = None
    # How the send must go, chosen by buzzi/windows.py from the platform's messaging window:
    # "standard"; "human_agent" (Messenger/Instagram HUMAN_AGENT tag, a person's reply within 7
    # days); "template" (WhatsApp re-engagement template `template` = {"name", "language"}).
    mode: str = "standard"
    template: dict[str, Any] | None = None

    @property
    def chat_id(self) -> str:
        return self.conversation.external_chat_id or ""

    @property
    def meta(self) -> dict[str, Any]:
        merged = dict(self.conversation.meta)
        if self.in_reply_to is not None:
            merged.update(self.in_reply_to.metadata.get("channel", {}))
        return merged


class ChannelAdapter(abc.ABC):
    channel: str
    # What the admin side needs to know of the channel: forms, validation and the test-event button
    # are derived from these, so a new channel touches nothing outside buzzi/channels/.
    display_name: ClassVar[str]
    credential_fields: ClassVar[tuple[CredentialField, ...]] = ()
    # The webhook settings the admin forms ask for (validate_settings checks them); a dotted name is
    # a nested key ("reengagementTemplate.name" -> {"reengagementTemplate": {"name": ...}}).
    setting_fields: ClassVar[tuple[CredentialField, ...]] = ()
    # Where the inbound signing secret comes from: "given" (the platform's, typed in and rotated by
    # the admin), "generated" (ours, registered with or shown to the sender) or "none" (Teams: JWT).
    secret_source: ClassVar[str] = "none"
    secret_hint: ClassVar[str] = ""
    has_verify_token: ClassVar[bool] = False
    # Whether on_created registers the webhook's URL and secret with the platform (Telegram setWebhook).
    registers_webhook: ClassVar[bool] = False
    text_limit: int  # longest text one send may carry; longer replies are split
    # The platform's documented send limits: the delivery path paces every send by them (pacing.py).
    send_limits: ClassVar[SendLimits] = SendLimits()
    # Whether the typing indicator is a call that counts against the same limits (WhatsApp).
    paces_typing: ClassVar[bool] = False
    # How often the typing indicator is refreshed while the agent works (it fades on the platform
    # after a while); None: shown once.
    typing_interval: ClassVar[float | None] = None
    # Messaging windows (buzzi/windows.py), in seconds since the customer's last message: free-form
    # sends within `service_window`; a person's reply within `human_window` (Messenger/Instagram
    # HUMAN_AGENT tag); WhatsApp (`template_reengagement`) needs a template after the window.
    # None: the channel has no window.
    service_window: ClassVar[float | None] = None
    human_window: ClassVar[float | None] = None
    template_reengagement: ClassVar[bool] = False

    def __init__(self, settings: ChannelSettings, http: Any, *,
                 replay_window: float = DEFAULT_REPLAY_WINDOW) -> None:
        self.settings = settings
        self.http = http  # buzzi.channels.outbound.OutboundHttp
        # How far a signed timestamp may be from now (webhooks.replay_window_seconds), for the
        # channels whose signature covers one (Slack, custom).
        self.replay_window = replay_window

    def pacing_account(self, webhook: Webhook, target: ReplyTarget) -> str:
        """The key of the sending account `send_limits.per_account` applies to: one webhook is one
        bot, app, Page or account, unless the platform counts per something else."""
        return webhook.id

    def account_rate(self, webhook: Webhook) -> float | None:
        """Sends per second for this webhook's account: `send_limits.per_account` unless the
        webhook's settings state the account's own level (WhatsApp settings.throughput)."""
        del webhook  # the same for every webhook of most channels
        return self.send_limits.per_account

    def split(self, text: str) -> list[str]:
        """The parts a reply is sent in: each within text_limit once formatted, one send each."""
        return split_text(text, max(1, int(self.text_limit * ESCAPE_HEADROOM)))

    # ---- configuration
    @abc.abstractmethod
    def validate_credentials(self, credentials: Any) -> dict[str, Any]:
        """Normalised credentials or CredentialsError naming the field."""

    def generate_secrets(
        self, given_secret: str | None, given_verify_token: str | None
    ) -> tuple[str | None, str | None]:
        """(secret, verify_token) to store: generated where the platform lets us choose them."""
        return given_secret, given_verify_token

    def validate_settings(self, settings: Any) -> dict[str, Any]:
        """Normalised webhook settings (admin-chosen and not secret, e.g. WhatsApp's re-engagement
        template) or CredentialsError naming the field. Channels without settings accept only {}."""
        if settings in (None, {}):
            return {}
        if not isinstance(settings, dict):
            raise CredentialsError("settings", "expected an object")
        raise CredentialsError(f"settings.{next(iter(settings))}", f"the {self.channel} channel has no such setting")

    async def check_credentials(self, credentials: dict[str, Any]) -> None:
        """Prove the credentials work with the platform before the webhook is stored (Teams fetches
        a token); raise CredentialsError naming the field that is wrong. Default: nothing to check."""

    async def on_created(self, webhook: Webhook, url: str) -> dict[str, Any]:
        """Register with the platform where it has an API for it (Telegram setWebhook); returns
        state to keep on the webhook."""
        return {}

    def sample_event(self, webhook: Webhook, now: float) -> SampleEvent:
        """A signed request of a kind that is acknowledged and logged but answers nobody (a receipt,
        a reaction); raise CannotSimulate when only the platform can sign one."""
        raise CannotSimulate(f"no sample for the {self.channel} channel")

    # ---- input side
    def handshake(self, webhook: Webhook, request: WebhookRequest) -> HandshakeResult | None:
        """Answer a GET verification; None when the channel has none (405)."""
        return None

    @abc.abstractmethod
    async def verify(self, webhook: Webhook, request: WebhookRequest) -> None:
        """Check the signature on the raw bytes (constant time); raise VerificationError."""

    @abc.abstractmethod
    def parse(self, webhook: Webhook, request: WebhookRequest) -> ParseResult:
        """Normalise the verified body; raise PayloadError for malformed input."""

    # ---- output side
    def format(self, text: str) -> str:
        """Escape or convert plain agent text for the channel."""
        return text

    @abc.abstractmethod
    async def send(self, webhook: Webhook, target: ReplyTarget, text: str) -> list[str]:
        """Send one text (already formatted, within text_limit); return the platform's message
        ids. Raise SendError with the channel's retry classification."""

    async def typing(self, webhook: Webhook, target: ReplyTarget, *, first: bool = True) -> None:
        """Show the channel's typing indicator, where it has one (best effort). `first` is False for
        the refreshes every `typing_interval`: a read receipt, where the channel has one, goes only
        with the first."""

    async def acknowledge(self, webhook: Webhook, message: InboundMessage) -> None:
        """Channel-level receipt for an interaction (Telegram answerCallbackQuery), best effort."""

    # Channels whose webhooks carry no display name answer sender_profile from their API.
    looks_up_profiles: ClassVar[bool] = False

    async def sender_profile(self, webhook: Webhook, sender_id: str) -> dict[str, str]:
        """The customer's {"name", ...} from the channel's API; {} when it has none."""
        return {}

    async def download_media(self, webhook: Webhook, attachment: Attachment) -> tuple[bytes, str | None]:
        """(bytes, mime type) of an inbound attachment, at most settings.media_max_bytes."""
        raise NotImplementedError(f"{self.channel} has no media download")


def split_text(text: str, limit: int) -> list[str]:
    """Split at paragraph, line, sentence or word boundaries so that every part fits `limit`."""
    text = text.strip()
    if len(text) <= limit:
        return [text] if text else []
    parts: list[str] = []
    while len(text) > limit:
        window = text[:limit]
        cut = -1
        for sep in ("\n\n", "\n", ". ", " "):
            idx = window.rfind(sep)
            if idx > limit // 3:
                cut = idx + len(sep)
                break
        if cut <= 0:
            cut = limit
        parts.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        parts.append(text)
    return parts
