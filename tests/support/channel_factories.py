"""Channel-adapter test factories: webhooks, reply targets and inbound requests for any channel, and
one ChannelCase per registered channel (valid credentials, how its platform signs, a typical inbound
message) for the adapter contract suite (tests/contracts/test_channels.py).

A new channel gets a ChannelCase here; the contract suite refuses to run without one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from buzzi.channels.base import ReplyTarget, WebhookRequest
from buzzi.models import Conversation, Message, Webhook
from buzzi.signing import hub_signature, slack_signature, standard_headers


def channel_webhook(channel: str, *, secret: str | None = None, credentials: dict[str, Any] | None = None,
                    state: dict[str, Any] | None = None, verify_token: str | None = None,
                    webhook_id: str | None = None) -> Webhook:
    return Webhook(id=webhook_id or f"wh_{channel}", company_id="c_1", agent_id="a_1", channel=channel,
                   secret=secret, verify_token=verify_token, credentials=credentials or {}, state=state or {})


def reply_target(channel: str, chat_id: str, *, meta: dict[str, Any] | None = None,
                 inbound: dict[str, Any] | None = None, reply_id: str | None = None) -> ReplyTarget:
    """A reply on conversation `cv_1`; `inbound` (Message fields: channel_message_id, metadata...)
    makes it the answer to that customer message, otherwise it answers none."""
    conversation = Conversation(id="cv_1", company_id="c_1", agent_id="a_1", channel=channel,
                                external_chat_id=chat_id, meta=meta or {})
    message = None
    if inbound is not None:
        message = Message(**{"id": "m_in", "conversation_id": "cv_1", "company_id": "c_1", "agent_id": "a_1",
                             "role": "user", "content": "hi", "channel": channel, **inbound})
    return ReplyTarget(conversation=conversation, in_reply_to=message, reply_id=reply_id)


def inbound_request(body: Any, headers: dict[str, str] | None = None, *, now: float | None = None,
                    method: str = "POST", query: dict[str, str] | None = None,
                    remote_ip: str = "127.0.0.1") -> WebhookRequest:
    """A request as the gateway hands it to an adapter: raw bytes (a non-bytes body is JSON-encoded)
    and lower-cased header names."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return WebhookRequest(method=method, headers={k.lower(): v for k, v in (headers or {}).items()}, body=raw,
                          query=query or {}, remote_ip=remote_ip, now=time.time() if now is None else now)


# ---------------------------------------------------------------------------- one case per channel

Signer = Callable[[Webhook, bytes, float], dict[str, str]]


@dataclass(frozen=True)
class ChannelCase:
    credentials: dict[str, Any]  # a valid set, as an admin would type it
    given_secret: str | None  # a valid secret to type in (None: the channel takes none)
    message: Callable[[float], bytes]  # a typical inbound text message, at `now`
    # Headers that authenticate `body` the way the platform does; None when only the platform can
    # (Teams: a JWT from Microsoft's keys).
    sign: Signer | None


def _hub(webhook: Webhook, body: bytes, now: float) -> dict[str, str]:
    return {"X-Hub-Signature-256": hub_signature(webhook.secret or "", body)}


def _slack(webhook: Webhook, body: bytes, now: float) -> dict[str, str]:
    ts = str(int(now))
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": slack_signature(webhook.secret or "", ts, body)}


def _telegram(webhook: Webhook, body: bytes, now: float) -> dict[str, str]:
    return {"X-Telegram-Bot-Api-Secret-Token": webhook.secret or ""}


def _standard(webhook: Webhook, body: bytes, now: float) -> dict[str, str]:
    return standard_headers(webhook.secret or "", "msg_contract_1", int(now), body)


def _encode(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode()


def _messaging(obj: str, account: str) -> Callable[[float], bytes]:
    def build(now: float) -> bytes:
        millis = int(now * 1000)
        return _encode({"object": obj, "entry": [{"id": account, "time": millis, "messaging": [{
            "sender": {"id": "2100000000000001"}, "recipient": {"id": account}, "timestamp": millis,
            "message": {"mid": "m_contract_1", "text": "Does it come in red?",
                        "attachments": [{"type": "image", "payload": {"url": "https://cdn.example/p.jpg"}}]}}]}]})
    return build


CASES: dict[str, ChannelCase] = {
    "whatsapp": ChannelCase(
        credentials={"phoneNumberId": "106540352242922", "accessToken": "EAAG-wa-access-token-0001"},
        given_secret="meta-app-secret-0001", sign=_hub,
        message=lambda now: _encode({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
            "field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
                "messages": [{"from": "16505551234", "id": "wamid.contract1", "timestamp": str(int(now)),
                              "type": "text", "text": {"body": "Does it come in red?"},
                              "context": {"id": "wamid.earlier"}}]}}]}]})),
    "messenger": ChannelCase(
        credentials={"pageId": "1234567890", "pageAccessToken": "EAAB-page-token-0002"},
        given_secret="meta-app-secret-0002", sign=_hub, message=_messaging("page", "1234567890")),
    "instagram": ChannelCase(
        credentials={"igUserId": "17841400000000000", "accessToken": "IGQV-ig-token-0003"},
        given_secret="meta-app-secret-0003", sign=_hub, message=_messaging("instagram", "17841400000000000")),
    "telegram": ChannelCase(
        credentials={"botToken": "123456:ABC-DEF_ghi"}, given_secret="tg_secret-token-0123456789", sign=_telegram,
        message=lambda now: _encode({"update_id": 10000, "message": {
            "message_id": 1365, "date": int(now), "text": "Does it come in red?",
            "from": {"id": 1111111, "is_bot": False, "first_name": "Ada", "last_name": "L", "username": "ada"},
            "chat": {"id": 1111111, "type": "private", "first_name": "Ada"},
            "reply_to_message": {"message_id": 1364},
            "photo": [{"file_id": "AgAD-small", "file_size": 10}, {"file_id": "AgAD-big", "file_size": 99}]}})),
    "slack": ChannelCase(
        credentials={"botToken": "xoxb-test-token"}, given_secret="8f742231b10e8888abcd99yyyzzz85a5", sign=_slack,
        message=lambda now: _encode({
            "type": "event_callback", "team_id": "T061EG9R6", "event_id": "Ev0MDYHUEL", "event_time": int(now),
            "authorizations": [{"team_id": "T061EG9R6", "user_id": "U0LAN0Z89", "is_bot": True}],
            "event": {"type": "app_mention", "user": "W021FGA1Z", "text": "<@U0LAN0Z89> Does it come in red?",
                      "ts": f"{int(now)}.000100", "thread_ts": f"{int(now)}.000050", "channel": "C0LAN2Q65",
                      "channel_type": "channel",
                      "files": [{"id": "F1", "mimetype": "image/png", "name": "p.png",
                                 "url_private": "https://files.slack.com/p.png"}]}})),
    "teams": ChannelCase(
        credentials={"appId": "c9e8c047-2a74-40a2-b28a-b162d5f5327c", "appPassword": "teams-app-password-1",
                     "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47"},
        given_secret=None, sign=None,
        message=lambda now: _encode({
            "type": "message", "id": "1485983408511", "timestamp": "2017-02-01T21:10:07.437Z",
            "serviceUrl": "https://smba.trafficmanager.net/amer/", "channelId": "msteams",
            "from": {"id": "29:1XJKJMvc5GBtc2JwZq0oj8t", "name": "Megan Bowen", "aadObjectId": "7faf8ab2"},
            "conversation": {"conversationType": "personal", "id": "a:17I0kl9EkpE1O9PH5TWrzrLN"},
            "recipient": {"id": "28:c9e8c047-2a74-40a2-b28a-b162d5f5327c", "name": "Teams TestBot"},
            "text": "<at>Teams TestBot</at> Does it come in red?", "locale": "en-US",
            "entities": [{"type": "mention", "text": "<at>Teams TestBot</at>",
                          "mentioned": {"id": "28:c9e8c047-2a74-40a2-b28a-b162d5f5327c"}}],
            "attachments": [{"contentType": "image/png", "contentUrl": "https://smba.trafficmanager.net/p.png"}],
            "channelData": {"tenant": {"id": "72f988bf-86f1-41af-91ab-2d7cd011db47"}}})),
    "custom": ChannelCase(
        credentials={"callbackUrl": "https://example.com/hooks/buzzi"},
        given_secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", sign=_standard,
        message=lambda now: _encode({
            "type": "message.created", "timestamp": int(now),
            "data": {"message_id": "ext-1", "chat_id": "chat-9", "sender": {"id": "u-7", "name": "Ada"},
                     "text": "Does it come in red?", "reply_to_id": "ext-0",
                     "attachments": [{"url": "https://example.com/p.png", "mime_type": "image/png"}]}})),
}
