"""ReceiptBook on each store: platform receipts move a reply's delivery forward and never back, a
permanent failure shows the platform's error, a retryable late failure sends the part again later
(durably, a bounded number of times), and every change is published for the dashboard."""

from __future__ import annotations

import asyncio
import random
import time

from buzzi import ids
from buzzi.channels.base import Receipt
from buzzi.delivery import ReplyDelivery
from buzzi.models import PROCESSING, Conversation, Message, Webhook
from buzzi.receipts import ReceiptBook
from buzzi.store import open_store
from tests.delivery.conftest import LONG, Bench

UNDELIVERABLE = {"code": 131026, "title": "Message undeliverable",
                 "details": "Message Undeliverable: the recipient is not on WhatsApp"}


def receipt(status: str, *wamids: str, **kw) -> Receipt:
    return Receipt(status=status, message_ids=list(wamids), timestamp=time.time(), **kw)


async def test_receipts_move_a_reply_forward_and_never_back(bench: Bench):
    reply = await bench.sent()
    [wamid] = reply.delivery["ids"]
    assert reply.delivery["status"] == "sent"

    assert await bench.apply(receipt("delivered", wamid)) == 1
    assert (await bench.get(reply)).delivery["status"] == "delivered"
    assert await bench.apply(receipt("read", wamid)) == 1
    # Out of order and redelivered: a late "delivered", "sent" or the same "read" change nothing.
    assert await bench.apply(receipt("delivered", wamid), receipt("sent", wamid), receipt("read", wamid)) == 0
    delivery = (await bench.get(reply)).delivery
    assert delivery["status"] == "read"
    assert delivery["receipts"] == {wamid: "read"}
    assert "error" not in delivery


async def test_a_reply_of_several_parts_has_the_lowest_status_of_its_parts(bench: Bench):
    reply = await bench.sent(LONG)
    first, second = reply.delivery["ids"]
    assert reply.delivery["parts"] == 2

    await bench.apply(receipt("read", second))
    assert (await bench.get(reply)).delivery["status"] == "sent"  # the first part has no receipt yet
    await bench.apply(receipt("delivered", first))
    assert (await bench.get(reply)).delivery["status"] == "delivered"
    await bench.apply(receipt("read", first))
    assert (await bench.get(reply)).delivery["status"] == "read"


async def test_a_permanent_failure_shows_the_platforms_error_and_stays(bench: Bench):
    reply = await bench.sent(LONG)
    first, second = reply.delivery["ids"]
    await bench.apply(receipt("delivered", first))

    assert await bench.apply(receipt("failed", second, error=dict(UNDELIVERABLE))) == 1
    delivery = (await bench.get(reply)).delivery
    assert delivery["status"] == "failed"
    assert delivery["error"] == UNDELIVERABLE
    # A delivered reported after the failure (another device) does not hide it.
    await bench.apply(receipt("delivered", second), receipt("read", first))
    assert (await bench.get(reply)).delivery["status"] == "failed"


async def test_a_failure_after_delivered_is_not_taken(bench: Bench):
    reply = await bench.sent()
    [wamid] = reply.delivery["ids"]
    await bench.apply(receipt("delivered", wamid))
    assert await bench.apply(receipt("failed", wamid, error=dict(UNDELIVERABLE))) == 0
    delivery = (await bench.get(reply)).delivery
    assert delivery["status"] == "delivered"
    assert "error" not in delivery


async def test_a_failure_without_details_still_reads_as_a_sentence(bench: Bench):
    reply = await bench.sent()
    [wamid] = reply.delivery["ids"]
    await bench.apply(receipt("failed", wamid))
    error = (await bench.get(reply)).delivery["error"]
    assert error["code"] == "failed"
    assert error["title"].startswith("The platform reported")
    assert "details" not in error


async def test_a_retryable_late_failure_sends_that_part_again_not_before_its_time(bench: Bench):
    reply = await bench.sent(LONG)
    first, second = reply.delivery["ids"]
    await bench.apply(receipt("delivered", first))
    before = time.time()

    throughput = {"code": 131056, "title": "(Business Account, Consumer Account) pair rate limit hit"}
    assert await bench.apply(receipt("failed", second, error=throughput, retryable=True, retry_after=0.4)) == 1

    scheduled = await bench.get(reply)
    delivery = scheduled.delivery
    assert delivery["status"] == "pending"
    assert delivery["notBefore"] >= before + 0.4
    assert delivery["error"] == throughput
    assert delivery["ids"] == [first]  # the failed id no longer counts
    assert delivery["resend"] == [1]
    # Handed to the inbox: claimed by any node once lease_until (= notBefore) has passed.
    assert (scheduled.state, scheduled.lease_owner, scheduled.lease_until) == (PROCESSING, None, delivery["notBefore"])

    assert not await bench.delivery.resend(bench.conversation, scheduled)  # too early: nothing is sent
    assert len(bench.sends()) == 2
    await asyncio.sleep(max(0.0, delivery["notBefore"] - time.time()) + 0.05)
    claimed = await bench.store.claim_next_message("node-b", 30)
    assert claimed is not None and claimed.id == reply.id
    assert await bench.delivery.resend(bench.conversation, claimed)

    sends = bench.sends()
    assert len(sends) == 3
    assert sends[2]["text"]["body"] == sends[1]["text"]["body"]  # only the failed part, once more
    done = (await bench.get(reply)).delivery
    assert done["status"] == "sent"  # the lowest of its parts: the new one has no receipt yet
    assert done["receipts"] == {first: "delivered"}
    assert done["ids"][0] == first and len(done["ids"]) == 2 and second not in done["ids"]
    assert "resend" not in done and "notBefore" not in done and "error" not in done


async def test_late_resends_are_bounded(bench: Bench):
    reply = await bench.sent()
    limit = bench.delivery.settings.send_max_attempts
    for _ in range(limit):
        [wamid] = (await bench.get(reply)).delivery["ids"]
        await bench.apply(receipt("failed", wamid, error={"code": 131000, "title": "Something went wrong"},
                                  retryable=True, retry_after=0.0))
        current = await bench.get(reply)
        assert current.delivery["status"] == "pending"
        await asyncio.sleep(max(0.0, current.delivery["notBefore"] - time.time()) + 0.01)
        assert await bench.delivery.resend(bench.conversation, current)
    [wamid] = (await bench.get(reply)).delivery["ids"]
    await bench.apply(receipt("failed", wamid, error={"code": 131000, "title": "Something went wrong"},
                              retryable=True, retry_after=0.0))
    delivery = (await bench.get(reply)).delivery
    assert delivery["status"] == "failed"
    assert delivery["error"]["code"] == 131000
    assert delivery["resends"] == limit
    assert len(bench.sends()) == limit + 1


async def test_watermark_receipts_reach_every_reply_sent_up_to_the_watermark(bench: Bench):
    page = await bench.store.add(Webhook(id="wh_me", company_id="c_1", agent_id="a_1", channel="messenger",
                                         credentials={"pageId": "1234567890", "pageAccessToken": "EAAB-t"}))
    psid = "2100000000000001"
    chat = await bench.store.add(Conversation(id="cv_me", company_id="c_1", agent_id="a_1", channel="messenger",
                                              webhook_id=page.id, external_chat_id=psid,
                                              chat_key=f"{page.id}:{psid}"))
    now = time.time()
    replies = []
    for n, sent_at in enumerate((now - 30, now - 20, now + 30)):
        reply = Message(id=ids.new_id("message"), conversation_id=chat.id, company_id="c_1", agent_id="a_1",
                        role="assistant", content=f"part {n}", channel="messenger", webhook_id=page.id,
                        created_at=sent_at - 1,
                        delivery={"status": "sent", "attempts": 1, "ids": [f"m_{n}"], "parts": 1, "sentParts": 1,
                                  "partIds": [[f"m_{n}"]], "sentAt": sent_at})
        replies.append(await bench.store.add(reply))
    customer = await bench.store.add(Message(id=ids.new_id("message"), conversation_id=chat.id, company_id="c_1",
                                             agent_id="a_1", role="user", content="hi", channel="messenger",
                                             webhook_id=page.id, created_at=now - 40))

    assert await bench.receipts.apply(page, [Receipt("delivered", chat_id=psid, watermark=now)]) == 2
    assert await bench.receipts.apply(page, [Receipt("read", chat_id=psid, watermark=now - 25)]) == 1
    statuses = [(await bench.get(r)).delivery["status"] for r in replies]
    assert statuses == ["read", "delivered", "sent"]
    assert (await bench.get(customer)).delivery == {}
    # Another chat's watermark, or one of a chat we do not know, changes nothing.
    assert await bench.receipts.apply(page, [Receipt("read", chat_id="999", watermark=now + 60)]) == 0


async def test_concurrent_receipts_from_several_nodes_never_move_backwards(bench: Bench, delivery_store_url, box):
    reply = await bench.sent(LONG)
    wamids = reply.delivery["ids"]
    other_store = open_store(delivery_store_url, box)
    await other_store.open()
    try:
        other = ReceiptBook(other_store, ReplyDelivery(
            other_store, bench.delivery.channels, bench.delivery.settings, bench.metrics, bench.broker),
            bench.metrics)
        receipts = [receipt(status, wamid) for status in ("sent", "delivered", "read") for wamid in wamids] * 3
        random.Random(11).shuffle(receipts)
        books = (bench.receipts, other)
        await asyncio.gather(*(books[n % 2].apply(bench.webhook, [r]) for n, r in enumerate(receipts)))
    finally:
        await other_store.close()
    delivery = (await bench.get(reply)).delivery
    assert delivery["status"] == "read"
    assert delivery["receipts"] == dict.fromkeys(wamids, "read")


async def test_every_change_is_published_on_the_conversation_stream(bench: Bench):
    reply = await bench.sent()
    [wamid] = reply.delivery["ids"]
    await bench.apply(receipt("read", wamid))
    published = [n["data"] for n in await bench.notifications() if n["type"] == "delivery"]
    assert all(p["messageId"] == reply.id for p in published)
    statuses = [p["delivery"]["status"] for p in published]
    assert statuses[0] == "pending" and statuses[-2:] == ["sent", "read"]


async def test_receipts_are_counted_by_channel_and_status(bench: Bench):
    reply = await bench.sent()
    [wamid] = reply.delivery["ids"]
    await bench.apply(receipt("delivered", wamid), receipt("read", wamid), receipt("read", "wamid.UNKNOWN"),
                      receipt("played", wamid))
    metrics = bench.metrics.render().decode()
    assert 'buzzi_delivery_receipts_total{channel="whatsapp",status="read"} 2.0' in metrics
    assert 'buzzi_delivery_receipts_total{channel="whatsapp",status="delivered"} 1.0' in metrics
    assert 'buzzi_delivery_receipts_total{channel="whatsapp",status="other"} 1.0' in metrics
