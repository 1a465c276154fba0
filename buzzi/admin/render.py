"""Domain objects as the admin API shows them: camelCase, ISO-8601 times, secrets redacted
except in the one answer that creates or rotates them."""

from __future__ import annotations

from typing import Any

from buzzi import clock, windows
from buzzi.channels.registry import ADAPTERS
from buzzi.delivery_log import redact_headers
from buzzi.models import Agent, Company, Conversation, Message, User, Webhook, WebhookEvent

ELLIPSIS = "\u2026"
# Well-known, non-secret prefixes that tell a reader which kind of key it is.
KEY_PREFIXES = ("whsec_", "xoxb-", "xoxp-", "sk-")
HINT_CHARS = 4
MIN_HINTED_LEN = 12  # shorter values get no hint at all: 4 of 8 characters would be half the secret


def redact(value: Any) -> Any:
    """"whsec_…abcd": enough to recognise a value, never enough to use it."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    if not text:
        return ""
    prefix = next((p for p in KEY_PREFIXES if text.startswith(p)), "")
    if len(text) < MIN_HINTED_LEN:
        return prefix + ELLIPSIS
    return prefix + ELLIPSIS + text[-HINT_CHARS:]


def _times(obj: Any) -> dict[str, Any]:
    return {"createdAt": clock.iso(obj.created_at), "updatedAt": clock.iso(obj.updated_at)}


def render_user(user: User) -> dict[str, Any]:
    return {"id": user.id, "email": user.email, "role": user.role, "companyId": user.company_id,
            "disabled": user.disabled, **_times(user)}


def render_company(company: Company) -> dict[str, Any]:
    return {
        "id": company.id, "name": company.name,
        "subscription": {
            "status": company.subscription_status,
            "expiresAt": clock.iso(company.subscription_expires_at),
            "active": company.subscription_active(),
        },
        **_times(company),
    }


def render_agent(agent: Agent, *, reveal: bool = False) -> dict[str, Any]:
    """Secret settings (apiKey, secret) are shown in full only in the create answer."""
    settings = {k: (v if reveal or k not in Agent.SECRET_SETTINGS else redact(v)) for k, v in agent.settings.items()}
    return {
        "id": agent.id, "companyId": agent.company_id, "name": agent.name, "status": agent.status,
        "kind": agent.kind, "settings": settings, "allowedOrigins": agent.allowed_origins, **_times(agent),
    }


def webhook_url(public_url: str, webhook: Webhook) -> str:
    return (f"{public_url.rstrip('/')}/api/webhooks/{webhook.company_id}/{webhook.agent_id}/"
            f"{webhook.channel}/{webhook.id}")


def render_webhook(webhook: Webhook, public_url: str, *, reveal: bool = False) -> dict[str, Any]:
    """`reveal` only for the create and rotate-secret answers: the one time secrets are shown."""
    show = (lambda v: v) if reveal else redact
    return {
        "id": webhook.id, "companyId": webhook.company_id, "agentId": webhook.agent_id,
        "channel": webhook.channel, "status": webhook.status,
        "secret": show(webhook.secret),
        "verifyToken": show(webhook.verify_token),
        "credentials": {k: show(v) for k, v in webhook.credentials.items()},
        "ipAllowlist": webhook.ip_allowlist,
        "url": webhook_url(public_url, webhook),
        "settings": webhook.settings,
        "state": webhook.state,
        **_disabled(webhook),
        **_times(webhook),
    }


def _disabled(webhook: Webhook) -> dict[str, Any]:
    """Why the gateway disabled a webhook itself (a custom receiver answered 410), when it did."""
    reason = webhook.state.get("disabledReason")
    if webhook.status != "disabled" or not reason:
        return {}
    return {"disabledReason": str(reason), "disabledAt": _iso(webhook.state.get("disabledAt"))}


def _iso(value: Any) -> str | None:
    """Stored times are Unix seconds; anything else (an older row's ISO text) is passed on as text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return clock.iso(float(value))
    return None if value is None else str(value)


def render_window(conversation: Conversation, now: float | None = None) -> dict[str, Any]:
    """The platform's messaging window (buzzi/windows.py) as it stands `now`: {"state", "closesAt"}."""
    adapter = ADAPTERS.get(conversation.channel)
    if adapter is None:  # web chat: no platform window
        return {"state": windows.NONE, "closesAt": None}
    # window() reads only the adapter's class-level window rules, so the class serves as well as an instance.
    rendered = windows.window(adapter, conversation, clock.now() if now is None else now).render()  # type: ignore[arg-type]
    return {**rendered, "closesAt": clock.iso(rendered["closesAt"])}


def render_conversation(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.id, "companyId": conversation.company_id, "agentId": conversation.agent_id,
        "channel": conversation.channel, "webhookId": conversation.webhook_id,
        "externalChatId": conversation.external_chat_id, "status": conversation.status,
        "owner": conversation.owner, "messageCount": conversation.message_count,
        "lastMessageAt": clock.iso(conversation.last_message_at),
        "lastInboundAt": clock.iso(conversation.last_inbound_at),
        "window": render_window(conversation), "customer": conversation.customer,
        **_times(conversation),
    }


DELIVERY_STATUSES = ("pending", "sent", "delivered", "read", "failed")


def render_delivery(delivery: dict[str, Any]) -> dict[str, Any] | None:
    """A reply's delivery as docs/contract.md §4 gives it: {"status", "attempts", "ids", "error"?:
    {"code", "title", "details"?}, "notBefore"?, "via"?}. Rows written before receipts stored the
    error as a plain string (and its code beside it): shown in the same shape."""
    if not delivery:
        return None
    out: dict[str, Any] = {"status": delivery.get("status") or "pending",
                           "attempts": int(delivery.get("attempts") or 0),
                           "ids": [str(i) for i in delivery.get("ids") or []]}
    error = _delivery_error(delivery)
    if error is not None:
        out["error"] = error
    if delivery.get("notBefore") is not None and out["status"] == "pending":
        out["notBefore"] = _iso(delivery["notBefore"])
    if delivery.get("via"):
        out["via"] = str(delivery["via"])
        template = delivery.get("template")
        if isinstance(template, dict) and template.get("name"):
            out["template"] = {"name": str(template["name"]), "language": template.get("language")}
    return out


def _delivery_error(delivery: dict[str, Any]) -> dict[str, Any] | None:
    error = delivery.get("error")
    if error is None or error == "":
        return None
    if isinstance(error, dict):
        shaped: dict[str, Any] = {"code": _code(error.get("code")),
                                  "title": str(error.get("title") or error.get("message") or "Delivery failed")}
        if error.get("details"):
            shaped["details"] = str(error["details"])
        return shaped
    return {"code": _code(delivery.get("code")), "title": str(error)}


def _code(code: Any) -> str | int | None:
    """The platform's own code as it gave it (Graph: a number; ours: "window_closed", an HTTP status)."""
    if code is None or (isinstance(code, int | str) and not isinstance(code, bool)):
        return code
    return str(code)


def render_message(message: Message) -> dict[str, Any]:
    """With the processing state and the outbound delivery, so failed sends show in the dashboard."""
    return {
        "id": message.id, "conversationId": message.conversation_id, "role": message.role,
        "content": message.content, "attachments": message.attachments, "channel": message.channel,
        "state": message.state, "attempts": message.attempts,
        "delivery": render_delivery(message.delivery),
        "replyTo": message.reply_to, "metadata": message.metadata, "createdAt": clock.iso(message.created_at),
    }


def render_event(event: WebhookEvent) -> dict[str, Any]:
    return {
        "id": event.id, "webhookId": event.webhook_id, "companyId": event.company_id, "channel": event.channel,
        "receivedAt": clock.iso(event.received_at), "outcome": event.outcome, "statusCode": event.status_code,
        "latencyMs": event.latency_ms, "detail": event.detail,
        # Already redacted by the pipeline; redacted again so no stored row can ever leak a signature.
        "headers": redact_headers(event.headers), "body": event.body, "messageIds": event.message_ids,
    }
