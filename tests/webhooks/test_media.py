"""Inbound media (buzzi/media.py): downloaded after the message is stored, without holding up the
webhook's answer or the agent; bytes land in the store, oversize files are marked, tokens never
reach a log line."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from buzzi.models import Media, Message
from tests.support.fake_meta import WA_CONTACT, WA_METADATA, Reply, wa_envelope
from tests.support.local_server import serve_app
from tests.support.waiting import wait_until
from tests.webhooks.kit import GRAPH_PREFIX, TG_CHAT, TG_TOKEN, TOKENS, WA_USER, ChannelLab, channel_lab

PICTURE = bytes(range(256)) * 8  # 2048 bytes
MEDIA_ID = "1234567890123"


def wa_image(media_id: str = MEDIA_ID, sha256: str | None = None, n: int = 1) -> bytes:
    image = {"caption": "look at this", "mime_type": "image/jpeg", "id": media_id,
             "sha256": sha256 or hashlib.sha256(PICTURE).hexdigest()}
    item = {"from": WA_USER, "id": f"wamid.IMAGE{n}", "timestamp": str(int(time.time())), "type": "image",
            "image": image}
    return wa_envelope({"metadata": WA_METADATA, "contacts": [WA_CONTACT], "messages": [item]})


def tg_document(file_id: str, size: int | None, update_id: int = 20000) -> bytes:
    document = {"file_id": file_id, "file_unique_id": "AgADdoc", "file_name": "report.pdf",
                "mime_type": "application/pdf", **({"file_size": size} if size is not None else {})}
    return json.dumps({"update_id": update_id, "message": {
        "message_id": 1400, "date": int(time.time()), "caption": "see attached", "document": document,
        "from": {"id": TG_CHAT, "is_bot": False, "first_name": "Ann"},
        "chat": {"id": TG_CHAT, "type": "private"}}}).encode()


def script_wa_media(lab: ChannelLab, url: str, size: int = len(PICTURE)) -> None:
    lab.graph.script("GET", f"{GRAPH_PREFIX}/{MEDIA_ID}", Reply(200, {
        "messaging_product": "whatsapp", "url": url, "mime_type": "image/jpeg",
        "sha256": hashlib.sha256(PICTURE).hexdigest(), "file_size": size, "id": MEDIA_ID}))


async def downloaded(lab: ChannelLab, channel: str) -> dict:
    """The first attachment of the one inbound message, once its download finished."""

    async def check() -> dict | None:
        (message,) = await lab.messages(channel, role="user")
        return message.attachments[0] if "download" in message.attachments[0] else None

    return await wait_until(check)


@pytest.fixture
async def small_lab(make_settings) -> AsyncIterator[ChannelLab]:
    async with channel_lab(make_settings, channels={"media_max_bytes": 4096}) as lab:
        yield lab


async def test_whatsapp_two_step_download_lands_in_the_store(small_lab: ChannelLab) -> None:
    lab = small_lab
    script_wa_media(lab, lab.graph.url + "/cdn/image.jpg")
    lab.graph.script("GET", "/cdn/image.jpg", Reply(200, body=PICTURE, headers={"Content-Type": "image/jpeg"}))
    assert (await lab.post("whatsapp", lab.sign("whatsapp", wa_image())))[:2] == (200, {"status": "ok"})

    attachment = await downloaded(lab, "whatsapp")
    assert attachment["download"]["status"] == "stored" and attachment["media_id"] == MEDIA_ID
    media = await lab.gw.store.get(Media, attachment["download"]["media_id"])
    assert media is not None and base64.b64decode(media.data) == PICTURE
    digest = hashlib.sha256(PICTURE).hexdigest()
    assert (media.size, media.mime_type, media.sha256) == (len(PICTURE), "image/jpeg", digest)
    (message,) = await lab.messages("whatsapp", role="user")
    assert media.message_id == message.id and media.conversation_id == message.conversation_id
    # step 2 carries the same token and a User-Agent (docs/channels.md §2.4)
    (fetch,) = lab.graph.to("/cdn/image.jpg")
    assert fetch.headers["authorization"] == f"Bearer {TOKENS['whatsapp']}" and fetch.headers["user-agent"]
    await lab.replies("whatsapp")  # the caption is still answered


async def test_whatsapp_too_large_is_marked_not_stored(small_lab: ChannelLab) -> None:
    lab = small_lab
    script_wa_media(lab, lab.graph.url + "/cdn/big.jpg", size=50_000)
    await lab.post("whatsapp", lab.sign("whatsapp", wa_image()))
    attachment = await downloaded(lab, "whatsapp")
    assert attachment["download"]["status"] == "too_large"
    assert lab.graph.to("/cdn/big.jpg") == []  # the announced size was enough to refuse
    assert await lab.gw.store.count(Media) == 0


async def test_telegram_get_file_download(small_lab: ChannelLab) -> None:
    lab = small_lab
    lab.tg.files["files/BQACdoc1.bin"] = b"%PDF-1.7 tiny report"
    await lab.post("telegram", lab.sign("telegram", tg_document("BQACdoc1", 20)))
    attachment = await downloaded(lab, "telegram")
    assert attachment["download"]["status"] == "stored"
    media = await lab.gw.store.get(Media, attachment["download"]["media_id"])
    assert media is not None and base64.b64decode(media.data) == b"%PDF-1.7 tiny report"
    assert media.mime_type == "application/pdf" and media.name == "report.pdf"
    assert lab.tg.calls("/getFile")[0].json == {"file_id": "BQACdoc1"}


async def test_telegram_oversize_body_is_cut_off_while_streaming(small_lab: ChannelLab) -> None:
    lab = small_lab
    lab.tg.files["files/BQACbig.bin"] = b"x" * 10_000  # no file_size in the update: only the body tells
    await lab.post("telegram", lab.sign("telegram", tg_document("BQACbig", None)))
    attachment = await downloaded(lab, "telegram")
    assert attachment["download"]["status"] == "too_large"
    assert await lab.gw.store.count(Media) == 0


async def test_failures_are_marked_and_no_token_is_logged(small_lab: ChannelLab, caplog) -> None:
    lab = small_lab
    caplog.set_level(logging.DEBUG)
    await lab.post("telegram", lab.sign("telegram", tg_document("BQACgone", 20)))  # the file 404s
    attachment = await downloaded(lab, "telegram")
    assert attachment["download"]["status"] == "failed" and "404" in attachment["download"]["error"]
    lab.graph.script("GET", f"{GRAPH_PREFIX}/{MEDIA_ID}",
                     Reply(400, {"error": {"code": 100, "message": "Invalid media id"}}))
    await lab.post("whatsapp", lab.sign("whatsapp", wa_image()))
    assert (await downloaded(lab, "whatsapp"))["download"]["status"] == "failed"
    ours = "\n".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records
                     if r.name.startswith("buzzi"))
    assert "media download failed" in ours
    for token in (TG_TOKEN, TG_TOKEN.split(":")[1], TOKENS["whatsapp"]):
        assert token not in ours
    stored = json.dumps([m.to_doc() for m in await lab.gw.store.find(Message)])
    assert TG_TOKEN not in stored


@asynccontextmanager
async def gated_file(body: bytes) -> AsyncIterator[tuple[str, asyncio.Event]]:
    """A CDN that holds every download until the test opens the gate."""
    gate = asyncio.Event()

    async def serve(request: web.Request) -> web.Response:
        await gate.wait()
        return web.Response(body=body, content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/slow.jpg", serve)
    async with serve_app(app) as port:
        try:
            yield f"http://127.0.0.1:{port}/slow.jpg", gate
        finally:
            gate.set()  # let a held download finish so the server can stop


async def test_neither_the_answer_nor_the_agent_waits_for_a_download(make_settings) -> None:
    async with gated_file(PICTURE) as (url, gate), channel_lab(make_settings) as lab:
        script_wa_media(lab, url)
        assert (await lab.post("whatsapp", lab.sign("whatsapp", wa_image())))[:2] == (200, {"status": "ok"})
        (reply,) = await lab.replies("whatsapp")  # answered while the download is still held
        (message,) = await lab.messages("whatsapp", role="user")
        assert "download" not in message.attachments[0] and not gate.is_set()
        gate.set()
        assert (await downloaded(lab, "whatsapp"))["download"]["status"] == "stored"
        assert reply.content
