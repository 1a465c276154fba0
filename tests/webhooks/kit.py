"""One real gateway wired to every fake platform, with signed doc-sample requests per channel.

`ChannelLab` owns the fakes (Graph, Telegram, Slack, Bot Framework, a custom callback receiver),
a company with an FAQ agent and one webhook per channel, and builds requests exactly as each
platform signs them, so tests speak only in "this channel sends this message".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from buzzi import clock
from buzzi.config import Settings
from buzzi.models import Agent, Company, Conversation, Message, Webhook, WebhookEvent
from buzzi.signing import hub_signature, new_standard_secret, slack_signature, standard_headers
from tests.support.fake_custom import CALLBACK_PATH
from tests.support.fake_meta import (
    APP_SECRET,
    GRAPH_PREFIX,
    VERIFY_TOKEN,
    WA_CONTACT,
    WA_METADATA,
    Reply,
    ScriptedServer,
    messaging_envelope,
    wa_envelope,
)
from tests.support.fake_slack import FakeSlack
from tests.support.fake_teams import FakeTeams, SigningKey
from tests.support.fake_telegram import FakeTelegram
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.waiting import wait_until

CHANNELS = ("whatsapp", "messenger", "instagram", "telegram", "slack", "teams", "custom")
META = ("whatsapp", "messenger", "instagram")

WA_NUMBER = WA_METADATA["phone_number_id"]
WA_SEND = f"{GRAPH_PREFIX}/{WA_NUMBER}/messages"
ME_SEND = f"{GRAPH_PREFIX}/me/messages"
WA_USER = WA_CONTACT["wa_id"]
PSID, PAGE_ID = "2100000000000001", "1234567890"
IGSID, IG_ID = "3100000000000001", "17841400000000000"
TG_TOKEN, TG_SECRET, TG_CHAT = "123456:ABC-DEF_ghi", "tg_secret-token-0123456789", 1111111
SLACK_TOKEN, SLACK_SECRET, SLACK_CHANNEL = "xoxb-test-token", "8f742231b10e8888abcd99yyyzzz85a5", "C0LAN2Q65"
TEAMS_APP_ID, TEAMS_PASSWORD = "c9e8c047-2a74-40a2-b28a-b162d5f5327c", "teams-app-password-1"
TEAMS_CONVERSATION = "a:17I0kl9EkpE1O9PH5TWrzrLNwnWWcfrU7QZjKR0WSfOp"
TOKENS = {"whatsapp": "EAAG-wa-access-token-0001", "messenger": "EAAB-page-token-0002",
          "instagram": "IGQV-ig-token-0003"}

ANSWER = "It comes in red, blue and green."
FALLBACK = "Sorry, I have no answer for that."
FAQ_SETTINGS = {"documents": [{"title": "Colors", "content": ANSWER},
                              {"title": "Shipping", "content": "We ship worldwide within 5 days."}],
                "fallback": FALLBACK}


@dataclass
class Signed:
    body: bytes
    headers: dict[str, str]
    message_id: str  # the channel's dedupe id, as the gateway stores it (channel_message_id)


@dataclass
class ChannelLab:
    gw: RunningGateway
    graph: ScriptedServer
    callback: ScriptedServer
    tg: FakeTelegram
    slack: FakeSlack
    teams: FakeTeams
    teams_key: SigningKey
    company: Company
    agent: Agent
    hooks: dict[str, Webhook] = field(default_factory=dict)
    _seq: int = 0

    # ---- addressing
    def path(self, channel: str, *, webhook_id: str | None = None, company_id: str | None = None,
             agent_id: str | None = None, url_channel: str | None = None) -> str:
        hook = self.hooks[channel]
        return (f"/api/webhooks/{company_id or self.company.id}/{agent_id or self.agent.id}/"
                f"{url_channel or channel}/{webhook_id or hook.id}")

    async def post(self, channel: str, signed: Signed, **path: Any) -> tuple[int, Any, Any]:
        return await self.gw.request("POST", self.path(channel, **path), data=signed.body, headers=signed.headers)

    async def get(self, channel: str, query: str = "") -> tuple[int, Any, Any]:
        return await self.gw.request("GET", self.path(channel) + (f"?{query}" if query else ""))

    def next_id(self) -> int:
        self._seq += 1
        return self._seq

    # ---- signed requests, shaped like docs/channels.md's samples
    def sign(self, channel: str, body: bytes, message_id: str = "", *, timestamp: int | None = None) -> Signed:
        now = int(time.time()) if timestamp is None else timestamp
        headers = {"Content-Type": "application/json"}
        if channel in META:
            headers["X-Hub-Signature-256"] = hub_signature(APP_SECRET, body)
        elif channel == "telegram":
            headers["X-Telegram-Bot-Api-Secret-Token"] = TG_SECRET
        elif channel == "slack":
            headers.update({"X-Slack-Request-Timestamp": str(now),
                            "X-Slack-Signature": slack_signature(SLACK_SECRET, str(now), body)})
        elif channel == "teams":
            token = self.teams_key.mint({"aud": TEAMS_APP_ID, "serviceurl": self.teams.service_url})
            headers["Authorization"] = f"Bearer {token}"
        elif channel == "custom":
            headers.update(standard_headers(self.hooks["custom"].secret or "", f"msg_{self.next_id()}", now, body))
        return Signed(body, headers, message_id)

    def message(self, channel: str, text: str = "Does it come in another color?", *, ident: str | None = None,
                **kw: Any) -> Signed:
        """A signed inbound text message on `channel`; `ident` makes its dedupe id unique."""
        n = ident or str(self.next_id())
        body, message_id = BODIES[channel](self, text, n)
        if channel in META:
            body = meta_wire(body)
        return self.sign(channel, body, message_id, **kw)

    # ---- the store, as the tests look at it
    async def messages(self, channel: str, **where: Any) -> list[Message]:
        return await self.gw.store.find(Message, webhook_id=self.hooks[channel].id, **where)

    async def replies(self, channel: str, count: int = 1, *, state: str = "sent") -> list[Message]:
        """Wait until `count` assistant replies on `channel` have their delivery recorded as `state`."""

        async def done() -> list[Message] | None:
            found = [m for m in await self.messages(channel, role="assistant")
                     if m.delivery.get("status") == state]
            return found if len(found) >= count else None

        return await wait_until(done, timeout=10)

    async def settled(self, channel: str) -> list[Message]:
        """Wait until every inbound message on `channel` is finished (answered, skipped or failed)."""

        async def check() -> list[Message] | None:
            users = await self.messages(channel, role="user")
            return users if users and all(m.state in ("done", "skipped", "failed") for m in users) else None

        return await wait_until(check, timeout=10)

    async def conversation(self, channel: str) -> Conversation:
        found = await self.gw.store.find(Conversation, webhook_id=self.hooks[channel].id)
        assert len(found) == 1, found
        return found[0]

    async def events(self, channel: str) -> list[WebhookEvent]:
        """The delivery log of `channel`, once every request's bookkeeping has finished."""
        await asyncio.wait_for(self.gw.gateway.webhooks.wait_idle(), timeout=10)
        return await self.gw.store.find(WebhookEvent, webhook_id=self.hooks[channel].id, order_by="received_at")

    # ---- what reached the platforms
    def sends(self, channel: str) -> list[dict[str, Any]]:
        """JSON bodies of the reply sends (typing indicators and receipts excluded)."""
        if channel == "whatsapp":
            return [r.json() for r in self.graph.to(WA_SEND) if r.json().get("type") == "text"]
        if channel in ("messenger", "instagram"):
            token = TOKENS[channel]
            return [r.json() for r in self.graph.to(ME_SEND)
                    if "message" in r.json() and r.headers.get("authorization") == f"Bearer {token}"]
        if channel == "telegram":
            return [r.json for r in self.tg.calls("/sendMessage")]
        if channel == "slack":
            return [r.json for r in self.slack.calls("/chat.postMessage")]
        if channel == "teams":
            return [r.json for r in self.teams.requests
                    if "/v3/conversations/" in r.path and r.json.get("type") == "message"]
        return [r.json() for r in self.callback.to(CALLBACK_PATH)]

    def typings(self, channel: str) -> list[dict[str, Any]]:
        if channel == "whatsapp":
            return [r.json() for r in self.graph.to(WA_SEND) if "typing_indicator" in r.json()]
        if channel in ("messenger", "instagram"):
            token = TOKENS[channel]
            return [r.json() for r in self.graph.to(ME_SEND)
                    if r.json().get("sender_action") == "typing_on"
                    and r.headers.get("authorization") == f"Bearer {token}"]
        if channel == "telegram":
            return [r.json for r in self.tg.calls("/sendChatAction")]
        if channel == "teams":
            return [r.json for r in self.teams.requests
                    if "/v3/conversations/" in r.path and r.json.get("type") == "typing"]
        return []

    def sent_text(self, channel: str, body: dict[str, Any]) -> str:
        if channel == "whatsapp":
            return body["text"]["body"]
        if channel in ("messenger", "instagram"):
            return body["message"]["text"]
        if channel == "custom":
            return body["data"]["text"]
        return body["text"]


# ---------------------------------------------------------------------------- sample bodies

def meta_wire(body: bytes) -> bytes:
    """Meta's wire form: non-ASCII as lowercase \\uXXXX escapes (json.dumps' default) and '@' and '/'
    escaped too (docs/channels.md §1.2); the signature covers exactly these bytes."""
    return body.replace(b"@", b"\\u0040").replace(b"/", b"\\/")


def _whatsapp(lab: ChannelLab, text: str, n: str) -> tuple[bytes, str]:
    wamid = f"wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRB{n}"
    item = {"from": WA_USER, "id": wamid, "timestamp": str(int(time.time())), "type": "text", "text": {"body": text}}
    return wa_envelope({"metadata": WA_METADATA, "contacts": [WA_CONTACT], "messages": [item]}), wamid


def _messaging(obj: str, sender: str, account: str) -> Callable[[ChannelLab, str, str], tuple[bytes, str]]:
    def build(lab: ChannelLab, text: str, n: str) -> tuple[bytes, str]:
        mid = f"m_{obj}_{n}"
        event = {"sender": {"id": sender}, "recipient": {"id": account}, "timestamp": int(time.time() * 1000),
                 "message": {"mid": mid, "text": text}}
        return messaging_envelope(obj, event, entry_id=account), mid
    return build


def _telegram(lab: ChannelLab, text: str, n: str) -> tuple[bytes, str]:
    update_id = 10000 + int(n) if n.isdigit() else 10000 + abs(hash(n)) % 10**6
    update = {"update_id": update_id, "message": {
        "message_id": update_id, "date": int(time.time()), "text": text,
        "from": {"id": TG_CHAT, "is_bot": False, "first_name": "Ann", "last_name": "Lee", "username": "ann"},
        "chat": {"id": TG_CHAT, "type": "private", "first_name": "Ann", "username": "ann"}}}
    # Telegram's dedupe id is (chat, message_id): message_id is unique per chat only.
    return json.dumps(update, ensure_ascii=False).encode(), f"{TG_CHAT}:{update_id}"


def _slack(lab: ChannelLab, text: str, n: str) -> tuple[bytes, str]:
    ts = f"1515449483.{int(n) if n.isdigit() else abs(hash(n)) % 10**6:06d}"
    envelope = {"token": "ZZZZZZWSxiZZZ2yIvs3peJ", "team_id": "T061EG9R6", "api_app_id": "A0MDYCDME",
                "event": {"type": "app_mention", "user": "W021FGA1Z", "text": f"<@U0LAN0Z89> {text}",
                          "ts": ts, "channel": SLACK_CHANNEL, "event_ts": ts},
                "type": "event_callback", "event_id": f"Ev0MDYHU{n}", "event_time": 1515449483,
                "authed_users": ["U0LAN0Z89"],
                "authorizations": [{"team_id": "T061EG9R6", "user_id": "U0LAN0Z89", "is_bot": True}]}
    return json.dumps(envelope, ensure_ascii=False).encode(), f"{SLACK_CHANNEL}:{ts}"


def _teams(lab: ChannelLab, text: str, n: str) -> tuple[bytes, str]:
    activity_id = f"14859834085{n}"
    activity = {"type": "message", "id": activity_id, "timestamp": clock.iso(time.time()),
                "serviceUrl": lab.teams.service_url, "channelId": "msteams",
                "from": {"id": "29:1XJKJMvc5GBtc2JwZq0oj8tHZmzrQgFmB39ATiQWA85gQ", "name": "Megan Bowen",
                         "aadObjectId": "7faf8ab2-3d56-4244-b585-20c8a42ed2b8"},
                "conversation": {"conversationType": "personal", "id": TEAMS_CONVERSATION},
                "recipient": {"id": f"28:{TEAMS_APP_ID}", "name": "Teams TestBot"},
                "textFormat": "plain", "text": text, "locale": "en-US",
                "channelData": {"tenant": {"id": "72f988bf-86f1-41af-91ab-2d7cd011db47"}}}
    return json.dumps(activity, ensure_ascii=False).encode(), activity_id


def _custom(lab: ChannelLab, text: str, n: str) -> tuple[bytes, str]:
    body = {"type": "message.created", "timestamp": clock.iso(time.time()),
            "data": {"message_id": f"ext-{n}", "chat_id": "chat-9", "sender": {"id": "u-7", "name": "Ada"},
                     "text": text}}
    return json.dumps(body, ensure_ascii=False).encode(), f"ext-{n}"


BODIES: dict[str, Callable[[ChannelLab, str, str], tuple[bytes, str]]] = {
    "whatsapp": _whatsapp,
    "messenger": _messaging("page", PSID, PAGE_ID),
    "instagram": _messaging("instagram", IGSID, IG_ID),
    "telegram": _telegram,
    "slack": _slack,
    "teams": _teams,
    "custom": _custom,
}


# ---------------------------------------------------------------------------- the lab

def _credentials(channel: str, callback_url: str) -> tuple[dict[str, Any], str | None, str | None]:
    """(credentials, secret, verify_token) of the webhook for `channel`."""
    return {
        "whatsapp": ({"phoneNumberId": WA_NUMBER, "accessToken": TOKENS["whatsapp"]}, APP_SECRET, VERIFY_TOKEN),
        "messenger": ({"pageId": PAGE_ID, "pageAccessToken": TOKENS["messenger"]}, APP_SECRET, VERIFY_TOKEN),
        "instagram": ({"igUserId": IG_ID, "accessToken": TOKENS["instagram"]}, APP_SECRET, VERIFY_TOKEN),
        "telegram": ({"botToken": TG_TOKEN}, TG_SECRET, None),
        "slack": ({"botToken": SLACK_TOKEN}, SLACK_SECRET, None),
        "teams": ({"appId": TEAMS_APP_ID, "appPassword": TEAMS_PASSWORD}, None, None),
        "custom": ({"callbackUrl": callback_url}, new_standard_secret(), None),
    }[channel]


def script_default_answers(graph: ScriptedServer, callback: ScriptedServer) -> None:
    graph.always("POST", WA_SEND, Reply(200, {"messaging_product": "whatsapp", "contacts": [{"wa_id": WA_USER}],
                                              "messages": [{"id": "wamid.OUTBOUND"}]}))
    graph.always("POST", ME_SEND, Reply(200, {"recipient_id": PSID, "message_id": "m_OUTBOUND"}))
    callback.always("POST", CALLBACK_PATH, Reply(200, {"message_id": "cb-1"}))


@contextlib.asynccontextmanager
async def channel_lab(make_settings: Callable[..., Settings], **sections: dict[str, Any]
                      ) -> AsyncIterator[ChannelLab]:
    """A running gateway pointed at fresh fakes, with one webhook per channel. `sections` override
    settings (e.g. webhooks={"max_body_bytes": 2048})."""
    async with ScriptedServer() as graph, ScriptedServer() as callback, FakeTelegram() as tg, \
            FakeSlack(SLACK_TOKEN) as slack, FakeTeams() as teams:
        script_default_answers(graph, callback)
        key = teams.add_key("key-1", endorsements=["msteams", "webchat"])
        base = graph.url + GRAPH_PREFIX
        channels = {"whatsapp_api_base": base, "messenger_api_base": base, "instagram_api_base": base,
                    "telegram_api_base": tg.url, "slack_api_base": slack.url,
                    "teams_openid_url": teams.openid_url, "teams_token_url": teams.token_url,
                    "send_backoff_base_seconds": 0.01, "send_backoff_max_seconds": 0.05,
                    **sections.pop("channels", {})}
        # Retries are claimed again by the poll after their backoff: keep both short.
        inbox = {"poll_seconds": 0.05, "retry_base_seconds": 0.05, **sections.pop("inbox", {})}
        async with running_gateway(make_settings, channels=channels, inbox=inbox, **sections) as gw:
            company = await gw.store.add(Company(id="c_lab", name="Lab Co"))
            agent = await gw.store.add(Agent(id="a_lab", company_id=company.id, name="FAQ", kind="faq",
                                             settings=FAQ_SETTINGS))
            lab = ChannelLab(gw, graph, callback, tg, slack, teams, key, company, agent)
            for channel in CHANNELS:
                credentials, secret, verify_token = _credentials(channel, callback.url + CALLBACK_PATH)
                lab.hooks[channel] = await gw.store.add(Webhook(
                    id=f"wh_{channel}", company_id=company.id, agent_id=agent.id, channel=channel,
                    secret=secret, verify_token=verify_token, credentials=credentials))
            yield lab
