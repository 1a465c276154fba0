"""Webhooks: secrets shown once, redacted afterwards, encrypted at rest; rotation; registration failure."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from buzzi.models import Webhook
from tests.admin.helpers import ON_EVERY_STORE, WHATSAPP, call, create_agent, create_company, create_webhook
from tests.support.fake_telegram import Answer, FakeTelegram
from tests.support.gateway import RunningGateway, free_port, running_gateway

SECRET = WHATSAPP["secret"]
TOKEN = WHATSAPP["credentials"]["accessToken"]


async def company_and_agent(gw: RunningGateway, owner: str) -> tuple[str, str]:
    cid = (await create_company(gw, owner))["id"]
    return cid, (await create_agent(gw, owner, cid))["id"]


async def test_whatsapp_webhook_shows_secrets_once(gw: RunningGateway, owner: str) -> None:
    cid, aid = await company_and_agent(gw, owner)
    created = await create_webhook(gw, owner, cid, aid)
    wid = created["id"]
    assert wid.startswith("wh_")
    assert created["secret"] == SECRET
    assert created["credentials"] == WHATSAPP["credentials"]
    verify_token = created["verifyToken"]
    assert isinstance(verify_token, str) and len(verify_token) >= 16  # generated: none was given
    assert created["url"] == f"{gw.base_url}/api/webhooks/{cid}/{aid}/whatsapp/{wid}"
    assert created["status"] == "active"

    base = f"/api/admin/companies/{cid}/agents/{aid}/webhooks"
    for shown in (await call(gw, "GET", f"{base}/{wid}", owner), (await call(gw, "GET", base, owner))[0]):
        text = json.dumps(shown)
        for plaintext in (SECRET, TOKEN, verify_token, "1098765432"):
            assert plaintext not in text
        assert shown["secret"] == "\u2026" + SECRET[-4:]
        assert shown["credentials"]["accessToken"] == "\u2026" + TOKEN[-4:]
        assert set(shown["credentials"]) == {"phoneNumberId", "accessToken"}
        assert shown["url"] == created["url"]

    # The URL shown is the live one: Meta's verification handshake succeeds with the generated token.
    query = urlencode({"hub.mode": "subscribe", "hub.verify_token": verify_token, "hub.challenge": "4242"})
    status, body, _ = await gw.request("GET", f"/api/webhooks/{cid}/{aid}/whatsapp/{wid}?{query}")
    assert (status, body) == (200, 4242)


@ON_EVERY_STORE
async def test_secrets_are_encrypted_at_rest(gw: RunningGateway, owner: str) -> None:
    cid, aid = await company_and_agent(gw, owner)
    created = await create_webhook(gw, owner, cid, aid)
    raw = json.dumps(await gw.store._get(Webhook.collection, created["id"]))
    for plaintext in (SECRET, TOKEN, created["verifyToken"]):
        assert plaintext not in raw
    assert (await gw.store.get(Webhook, created["id"])).secret == SECRET


@ON_EVERY_STORE
async def test_rotate_secret(gw: RunningGateway, owner: str) -> None:
    cid, aid = await company_and_agent(gw, owner)
    wid = (await create_webhook(gw, owner, cid, aid))["id"]
    path = f"/api/admin/companies/{cid}/agents/{aid}/webhooks/{wid}/rotate-secret"
    # Meta chooses the App Secret: it must be given.
    assert (await call(gw, "POST", path, owner, {}, 400))["field"] == "secret"
    rotated = await call(gw, "POST", path, owner, {"secret": "new-meta-app-secret-9876"})
    assert rotated["secret"] == "new-meta-app-secret-9876"
    assert (await gw.store.get(Webhook, wid)).secret == "new-meta-app-secret-9876"

    custom = await create_webhook(gw, owner, cid, aid, {
        "channel": "custom", "credentials": {"callbackUrl": "https://hooks.example.com/reply"}})
    assert custom["secret"].startswith("whsec_")
    assert custom["verifyToken"] is None
    cpath = f"/api/admin/companies/{cid}/agents/{aid}/webhooks/{custom['id']}"
    again = await call(gw, "POST", f"{cpath}/rotate-secret", owner)
    assert again["secret"].startswith("whsec_") and again["secret"] != custom["secret"]
    shown = await call(gw, "GET", cpath, owner)
    assert shown["secret"] == "whsec_\u2026" + again["secret"][-4:]


async def test_webhook_update_and_delete(gw: RunningGateway, owner: str) -> None:
    cid, aid = await company_and_agent(gw, owner)
    wid = (await create_webhook(gw, owner, cid, aid))["id"]
    path = f"/api/admin/companies/{cid}/agents/{aid}/webhooks/{wid}"
    patched = await call(gw, "PATCH", path, owner, {"status": "disabled", "ipAllowlist": ["10.0.0.0/8", "2001:db8::1"]})
    assert patched["status"] == "disabled"
    assert patched["ipAllowlist"] == ["10.0.0.0/8", "2001:db8::1/128"]
    assert (await call(gw, "PATCH", path, owner, {"secret": "x" * 20}, 400))["field"] == "secret"
    assert (await call(gw, "PATCH", path, owner, {"channel": "slack"}, 400))["field"] == "channel"
    bad = await call(gw, "PATCH", path, owner, {"credentials": {"phoneNumberId": "abc", "accessToken": TOKEN}}, 400)
    assert bad["field"] == "credentials.phoneNumberId"
    await call(gw, "DELETE", path, owner, expect=204)
    await call(gw, "GET", path, owner, expect=404)
    assert await gw.store.get(Webhook, wid) is None


WEBHOOK_ERRORS = [
    ({"channel": "fax"}, "channel"),
    ({"channel": "whatsapp", "secret": SECRET, "credentials": {"accessToken": TOKEN}}, "credentials.phoneNumberId"),
    ({"channel": "whatsapp", "credentials": WHATSAPP["credentials"]}, "secret"),
    ({**WHATSAPP, "credentials": "token"}, "credentials"),
    ({**WHATSAPP, "ipAllowlist": ["10.0.0.0/8", "10.0.0.300/32"]}, "ipAllowlist[1]"),
    ({**WHATSAPP, "ipAllowlist": "10.0.0.0/8"}, "ipAllowlist"),
    ({**WHATSAPP, "status": "on"}, "status"),
    ({**WHATSAPP, "url": "https://x"}, "url"),
    ({"channel": "telegram", "credentials": {"botToken": "not a token"}}, "credentials.botToken"),
    ({"channel": "slack", "secret": "s3cr3t-signing", "credentials": {"botToken": "xoxp-user"}},
     "credentials.botToken"),
]


async def test_webhook_validation_names_the_field(gw: RunningGateway, owner: str) -> None:
    for body, field in WEBHOOK_ERRORS:
        cid, aid = await company_and_agent(gw, owner)
        answer = await call(gw, "POST", f"/api/admin/companies/{cid}/agents/{aid}/webhooks", owner, body, 400)
        assert answer["field"] == field, (body, answer)
        assert await call(gw, "GET", f"/api/admin/companies/{cid}/agents/{aid}/webhooks", owner) == []


async def test_failed_telegram_registration_keeps_nothing(make_settings) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    async with running_gateway(make_settings, channels={"telegram_api_base": closed}) as gw:
        owner = await gw.login()
        cid, aid = await company_and_agent(gw, owner)
        answer = await call(gw, "POST", f"/api/admin/companies/{cid}/agents/{aid}/webhooks", owner, {
            "channel": "telegram", "credentials": {"botToken": "123456:ABC-DEF_ghi"}}, 502)
        assert "telegram" in answer["error"] and "ABC-DEF_ghi" not in answer["error"]
        assert await gw.store.count(Webhook) == 0


async def test_telegram_webhook_is_registered_and_reregistered_on_rotate(make_settings) -> None:
    async with FakeTelegram() as telegram, \
            running_gateway(make_settings, channels={"telegram_api_base": telegram.url}) as gw:
        owner = await gw.login()
        cid, aid = await company_and_agent(gw, owner)
        created = await create_webhook(gw, owner, cid, aid, {
            "channel": "telegram", "credentials": {"botToken": "123456:ABC-DEF_ghi"}})
        (call_,) = telegram.calls("/setWebhook")
        assert call_.path == "/bot123456:ABC-DEF_ghi/setWebhook"
        assert call_.json["url"] == created["url"] and call_.json["secret_token"] == created["secret"]
        assert created["state"]["registered"] is True

        path = f"/api/admin/companies/{cid}/agents/{aid}/webhooks/{created['id']}/rotate-secret"
        rotated = await call(gw, "POST", path, owner)
        assert rotated["secret"] != created["secret"]
        assert telegram.calls("/setWebhook")[-1].json["secret_token"] == rotated["secret"]

        # Telegram refusing the new secret leaves the registered one in place.
        telegram.script("/setWebhook", Answer(401, {"ok": False, "error_code": 401, "description": "Unauthorized"}))
        answer = await call(gw, "POST", path, owner, expect=502)
        assert "Unauthorized" in answer["error"]
        assert (await gw.store.get(Webhook, created["id"])).secret == rotated["secret"]
