"""Webhook pages over plain HTTP: secrets shown once, credentials, allowlist, enable/disable,
rotate, delete, 'Send test event' per channel, and the delivery log."""

from __future__ import annotations

import re

from buzzi.models import Webhook, WebhookEvent
from tests.dashboard.client import DashboardClient, Page, new_http
from tests.dashboard.forms import (
    ACCESS_TOKEN,
    META_SECRET,
    create_agent,
    create_company,
    create_whatsapp,
    field_error,
    webhook_path,
)
from tests.support.fake_teams import FakeTeams
from tests.support.fake_telegram import Answer, FakeTelegram
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.waiting import wait_until

SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


async def setup_agent(owner: DashboardClient) -> tuple[str, str]:
    cid = await create_company(owner)
    return cid, await create_agent(owner, cid)


def revealed(page: Page, name: str) -> str:
    found = re.search(rf'<code id="revealed-{name}">([^<]*)</code>', page.text)
    assert found, name
    return found.group(1)


def answered_status(page: Page) -> int:
    found = re.search(r'id="test-status">(\d+)<', page.text)
    assert found, page.text[:3000]
    return int(found.group(1))


async def events_of(gw: RunningGateway, wid: str, count: int = 1) -> list[WebhookEvent]:
    async def logged() -> list[WebhookEvent]:
        found = await gw.store.find(WebhookEvent, webhook_id=wid)
        return found if len(found) >= count else []

    return await wait_until(logged, timeout=5)


async def all_pages(owner: DashboardClient, cid: str, aid: str, wid: str) -> list[Page]:
    base = webhook_path(cid, aid, wid)
    pages = [await owner.get(p) for p in ("/admin/companies", f"/admin/companies/{cid}",
                                          f"/admin/companies/{cid}/agents/{aid}", base, f"{base}/deliveries")]
    for event_id in re.findall(r"/deliveries/([A-Za-z0-9_\-]+)\"", pages[-1].text):
        pages.append(await owner.get(f"{base}/deliveries/{event_id}"))
    return pages


async def test_whatsapp_secrets_are_shown_once_then_never(owner: DashboardClient, gw) -> None:
    cid, aid = await setup_agent(owner)
    wid, created = await create_whatsapp(owner, cid, aid)
    assert created.headers["Cache-Control"] == "no-store"
    assert revealed(created, "secret") == META_SECRET
    verify_token = revealed(created, "verify-token")
    assert len(verify_token) >= 20
    url = revealed(created, "url")
    assert url == f"{gw.base_url}/api/webhooks/{cid}/{aid}/whatsapp/{wid}"
    # A delivery too, so its log and detail pages are among those checked.
    assert answered_status(await owner.post(webhook_path(cid, aid, wid) + "/test")) == 200
    await events_of(gw, wid)
    pages = await all_pages(owner, cid, aid, wid)
    assert len(pages) == 6
    for page in pages:
        assert page.status == 200, page.url
        for secret in (META_SECRET, verify_token, ACCESS_TOKEN):
            assert secret not in page.text, (page.url, secret)
    detail = pages[3]
    assert url in detail.text and 'id="revealed' not in detail.text
    assert "\u2026" + verify_token[-4:] in detail.text  # redacted hint: recognisable, not usable


async def test_send_test_event_lands_in_the_delivery_log(owner: DashboardClient, gw) -> None:
    cid, aid = await setup_agent(owner)
    wid, _ = await create_whatsapp(owner, cid, aid)
    base = webhook_path(cid, aid, wid)
    result = await owner.post(f"{base}/test")
    assert answered_status(result) == 200 and "&#34;status&#34;: &#34;ok&#34;" in result.text
    assert f'href="{base}/deliveries"' in result.text
    (event,) = await events_of(gw, wid)
    assert event.status_code == 200 and event.outcome == "ok"
    log = await owner.get(f"{base}/deliveries")
    assert re.findall(r'data-status="(\d+)"', log.text) == ["200"]
    assert (await owner.get(f"{base}/deliveries?outcome=rejected")).text.count('data-status="') == 0
    assert (await owner.get(f"{base}/deliveries?outcome=ok")).text.count('data-status="200"') == 1
    detail = await owner.get(f"{base}/deliveries/{event.id}")
    assert detail.status == 200 and "x-hub-signature-256" in detail.text.lower()
    assert "sha256=" not in detail.text  # the signature is redacted
    assert "whatsapp_business_account" in detail.text and "statuses" in detail.text


async def test_test_event_reports_refusals_honestly(owner: DashboardClient, gw) -> None:
    cid, aid = await setup_agent(owner)
    wid, _ = await create_whatsapp(owner, cid, aid)
    base = webhook_path(cid, aid, wid)
    # Only 10.0.0.0/8 may call: our own request from 127.0.0.1 is refused, and the page says so.
    saved = await owner.post(base, {"ipAllowlist": "10.0.0.0/8"})
    assert "Saved." in saved.text
    assert answered_status(await owner.post(f"{base}/test")) == 403
    await owner.post(base, {"ipAllowlist": ""})
    disabled = await owner.post(f"{base}/status", {"status": "disabled"})
    assert "Webhook disabled." in disabled.text and "badge-disabled" in disabled.text
    assert (await gw.store.get(Webhook, wid)).status == "disabled"
    assert answered_status(await owner.post(f"{base}/test")) == 404
    enabled = await owner.post(f"{base}/status", {"status": "active"})
    assert "Webhook enabled." in enabled.text
    assert answered_status(await owner.post(f"{base}/test")) == 200


async def test_slack_and_custom_test_events_are_signed_correctly(owner: DashboardClient, gw) -> None:
    cid, aid = await setup_agent(owner)
    agent_base = f"/admin/companies/{cid}/agents/{aid}"
    slack = await owner.post(f"{agent_base}/webhooks", {
        "channel": "slack", "secret-slack": SLACK_SECRET, "cred-slack-botToken": "xoxb-123-456-abcdef"})
    assert slack.status == 201 and revealed(slack, "secret") == SLACK_SECRET
    custom = await owner.post(f"{agent_base}/webhooks", {
        "channel": "custom", "cred-custom-callbackUrl": "https://hooks.example/reply"})
    assert custom.status == 201
    generated = revealed(custom, "secret")
    assert generated.startswith("whsec_")
    for page in (slack, custom):
        wid = re.search(r'<span class="mono">(wh_[A-Za-z0-9_\-]+)</span>', page.text).group(1)
        assert answered_status(await owner.post(webhook_path(cid, aid, wid) + "/test")) == 200
        (event,) = await events_of(gw, wid)
        assert event.status_code == 200
        detail = await owner.get(webhook_path(cid, aid, wid))
        assert generated not in detail.text and SLACK_SECRET not in detail.text


async def test_teams_test_event_is_not_faked(make_settings) -> None:
    app_id, tenant = "6f1c1a43-7b7e-4f8e-9d8b-1a2b3c4d5e6f", "2b7e4c1d-0a9f-4e3b-8c6d-5f4e3d2c1b0a"
    async with FakeTeams() as bf, \
            running_gateway(make_settings, channels={"teams_openid_url": bf.openid_url,
                                                     "teams_token_url": bf.token_url}) as gw, \
            new_http() as http:
        bf.register_app(tenant, app_id, "teams-client-secret-value")  # creating it fetches a token
        owner = DashboardClient(gw, http)
        await owner.login()
        cid, aid = await setup_agent(owner)
        page = await owner.post(f"/admin/companies/{cid}/agents/{aid}/webhooks", {
            "channel": "teams", "cred-teams-appId": app_id, "cred-teams-appPassword": "teams-client-secret-value",
            "cred-teams-tenantId": tenant})
        assert page.status == 201 and 'id="send-test"' not in page.text and "cannot be simulated" in page.text
        wid = re.search(r'<span class="mono">(wh_[A-Za-z0-9_\-]+)</span>', page.text).group(1)
        assert "teams-client-secret-value" not in (await owner.get(webhook_path(cid, aid, wid))).text
        forced = await owner.post(webhook_path(cid, aid, wid) + "/test")
        assert "Microsoft" in re.search(r'id="test-error">([^<]*)<', forced.text).group(1)
        assert await gw.store.find(WebhookEvent, webhook_id=wid) == []


async def test_rotate_shows_the_new_secret_once(owner: DashboardClient, gw) -> None:
    cid, aid = await setup_agent(owner)
    wid, _ = await create_whatsapp(owner, cid, aid)
    base = webhook_path(cid, aid, wid)
    missing = await owner.post(f"{base}/rotate", {"secret": ""})
    assert missing.status == 400 and field_error(missing, "rotate.secret")
    new_secret = "meta-app-secret-rotated-9876543210"
    rotated = await owner.post(f"{base}/rotate", {"secret": new_secret})
    assert rotated.status == 200 and revealed(rotated, "secret") == new_secret
    assert (await gw.store.get(Webhook, wid)).secret == new_secret
    for page in await all_pages(owner, cid, aid, wid):
        assert new_secret not in page.text and META_SECRET not in page.text
    assert answered_status(await owner.post(f"{base}/test")) == 200  # signed with the new secret


async def test_custom_rotation_generates_a_secret(owner: DashboardClient, gw) -> None:
    cid, aid = await setup_agent(owner)
    created = await owner.post(f"/admin/companies/{cid}/agents/{aid}/webhooks", {
        "channel": "custom", "cred-custom-callbackUrl": "https://hooks.example/reply"})
    wid = re.search(r'<span class="mono">(wh_[A-Za-z0-9_\-]+)</span>', created.text).group(1)
    first = revealed(created, "secret")
    rotated = await owner.post(webhook_path(cid, aid, wid) + "/rotate")
    second = revealed(rotated, "secret")
    assert second.startswith("whsec_") and second != first
    assert second not in (await owner.get(webhook_path(cid, aid, wid))).text


async def test_credentials_form_keeps_blank_secrets_and_shows_errors(owner: DashboardClient, gw) -> None:
    cid, aid = await setup_agent(owner)
    wid, _ = await create_whatsapp(owner, cid, aid)
    base = webhook_path(cid, aid, wid)
    saved = await owner.post(base, {"cred-whatsapp-phoneNumberId": "2222222222", "cred-whatsapp-accessToken": "",
                                    "ipAllowlist": "192.0.2.0/24\n198.51.100.7"})
    assert "Saved." in saved.text
    webhook = await gw.store.get(Webhook, wid)
    assert webhook.credentials == {"phoneNumberId": "2222222222", "accessToken": ACCESS_TOKEN}
    assert webhook.ip_allowlist == ["192.0.2.0/24", "198.51.100.7/32"]
    bad = await owner.post(base, {"ipAllowlist": "192.0.2.0/24\nnot-a-network"})
    assert bad.status == 400 and "not an IPv4/IPv6 CIDR" in (field_error(bad, "ipAllowlist") or "")
    bad = await owner.post(base, {"cred-whatsapp-phoneNumberId": "abc", "ipAllowlist": ""})
    assert bad.status == 400 and field_error(bad, "credentials.phoneNumberId")
    assert (await gw.store.get(Webhook, wid)).credentials["phoneNumberId"] == "2222222222"


async def test_create_errors_keep_the_form_without_echoing_secrets(owner: DashboardClient, gw) -> None:
    cid, aid = await setup_agent(owner)
    page = await owner.post(f"/admin/companies/{cid}/agents/{aid}/webhooks", {
        "channel": "whatsapp", "secret-whatsapp": "", "cred-whatsapp-phoneNumberId": "1098765432",
        "cred-whatsapp-accessToken": ACCESS_TOKEN})
    assert page.status == 400 and "Meta App Secret is required" in (field_error(page, "secret") or "")
    assert 'value="1098765432"' in page.text and ACCESS_TOKEN not in page.text
    assert await gw.store.find(Webhook, agent_id=aid) == []


async def test_delete_webhook(owner: DashboardClient, gw) -> None:
    cid, aid = await setup_agent(owner)
    wid, _ = await create_whatsapp(owner, cid, aid)
    page = await owner.post(webhook_path(cid, aid, wid) + "/delete")
    assert "Deleted." in page.text and "No webhooks yet" in page.text
    assert await gw.store.get(Webhook, wid) is None
    assert (await owner.get(webhook_path(cid, aid, wid))).status == 404


async def test_meta_and_telegram_test_events_are_signed_correctly(make_settings) -> None:
    async with FakeTelegram() as telegram, \
            running_gateway(make_settings, channels={"telegram_api_base": telegram.url}) as gw, \
            new_http() as http:
        owner = DashboardClient(gw, http)
        await owner.login()
        cid, aid = await setup_agent(owner)
        forms = {
            "messenger": {"secret-messenger": META_SECRET, "cred-messenger-pageId": "1234567890",
                          "cred-messenger-pageAccessToken": "EAAG-page-token-1234"},
            "instagram": {"secret-instagram": META_SECRET, "cred-instagram-igUserId": "1784140000",
                          "cred-instagram-accessToken": "IGQ-access-token-5678"},
            "telegram": {"cred-telegram-botToken": "123456:ABC-DEF_ghi"},
        }
        for channel, form in forms.items():
            page = await owner.post(f"/admin/companies/{cid}/agents/{aid}/webhooks", {"channel": channel, **form})
            assert page.status == 201, (channel, page.text[:2000])
            wid = re.search(r'<span class="mono">(wh_[A-Za-z0-9_\-]+)</span>', page.text).group(1)
            assert answered_status(await owner.post(webhook_path(cid, aid, wid) + "/test")) == 200, channel
            (event,) = await events_of(gw, wid)
            assert event.status_code == 200, channel
        secret = telegram.calls("/setWebhook")[-1].json["secret_token"]
        assert secret not in (await owner.get(webhook_path(cid, aid, wid))).text

        # Telegram refusing the registration: the form says why, and nothing is kept.
        telegram.script("/setWebhook", Answer(401, {"ok": False, "error_code": 401, "description": "Unauthorized"}))
        refused = await owner.post(f"/admin/companies/{cid}/agents/{aid}/webhooks", {"channel": "telegram",
                                   "cred-telegram-botToken": "654321:XYZ-bad_token"})
        assert refused.status == 502 and "Unauthorized" in refused.text and "654321:XYZ-bad_token" not in refused.text
        assert len(await gw.store.find(Webhook, channel="telegram")) == 1
