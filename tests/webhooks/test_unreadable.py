"""A message the agent cannot read (WhatsApp `unsupported`: a poll, a message type Cloud API does
not support, Meta's "Unsupported messages webhook reference") gets the polite
`channels.unreadable_message` on its channel, once, and the agent is not run on an empty text."""

from __future__ import annotations

import time

from buzzi.models import Agent, Message
from tests.support.fake_llm import FakeServices
from tests.support.fake_meta import WA_CONTACT, WA_METADATA, wa_envelope
from tests.webhooks.kit import WA_USER, ChannelLab, channel_lab, meta_wire

DEFAULT = "Sorry, I can't read that kind of message here. Could you send it as text?"


def unsupported(lab: ChannelLab, wamid: str) -> bytes:
    item = {"from": WA_USER, "id": wamid, "timestamp": str(int(time.time())), "type": "unsupported",
            "errors": [{"code": 131051, "title": "Message type unknown", "message": "Message type unknown",
                        "error_data": {"details": "Message type is currently not supported."}}],
            "unsupported": {"type": "poll_creation"}}
    return meta_wire(wa_envelope({"metadata": WA_METADATA, "contacts": [WA_CONTACT], "messages": [item]}))


async def test_an_unsupported_message_is_answered_politely_without_the_agent(lab: ChannelLab,
                                                                             fake: FakeServices) -> None:
    await lab.gw.store.update(Agent, lab.agent.id, {
        "kind": "openai", "settings": {"baseUrl": fake.llm_base_url, "model": "gpt-test", "apiKey": "sk-test"}})
    wamid = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBUNSUPPORTED"
    signed = lab.sign("whatsapp", unsupported(lab, wamid), wamid)
    assert (await lab.post("whatsapp", signed))[0] == 200

    [inbound] = await lab.settled("whatsapp")
    assert inbound.state == "done" and inbound.metadata.get("kind") == "unsupported"
    [note] = await lab.messages("whatsapp", role="system")
    assert note.content == DEFAULT and note.reply_to == inbound.id and note.metadata["kind"] == "unreadable"
    assert [lab.sent_text("whatsapp", body) for body in lab.sends("whatsapp")] == [DEFAULT]
    assert fake.requests == []  # the model was never asked
    assert await lab.messages("whatsapp", role="assistant") == []

    # Meta redelivers: still one note, one send
    assert (await lab.post("whatsapp", signed))[1] == {"status": "duplicate"}
    assert len(await lab.gw.store.find(Message, reply_to=inbound.id)) == 1
    assert len(lab.sends("whatsapp")) == 1


async def test_the_unreadable_answer_is_a_setting(make_settings) -> None:
    text = "I only read text, sorry!"
    async with channel_lab(make_settings, channels={"unreadable_message": text}) as lab:
        wamid = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBUNSUPPORTED2"
        await lab.post("whatsapp", lab.sign("whatsapp", unsupported(lab, wamid), wamid))
        await lab.settled("whatsapp")
        assert [lab.sent_text("whatsapp", body) for body in lab.sends("whatsapp")] == [text]
