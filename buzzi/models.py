"""The domain: plain dataclasses, stored as documents by every Store implementation.

Times are Unix seconds (float). Field names are snake_case here and in the store; the HTTP layer
renders camelCase (docs/contract.md).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Self

from buzzi import clock

if TYPE_CHECKING:
    from buzzi.crypto import SecretBox

WEB_CHANNEL = "web"
SUBSCRIPTION_STATUSES = ("active", "trialing", "past_due", "canceled")
AGENT_KINDS = ("faq", "openai", "http")
ROLES = ("owner", "company_admin")


@functools.cache
def field_names(cls: type) -> tuple[str, ...]:
    """A dataclass's field names in order, looked up once per class (dataclasses.fields builds its
    answer on every call, and the webhook path asks per object)."""
    return tuple(f.name for f in dataclasses.fields(cls))


@functools.cache
def _name_set(cls: type) -> frozenset[str]:
    return frozenset(field_names(cls))


_ATOMIC = frozenset({str, int, float, bool, type(None)})


def _copied(value: Any) -> Any:
    """`value` copied as dataclasses.asdict copies a field: containers anew at every depth, nested
    dataclasses as dicts. The JSON-shaped values documents hold take the short ways."""
    kind = type(value)
    if kind in _ATOMIC:
        return value
    if kind is dict:
        return {key if type(key) is str else _copied(key): _copied(item) for key, item in value.items()}
    if kind is list:
        return [_copied(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: _copied(getattr(value, name)) for name in field_names(type(value))}
    return dataclasses.asdict(_Holder(value))["value"]  # anything else exactly as asdict does it


@dataclass
class _Holder:
    value: Any


class Document:
    """Mixin: dataclass <-> store document, ignoring unknown keys so old rows survive new code."""

    collection: ClassVar[str]

    def to_doc(self) -> dict[str, Any]:
        """The same as dataclasses.asdict(self) (a copy at every depth, so a caller may change it),
        in a fraction of its time: asdict deep-copies every value through generic machinery."""
        return {name: _copied(getattr(self, name)) for name in field_names(type(self))}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Self:
        names = _name_set(cls)
        if names.issuperset(doc):  # the usual document: no keys of fields since removed
            return cls(**doc)
        return cls(**{k: v for k, v in doc.items() if k in names})

    @classmethod
    def seal_fields(cls, doc: dict[str, Any], box: SecretBox) -> dict[str, Any]:
        """The document (whole, or the fields of an update) as stored: secrets sealed. The Store
        calls it on every write, so a model with secrets says which they are here, once."""
        return doc

    @classmethod
    def unseal_fields(cls, doc: dict[str, Any], box: SecretBox) -> dict[str, Any]:
        """A stored document with its sealed fields opened again."""
        return doc


@dataclass
class Company(Document):
    collection: ClassVar[str] = "companies"
    id: str
    name: str
    subscription_status: str = "active"
    subscription_expires_at: float | None = None
    created_at: float = field(default_factory=clock.now)
    updated_at: float = field(default_factory=clock.now)

    def subscription_active(self, now: float | None = None) -> bool:
        if self.subscription_status not in ("active", "trialing"):
            return False
        if self.subscription_expires_at is None:
            return True
        return self.subscription_expires_at > (clock.now() if now is None else now)


@dataclass
class Agent(Document):
    """settings keys named in SECRET_SETTINGS (LLM API keys, signing secrets) are sealed at rest by
    the Store and redacted by the admin API."""

    collection: ClassVar[str] = "agents"
    SECRET_SETTINGS: ClassVar[tuple[str, ...]] = ("apiKey", "secret")
    id: str
    company_id: str
    name: str
    kind: str = "faq"
    status: str = "active"
    settings: dict[str, Any] = field(default_factory=dict)
    allowed_origins: list[str] = field(default_factory=list)
    created_at: float = field(default_factory=clock.now)
    updated_at: float = field(default_factory=clock.now)

    @classmethod
    def seal_fields(cls, doc: dict[str, Any], box: SecretBox) -> dict[str, Any]:
        settings = doc.get("settings")
        if not isinstance(settings, dict):
            return doc
        sealed = {k: (box.seal(v) if k in cls.SECRET_SETTINGS and v is not None else v) for k, v in settings.items()}
        return {**doc, "settings": sealed}

    @classmethod
    def unseal_fields(cls, doc: dict[str, Any], box: SecretBox) -> dict[str, Any]:
        settings = doc.get("settings")
        if not isinstance(settings, dict):
            return doc
        # Settings written before a key was declared secret are still plaintext: open only ciphertexts.
        opened = {k: (box.open(v) if k in cls.SECRET_SETTINGS and isinstance(v, str) and v.startswith(box.PREFIX)
                      else v) for k, v in settings.items()}
        return {**doc, "settings": opened}


@dataclass
class Webhook(Document):
    """A channel configuration. secret, verify_token and credentials are sealed at rest by the Store."""

    collection: ClassVar[str] = "webhooks"
    SEALED: ClassVar[tuple[str, ...]] = ("secret", "verify_token", "credentials")
    id: str
    company_id: str
    agent_id: str
    channel: str
    status: str = "active"
    secret: str | None = None
    verify_token: str | None = None
    credentials: dict[str, Any] = field(default_factory=dict)
    ip_allowlist: list[str] = field(default_factory=list)
    # Admin-chosen, not secret, validated by the adapter (ChannelAdapter.validate_settings), e.g.
    # WhatsApp {"reengagementTemplate": {"name", "language"}}.
    settings: dict[str, Any] = field(default_factory=dict)
    # Channel-specific state that is not secret (e.g. Telegram registration result, bot user id).
    state: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=clock.now)
    updated_at: float = field(default_factory=clock.now)

    @classmethod
    def seal_fields(cls, doc: dict[str, Any], box: SecretBox) -> dict[str, Any]:
        return {k: (box.seal(v) if k in cls.SEALED else v) for k, v in doc.items()}

    @classmethod
    def unseal_fields(cls, doc: dict[str, Any], box: SecretBox) -> dict[str, Any]:
        opened = {**doc, **{key: box.open(doc.get(key)) for key in cls.SEALED}}
        if opened["credentials"] is None:
            opened["credentials"] = {}
        return opened


@dataclass
class User(Document):
    collection: ClassVar[str] = "users"
    id: str
    email: str
    password_hash: str
    role: str = "company_admin"
    company_id: str | None = None
    disabled: bool = False
    # In every token as "sv"; replaced (buzzi.auth.new_session_version) to end all of the user's sessions.
    session_version: str = ""
    created_at: float = field(default_factory=clock.now)
    updated_at: float = field(default_factory=clock.now)


@dataclass
class Conversation(Document):
    collection: ClassVar[str] = "conversations"
    id: str
    company_id: str
    agent_id: str
    channel: str  # a registered channel (buzzi.channels.registry), or "web" for the widget
    webhook_id: str | None = None
    external_chat_id: str | None = None
    # Unique per channel chat: "{webhook_id}:{external_chat_id}"; None for web chat.
    chat_key: str | None = None
    # sha256 of the web chat session id: the id itself is a bearer secret and is never stored.
    session_hash: str | None = None
    status: str = "open"  # open | closed
    owner: str = "bot"  # bot | human
    message_count: int = 0
    last_message_at: float | None = None
    # When the customer last wrote (channel conversations): the platform's messaging windows
    # (buzzi/windows.py) count from it.
    last_inbound_at: float | None = None
    customer: dict[str, Any] = field(default_factory=dict)
    # Channel routing facts needed to answer later (Teams serviceUrl, Slack thread_ts, ...).
    meta: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=clock.now)
    updated_at: float = field(default_factory=clock.now)


# Message.state values. Inbound user messages move pending -> processing -> done | failed | skipped;
# every other message is stored as "stored".
PENDING, PROCESSING, DONE, FAILED, SKIPPED, STORED = (
    "pending", "processing", "done", "failed", "skipped", "stored",
)


@dataclass
class Message(Document):
    collection: ClassVar[str] = "messages"
    id: str
    conversation_id: str
    company_id: str
    agent_id: str
    role: str  # user | assistant | human | system
    content: str
    channel: str = WEB_CHANNEL
    webhook_id: str | None = None
    attachments: list[dict[str, Any]] = field(default_factory=list)
    channel_message_id: str | None = None
    # Unique when set: "{webhook_id}:{channel dedupe id}" for inbound, "reply:{message id}" for answers.
    dedupe_key: str | None = None
    reply_to: str | None = None
    state: str = STORED
    lease_owner: str | None = None
    lease_until: float | None = None
    attempts: int = 0
    # Outbound delivery on a channel (docs/contract.md §4): {"status": pending|sent|delivered|read|
    # failed, "attempts", "ids": [platform ids], "parts", "sentParts", "error"?: {"code", "title",
    # "details"?}, "notBefore"? (a resend scheduled for then), "via"? (template | human_agent),
    # "receipts"? {platform id: status}, "updatedAt"}. Status only moves forward: receipts never undo.
    delivery: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=clock.now)
    updated_at: float = field(default_factory=clock.now)


@dataclass
class SentId(Document):
    """A platform message id of one of our sends, so a receipt naming it finds the reply in one
    lookup by primary key: id = "{webhook_id}:{platform message id}"."""

    collection: ClassVar[str] = "sent_ids"
    id: str
    message_id: str
    conversation_id: str
    company_id: str
    created_at: float = field(default_factory=clock.now)


@dataclass
class ChatAlias(Document):
    """Another id a channel chat is known by (WhatsApp phone number <-> business-scoped user id):
    id = "{webhook_id}:{alias}", pointing at the conversation that chat already has."""

    collection: ClassVar[str] = "chat_aliases"
    id: str
    conversation_id: str
    company_id: str
    created_at: float = field(default_factory=clock.now)


@dataclass
class WebhookEvent(Document):
    """One webhook delivery as received: the dashboard's delivery log."""

    collection: ClassVar[str] = "webhook_events"
    id: str
    webhook_id: str | None
    company_id: str | None
    channel: str
    outcome: str  # ok | duplicate | ignored | rejected | error | verified
    status_code: int
    latency_ms: float
    received_at: float = field(default_factory=clock.now)
    detail: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # secrets redacted before storing
    body: str = ""  # truncated excerpt
    message_ids: list[str] = field(default_factory=list)


@dataclass
class Media(Document):
    """An inbound attachment's bytes, downloaded from the channel after the message was stored
    (buzzi/media.py). Kept small and self-contained: base64 data plus what a viewer needs."""

    collection: ClassVar[str] = "media"
    id: str
    message_id: str
    company_id: str
    conversation_id: str
    channel: str
    mime_type: str | None
    size: int
    sha256: str
    data: str  # base64
    name: str | None = None
    created_at: float = field(default_factory=clock.now)
