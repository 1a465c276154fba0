"""The platforms' messaging windows (docs/channels.md §8a): what may be sent to a channel customer,
counted from their last message (Conversation.last_inbound_at).

- WhatsApp: free-form within 24 h; after that only an approved template (the webhook's
  re-engagement template), else the send would fail with 131047.
- Messenger and Instagram: free-form within 24 h; a person's reply with the HUMAN_AGENT tag
  within 7 days; nothing after that.
- Every other channel has no window.

Decided before any send, so a reply after the window is never sent blind to fail at the platform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from buzzi.channels.base import ChannelAdapter
    from buzzi.models import Conversation, Webhook

# Window states, as the admin API and the dashboard show them.
OPEN = "open"  # free-form messages may go out
HUMAN_ONLY = "human_only"  # only a person's reply, tagged HUMAN_AGENT
TEMPLATE_ONLY = "template_only"  # only a template (WhatsApp)
CLOSED = "closed"  # nothing may be sent until the customer writes again
NONE = "none"  # the channel has no window

# The failure stored on a reply that may not be sent (delivery.error.code).
WINDOW_CLOSED = "window_closed"


@dataclass(frozen=True)
class Window:
    state: str
    closes_at: float | None = None  # when the current state ends (None: it does not)

    def render(self) -> dict[str, Any]:
        return {"state": self.state, "closesAt": self.closes_at}


@dataclass(frozen=True)
class SendPlan:
    """How a reply goes out: a ReplyTarget mode, or `refusal` (a reason) when it may not."""

    mode: str = "standard"
    template: dict[str, Any] | None = None
    refusal: str | None = None


def window(adapter: ChannelAdapter, conversation: Conversation, now: float) -> Window:
    """The conversation's window state at `now`."""
    service = adapter.service_window
    if service is None:
        return Window(NONE)
    last = conversation.last_inbound_at
    if last is None:  # written before windows were tracked: the last message is the best guess
        last = conversation.last_message_at or conversation.created_at
    if now < last + service:
        return Window(OPEN, last + service)
    if adapter.human_window is not None and now < last + adapter.human_window:
        return Window(HUMAN_ONLY, last + adapter.human_window)
    if adapter.template_reengagement:
        return Window(TEMPLATE_ONLY)
    return Window(CLOSED)


def reengagement_template(webhook: Webhook) -> dict[str, Any] | None:
    template = webhook.settings.get("reengagementTemplate")
    return template if isinstance(template, dict) and template.get("name") else None


def plan(adapter: ChannelAdapter, webhook: Webhook, conversation: Conversation, role: str, now: float) -> SendPlan:
    """How a reply by `role` (assistant, human, system) may be sent now."""
    state = window(adapter, conversation, now).state
    if state in (OPEN, NONE):
        return SendPlan()
    if state == HUMAN_ONLY:
        if role == "human":
            return SendPlan(mode="human_agent")
        return SendPlan(refusal="Window closed: more than 24 hours since the customer's last message; "
                                "only a person's reply may be sent (HUMAN_AGENT tag, within 7 days)")
    if state == TEMPLATE_ONLY:
        template = reengagement_template(webhook)
        if template is not None:
            return SendPlan(mode="template", template=template)
        return SendPlan(refusal="Window closed, needs a template: more than 24 hours since the customer's "
                                "last message; configure a re-engagement template on the webhook")
    return SendPlan(refusal="Window closed: the customer has not written for more than 7 days")
