"""What a customer is told when an agent fails, and what stays for the company's admins.

An agent's `error` event can carry internal facts: a blocked or unreachable host ("... 10.0.0.3 is
a private address"), a company service's own message, a setting's name. Customers (the widget's
stream, channel replies) get a generic text and a code from the documented list
(docs/contract.md §3 "Agents"); the full code and message go to the log and onto the failed
message's metadata, which the admin API and the dashboard's conversation view show.
"""

from __future__ import annotations

from buzzi.agents import upstream
from buzzi.events import AgentEvent, error

# Codes the gateway itself emits; any other code (a company service may send its own) is shown as
# the generic one, since it may name internal systems.
AGENT_ERROR = "agent_error"
PUBLIC_CODES = frozenset({
    upstream.UNAVAILABLE, upstream.RATE_LIMITED, upstream.UPSTREAM_ERROR, upstream.AUTH, upstream.REJECTED,
    upstream.PROTOCOL, upstream.MISCONFIGURED, upstream.BLOCKED, "agent_timeout", AGENT_ERROR, "agent_failed",
})
RETRYABLE_TEXT = "Sorry, the assistant cannot answer right now. Please try again in a moment."
FINAL_TEXT = "Sorry, the assistant cannot answer this right now."
MAX_DETAIL_CHARS = 500  # a company service's message is kept for admins, bounded


def customer_error(event: AgentEvent) -> AgentEvent:
    """The `error` event as the customer's stream shows it: a documented code, a generic text."""
    code = str(event.data.get("code") or AGENT_ERROR)
    retryable = event.data.get("retryable") is True
    return error(code if code in PUBLIC_CODES else AGENT_ERROR, RETRYABLE_TEXT if retryable else FINAL_TEXT,
                 retryable)


def admin_detail(event: AgentEvent) -> str:
    """The failure as admins see it: the agent's own code and message."""
    code = str(event.data.get("code") or AGENT_ERROR)[:100]
    message = str(event.data.get("message") or "")[:MAX_DETAIL_CHARS]
    return f"{code}: {message}" if message else code
