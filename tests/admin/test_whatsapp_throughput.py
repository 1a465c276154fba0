"""WhatsApp's `throughput` webhook setting (issue 12): the business number's messages per second
(Meta "Throughput": 80 by default, up to 1,000 after the automatic upgrade), set over the admin API,
validated with an error naming the field, and used by the send pacing instead of the default 80."""

from __future__ import annotations

import pytest

from buzzi.channels.pacing import SendPacing
from buzzi.models import Webhook
from tests.admin.helpers import WHATSAPP, call, create_agent, create_company, create_webhook
from tests.channels.test_pacing_limits import FakeClock
from tests.support.channel_factories import reply_target
from tests.support.gateway import RunningGateway

TEMPLATE = {"reengagementTemplate": {"name": "order_follow_up", "language": "en_US"}}


async def hooks_path(gw: RunningGateway, token: str) -> tuple[str, str, str]:
    cid = (await create_company(gw, token))["id"]
    aid = (await create_agent(gw, token, cid))["id"]
    return cid, aid, f"/api/admin/companies/{cid}/agents/{aid}/webhooks"


async def sleeps_after(gw: RunningGateway, webhook_id: str, sends: int) -> list[float]:
    """The pacing waits of `sends` + 1 replies to distinct customers from the stored webhook."""
    webhook = await gw.store.get(Webhook, webhook_id)
    adapter = gw.gateway.channels.adapter("whatsapp")
    clock = FakeClock()
    pacing = SendPacing(clock=clock, sleep=clock.sleep)
    for i in range(sends + 1):
        await pacing.pace(adapter, webhook, reply_target("whatsapp", f"4915550{i:05d}"))
    return clock.sleeps


async def test_throughput_is_stored_shown_and_paces_the_number(gw: RunningGateway, owner: str) -> None:
    cid, aid, path = await hooks_path(gw, owner)
    created = await create_webhook(gw, owner, cid, aid, {**WHATSAPP, "settings": {"throughput": 1000}})
    assert created["settings"] == {"throughput": 1000}
    assert (await call(gw, "GET", f"{path}/{created['id']}", owner))["settings"] == {"throughput": 1000}
    # An upgraded number: a burst of 1,000 replies goes out at once, then one per millisecond.
    assert await sleeps_after(gw, created["id"], 1000) == [pytest.approx(1 / 1000)]

    # With the template beside it; the form's digits are taken too.
    both = await call(gw, "PATCH", f"{path}/{created['id']}", owner, {"settings": {**TEMPLATE, "throughput": "20"}})
    assert both["settings"] == {**TEMPLATE, "throughput": 20}
    assert await sleeps_after(gw, created["id"], 20) == [pytest.approx(1 / 20)]

    # Removed: back to Meta's default of 80 messages per second.
    cleared = await call(gw, "PATCH", f"{path}/{created['id']}", owner, {"settings": TEMPLATE})
    assert cleared["settings"] == TEMPLATE
    assert await sleeps_after(gw, created["id"], 80) == [pytest.approx(1 / 80)]


async def test_an_empty_throughput_is_not_set(gw: RunningGateway, owner: str) -> None:
    cid, aid, _ = await hooks_path(gw, owner)  # the dashboard's empty input: the default applies
    created = await create_webhook(gw, owner, cid, aid, {**WHATSAPP, "settings": {"throughput": ""}})
    assert created["settings"] == {}
    assert await sleeps_after(gw, created["id"], 80) == [pytest.approx(1 / 80)]


@pytest.mark.parametrize("bad", [0, 1001, -5, 2.5, "fast", " 80x", True, [80], {"mps": 80}])
async def test_a_bad_throughput_is_a_400_naming_the_setting(gw: RunningGateway, owner: str, bad: object) -> None:
    cid, aid, path = await hooks_path(gw, owner)
    status, body, _ = await gw.request("POST", path, json_body={**WHATSAPP, "settings": {"throughput": bad}},
                                       token=owner)
    assert status == 400, body
    assert body["field"] == "settings.throughput"
    assert "from 1 to 1000" in body["error"], body  # says what is accepted
    assert await gw.store.find(Webhook, agent_id=aid) == []  # nothing half-created

    hook = await create_webhook(gw, owner, cid, aid, {**WHATSAPP, "settings": {"throughput": 500}})
    status, body, _ = await gw.request("PATCH", f"{path}/{hook['id']}", json_body={"settings": {"throughput": bad}},
                                       token=owner)
    assert status == 400 and body["field"] == "settings.throughput", body
    assert (await gw.store.get(Webhook, hook["id"])).settings == {"throughput": 500}


async def test_other_channels_refuse_a_throughput(gw: RunningGateway, owner: str) -> None:
    _, _, path = await hooks_path(gw, owner)
    custom = {"channel": "custom", "credentials": {"callbackUrl": "https://receiver.example.com/hook"}}
    status, body, _ = await gw.request("POST", path, json_body={**custom, "settings": {"throughput": 1000}},
                                       token=owner)
    assert status == 400 and body["field"] == "settings.throughput", body
