"""Webhook settings over the admin API (issue 11): WhatsApp's re-engagement template is validated by
the adapter, stored and shown; a channel without settings refuses them naming the field; a webhook
the gateway disabled itself (a receiver answered 410) shows why until a person enables it again."""

from __future__ import annotations

import time

from buzzi.models import Webhook
from tests.admin.helpers import WHATSAPP, call, create_agent, create_company, create_webhook
from tests.support.gateway import RunningGateway

TEMPLATE = {"reengagementTemplate": {"name": "order_follow_up", "language": "en_US"}}
CUSTOM = {"channel": "custom", "credentials": {"callbackUrl": "https://receiver.example.com/hook"}}


async def agent_path(gw: RunningGateway, token: str) -> tuple[str, str, str]:
    cid = (await create_company(gw, token))["id"]
    aid = (await create_agent(gw, token, cid))["id"]
    return cid, aid, f"/api/admin/companies/{cid}/agents/{aid}/webhooks"


async def test_whatsapp_template_is_stored_shown_changed_and_removed(gw: RunningGateway, owner: str) -> None:
    cid, aid, path = await agent_path(gw, owner)
    created = await create_webhook(gw, owner, cid, aid, {**WHATSAPP, "settings": TEMPLATE})
    assert created["settings"] == TEMPLATE
    assert "disabledReason" not in created

    shown = await call(gw, "GET", f"{path}/{created['id']}", owner)
    assert shown["settings"] == TEMPLATE
    assert (await gw.store.get(Webhook, created["id"])).settings == TEMPLATE

    other = {"reengagementTemplate": {"name": "we_miss_you", "language": "de"}}
    changed = await call(gw, "PATCH", f"{path}/{created['id']}", owner, {"settings": other})
    assert changed["settings"] == other

    removed = await call(gw, "PATCH", f"{path}/{created['id']}", owner, {"settings": None})
    assert removed["settings"] == {}
    assert (await gw.store.get(Webhook, created["id"])).settings == {}

    listed = await call(gw, "GET", path, owner)
    assert [w["settings"] for w in listed] == [{}]


async def test_a_bad_template_is_a_400_naming_the_setting(gw: RunningGateway, owner: str) -> None:
    cid, aid, path = await agent_path(gw, owner)
    bad_name = {"reengagementTemplate": {"name": "Not A Template Name!", "language": "en_US"}}
    status, body, _ = await gw.request("POST", path, json_body={**WHATSAPP, "settings": bad_name}, token=owner)
    assert status == 400, body
    assert body["field"] == "settings.reengagementTemplate.name"
    assert await gw.store.find(Webhook, agent_id=aid) == []  # nothing half-created

    hook = await create_webhook(gw, owner, cid, aid)
    no_name = {"reengagementTemplate": {"language": "en_US"}}
    status, body, _ = await gw.request("PATCH", f"{path}/{hook['id']}", json_body={"settings": no_name},
                                       token=owner)
    assert status == 400, body
    assert body["field"] == "settings.reengagementTemplate.name"
    status, body, _ = await gw.request("PATCH", f"{path}/{hook['id']}", json_body={"settings": "template"},
                                       token=owner)
    assert status == 400 and body["field"].startswith("settings"), body
    assert (await gw.store.get(Webhook, hook["id"])).settings == {}


async def test_a_channel_without_settings_refuses_them(gw: RunningGateway, owner: str) -> None:
    cid, aid, path = await agent_path(gw, owner)
    status, body, _ = await gw.request("POST", path, json_body={**CUSTOM, "settings": TEMPLATE}, token=owner)
    assert status == 400, body
    assert body["field"] == "settings.reengagementTemplate"
    created = await create_webhook(gw, owner, cid, aid, {**CUSTOM, "settings": {}})
    assert created["settings"] == {}


async def test_a_webhook_disabled_by_the_gateway_says_why_until_enabled(gw: RunningGateway, owner: str) -> None:
    cid, aid, path = await agent_path(gw, owner)
    hook = await create_webhook(gw, owner, cid, aid, CUSTOM)
    at = time.time() - 60
    reason = "The receiver answered 410 Gone: it no longer wants deliveries"
    # As the delivery service leaves it after a 410 (design: status disabled, state.disabledReason/At).
    await gw.store.update(Webhook, hook["id"], {"status": "disabled",
                                                "state": {"disabledReason": reason, "disabledAt": at}})

    shown = await call(gw, "GET", f"{path}/{hook['id']}", owner)
    assert shown["status"] == "disabled"
    assert shown["disabledReason"] == reason
    assert shown["disabledAt"].startswith(time.strftime("%Y-%m-%dT%H:%M", time.gmtime(at)))

    enabled = await call(gw, "PATCH", f"{path}/{hook['id']}", owner, {"status": "active"})
    assert enabled["status"] == "active"
    assert "disabledReason" not in enabled and "disabledAt" not in enabled
    assert (await gw.store.get(Webhook, hook["id"])).state == {}

    # Disabled by a person: no reason to show.
    disabled = await call(gw, "PATCH", f"{path}/{hook['id']}", owner, {"status": "disabled"})
    assert "disabledReason" not in disabled
