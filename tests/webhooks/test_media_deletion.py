"""Deleting a company deletes its downloaded media too, over real HTTP: the bytes of a deleted
tenant's customers do not outlive it, not even those of a download still running, and another
company's media stay."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import pytest

from buzzi.models import Agent, Company, Media, Webhook
from tests.support.fake_meta import Reply
from tests.support.waiting import wait_until
from tests.webhooks.kit import FAQ_SETTINGS, TG_SECRET, TG_TOKEN, ChannelLab, Signed, channel_lab
from tests.webhooks.test_media import PICTURE, downloaded, gated_file, script_wa_media, tg_document, wa_image

OTHER_FILE = b"%PDF-1.7 the other company's report"


@pytest.fixture
async def lab(make_settings) -> AsyncIterator[ChannelLab]:
    async with channel_lab(make_settings, channels={"media_max_bytes": 4096}) as running:
        yield running


async def other_company_with_a_document(lab: ChannelLab) -> str:
    """A second company whose Telegram customer sent a document; returns its media id."""
    store = lab.gw.store
    await store.add(Company(id="c_other", name="Other Co"))
    await store.add(Agent(id="a_other", company_id="c_other", name="FAQ", kind="faq", settings=FAQ_SETTINGS))
    await store.add(Webhook(id="wh_other", company_id="c_other", agent_id="a_other", channel="telegram",
                            secret=TG_SECRET, credentials={"botToken": TG_TOKEN}))
    lab.tg.files["files/BQACother.bin"] = OTHER_FILE
    body = tg_document("BQACother", len(OTHER_FILE), update_id=30000)
    signed = Signed(body, {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": TG_SECRET}, "")
    status, _, _ = await lab.post("telegram", signed, webhook_id="wh_other", company_id="c_other",
                                  agent_id="a_other")
    assert status == 200

    async def stored() -> list[Media] | None:
        return await store.find(Media, company_id="c_other") or None

    (media,) = await wait_until(stored)
    return media.id


async def delete_company(lab: ChannelLab, company_id: str) -> None:
    token = await lab.gw.login()
    status, body, _ = await lab.gw.request("DELETE", f"/api/admin/companies/{company_id}", token=token)
    assert status == 204, body


async def test_deleting_a_company_deletes_its_media_and_keeps_the_others(lab: ChannelLab) -> None:
    script_wa_media(lab, lab.graph.url + "/cdn/image.jpg")
    lab.graph.script("GET", "/cdn/image.jpg", Reply(200, body=PICTURE, headers={"Content-Type": "image/jpeg"}))
    await lab.post("whatsapp", lab.sign("whatsapp", wa_image()))
    lab.tg.files["files/BQACdoc1.bin"] = b"%PDF-1.7 tiny report"
    await lab.post("telegram", lab.sign("telegram", tg_document("BQACdoc1", 20)))
    for channel in ("whatsapp", "telegram"):
        assert (await downloaded(lab, channel))["download"]["status"] == "stored"
    other = await other_company_with_a_document(lab)
    assert await lab.gw.store.count(Media, company_id=lab.company.id) == 2

    await delete_company(lab, lab.company.id)
    await lab.gw.gateway.webhooks.wait_idle()
    assert await lab.gw.store.count(Media, company_id=lab.company.id) == 0
    kept = await lab.gw.store.get(Media, other)
    assert kept is not None and base64.b64decode(kept.data) == OTHER_FILE
    assert await lab.gw.store.count(Media) == 1


async def test_a_download_finishing_after_the_deletion_leaves_nothing(make_settings) -> None:
    async with gated_file(PICTURE) as (url, gate), channel_lab(make_settings) as lab:
        script_wa_media(lab, url)
        assert (await lab.post("whatsapp", lab.sign("whatsapp", wa_image())))[0] == 200
        await lab.replies("whatsapp")  # answered; the download is still held at the CDN
        assert not gate.is_set() and await lab.gw.store.count(Media) == 0
        await delete_company(lab, lab.company.id)
        gate.set()
        await asyncio.wait_for(lab.gw.gateway.webhooks.wait_idle(), timeout=10)
        assert await lab.gw.store.count(Media) == 0
