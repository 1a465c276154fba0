"""The dashboard's webhook forms ask for WhatsApp's `throughput` setting (issue 12) from the
adapter's setting_fields, store it as a number and name the field when it is out of range."""

from __future__ import annotations

from buzzi.models import Webhook
from tests.dashboard.client import DashboardClient
from tests.dashboard.forms import create_agent, create_company, create_whatsapp, field_error, webhook_path
from tests.support.gateway import RunningGateway

INPUT = "set-whatsapp-throughput"


async def test_whatsapp_throughput_on_the_webhook_pages(gw: RunningGateway, owner: DashboardClient) -> None:
    cid = await create_company(owner)
    aid = await create_agent(owner, cid)
    form = await owner.get(f"/admin/companies/{cid}/agents/{aid}/webhooks/new")
    assert f'id="{INPUT}"' in form.text

    wid, created = await create_whatsapp(owner, cid, aid, **{INPUT: "1000"})
    assert (await gw.store.get(Webhook, wid)).settings == {"throughput": 1000}
    assert '<dd data-setting="throughput">1000</dd>' in created.text

    refused = await owner.post(webhook_path(cid, aid, wid), {INPUT: "5000", "ipAllowlist": ""})
    assert refused.status == 400
    assert field_error(refused, "settings.throughput")
    assert 'value="5000"' in refused.text  # what was typed stays in the form
    assert (await gw.store.get(Webhook, wid)).settings == {"throughput": 1000}

    saved = await owner.post(webhook_path(cid, aid, wid), {INPUT: "", "ipAllowlist": ""})
    assert saved.status == 200 and "flash=saved" in saved.url
    assert (await gw.store.get(Webhook, wid)).settings == {}  # emptied: back to the default 80
