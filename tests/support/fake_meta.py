"""A scripted local HTTP server standing in for the Graph API (and, through fake_custom, for a
custom channel's callback receiver), plus signed-request builders and docs/channels.md's sample
payloads as raw bytes.

The server listens on 127.0.0.1 port 0, records every request, and answers from a per-route
queue of Replies (then the route's default, then 404), so a test scripts "429 then 200".
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from buzzi.channels.base import ChannelAdapter, WebhookRequest
from buzzi.channels.outbound import OutboundHttp
from buzzi.models import Webhook
from buzzi.netguard import NetPolicy
from buzzi.signing import hub_signature
from tests.support.channel_factories import channel_webhook, inbound_request

APP_SECRET = "meta-app-secret-0123456789"
VERIFY_TOKEN = "verify-token-abc"
GRAPH_PREFIX = "/v24.0"


@dataclass
class Reply:
    status: int = 200
    json: Any = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    stream: bool = False  # chunked, without Content-Length (a body whose size is not announced)


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # keys lower-cased
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class ScriptedServer:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.url = ""
        self._queued: dict[tuple[str, str], deque[Reply]] = defaultdict(deque)
        self._defaults: dict[tuple[str, str], Reply | Callable[[Recorded], Reply]] = {}
        self._runner: web.AppRunner | None = None

    def script(self, method: str, path: str, *replies: Reply) -> None:
        """Answer the next requests to (method, path) with these replies, in order."""
        self._queued[(method, path)].extend(replies)

    def always(self, method: str, path: str, reply: Reply | Callable[[Recorded], Reply]) -> None:
        """Answer (method, path) with `reply` once the queue is empty; a callable answers each
        request from its body (a platform that answers by what it was asked)."""
        self._defaults[(method, path)] = reply

    def to(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(Recorded(
            method=request.method, path=request.path, query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()}, body=await request.read(),
        ))
        key = (request.method, request.path)
        queue = self._queued.get(key)
        reply = queue.popleft() if queue else self._defaults.get(key, Reply(404, {"error": {"message": "no route"}}))
        if callable(reply):
            reply = reply(self.requests[-1])
        body = json.dumps(reply.json).encode() if reply.json is not None else reply.body
        headers = dict(reply.headers)
        if reply.json is not None:
            headers.setdefault("Content-Type", "application/json")
        if not reply.stream:
            return web.Response(status=reply.status, body=body, headers=headers)
        response = web.StreamResponse(status=reply.status, headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(body), 16 * 1024):
            await response.write(body[start:start + 16 * 1024])
        await response.write_eof()
        return response

    async def __aenter__(self) -> ScriptedServer:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@asynccontextmanager
async def adapter_on_server(adapter_cls: type[ChannelAdapter], make_settings: Any,
                            **channels: Any) -> AsyncIterator[tuple[Any, ScriptedServer]]:
    """An adapter whose Graph bases (and any other given channel settings) point at a fresh
    ScriptedServer; its HTTP sessions are closed on exit."""
    async with ScriptedServer() as server:
        base = server.url + GRAPH_PREFIX
        full = make_settings(channels={
            "whatsapp_api_base": base, "messenger_api_base": base, "instagram_api_base": base, **channels,
        })
        settings = full.channels
        http = OutboundHttp(settings, NetPolicy.from_settings(full.security))
        try:
            yield adapter_cls(settings, http), server
        finally:
            await http.close()


def meta_webhook(channel: str, credentials: dict[str, Any], secret: str = APP_SECRET,
                 verify_token: str = VERIFY_TOKEN) -> Webhook:
    return channel_webhook(channel, secret=secret, verify_token=verify_token, credentials=credentials)


def signed_request(body: bytes, secret: str = APP_SECRET, *, signature: str | None = None) -> WebhookRequest:
    """A POST as Meta sends it: X-Hub-Signature-256 over exactly these bytes."""
    headers = {"content-type": "application/json",
               "x-hub-signature-256": signature if signature is not None else hub_signature(secret, body)}
    return inbound_request(body, headers, now=1_750_000_000.0)


def handshake_request(query: dict[str, str]) -> WebhookRequest:
    return inbound_request(b"", method="GET", query=query, now=1_750_000_000.0)


def wa_envelope(*values: dict[str, Any]) -> bytes:
    """A WhatsApp webhook body with one change per value, all in one entry."""
    changes = [{"value": {"messaging_product": "whatsapp", **v}, "field": "messages"} for v in values]
    return json.dumps({"object": "whatsapp_business_account",
                       "entry": [{"id": "102290129340398", "changes": changes}]}).encode()


WA_METADATA = {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"}
WA_CONTACT = {"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}


def wa_message(item: dict[str, Any]) -> bytes:
    """One inbound WhatsApp message (the `messages[]` item) in the doc envelope."""
    return wa_envelope({"metadata": WA_METADATA, "contacts": [WA_CONTACT], "messages": [item]})


# A business-scoped user id as Meta's "Business-scoped user IDs" page writes one, and a username
# user's contacts[] entry without a phone number (wa_id omitted when the phone is unavailable).
WA_BSUID = "US.13491208655302741918"
WA_PARENT_BSUID = "US.ENT.11815799212886844830"
WA_USERNAME_CONTACT = {"profile": {"name": "Sheena Nelson", "username": "@sheena"}, "user_id": WA_BSUID}


def wa_status(wamid: str, status: str, *, recipient: str = "16505551234", timestamp: int = 1751142888,
              errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One statuses[] item (Meta: webhooks/reference/messages/status): a phone recipient in
    recipient_id, a BSUID in recipient_user_id; a failed status carries errors[] and no contacts."""
    item: dict[str, Any] = {"id": wamid, "status": status, "timestamp": str(timestamp)}
    item["recipient_user_id" if recipient.count(".") else "recipient_id"] = recipient
    if errors is not None:
        item["errors"] = errors
    return item


def wa_status_error(code: int, title: str, details: str) -> dict[str, Any]:
    """An errors[] item of a failed status, shaped like the doc sample (WA_STATUS_SAMPLE)."""
    return {"code": code, "title": title, "message": title, "error_data": {"details": details},
            "href": "/documentation/business-messaging/whatsapp/support/error-codes"}


def wa_error_reply(code: int, message: str, details: str, *, status: int = 400) -> Reply:
    """A Cloud API error answer as Graph sends it (Meta: support/error-codes): HTTP 400 whatever the
    cause (rate limits included), {"error": {message, type, code, error_data, fbtrace_id}}."""
    return Reply(status, {"error": {"message": message, "type": "OAuthException", "code": code,
                                    "error_data": {"messaging_product": "whatsapp", "details": details},
                                    "fbtrace_id": "A4O5a8RAgePwbcGSu"}})


WA_REENGAGEMENT_ERROR = wa_error_reply(
    131047, "(#131047) Re-engagement message",
    "Message failed to send because more than 24 hours have passed since the customer last replied to this number.")
WA_PAIR_LIMIT_ERROR = wa_error_reply(
    131056, "(#131056) (Business Account, Consumer Account) pair rate limit hit",
    "Message failed to send because there were too many messages sent from this phone number to the same "
    "phone number in a short period of time.")


class WhatsAppSends:
    """The fake Graph's answers to POST /{phone_number_id}/messages, by what was asked (Meta: send
    messages, business-scoped-user-ids): a read/typing call answers {"success": true}; a send
    answers a new wamid and contacts[].input echoing the recipient, with wa_id for a phone (`to`)
    and user_id for a BSUID (`recipient`); a template is "accepted". A free-form send to a
    recipient in `closed` (the test says its window has closed) fails with 131047, as Graph does."""

    def __init__(self) -> None:
        self.closed: set[str] = set()
        self.count = 0

    def __call__(self, request: Recorded) -> Reply:
        body = request.json()
        if body.get("status") == "read":
            return Reply(200, {"success": True})
        recipient = body.get("to") or body.get("recipient")
        if body.get("type") != "template" and recipient in self.closed:
            return WA_REENGAGEMENT_ERROR
        self.count += 1
        contact = {"input": recipient, **({"wa_id": recipient} if "to" in body else {"user_id": recipient})}
        message: dict[str, Any] = {"id": f"wamid.OUT{self.count}"}
        if body.get("type") == "template":
            message["message_status"] = "accepted"
        return Reply(200, {"messaging_product": "whatsapp", "contacts": [contact], "messages": [message]})


# docs/channels.md §2.1, WhatsApp text (doc sample), byte for byte.
WA_TEXT_SAMPLE = b"""{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{
 "messaging_product":"whatsapp",
 "metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
 "contacts":[{"profile":{"name":"Sheena Nelson"},"wa_id":"16505551234"}],
 "messages":[{"from":"16505551234","id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
   "timestamp":"1749416383","type":"text","text":{"body":"Does it come in another color?"}}]},
 "field":"messages"}]}]}"""

# docs/channels.md §2.1, status receipt (doc sample).
WA_STATUS_SAMPLE = b"""{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{
 "messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
 "statuses":[{"id":"wamid.HBgL\xe2\x80\xa6","status":"failed","timestamp":"1751142888","recipient_id":"16505551234",
   "errors":[{"code":131049,"title":"This message was not delivered to maintain healthy ecosystem engagement.",
   "message":"This message was not delivered to maintain healthy ecosystem engagement.",
   "error_data":{"details":"In order to maintain a healthy ecosystem engagement, the message failed to be delivered."},
   "href":"/documentation/business-messaging/whatsapp/support/error-codes"}]}]},"field":"messages"}]}]}"""

# docs/channels.md §3.1, Messenger events (doc samples) in the page envelope.
MESSENGER_EVENTS = {
    "quick_reply": {"sender": {"id": "<PSID>"}, "recipient": {"id": "<PAGE_ID>"}, "timestamp": 1458692752478,
                    "message": {"mid": "mid.1457764197618:41d102a3e1ae206a38", "text": "hello, world!",
                                "quick_reply": {"payload": "<DEVELOPER_DEFINED_PAYLOAD>"}}},
    "reply_to": {"sender": {"id": "<PSID>"}, "recipient": {"id": "<PAGE_ID>"}, "timestamp": 1458692752478,
                 "message": {"mid": "m_1457764197618:41d102a3e1ae206a38", "text": "hello, world!",
                             "reply_to": {"mid": "m_1fTq8oLumEyIp3Q2MR-aY7IfLZDamVrALniheU"}}},
    "attachments": {"sender": {"id": "<PSID>"}, "recipient": {"id": "<PAGE_ID>"}, "timestamp": 1518479195308,
                    "message": {"mid": "mid.$cAAJdkrCd2ORnva8ErFhjGm0X_Q_c",
                                "attachments": [{"type": "image", "payload": {"url": "<ATTACHMENT_URL>"}}]}},
    "edit": {"sender": {"id": "<PSID>"}, "recipient": {"id": "<PAGE_ID>"}, "timestamp": 1458668856463,
             "message_edit": {"mid": "<MESSAGE_ID>", "text": "<TEXT>", "num_edit": 1}},
}


def messaging_envelope(obj: str, *events: dict[str, Any], entry_id: str = "<PAGE_ID>") -> bytes:
    return json.dumps({"object": obj, "entry": [{"id": entry_id, "time": 1458692752478,
                                                 "messaging": list(events)}]}).encode()


# Messenger receipts (doc samples: message_deliveries and message_reads webhook references) and
# Instagram's messaging_seen, which names the message seen instead of a watermark.
MESSENGER_DELIVERY = {"sender": {"id": "<PSID>"}, "recipient": {"id": "<PAGE_ID>"},
                      "delivery": {"mids": ["mid.1458668856218:ed81099e15d3f4f233"], "watermark": 1458668856253}}
MESSENGER_READ = {"sender": {"id": "<PSID>"}, "recipient": {"id": "<PAGE_ID>"}, "timestamp": 1458668856463,
                  "read": {"watermark": 1458668856253}}
INSTAGRAM_SEEN = {"sender": {"id": "<IGSID>"}, "recipient": {"id": "<IGID>"}, "timestamp": 1569262486134,
                  "read": {"mid": "<MESSAGE-ID>"}}


def graph_error_reply(code: int, message: str, subcode: int | None = None, *, status: int = 400,
                      error_type: str = "OAuthException") -> Reply:
    """A Graph error answer as Graph sends it (Messenger Platform "Common Error Codes"): the HTTP
    status (400 even for rate limits) and {"error": {message, type, code, error_subcode, fbtrace_id}}."""
    error: dict[str, Any] = {"message": message, "type": error_type, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["fbtrace_id"] = "AbCdEfGhIjKlMnOpQrStUv"
    return Reply(status, {"error": error})


# Send API failures of Messenger and Instagram (Messenger Platform "Common Error Codes" and the Send
# API error codes): the custom (per-Page) rate limit, the Messenger business-use-case limit, and the
# send outside the 24-hour window.
MESSENGER_RATE_LIMITED = graph_error_reply(613, "(#613) Calls to this api have exceeded the rate limit.")
MESSENGER_BUC_LIMITED = graph_error_reply(
    80006, "(#80006) There have been too many messenger api calls. Wait a bit and try again.")
MESSENGER_OUTSIDE_WINDOW = graph_error_reply(
    10, "(#10) This message is sent outside of allowed window. Learn more about the new policy here: "
        "https://developers.facebook.com/docs/messenger-platform/policy-overview", 2018278)
