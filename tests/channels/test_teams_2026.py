"""Teams as the platform is in 2026 (issue 11 items 5-7): single-tenant bots and a credential check
at setup against a login server that answers like Entra ID; replies split by the UTF-16 size of the
whole activity; edits, deletes and other activities; typing refreshes. Fakes: tests/support/fake_teams.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest

from buzzi.channels import teams_login, teams_size
from buzzi.channels.base import CredentialsError, ReplyTarget, SendError
from buzzi.channels.outbound import OutboundHttp
from buzzi.channels.teams import TeamsAdapter
from buzzi.models import Webhook
from buzzi.netguard import NetPolicy
from tests.admin.helpers import call, create_agent, create_company
from tests.channels.test_teams import APP_ID, CONVERSATION, TENANT, activity, parse_one, reply_to_activity, request
from tests.support.channel_factories import channel_webhook
from tests.support.fake_teams import MESSAGE_LIMIT_BYTES, FakeTeams
from tests.support.fake_telegram import Answer
from tests.support.gateway import RunningGateway, running_gateway

SECRET = "Zq8Q~teams-client-secret-value-0123456789"
OTHER_APP = "0b7d1f5e-93a4-4a35-9d2e-6c1f9a7b3e21"
CREDENTIALS = {"appId": APP_ID, "appPassword": SECRET, "tenantId": TENANT}
webhook = partial(channel_webhook, "teams", credentials=CREDENTIALS)


@pytest.fixture
async def bf() -> AsyncIterator[FakeTeams]:
    async with FakeTeams() as fake:
        fake.register_app(TENANT, APP_ID, SECRET)
        fake.register_app(teams_login.MULTI_TENANT, OTHER_APP, "legacy-multi-tenant-secret")
        yield fake


@pytest.fixture
async def adapter(make_settings, bf: FakeTeams) -> AsyncIterator[TeamsAdapter]:
    settings = make_settings(channels={"teams_openid_url": bf.openid_url, "teams_token_url": bf.token_url})
    http = OutboundHttp(settings.channels, NetPolicy.from_settings(settings.security))
    yield TeamsAdapter(settings.channels, http)
    await http.close()


# ---------------------------------------------------------------------------- single tenant

@pytest.mark.parametrize(("given", "stored"), [
    (TENANT.upper(), TENANT),
    ("{" + TENANT + "}", TENANT),
    ("Contoso.onmicrosoft.com", "contoso.onmicrosoft.com"),
    ("botframework.com", "botframework.com"),  # a legacy multi-tenant bot, said explicitly
])
def test_tenant_is_required_and_normalised(adapter: TeamsAdapter, given: str, stored: str) -> None:
    assert adapter.validate_credentials({**CREDENTIALS, "tenantId": given})["tenantId"] == stored


@pytest.mark.parametrize("tenant", [None, "", "  ", "common", "organizations", "consumers", "contoso",
                                    "a/b", "../../evil.example", "x" * 300 + ".com", 42])
def test_tenant_refused(adapter: TeamsAdapter, tenant: Any) -> None:
    credentials = {k: v for k, v in {**CREDENTIALS, "tenantId": tenant}.items() if v is not None}
    with pytest.raises(CredentialsError) as info:
        adapter.validate_credentials(credentials)
    assert info.value.field == "tenantId" and "botframework.com" in str(info.value)


def test_tenant_field_is_required_in_forms(adapter: TeamsAdapter) -> None:
    tenant = next(f for f in adapter.credential_fields if f.name == "tenantId")
    assert tenant.required and not tenant.secret


@pytest.mark.parametrize(("configured", "tenant", "expected"), [
    ("https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token", TENANT,
     f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"),
    ("https://login.microsoftonline.us/MicrosoftServices.onmicrosoft.com/oauth2/v2.0/token", "contoso.onmicrosoft.us",
     "https://login.microsoftonline.us/contoso.onmicrosoft.us/oauth2/v2.0/token"),
    ("https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token", None,
     "https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token"),  # stored before tenants were required
    ("http://127.0.0.1:9/proxy/token", TENANT, "http://127.0.0.1:9/proxy/token"),  # not a login URL: kept
])
def test_token_url_per_tenant(configured: str, tenant: str | None, expected: str) -> None:
    assert teams_login.token_url(configured, tenant) == expected


async def test_replies_take_the_token_from_the_bots_tenant(adapter: TeamsAdapter, bf: FakeTeams) -> None:
    assert await adapter.send(webhook(), reply_to_activity(adapter, bf), "hello") == ["reply-1"]
    [token_call] = bf.calls("/oauth2/v2.0/token")
    assert token_call.path == f"/{TENANT}/oauth2/v2.0/token"
    assert token_call.form["client_id"] == APP_ID and token_call.form["client_secret"] == SECRET


# ---------------------------------------------------------------------------- credential check

async def test_right_credentials_pass_and_the_token_is_kept(adapter: TeamsAdapter, bf: FakeTeams) -> None:
    await adapter.check_credentials(adapter.validate_credentials(CREDENTIALS))
    await adapter.send(webhook(), reply_to_activity(adapter, bf), "hello")
    assert len(bf.calls("/oauth2/v2.0/token")) == 1  # the first reply used the checked token
    legacy = {"appId": OTHER_APP, "appPassword": "legacy-multi-tenant-secret", "tenantId": "botframework.com"}
    await adapter.check_credentials(adapter.validate_credentials(legacy))
    assert bf.calls("/oauth2/v2.0/token")[-1].path == "/botframework.com/oauth2/v2.0/token"


@pytest.mark.parametrize(("change", "field", "code", "words"), [
    ({"appPassword": "wrong-secret-value"}, "appPassword", "AADSTS7000215", "client secret is wrong"),
    ({"appId": OTHER_APP}, "appId", "AADSTS700016", "no application with this App ID"),
    ({"tenantId": "0f8d6a59-1c2e-4b7a-9e3d-5a6b7c8d9e0f"}, "tenantId", "AADSTS90002", "tenant not found"),
    # A single-tenant bot entered as multi-tenant: its app is not in the botframework.com tenant.
    ({"tenantId": "botframework.com"}, "appId", "AADSTS700016", "not botframework.com"),
])
async def test_wrong_credentials_name_the_field(adapter: TeamsAdapter, bf: FakeTeams, change: dict[str, str],
                                                field: str, code: str, words: str) -> None:
    credentials = adapter.validate_credentials({**CREDENTIALS, **change})
    with pytest.raises(CredentialsError) as info:
        await adapter.check_credentials(credentials)
    message = str(info.value)
    assert info.value.field == field and code in message and words in message
    assert credentials["appPassword"] not in message and "Trace ID" not in message
    assert adapter._tokens == {}


async def test_unknown_refusal_is_worded_without_the_password(adapter: TeamsAdapter, bf: FakeTeams) -> None:
    bf.script("/oauth2/v2.0/token", Answer(400, {
        "error": "invalid_request",
        "error_description": f"AADSTS9999999: Something about '{SECRET}' happened.\r\nTrace ID: abc\r\nTimestamp: x",
        "error_codes": [9999999]}))
    with pytest.raises(CredentialsError) as info:
        await adapter.check_credentials(CREDENTIALS)
    assert info.value.field == "credentials"
    assert "AADSTS9999999: Something about" in str(info.value) and SECRET not in str(info.value)
    assert "Trace ID" not in str(info.value)


async def test_login_server_down_is_not_a_credentials_error(adapter: TeamsAdapter, bf: FakeTeams) -> None:
    bf.script("/oauth2/v2.0/token", Answer(503, {"error": "temporarily_unavailable"}, headers={"Retry-After": "7"}))
    with pytest.raises(SendError) as info:
        await adapter.check_credentials(CREDENTIALS)
    assert info.value.retryable and info.value.status == 503 and info.value.retry_after == 7.0


async def test_unreachable_login_server(make_settings) -> None:
    settings = make_settings(channels={"teams_token_url": "http://127.0.0.1:1/botframework.com/oauth2/v2.0/token"})
    http = OutboundHttp(settings.channels, NetPolicy.from_settings(settings.security))
    try:
        with pytest.raises(SendError) as info:
            await TeamsAdapter(settings.channels, http).check_credentials(CREDENTIALS)
        assert info.value.retryable and "network error" in str(info.value)
    finally:
        await http.close()


async def test_refused_token_at_send_time_says_why(adapter: TeamsAdapter, bf: FakeTeams) -> None:
    wrong = webhook(credentials={**CREDENTIALS, "appPassword": "rotated-away"})
    with pytest.raises(SendError) as info:
        await adapter.send(wrong, reply_to_activity(adapter, bf), "hi")
    assert not info.value.retryable and info.value.code == "invalid_client"
    assert "AADSTS7000215" in str(info.value) and "rotated-away" not in str(info.value)


# ---------------------------------------------------------------------------- size

def sent_activities(bf: FakeTeams) -> list[tuple[int, dict[str, Any], bytes]]:
    return [(len(r.body.decode("utf-8").encode("utf-16-le")), r.json, r.body)
            for r in bf.requests if "/v3/conversations/" in r.path]


async def deliver(adapter: TeamsAdapter, target: ReplyTarget, text: str) -> list[str]:
    """What the delivery path does: split, format, one send per part."""
    ids: list[str] = []
    for part in adapter.split(text):
        ids.extend(await adapter.send(webhook(), target, adapter.format(part)))
    return ids


@pytest.mark.parametrize(("unit", "count"), [
    ("\U0001F600", 60_000),  # emoji: 1 character, 2 UTF-16 units
    ("\u6f22\u5b57 ", 40_000),  # CJK: 1 unit a character, words separated by spaces
    ('He said "ok".\n', 12_000),  # quotes and newlines: JSON escapes count twice
    ("plain words ", 30_000),
])
async def test_each_activity_fits_in_utf16_bytes(adapter: TeamsAdapter, bf: FakeTeams, unit: str,
                                                 count: int) -> None:
    text = unit * count
    target = reply_to_activity(adapter, bf)
    ids = await deliver(adapter, target, text)
    sent = sent_activities(bf)
    assert len(ids) == len(sent) >= 2  # all accepted: the fake answers 413 above 100 KB
    assert all(size <= teams_size.SAFE_BYTES for size, _, _ in sent)
    # Tight, not timid: every part but the last fills most of the room.
    assert all(size > teams_size.SAFE_BYTES * 0.6 for size, _, _ in sent[:-1])
    def squeeze(value: str) -> str:
        return "".join(value.split())

    assert squeeze("".join(body["text"] for _, body, _ in sent)) == squeeze(text)  # nothing lost, nothing added
    assert all(body["replyToId"] == "1485983408511" for _, body, _ in sent)


async def test_character_count_is_not_the_measure(adapter: TeamsAdapter) -> None:
    emoji, cjk = adapter.split("\U0001F600" * 60_000), adapter.split("\u6f22" * 60_000)
    # The same 60,000 characters: 240,000 bytes of emoji, 120,000 of CJK, in parts of at most
    # TEXT_BUDGET_BYTES (71,808): 17,952 emoji or 35,904 CJK characters a part.
    assert (len(emoji), len(cjk)) == (4, 2)
    assert max(map(len, emoji)) == teams_size.TEXT_BUDGET_BYTES // 4
    assert max(map(len, cjk)) == teams_size.TEXT_BUDGET_BYTES // 2
    # 28,000 characters (the former limit) of emoji would be 112,000 bytes of text: above the limit.
    assert teams_size.utf16_bytes("\U0001F600" * 28_000) > MESSAGE_LIMIT_BYTES


async def test_body_is_utf8_not_escaped(adapter: TeamsAdapter, bf: FakeTeams) -> None:
    await adapter.send(webhook(), reply_to_activity(adapter, bf), "Gr\u00fc\u00dfe \U0001F600 \u6f22\u5b57")
    [(_, body, raw)] = sent_activities(bf)
    assert "\U0001F600".encode() in raw and b"\\u" not in raw
    assert body["text"] == "Gr\u00fc\u00dfe \U0001F600 \u6f22\u5b57"
    header = next(r for r in bf.requests if "/v3/conversations/" in r.path).headers["content-type"]
    assert header.startswith("application/json") and "utf-8" in header


async def test_large_envelope_is_cut_again_at_send(adapter: TeamsAdapter, bf: FakeTeams) -> None:
    """split() keeps room for the envelope; send() measures the real activity and cuts again when
    the envelope (here a 20,000-character display name) is larger than that room."""
    target = reply_to_activity(adapter, bf)
    target.in_reply_to.metadata["channel"]["from"] = {"id": "29:user", "name": "N" * 20_000}
    [part] = adapter.split("word " * 7_000)
    ids = await adapter.send(webhook(), target, part)
    sent = sent_activities(bf)
    assert len(ids) == len(sent) == 2 and all(size <= teams_size.SAFE_BYTES for size, _, _ in sent)
    assert " ".join(body["text"] for _, body, _ in sent).split() == part.split()


async def test_fake_refuses_oversized_activity_like_teams(adapter: TeamsAdapter, bf: FakeTeams) -> None:
    """The fake's limit is real: one unsplit activity of 60,000 emoji is answered 413 MessageSizeTooBig,
    which is permanent."""
    target = reply_to_activity(adapter, bf)
    with pytest.raises(SendError) as info:
        await adapter._post(webhook(), target, {"type": "message", "text": "\U0001F600" * 60_000})
    assert (info.value.status, info.value.code, info.value.retryable) == (413, "MessageSizeTooBig", False)


def test_split_edges() -> None:
    assert teams_size.split_by_size("   ", 100) == []
    assert teams_size.split_by_size("short", 100) == ["short"]
    assert teams_size.split_by_size("\U0001F600\U0001F600\U0001F600", 2) == ["\U0001F600"] * 3  # always progresses
    parts = teams_size.split_by_size("First sentence here. Second one follows here.", 60)
    assert parts == ["First sentence here.", "Second one follows here."]
    assert teams_size.split_by_size("\u6f22\u5b57\u3002\u6f22\u5b57\u6f22\u5b57", 10) == [
        "\u6f22\u5b57\u3002", "\u6f22\u5b57\u6f22\u5b57"]
    for text in ["\x01" * 50, '"' * 50, "\n".join(["x"] * 50)]:
        for part in teams_size.split_by_size(text, 40):
            assert teams_size.utf16_bytes(json.dumps(part, ensure_ascii=False)) - 4 <= 40


# ---------------------------------------------------------------------------- activities

def edit_activity(bf: FakeTeams, **fields: Any) -> dict[str, Any]:
    edit = {"type": "messageUpdate", "timestamp": "2017-02-01T21:12:31.100Z", "text": "Hello again, edited",
            "channelData": {"eventType": "editMessage", "tenant": {"id": TENANT}}}
    return activity(bf, **{**edit, **fields})


def test_edit_names_its_original(adapter: TeamsAdapter, bf: FakeTeams) -> None:
    original = parse_one(adapter, activity(bf))
    edit = parse_one(adapter, edit_activity(bf))
    assert edit.edit_of == original.message_id == "1485983408511"
    assert edit.message_id == "1485983408511:edit:2017-02-01T21:12:31.100Z" != original.message_id
    assert (edit.text, edit.chat_id, edit.sender_id) == ("Hello again, edited", original.chat_id, original.sender_id)
    assert edit.meta["activity_id"] == "1485983408511"  # a re-answer threads under the original
    assert parse_one(adapter, edit_activity(bf)).message_id == edit.message_id  # a redelivery is a duplicate
    later = parse_one(adapter, edit_activity(bf, timestamp="2017-02-01T21:15:00.000Z"))
    assert later.message_id != edit.message_id and later.edit_of == edit.edit_of
    no_stamp = {k: v for k, v in edit_activity(bf).items() if k != "timestamp"}
    assert parse_one(adapter, no_stamp).message_id.startswith("1485983408511:edit:")


@pytest.mark.parametrize(("body", "reason"), [
    ({"type": "messageDelete", "id": "1485983408511", "conversation": {"id": CONVERSATION},
      "channelData": {"eventType": "softDeleteMessage"}}, "revoke"),
    ({"type": "messageUpdate", "id": "1485983408511", "conversation": {"id": CONVERSATION},
      "from": {"id": "29:x"}, "text": "back", "channelData": {"eventType": "undeleteMessage"}}, "undelete"),
    ({"type": "messageUpdate", "id": "1485983408511", "conversation": {"id": CONVERSATION},
      "from": {"id": "29:x"}, "text": "?", "channelData": {"eventType": "somethingNew"}}, "unsupported_event"),
    ({"type": "event", "name": "application/vnd.microsoft.meetingStart", "value": {}}, "unsupported_event"),
    ({"type": "event", "name": "application/vnd.microsoft.readReceipt", "value": {}}, "malformed_event"),
    ({"type": "somethingFuture"}, "unsupported_event"),
    ({"type": "message", "id": "2", "from": {"id": f"28:{APP_ID}"}, "recipient": {"id": f"28:{APP_ID}"},
      "conversation": {"id": CONVERSATION}, "text": "echo"}, "own_message"),
    ({"type": "message", "from": {"id": "29:x"}, "conversation": {"id": CONVERSATION}, "text": "no id"},
     "malformed_event"),
])
def test_other_activities_are_dropped_with_a_reason(adapter: TeamsAdapter, body: dict[str, Any],
                                                    reason: str) -> None:
    result = adapter.parse(webhook(), request(body))
    assert (result.messages, result.ignored, result.drops) == ([], 1, {reason: 1})


def test_read_receipt(adapter: TeamsAdapter) -> None:
    body = {"type": "event", "name": "application/vnd.microsoft.readReceipt", "id": "f:1",
            "timestamp": "2026-03-02T10:00:05.000Z", "channelId": "msteams",
            "from": {"id": "29:1XJKJMvc5GBtc2JwZq0oj8tHZmzrQgFmB39ATiQWA85gQ"},
            "conversation": {"conversationType": "personal", "id": CONVERSATION},
            "recipient": {"id": f"28:{APP_ID}"}, "value": {"lastReadMessageId": "1772445601234"}}
    result = adapter.parse(webhook(), request(body))
    [receipt] = result.receipts
    assert (receipt.status, receipt.message_ids, receipt.chat_id) == ("read", ["1772445601234"], CONVERSATION)
    assert receipt.watermark == pytest.approx(1772445601.234) and result.drops == {"receipt": 1}
    body["value"]["lastReadMessageId"] = "not-a-time"
    assert adapter.parse(webhook(), request(body)).receipts[0].watermark is None


def test_edit_by_the_bot_itself_is_dropped(adapter: TeamsAdapter, bf: FakeTeams) -> None:
    body = edit_activity(bf, **{"from": {"id": f"28:{APP_ID}", "name": "Teams TestBot"}})
    assert adapter.parse(webhook(), request(body)).drops == {"own_message": 1}


# ---------------------------------------------------------------------------- typing

async def test_typing_refreshes_every_three_seconds(adapter: TeamsAdapter, bf: FakeTeams) -> None:
    assert TeamsAdapter.typing_interval == 3.0
    target = reply_to_activity(adapter, bf)
    await adapter.typing(webhook(), target)
    await adapter.typing(webhook(), target, first=False)
    calls = [r for r in bf.requests if "/v3/conversations/" in r.path]
    assert [c.json["type"] for c in calls] == ["typing", "typing"]
    assert all(c.path.endswith("/activities") for c in calls)  # not a reply to the user's activity


# ---------------------------------------------------------------------------- over HTTP

@pytest.fixture
async def gw_teams(make_settings, bf: FakeTeams) -> AsyncIterator[tuple[RunningGateway, str, str, str]]:
    channels = {"teams_openid_url": bf.openid_url, "teams_token_url": bf.token_url}
    async with running_gateway(make_settings, channels=channels) as gw:
        owner = await gw.login()
        cid = (await create_company(gw, owner))["id"]
        aid = (await create_agent(gw, owner, cid))["id"]
        yield gw, owner, cid, aid


@pytest.mark.parametrize(("change", "field", "code"), [
    ({"appPassword": "not-the-secret"}, "credentials.appPassword", "AADSTS7000215"),
    ({"appId": OTHER_APP}, "credentials.appId", "AADSTS700016"),
    ({"tenantId": "contoso-nonexistent.onmicrosoft.com"}, "credentials.tenantId", "AADSTS90002"),
])
async def test_create_with_wrong_credentials_is_400_and_stores_nothing(
        gw_teams: tuple[RunningGateway, str, str, str], bf: FakeTeams, change: dict[str, str], field: str,
        code: str) -> None:
    gw, owner, cid, aid = gw_teams
    body = {"channel": "teams", "credentials": {**CREDENTIALS, **change}}
    status, answer, _ = await gw.request("POST", f"/api/admin/companies/{cid}/agents/{aid}/webhooks",
                                         json_body=body, token=owner)
    assert status == 400 and answer["field"] == field and code in answer["error"]
    assert body["credentials"]["appPassword"] not in json.dumps(answer)
    assert await gw.store.find(Webhook, agent_id=aid) == []
    assert len(bf.calls("/oauth2/v2.0/token")) == 1


async def test_create_without_tenant_is_400_before_any_token_request(
        gw_teams: tuple[RunningGateway, str, str, str], bf: FakeTeams) -> None:
    gw, owner, cid, aid = gw_teams
    answer = await call(gw, "POST", f"/api/admin/companies/{cid}/agents/{aid}/webhooks", owner,
                        {"channel": "teams", "credentials": {"appId": APP_ID, "appPassword": SECRET}}, 400)
    assert answer["field"] == "credentials.tenantId"
    assert bf.calls("/oauth2/v2.0/token") == [] and await gw.store.find(Webhook, agent_id=aid) == []


async def test_create_with_right_credentials_is_201_and_update_is_checked(
        gw_teams: tuple[RunningGateway, str, str, str], bf: FakeTeams) -> None:
    gw, owner, cid, aid = gw_teams
    base = f"/api/admin/companies/{cid}/agents/{aid}/webhooks"
    created = await call(gw, "POST", base, owner, {"channel": "teams", "credentials": CREDENTIALS}, 201)
    assert created["credentials"] == CREDENTIALS  # shown once, in full
    [token_call] = bf.calls("/oauth2/v2.0/token")
    assert token_call.path == f"/{TENANT}/oauth2/v2.0/token"

    wrong = {**CREDENTIALS, "appPassword": "a-typo-in-the-new-secret"}
    answer = await call(gw, "PATCH", f"{base}/{created['id']}", owner, {"credentials": wrong}, 400)
    assert answer["field"] == "credentials.appPassword" and "a-typo" not in json.dumps(answer)
    assert (await gw.store.get(Webhook, created["id"])).credentials["appPassword"] == SECRET

    # Unchanged credentials (a form saved for another field) are not checked again.
    await call(gw, "PATCH", f"{base}/{created['id']}", owner, {"credentials": CREDENTIALS, "ipAllowlist": []})
    assert len(bf.calls("/oauth2/v2.0/token")) == 2


async def test_login_server_down_at_create_is_502_and_stores_nothing(
        gw_teams: tuple[RunningGateway, str, str, str], bf: FakeTeams) -> None:
    gw, owner, cid, aid = gw_teams
    bf.script("/oauth2/v2.0/token", Answer(503, {"error": "temporarily_unavailable"}))
    answer = await call(gw, "POST", f"/api/admin/companies/{cid}/agents/{aid}/webhooks", owner,
                        {"channel": "teams", "credentials": CREDENTIALS}, 502)
    assert answer["field"] == "credentials" and "try again" in answer["error"] and SECRET not in json.dumps(answer)
    assert await gw.store.find(Webhook, agent_id=aid) == []
