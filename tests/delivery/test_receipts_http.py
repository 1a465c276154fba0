"""End to end over HTTP: a running gateway answers on WhatsApp through the fake Graph API, then
signed statuses[] webhooks (Meta: webhooks/reference/messages/status) move the reply to read and
never back, and a failed status shows its code, title and details in the admin API."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from buzzi.models import ChatAlias, SentId
from tests.support.fake_meta import WA_METADATA, Recorded, Reply, wa_envelope
from tests.support.waiting import wait_until
from tests.webhooks.kit import WA_SEND, WA_USER, ChannelLab, meta_wire


def statuses(*items: dict[str, Any]) -> bytes:
    return meta_wire(wa_envelope({"metadata": WA_METADATA, "statuses": list(items)}))


def status(wamid: str, state: str, **extra: Any) -> dict[str, Any]:
    return {"id": wamid, "status": state, "timestamp": str(int(time.time())), "recipient_id": WA_USER, **extra}


def fresh_wamids(lab: ChannelLab) -> None:
    """Graph gives every send its own wamid (the lab's default answers one fixed id)."""
    counter = itertools.count(1)

    def answer(request: Recorded) -> Reply:
        return Reply(200, {"messaging_product": "whatsapp", "contacts": [{"input": WA_USER, "wa_id": WA_USER}],
                           "messages": [{"id": f"wamid.HTTP{next(counter)}"}]})

    lab.graph.always("POST", WA_SEND, answer)


async def answered(lab: ChannelLab, text: str, ident: str) -> tuple[str, dict[str, Any]]:
    """Post a customer message; (conversation id, the reply as the admin API shows it) once sent."""
    status_code, _, _ = await lab.post("whatsapp", lab.message("whatsapp", text, ident=ident))
    assert status_code == 200
    replies = await lab.replies("whatsapp", count=1)
    conversation = await lab.conversation("whatsapp")
    reply = [r for r in replies if r.delivery.get("ids")][-1]
    return conversation.id, {"id": reply.id, "wamid": reply.delivery["ids"][0]}


async def api_delivery(lab: ChannelLab, token: str, conversation_id: str, message_id: str) -> dict[str, Any]:
    code, messages, _ = await lab.gw.request("GET", f"/api/admin/conversations/{conversation_id}/messages",
                                             token=token)
    assert code == 200, messages
    [found] = [m for m in messages if m["id"] == message_id]
    return found["delivery"]


async def receipt(lab: ChannelLab, *items: dict[str, Any]) -> None:
    code, body, _ = await lab.post("whatsapp", lab.sign("whatsapp", statuses(*items)))
    assert code == 200, body


async def test_statuses_move_the_reply_to_read_and_never_back(lab: ChannelLab):
    fresh_wamids(lab)
    token = await lab.gw.login()
    conversation_id, reply = await answered(lab, "Does it come in another color?", "r1")

    async def shown(state: str) -> dict[str, Any] | None:
        delivery = await api_delivery(lab, token, conversation_id, reply["id"])
        return delivery if delivery["status"] == state else None

    await receipt(lab, status(reply["wamid"], "sent"))
    await wait_until(lambda: shown("sent"), timeout=10)
    await receipt(lab, status(reply["wamid"], "read"))
    await wait_until(lambda: shown("read"), timeout=10)
    await receipt(lab, status(reply["wamid"], "delivered"))  # late, out of order
    await lab.events("whatsapp")  # every delivery's bookkeeping is done
    delivery = await api_delivery(lab, token, conversation_id, reply["id"])
    assert delivery["status"] == "read"
    assert delivery["ids"] == [reply["wamid"]]

    code, metrics, _ = await lab.gw.request("GET", "/metrics")
    assert code == 200
    assert 'buzzi_delivery_receipts_total{channel="whatsapp",status="delivered"} 1.0' in metrics


async def test_a_failed_status_shows_code_title_and_details(lab: ChannelLab):
    fresh_wamids(lab)
    token = await lab.gw.login()
    conversation_id, reply = await answered(lab, "Does it come in another color?", "f1")
    error = {"code": 131026, "title": "Message undeliverable", "message": "Message undeliverable",
             "error_data": {"details": "Message Undeliverable."},
             "href": "/documentation/business-messaging/whatsapp/support/error-codes"}
    await receipt(lab, status(reply["wamid"], "failed", errors=[error]))

    async def failed() -> dict[str, Any] | None:
        delivery = await api_delivery(lab, token, conversation_id, reply["id"])
        return delivery if delivery["status"] == "failed" else None

    delivery = await wait_until(failed, timeout=10)
    assert delivery["error"]["code"] == 131026
    assert delivery["error"]["title"] == "Message undeliverable"
    assert delivery["error"]["details"] == "Message Undeliverable."
    # A later "delivered" (another device) does not hide the failure.
    await receipt(lab, status(reply["wamid"], "delivered"))
    await lab.events("whatsapp")
    assert (await api_delivery(lab, token, conversation_id, reply["id"]))["status"] == "failed"
    assert json.dumps(delivery)  # the API body is plain JSON


async def test_a_deleted_company_leaves_no_sent_ids_or_chat_aliases(lab: ChannelLab):
    fresh_wamids(lab)
    conversation_id, reply = await answered(lab, "Does it come in another color?", "d1")
    store = lab.gw.store
    await store.add(ChatAlias(id=f"{lab.hooks['whatsapp'].id}:US.13491208655302741918",
                              conversation_id=conversation_id, company_id=lab.company.id))
    assert await store.get(SentId, f"{lab.hooks['whatsapp'].id}:{reply['wamid']}") is not None

    token = await lab.gw.login()
    code, body, _ = await lab.gw.request("DELETE", f"/api/admin/companies/{lab.company.id}", token=token)
    assert code in (200, 204), body
    assert await store.count(SentId, company_id=lab.company.id) == 0
    assert await store.count(ChatAlias, company_id=lab.company.id) == 0
