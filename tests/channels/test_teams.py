"""TeamsAdapter: Bot Framework JWT checks against our own RSA keys served by a fake OpenID/JWKS
endpoint, activity parsing, and replies through a fake token endpoint + connector
(tests/support/fake_teams.py)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp.abc import AbstractResolver

from buzzi.channels.base import (
    Attachment,
    CredentialsError,
    PayloadError,
    ReplyTarget,
    SendError,
    VerificationError,
    WebhookRequest,
)
from buzzi.channels.outbound import OutboundHttp, with_retry
from buzzi.channels.teams import TeamsAdapter
from buzzi.netguard import NetPolicy
from tests.support.channel_factories import channel_webhook, inbound_request, reply_target
from tests.support.fake_teams import FakeTeams, SigningKey
from tests.support.fake_telegram import Answer

APP_ID = "c9e8c047-2a74-40a2-b28a-b162d5f5327c"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CONVERSATION = "a:17I0kl9EkpE1O9PH5TWrzrLNwnWWcfrU7QZjKR0WSfOp"


@pytest.fixture
async def bf() -> AsyncIterator[FakeTeams]:
    async with FakeTeams() as fake:
        yield fake


@pytest.fixture
def key(bf: FakeTeams) -> SigningKey:
    return bf.add_key("key-1", endorsements=["msteams", "webchat"])


@pytest.fixture
async def adapter(make_settings, bf: FakeTeams) -> AsyncIterator[TeamsAdapter]:
    settings = make_settings(channels={"teams_openid_url": bf.openid_url, "teams_token_url": bf.token_url})
    http = OutboundHttp(settings.channels, NetPolicy.from_settings(settings.security))
    yield TeamsAdapter(settings.channels, http)
    await http.close()


CREDENTIALS = {"appId": APP_ID, "appPassword": "pw-1"}
webhook = partial(channel_webhook, "teams", credentials=CREDENTIALS)


def activity(bf: FakeTeams, **fields: Any) -> dict[str, Any]:
    return {"type": "message", "id": "1485983408511", "timestamp": "2017-02-01T21:10:07.437Z",
            "serviceUrl": bf.service_url, "channelId": "msteams",
            "from": {"id": "29:1XJKJMvc5GBtc2JwZq0oj8tHZmzrQgFmB39ATiQWA85gQ", "name": "Megan Bowen",
                     "aadObjectId": "7faf8ab2-3d56-4244-b585-20c8a42ed2b8"},
            "conversation": {"conversationType": "personal", "id": CONVERSATION},
            "recipient": {"id": f"28:{APP_ID}", "name": "Teams TestBot"},
            "textFormat": "plain", "text": "Hello Teams TestBot", "locale": "en-US",
            "channelData": {"tenant": {"id": TENANT}}, **fields}


def request(body: Any, token: str | None = None, scheme: str = "Bearer") -> WebhookRequest:
    headers = {"authorization": f"{scheme} {token}"} if token is not None else {}
    return inbound_request(body, headers, remote_ip="52.1.2.3")


def claims(bf: FakeTeams, **extra: Any) -> dict[str, Any]:
    return {"aud": APP_ID, "serviceurl": bf.service_url, **extra}


async def rejected(adapter: TeamsAdapter, req: WebhookRequest) -> None:
    with pytest.raises(VerificationError):
        await adapter.verify(webhook(), req)


# ---- configuration

def test_credentials(adapter: TeamsAdapter) -> None:
    good = adapter.validate_credentials({"appId": APP_ID.upper(), "appPassword": "pw", "tenantId": TENANT})
    assert good == {"appId": APP_ID, "appPassword": "pw", "tenantId": TENANT}
    cases = [({"appPassword": "pw", "tenantId": TENANT}, "appId"),
             ({"appId": "not-a-guid", "appPassword": "pw", "tenantId": TENANT}, "appId"),
             ({"appId": APP_ID, "tenantId": TENANT}, "appPassword"),
             ({"appId": APP_ID, "appPassword": "pw", "tenantId": "a/b"}, "tenantId"),
             ({"appId": APP_ID, "appPassword": "pw", "tenantId": ""}, "tenantId"),
             ({"appId": APP_ID, "appPassword": "pw"}, "tenantId")]
    for credentials, field in cases:
        with pytest.raises(CredentialsError) as info:
            adapter.validate_credentials(credentials)
        assert info.value.field == field
    assert adapter.generate_secrets("anything", "x") == (None, None)


# ---- JWT verification

async def test_valid_token_and_cached_keys(adapter: TeamsAdapter, bf: FakeTeams, key: SigningKey) -> None:
    body = activity(bf)
    await adapter.verify(webhook(), request(body, key.mint(claims(bf))))
    await adapter.verify(webhook(), request(body, key.mint(claims(bf))))
    assert len(bf.calls("/openidconfiguration")) == 1 and len(bf.calls("/keys")) == 1


async def test_clock_skew_leeway(adapter: TeamsAdapter, bf: FakeTeams, key: SigningKey) -> None:
    now = int(time.time())
    await adapter.verify(webhook(), request(activity(bf), key.mint(claims(bf, exp=now - 120))))
    await adapter.verify(webhook(), request(activity(bf), key.mint(claims(bf, nbf=now + 120))))
    await rejected(adapter, request(activity(bf), key.mint(claims(bf, exp=now - 600))))
    await rejected(adapter, request(activity(bf), key.mint(claims(bf, nbf=now + 600))))


@pytest.mark.parametrize("change", [
    {"aud": "00000000-0000-0000-0000-000000000000"},
    {"iss": "https://sts.windows.net/d6d49420-f39b-4df7-a1dc-d59a935871db/"},
    {"serviceurl": "https://evil.example.com/"},
    {"serviceurl": None},
    {"aud": None},
])
async def test_wrong_claims_rejected(adapter: TeamsAdapter, bf: FakeTeams, key: SigningKey,
                                     change: dict[str, Any]) -> None:
    payload = {k: v for k, v in {**claims(bf), **change}.items() if v is not None}
    await rejected(adapter, request(activity(bf), key.mint(payload)))


async def test_activity_service_url_must_match_claim(adapter: TeamsAdapter, bf: FakeTeams, key: SigningKey) -> None:
    token = key.mint(claims(bf))
    await rejected(adapter, request(activity(bf, serviceUrl="https://evil.example.com/"), token))
    await rejected(adapter, request(b"not json", token))


async def test_bad_headers_and_tokens_rejected(adapter: TeamsAdapter, bf: FakeTeams, key: SigningKey) -> None:
    body = activity(bf)
    await rejected(adapter, request(body))
    await rejected(adapter, request(body, key.mint(claims(bf)), scheme="Basic"))
    await rejected(adapter, request(body, "not.a.jwt"))
    hs256 = jwt.encode(claims(bf), "a-shared-secret-of-32-bytes-or-more", algorithm="HS256", headers={"kid": "key-1"})
    await rejected(adapter, request(body, hs256))
    await rejected(adapter, request(body, jwt.encode(claims(bf), None, algorithm="none", headers={"kid": "key-1"})))
    impostor = bf.add_key("impostor", publish=False)  # right kid, wrong private key
    await rejected(adapter, request(body, impostor.mint(claims(bf), kid="key-1")))


async def test_unknown_kid_refetches_then_fails(adapter: TeamsAdapter, bf: FakeTeams, key: SigningKey) -> None:
    adapter.keys.min_refresh = 0
    await adapter.verify(webhook(), request(activity(bf), key.mint(claims(bf))))
    assert len(bf.calls("/keys")) == 1
    await rejected(adapter, request(activity(bf), key.mint(claims(bf), kid="unknown-kid")))
    assert len(bf.calls("/keys")) == 2
    rotated = bf.add_key("key-2", endorsements=["msteams"])  # published after our cache was filled
    await adapter.verify(webhook(), request(activity(bf), rotated.mint(claims(bf))))
    assert len(bf.calls("/keys")) == 3


async def test_unknown_kid_refetch_is_rate_limited(adapter: TeamsAdapter, bf: FakeTeams, key: SigningKey) -> None:
    await adapter.verify(webhook(), request(activity(bf), key.mint(claims(bf))))
    for _ in range(3):
        await rejected(adapter, request(activity(bf), key.mint(claims(bf), kid=f"made-up-{_}")))
    assert len(bf.calls("/keys")) == 1


async def test_stale_keys_kept_when_refresh_fails(adapter: TeamsAdapter, bf: FakeTeams, key: SigningKey) -> None:
    now = [0.0]
    adapter.keys._clock = lambda: now[0]
    await adapter.verify(webhook(), request(activity(bf), key.mint(claims(bf))))
    now[0] += 25 * 3600
    bf.script("/openidconfiguration", Answer(503, {"error": "down"}))
    await adapter.verify(webhook(), request(activity(bf), key.mint(claims(bf))))
    assert len(bf.calls("/openidconfiguration")) == 2  # it did try
    await adapter.verify(webhook(), request(activity(bf), key.mint(claims(bf))))
    assert len(bf.calls("/openidconfiguration")) == 3 and len(bf.calls("/keys")) == 2  # and recovered


async def test_endorsements(adapter: TeamsAdapter, bf: FakeTeams, key: SigningKey) -> None:
    plain = bf.add_key("no-endorsements")
    await rejected(adapter, request(activity(bf, channelId="skype"), key.mint(claims(bf))))
    await adapter.verify(webhook(), request(activity(bf, channelId="skype"), plain.mint(claims(bf))))


async def test_keys_unavailable_is_a_verification_error(make_settings) -> None:
    settings = make_settings(channels={"teams_openid_url": "http://127.0.0.1:1/openid"})
    http = OutboundHttp(settings.channels)
    try:
        private = FakeTeams().add_key("k")
        with pytest.raises(VerificationError):
            await TeamsAdapter(settings.channels, http).verify(
                webhook(), request({"serviceUrl": "https://x/"}, private.mint({"aud": APP_ID})))
    finally:
        await http.close()


# ---- parsing

def parse_one(adapter: TeamsAdapter, body: dict[str, Any]):
    result = adapter.parse(webhook(), request(body))
    assert result.ignored == 0 and len(result.messages) == 1
    return result.messages[0]


def test_parse_message(adapter: TeamsAdapter, bf: FakeTeams) -> None:
    msg = parse_one(adapter, activity(bf, replyToId="1485983400000"))
    assert (msg.message_id, msg.chat_id, msg.text, msg.kind) == ("1485983408511", CONVERSATION,
                                                                 "Hello Teams TestBot", "text")
    assert (msg.sender_id, msg.sender_name, msg.reply_to_id) == (
        "29:1XJKJMvc5GBtc2JwZq0oj8tHZmzrQgFmB39ATiQWA85gQ", "Megan Bowen", "1485983400000")
    assert msg.timestamp == pytest.approx(1485983407.437)
    meta = msg.meta
    assert meta["service_url"] == bf.service_url and meta["activity_id"] == "1485983408511"
    assert meta["recipient"] == {"id": f"28:{APP_ID}", "name": "Teams TestBot"}
    assert meta["from"]["id"].startswith("29:") and meta["conversation"]["id"] == CONVERSATION
    assert meta["tenant_id"] == TENANT and meta["locale"] == "en-US"


def test_parse_strips_bot_mention_only(adapter: TeamsAdapter, bf: FakeTeams) -> None:
    body = activity(bf, text="<at>Teams TestBot</at> ask <at>Adele Vance</at> about R&amp;D&nbsp;today",
                    entities=[{"type": "mention", "text": "<at>Teams TestBot</at>",
                               "mentioned": {"id": f"28:{APP_ID}", "name": "Teams TestBot"}},
                              {"type": "mention", "text": "<at>Adele Vance</at>",
                               "mentioned": {"id": "29:adele", "name": "Adele Vance"}}])
    assert parse_one(adapter, body).text == "ask Adele Vance about R&D today"


def test_parse_card_submit_with_empty_text_is_kept(adapter: TeamsAdapter, bf: FakeTeams) -> None:
    msg = parse_one(adapter, activity(bf, text="", value={"action": "approve", "id": 42}))
    assert msg.kind == "interactive"
    assert json.loads(msg.text) == {"action": "approve", "id": 42}
    assert msg.meta["value"] == {"action": "approve", "id": 42}


def test_parse_attachments(adapter: TeamsAdapter, bf: FakeTeams) -> None:
    body = activity(bf, text="", attachments=[
        {"contentType": "text/html", "content": "<div>ignored duplicate</div>"},
        {"contentType": "application/vnd.microsoft.teams.file.download.info",
         "contentUrl": "https://contoso.sharepoint.com/file_example.txt", "name": "file_example.txt",
         "content": {"downloadUrl": "https://download.link/x", "uniqueId": "1150D938", "fileType": "txt"}},
        {"contentType": "image/png", "contentUrl": f"{bf.service_url}v3/attachments/a1/views/original"}])
    msg = parse_one(adapter, body)
    doc, image = msg.attachments
    assert (doc.kind, doc.url, doc.name, doc.extra["tempauth"]) == (
        "document", "https://download.link/x", "file_example.txt", True)
    assert (image.kind, image.mime_type) == ("image", "image/png")
    assert image.extra["service_origin"] == f"http://127.0.0.1:{bf.port}"  # the verified serviceUrl's origin
    assert msg.kind == "document"


@pytest.mark.parametrize(("body", "reason"), [
    ({"type": "conversationUpdate", "membersAdded": [{"id": "29:x"}]}, "membership"),
    ({"type": "typing"}, "typing"),
    ({"type": "messageReaction", "reactionsAdded": [{"type": "like"}]}, "reaction"),
    ({"type": "installationUpdate", "action": "add"}, "installation"),
    ({"type": "invoke", "name": "adaptiveCard/action"}, "invoke"),
    ({"type": "message", "id": "1", "from": {"id": "29:x"}, "conversation": {"id": "c"}, "text": "  "},
     "empty_message"),
])
def test_parse_ignores_other_activities(adapter: TeamsAdapter, body: dict[str, Any], reason: str) -> None:
    result = adapter.parse(webhook(), request(body))
    assert (result.messages, result.ignored, result.drops) == ([], 1, {reason: 1})


@pytest.mark.parametrize("raw", [b"{bad", b"[]", b'{"id": "1"}'])
def test_parse_rejects_malformed(adapter: TeamsAdapter, raw: bytes) -> None:
    with pytest.raises(PayloadError):
        adapter.parse(webhook(), request(raw))


# ---- sending

def reply_to_activity(adapter: TeamsAdapter, bf: FakeTeams, reply: bool = True) -> ReplyTarget:
    """Where a reply goes once the sample activity was parsed and stored as the gateway does."""
    inbound = parse_one(adapter, activity(bf))
    answered = {"content": inbound.text, "channel_message_id": inbound.message_id,
                "metadata": {"channel": inbound.meta}}
    return reply_target("teams", inbound.chat_id, inbound=answered if reply else None,
                        meta={k: inbound.meta[k] for k in ("service_url", "from", "recipient")})


async def test_send_reply_and_token_cache(adapter: TeamsAdapter, bf: FakeTeams) -> None:
    tgt = reply_to_activity(adapter, bf)
    ids = await asyncio.gather(*(adapter.send(webhook(), tgt, f"answer {i}") for i in range(3)))
    ids.append(await adapter.send(webhook(), tgt, "later"))
    assert sorted(i for batch in ids for i in batch) == ["reply-1", "reply-2", "reply-3", "reply-4"]
    [token_call] = bf.calls("/oauth2/v2.0/token")
    assert token_call.path == "/botframework.com/oauth2/v2.0/token"
    assert token_call.form == {"grant_type": "client_credentials", "client_id": APP_ID, "client_secret": "pw-1",
                               "scope": "https://api.botframework.com/.default"}
    sends = [r for r in bf.requests if "/v3/conversations/" in r.path]
    assert len(sends) == 4
    first = sends[0]
    assert first.raw_path == ("/amer/v3/conversations/a%3A17I0kl9EkpE1O9PH5TWrzrLNwnWWcfrU7QZjKR0WSfOp"
                              "/activities/1485983408511")
    assert first.headers["authorization"] == "Bearer bf-token-1"
    body = first.json
    assert body["type"] == "message" and body["replyToId"] == "1485983408511"
    assert body["from"] == {"id": f"28:{APP_ID}", "name": "Teams TestBot"}
    assert body["recipient"]["name"] == "Megan Bowen" and body["conversation"] == {"id": CONVERSATION}
    assert body["text"].startswith("answer ") and body["locale"] == "en-US"


async def test_token_refetched_near_expiry_and_tenant_url(adapter: TeamsAdapter, bf: FakeTeams) -> None:
    now = [1000.0]
    adapter.clock = lambda: now[0]
    tgt = reply_to_activity(adapter, bf, reply=False)
    await adapter.send(webhook(credentials={**CREDENTIALS, "tenantId": TENANT}), tgt, "one")
    now[0] += 3600 - 301  # still more than 5 minutes left: the cached token is used
    await adapter.send(webhook(credentials={**CREDENTIALS, "tenantId": TENANT}), tgt, "two")
    assert len(bf.calls("/oauth2/v2.0/token")) == 1
    now[0] += 2  # within 5 minutes of expiry: refreshed
    await adapter.send(webhook(credentials={**CREDENTIALS, "tenantId": TENANT}), tgt, "three")
    calls = bf.calls("/oauth2/v2.0/token")
    assert len(calls) == 2 and calls[0].path == f"/{TENANT}/oauth2/v2.0/token"
    posts = [r for r in bf.requests if "/v3/conversations/" in r.path]
    assert posts[0].path.endswith("/activities") and "replyToId" not in posts[0].json


@pytest.mark.parametrize(("status", "retryable"), [
    (429, True), (412, True), (500, True), (502, True), (503, True), (504, True),
    (400, False), (401, False), (403, False), (404, False), (413, False),
])
async def test_send_error_classification(adapter: TeamsAdapter, bf: FakeTeams, status: int, retryable: bool) -> None:
    bf.script("/activities/1485983408511", Answer(status, {"error": {"code": "Scripted", "message": "x"}},
                                                  headers={"Retry-After": "4"} if status == 429 else {}))
    with pytest.raises(SendError) as info:
        await adapter.send(webhook(), reply_to_activity(adapter, bf), "hi")
    assert (info.value.status, info.value.retryable, info.value.code) == (status, retryable, "Scripted")
    assert info.value.retry_after == (4.0 if status == 429 else None)


async def test_unauthorised_send_drops_cached_token(adapter: TeamsAdapter, bf: FakeTeams) -> None:
    tgt = reply_to_activity(adapter, bf)
    bf.script("/activities/1485983408511", Answer(401, {"error": {"code": "BotNotRegistered"}}))
    with pytest.raises(SendError):
        await adapter.send(webhook(), tgt, "hi")
    await adapter.send(webhook(), tgt, "hi")
    assert len(bf.calls("/oauth2/v2.0/token")) == 2


async def test_token_refusal_is_permanent(adapter: TeamsAdapter, bf: FakeTeams) -> None:
    bf.script("/oauth2/v2.0/token", Answer(401, {"error": "invalid_client", "error_description": "AADSTS7000215"}))
    with pytest.raises(SendError) as info:
        await adapter.send(webhook(), reply_to_activity(adapter, bf), "hi")
    assert not info.value.retryable and info.value.code == "invalid_client" and "pw-1" not in str(info.value)


async def test_with_retry_honours_retry_after(adapter: TeamsAdapter, bf: FakeTeams) -> None:
    bf.script("/activities/1485983408511", Answer(429, {"error": {"code": "Throttled"}}, headers={"Retry-After": "5"}),
              Answer(412, {"error": {"code": "PreconditionFailed"}}))
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    tgt = reply_to_activity(adapter, bf)
    assert await with_retry(lambda: adapter.send(webhook(), tgt, "hi"), max_attempts=3, base=1, cap=60,
                            sleep=sleep) == ["reply-1"]
    assert slept[0] == 5 and 0 <= slept[1] <= 2


async def test_typing_activity(adapter: TeamsAdapter, bf: FakeTeams) -> None:
    await adapter.typing(webhook(), reply_to_activity(adapter, bf))
    [call] = [r for r in bf.requests if "/v3/conversations/" in r.path]
    assert call.path.endswith(f"/v3/conversations/{CONVERSATION}/activities")
    assert call.json["type"] == "typing" and call.json["from"]["id"] == f"28:{APP_ID}"


async def test_download_media_token_only_where_needed(adapter: TeamsAdapter, bf: FakeTeams) -> None:
    bf.script("/files/tempauth.txt", Answer(body=b"file body", content_type="text/plain"))
    bf.script("/views/original", Answer(body=b"\x89PNG", content_type="image/png"))
    tempauth = Attachment(kind="document", url=f"{bf.url}/files/tempauth.txt", extra={"tempauth": True})
    assert await adapter.download_media(webhook(), tempauth) == (b"file body", "text/plain")
    assert "authorization" not in bf.calls("/files/tempauth.txt")[0].headers
    image = Attachment(kind="image", mime_type="image/png", url=f"{bf.service_url}v3/attachments/a/views/original",
                       extra={"service_origin": f"http://127.0.0.1:{bf.port}"})
    assert await adapter.download_media(webhook(), image) == (b"\x89PNG", "image/png")
    assert bf.calls("/views/original")[0].headers["authorization"] == "Bearer bf-token-1"


class EveryNameIsLocal(AbstractResolver):
    """The test's host resolution: any name (evil.trafficmanager.net too) reaches the fake on 127.0.0.1."""

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[Any]:
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET, "proto": 0,
                 "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        return None


async def test_the_token_goes_only_to_the_verified_service_origin(adapter: TeamsAdapter, bf: FakeTeams) -> None:
    """Any Azure customer can create a *.trafficmanager.net name, and an activity's contentUrl can
    name any host: only the origin of the JWT-checked serviceUrl gets the bot token."""
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=EveryNameIsLocal()))
    adapter.http._sessions[("teams", True)] = session  # the tenant session media downloads use
    port = bf.port
    urls = {
        "service": f"{bf.service_url}v3/attachments/a/views/original",
        "evil": f"http://evil.trafficmanager.net:{port}/evil/views/original",
        "smba": f"http://smba.trafficmanager.net:{port}/smba/views/original",  # not this activity's service
        "userinfo": f"http://127.0.0.1:{port}@evil.trafficmanager.net:{port}/userinfo/views/original",
        "other_port": f"http://127.0.0.1:{port + 1 if port < 65535 else port - 1}/other/views/original",
        "https": f"https://127.0.0.1:{port}/https/views/original",
    }
    body = activity(bf, text="", attachments=[{"contentType": "image/png", "contentUrl": url} for url in urls.values()])
    images = parse_one(adapter, body).attachments
    assert len(images) == len(urls)
    for name in ("service", "evil", "smba", "userinfo"):
        bf.script(f"/{name}/views/original" if name != "service" else "/a/views/original",
                  Answer(body=b"\x89PNG", content_type="image/png"))
    for image in images:
        try:
            await adapter.download_media(webhook(), image)
        except SendError:
            pass  # other_port and https reach nothing: what matters is what was sent where
    await session.close()
    sent = {r.path.split("/")[1] if "/amer/" not in r.path else "service": r.headers.get("authorization")
            for r in bf.requests if r.path.endswith("/views/original")}
    assert set(sent) == {"service", "evil", "smba", "userinfo"}
    assert sent.pop("service") == "Bearer bf-token-1"
    # (aiohttp turns the userinfo trick's "127.0.0.1:port@" into Basic auth: the URL's own words, no token)
    assert not any(value and "bf-token" in value for value in sent.values()), sent
