"""ReplyDelivery on each store: parts recorded one by one with their platform ids, the messaging
window decided before any send, a Retry-After past the inline wait made durable instead of slept
on (and never sent before it), failures shown as code + sentence, and a 410 receiver disabled."""

from __future__ import annotations

import asyncio
import time

from buzzi.models import PROCESSING, STORED, Conversation, SentId, Webhook
from buzzi.windows import WINDOW_CLOSED
from tests.delivery.conftest import LONG, WA_SEND, Bench
from tests.support.fake_custom import CALLBACK_PATH
from tests.support.fake_meta import GRAPH_PREFIX, Reply, ScriptedServer

DAY = 24 * 3600.0
ME_SEND = f"{GRAPH_PREFIX}/me/messages"


def graph_error(code: int, message: str, status: int = 400) -> dict:
    """Graph's error body (docs/channels.md §2.3): message, type, code, error_data, fbtrace_id."""
    return {"error": {"message": message, "type": "OAuthException", "code": code,
                      "error_data": {"messaging_product": "whatsapp", "details": message},
                      "fbtrace_id": "AbCdEfGhIjK"}}


async def test_each_part_is_recorded_with_its_ids_and_found_by_them(bench: Bench):
    reply = await bench.sent(LONG)
    delivery = reply.delivery
    assert len(bench.sends()) == 2
    assert delivery["status"] == "sent"
    assert (delivery["parts"], delivery["sentParts"], delivery["attempts"]) == (2, 2, 2)
    assert delivery["ids"] == ["wamid.OUT1", "wamid.OUT2"]
    assert delivery["partIds"] == [["wamid.OUT1"], ["wamid.OUT2"]]
    for wamid in delivery["ids"]:
        sent = await bench.store.get(SentId, f"{bench.webhook.id}:{wamid}")
        assert sent is not None and (sent.message_id, sent.conversation_id) == (reply.id, bench.conversation.id)


async def test_a_delivered_reply_is_never_sent_twice(bench: Bench):
    reply = await bench.sent(LONG)
    assert await bench.delivery.deliver(bench.conversation, reply, None)
    assert len(bench.sends()) == 2


async def test_after_the_window_without_a_template_nothing_is_sent(bench: Bench):
    stale = await bench.store.update(Conversation, bench.conversation.id, {"last_inbound_at": time.time() - DAY - 60})
    assert stale is not None
    reply = await bench.reply()
    assert not await bench.delivery.deliver(stale, reply, None)
    assert bench.sends() == []
    delivery = (await bench.get(reply)).delivery
    assert delivery["status"] == "failed"
    assert delivery["attempts"] == 0
    assert delivery["error"]["code"] == WINDOW_CLOSED
    assert "needs a template" in delivery["error"]["title"]


async def test_after_the_window_the_reengagement_template_goes_once(bench: Bench):
    await bench.store.update(Webhook, bench.webhook.id,
                             {"settings": {"reengagementTemplate": {"name": "follow_up", "language": "en_US"}}})
    stale = await bench.store.update(Conversation, bench.conversation.id, {"last_inbound_at": time.time() - DAY - 60})
    reply = await bench.reply(LONG)
    assert await bench.delivery.deliver(stale, reply, None)
    [send] = bench.sends()  # one template stands for the whole reply
    assert send["type"] == "template"
    assert send["template"]["name"] == "follow_up"
    delivery = (await bench.get(reply)).delivery
    assert (delivery["status"], delivery["via"], delivery["parts"]) == ("sent", "template", 1)


async def test_a_persons_late_messenger_reply_goes_with_the_human_agent_tag(bench: Bench):
    page = await bench.store.add(Webhook(id="wh_me", company_id="c_1", agent_id="a_1", channel="messenger",
                                         credentials={"pageId": "1234567890", "pageAccessToken": "EAAB-t"}))
    bench.graph.always("POST", ME_SEND, Reply(200, {"recipient_id": "2100000000000001", "message_id": "m_1"}))
    chat = await bench.store.add(Conversation(id="cv_me", company_id="c_1", agent_id="a_1", channel="messenger",
                                              webhook_id=page.id, external_chat_id="2100000000000001",
                                              last_inbound_at=time.time() - 2 * DAY))
    bot = await bench.reply(conversation=chat)
    assert not await bench.delivery.deliver(chat, bot, None)
    assert (await bench.get(bot)).delivery["error"]["code"] == WINDOW_CLOSED

    person = await bench.reply("A colleague will call you today.", role="human", conversation=chat)
    assert await bench.delivery.deliver(chat, person, None)
    [send] = [r.json() for r in bench.graph.to(ME_SEND)]
    assert (send["messaging_type"], send["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")
    delivery = (await bench.get(person)).delivery
    assert (delivery["status"], delivery["via"]) == ("sent", "human_agent")


async def test_a_retry_after_past_the_inline_wait_is_scheduled_and_kept(bench: Bench):
    throttled = Reply(429, graph_error(4, "(#4) Application request limit reached"), headers={"Retry-After": "1.5"})
    bench.graph.script("POST", WA_SEND, Reply(200, {"messages": [{"id": "wamid.FIRST"}]}), throttled)
    reply = await bench.reply(LONG)
    before = time.time()
    assert not await bench.delivery.deliver(bench.conversation, reply, None)

    scheduled = await bench.get(reply)
    delivery = scheduled.delivery
    assert len(bench.sends()) == 2  # the first part went, the second was refused once (no inline retry)
    assert delivery["status"] == "pending"
    assert delivery["notBefore"] >= before + 1.5
    assert delivery["error"]["code"] == 4
    assert (delivery["sentParts"], delivery["ids"]) == (1, ["wamid.FIRST"])
    assert (scheduled.state, scheduled.lease_owner, scheduled.lease_until) == (PROCESSING, None, delivery["notBefore"])

    # Before notBefore neither a retried answer nor an early claim sends anything.
    assert not await bench.delivery.deliver(bench.conversation, scheduled, None)
    assert not await bench.delivery.resend(bench.conversation, scheduled)
    assert len(bench.sends()) == 2
    assert (await bench.get(reply)).lease_until == delivery["notBefore"]

    await asyncio.sleep(max(0.0, delivery["notBefore"] - time.time()) + 0.05)
    claimed = await bench.store.claim_next_message("node-b", 30)
    assert claimed is not None and claimed.id == reply.id
    assert await bench.delivery.resend(bench.conversation, claimed)
    sends = bench.sends()
    assert len(sends) == 3 and sends[2]["text"]["body"] == sends[1]["text"]["body"]
    assert sends[2]["text"]["body"] != sends[0]["text"]["body"]
    assert await bench.store.finish_message(reply.id, "node-b", STORED)  # what the processor does after
    done = await bench.get(reply)
    assert (done.state, done.delivery["status"], done.delivery["sentParts"]) == (STORED, "sent", 2)
    assert "notBefore" not in done.delivery and "error" not in done.delivery


async def test_a_permanent_failure_is_a_code_and_a_sentence(bench: Bench):
    bench.graph.script("POST", WA_SEND, Reply(400, graph_error(131030, "Recipient phone number not in allowed list")))
    reply = await bench.reply()
    assert not await bench.delivery.deliver(bench.conversation, reply, None)
    error = (await bench.get(reply)).delivery["error"]
    assert error["code"] == 131030
    assert "Recipient phone number not in allowed list" in error["title"]
    assert "Error" not in error["title"].split(":")[0]  # a sentence, not an exception class
    assert error["details"] == "HTTP 400"
    assert len(bench.sends()) == 1  # permanent: not retried


async def test_a_receiver_answering_410_disables_its_webhook(bench: Bench):
    async with ScriptedServer() as receiver:
        receiver.always("POST", CALLBACK_PATH, Reply(410, {"error": "gone"}))
        hook = await bench.store.add(Webhook(id="wh_custom", company_id="c_1", agent_id="a_1", channel="custom",
                                             secret="whsec_" + "A" * 32,
                                             credentials={"callbackUrl": receiver.url + CALLBACK_PATH}))
        chat = await bench.store.add(Conversation(id="cv_custom", company_id="c_1", agent_id="a_1", channel="custom",
                                                  webhook_id=hook.id, external_chat_id="chat-9"))
        reply = await bench.reply(conversation=chat)
        assert not await bench.delivery.deliver(chat, reply, None)
        assert len(receiver.to(CALLBACK_PATH)) == 1
    disabled = await bench.store.get(Webhook, hook.id)
    assert disabled is not None and disabled.status == "disabled"
    assert "410" in disabled.state["disabledReason"]
    assert disabled.state["disabledAt"] > time.time() - 60
    assert (await bench.get(reply)).delivery["error"]["code"] == "gone"
    # Nothing more goes to a disabled receiver.
    later = await bench.reply(conversation=chat)
    assert not await bench.delivery.deliver(chat, later, None)
    assert (await bench.get(later)).delivery["error"]["code"] == "webhook_unavailable"


async def test_a_send_publishes_each_change_for_the_dashboard(bench: Bench):
    reply = await bench.sent(LONG)
    published = [n["data"] for n in await bench.notifications() if n["type"] == "delivery"]
    assert [p["delivery"]["sentParts"] for p in published] == [0, 1, 2]
    assert [p["delivery"]["status"] for p in published] == ["pending", "pending", "sent"]
    assert {p["messageId"] for p in published} == {reply.id}
