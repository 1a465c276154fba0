"""'Send test event': a correctly signed sample delivery for a webhook's channel, POSTed to the
webhook's own public URL, so an operator can check the URL, the secret and the delivery log end to end.

The samples are receipts and other non-message events from the platforms' documentation
(channels.md): they are acknowledged and logged, but no agent runs and no reply is sent to anyone.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from buzzi.models import Webhook
from buzzi.signing import hub_signature, slack_signature, standard_headers

BODY_EXCERPT = 2000
TIMEOUT_SECONDS = 10.0


class CannotSimulate(Exception):
    """The channel's requests cannot be produced by us (Teams: signed with Microsoft's keys)."""


@dataclass(frozen=True)
class TestEvent:
    body: bytes
    headers: dict[str, str]
    description: str


@dataclass(frozen=True)
class TestResult:
    status: int | None
    body: str
    error: str = ""
    description: str = ""


def _json(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _meta_status(webhook: Webhook, now: int) -> bytes:
    if webhook.channel == "whatsapp":
        phone_id = str(webhook.credentials.get("phoneNumberId", "0"))
        return _json({"object": "whatsapp_business_account", "entry": [{"id": "0", "changes": [{
            "field": "messages",
            "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550000000", "phone_number_id": phone_id},
                "statuses": [{"id": f"wamid.TEST{secrets.token_hex(8)}", "status": "delivered",
                              "timestamp": str(now), "recipient_id": "15550000001"}],
            },
        }]}]})
    account = str(webhook.credentials.get("pageId") or webhook.credentials.get("igUserId") or "0")
    obj = "page" if webhook.channel == "messenger" else "instagram"
    return _json({"object": obj, "entry": [{"id": account, "time": now * 1000, "messaging": [{
        "sender": {"id": "1000000000000001"}, "recipient": {"id": account}, "timestamp": now * 1000,
        "read": {"watermark": now * 1000},
    }]}]})


def build_test_event(webhook: Webhook, now: float | None = None) -> TestEvent:
    """The sample request for `webhook`, signed the way its platform signs (channels.md)."""
    ts = int(now if now is not None else time.time())
    secret = webhook.secret or ""
    json_type = {"Content-Type": "application/json"}
    if webhook.channel in ("whatsapp", "messenger", "instagram"):
        body = _meta_status(webhook, ts)
        what = "a delivery receipt" if webhook.channel == "whatsapp" else "a read receipt"
        return TestEvent(body, {**json_type, "X-Hub-Signature-256": hub_signature(secret, body)},
                         f"{what}, signed with X-Hub-Signature-256")
    if webhook.channel == "slack":
        body = _json({"type": "event_callback", "team_id": "T0TEST", "api_app_id": "A0TEST",
                      "event_id": f"Ev{secrets.token_hex(6).upper()}", "event_time": ts,
                      "event": {"type": "reaction_added", "user": "U0TEST", "reaction": "thumbsup",
                                "item": {"type": "message", "channel": "C0TEST", "ts": f"{ts}.000100"},
                                "event_ts": f"{ts}.000200"}})
        headers = {**json_type, "X-Slack-Request-Timestamp": str(ts),
                   "X-Slack-Signature": slack_signature(secret, str(ts), body)}
        return TestEvent(body, headers, "a reaction_added event, signed with Slack's v0 signature")
    if webhook.channel == "telegram":
        body = _json({"update_id": secrets.randbelow(10**9), "message_reaction": {
            "chat": {"id": 1, "type": "private"}, "message_id": 1, "date": ts,
            "user": {"id": 1, "is_bot": False, "first_name": "Test"},
            "old_reaction": [], "new_reaction": [{"type": "emoji", "emoji": "\U0001f44d"}]}})
        return TestEvent(body, {**json_type, "X-Telegram-Bot-Api-Secret-Token": secret},
                         "a message_reaction update, with the secret token header")
    if webhook.channel == "custom":
        body = _json({"type": "webhook.test", "timestamp": ts, "data": {}})
        msg_id = f"msg_test_{secrets.token_hex(8)}"
        return TestEvent(body, {**json_type, **standard_headers(secret, msg_id, ts, body)},
                         "a webhook.test event, signed with Standard Webhooks")
    if webhook.channel == "teams":
        raise CannotSimulate("Teams requests are signed by Microsoft (a Bot Framework JWT from Microsoft's keys): "
                             "we cannot produce a valid one. Use the Bot Framework Emulator or a Teams chat.")
    raise CannotSimulate(f"no sample for the {webhook.channel} channel")


async def send_test_event(url: str, event: TestEvent) -> TestResult:
    """POST the sample to the webhook's public URL and report what the gateway answered."""
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http, \
                http.post(url, data=event.body, headers=event.headers, allow_redirects=False) as resp:
            text = (await resp.content.read(BODY_EXCERPT)).decode("utf-8", "replace")
            return TestResult(resp.status, text, description=event.description)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return TestResult(None, "", error=f"{exc.__class__.__name__}: could not reach {url}",
                          description=event.description)
