"""What the conversation page says about a reply's delivery and the conversation's messaging window,
in words, from the admin API's shapes (buzzi.admin.render). Computed here once, so the page's first
render (Jinja) and its live updates (live.js) show the same text."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from buzzi import clock

CHECK = "\u2713"
# The states are the platforms' own receipts (docs/channels.md §8a): WhatsApp's status webhooks
# (sent, delivered, read, failed with errors[].code/title/error_data.details; Meta "messages webhook
# reference", developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/
# messages) and Messenger/Instagram message_deliveries/message_reads. The ticks mirror WhatsApp's.
# delivery.status -> (badge text, badge class)
STATUS_BADGES = {
    "pending": ("pending", "delivery-pending"),
    "sent": (CHECK + " sent", "delivery-sent"),
    "delivered": (CHECK * 2 + " delivered", "delivery-delivered"),
    "read": (CHECK * 2 + " read", "delivery-read"),
}


def _parse(iso: str | None) -> datetime | None:
    if not iso:
        return None
    try:
        return datetime.fromtimestamp(clock.parse_iso(iso), UTC)
    except ValueError:
        return None


def clock_time(iso: str | None, *, seconds: bool = True, now: float | None = None) -> str:
    """"14:02:09 UTC", with the date in front when it is not today (UTC, like every dashboard time)."""
    moment = _parse(iso)
    if moment is None:
        return ""
    text = moment.strftime("%H:%M:%S" if seconds else "%H:%M")
    today = datetime.fromtimestamp(clock.now() if now is None else now, UTC).date()
    if moment.date() != today:
        text = f"{moment.date().isoformat()} {text}"
    return f"{text} UTC"


def delivery_view(delivery: dict[str, Any] | None) -> dict[str, Any] | None:
    """{"status", "badges": [{"text", "cls"}], "detail"?} for a rendered delivery (None: not sent on a
    channel). The first badge is the state: ✓ sent, ✓✓ delivered, ✓✓ read, failed: <title> (code),
    scheduled for <time>; a second one says how it went out (template, HUMAN_AGENT tag)."""
    if not delivery:
        return None
    status = str(delivery.get("status") or "pending")
    error = delivery.get("error") or None
    badges: list[dict[str, str]] = []
    if status == "failed":
        title = str((error or {}).get("title") or "unknown error")
        code = (error or {}).get("code")
        badges.append({"text": f"failed: {title}" + (f" ({code})" if code not in (None, "") else ""),
                       "cls": "delivery-failed"})
    elif status == "pending" and delivery.get("notBefore"):
        badges.append({"text": f"scheduled for {clock_time(delivery['notBefore'])}", "cls": "delivery-scheduled"})
    else:
        text, cls = STATUS_BADGES.get(status, (status, "delivery-unknown"))
        badges.append({"text": text, "cls": cls})
    via = delivery.get("via")
    if via == "template":
        name = (delivery.get("template") or {}).get("name")
        badges.append({"text": f"sent as template {name}" if name else "sent as a template", "cls": "delivery-via"})
    elif via == "human_agent":
        badges.append({"text": "HUMAN_AGENT", "cls": "delivery-via"})
    view: dict[str, Any] = {"status": status, "badges": badges}
    detail = _detail(status, error)
    if detail:
        view["detail"] = detail
    return view


def _detail(status: str, error: dict[str, Any] | None) -> str:
    """The platform's details under a failed reply; the last error under a reply waiting to be resent."""
    if not error:
        return ""
    if status == "failed":
        return str(error.get("details") or "")
    if status == "pending":
        return f"Last attempt: {error.get('title') or 'failed'}" + (f" ({error['code']})" if error.get("code") else "")
    return ""


def window_label(window: dict[str, Any] | None, template: str | None = None) -> str:
    """The messaging window in words ("" when the channel has none)."""
    state = (window or {}).get("state")
    until = clock_time((window or {}).get("closesAt"), seconds=False)
    if state == "open":
        return f"Window open until {until}" if until else "Window open"
    if state == "human_only":
        return f"Only a person's reply (HUMAN_AGENT) until {until}" if until else "Only a person's reply (HUMAN_AGENT)"
    if state == "template_only":
        if template:
            return f"Window closed: replies go out as template {template}"
        return "Window closed, needs a template"
    if state == "closed":
        return "Window closed"
    return ""
