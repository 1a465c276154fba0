"""The embeddable widget in real headless Chromium against a real gateway (docs/contract.md §3)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import expect

from buzzi.bootstrap import DEMO_DOCUMENTS
from buzzi.chat import conversation_stream
from buzzi.ids import new_id
from buzzi.models import Agent, Company, Conversation, Message
from tests.browser.helpers import (
    RECORDER,
    PausingAgentService,
    ask,
    seen,
    session_key,
    wait_for_session,
    widget_conversation,
)
from tests.support.gateway import running_gateway
from tests.support.waiting import wait_until

# The module's loop: the browser is shared by the module (tests/support/browser.py).
pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

OPENING_HOURS = next(d["content"] for d in DEMO_DOCUMENTS if d["title"] == "Opening hours")
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "widget.png"


async def test_demo_streams_an_answer_and_shows_it_again_after_reload(demo_gw, page):
    await page.goto(demo_gw.base_url + "/demo")
    await expect(page.get_by_role("dialog", name="Chat with us")).to_be_visible()
    await expect(page.get_by_label("Your message")).to_be_focused()
    await wait_for_session(page, *demo_gw.gateway.demo)
    await page.evaluate(RECORDER)

    await ask(page, "what are your opening hours?")
    answer = page.locator(".msg.assistant[data-id]")
    await expect(answer).to_have_text(OPENING_HOURS)
    await expect(page.locator(".status")).to_have_text("")

    states = await seen(page)
    partial = [s["assistant"] for s in states if s["assistant"] and s["assistant"] != OPENING_HOURS]
    activity = [s["status"] for s in states if "knowledge base" in s["status"] or "rag_search" in s["status"]]
    assert partial or activity, states
    assert all(OPENING_HOURS.startswith(text) for text in partial), partial
    SCREENSHOT.parent.mkdir(exist_ok=True)
    await page.screenshot(path=str(SCREENSHOT))

    await page.reload()
    await expect(page.locator(".msg.user")).to_have_text(["what are your opening hours?"])
    await expect(page.locator(".msg.assistant")).to_have_text([OPENING_HOURS])
    assert page.watch.page_errors == []


async def test_markup_in_messages_is_shown_as_text(demo_gw, page):
    payload = "<img src=x onerror=alert(1)>"
    await page.goto(demo_gw.base_url + "/demo")
    await wait_for_session(page, *demo_gw.gateway.demo)
    await ask(page, payload)
    await expect(page.locator(".msg.user")).to_have_text([payload])
    await expect(page.locator(".msg.assistant[data-id]")).to_have_count(1)  # the answer came and rendered
    # The same payload from a person on the team goes through the same textContent path.
    conversation = (await demo_gw.store.find(Conversation))[0]
    conversations = demo_gw.gateway.conversations
    await conversations.human_reply(conversation, payload, "admin@localhost")
    await expect(page.locator(".msg.human .body")).to_have_text([payload])
    assert await page.locator(".messages img").count() == 0
    assert page.watch.dialogs == []
    assert page.watch.page_errors == []


async def test_human_takeover_and_reply_show_as_a_person(demo_gw, page):
    await page.goto(demo_gw.base_url + "/demo")
    sid = await wait_for_session(page, *demo_gw.gateway.demo)
    conversation = await widget_conversation(demo_gw, sid, *demo_gw.gateway.demo)
    conversations = demo_gw.gateway.conversations

    await conversations.handover(conversation, "take", "admin")
    await expect(page.locator(".system")).to_have_text(["A person will answer you here shortly."])
    await conversations.human_reply(conversation, "Hi, this is Sam", "admin@localhost")
    human = page.locator(".msg.human")
    await expect(human.locator(".body")).to_have_text(["Hi, this is Sam"])
    await expect(human.locator(".who")).to_have_text("Support team")
    assert await page.locator(".msg.assistant").count() == 0
    await conversations.handover(conversation, "release", "admin")
    await expect(page.locator(".system").last).to_have_text("You're back with the assistant.")


async def test_a_stream_cut_mid_answer_resumes_without_duplicate_text(demo_gw, page):
    service = PausingAgentService("Our shop opens ", ["at nine ", "and closes ", "at six."])
    await service.start()
    try:
        company = await demo_gw.store.add(Company(id=new_id("company"), name="Shop"))
        agent = await demo_gw.store.add(Agent(
            id=new_id("agent"), company_id=company.id, name="Shop agent", kind="http",
            settings={"url": service.base_url + "/agent", "secret": service.secret}))
        # Embedded from another origin, like on a customer's site: the API base comes from the src.
        service.page_html = (f'<!doctype html><title>Shop</title><p>Shop</p><script src="{demo_gw.base_url}/widget.js"'
                             f' data-company="{company.id}" data-agent="{agent.id}" data-open="true"></script>')
        await page.goto(service.base_url + "/")
        await wait_for_session(page, company.id, agent.id)
        await ask(page, "when do you open?")

        bubble = page.locator(".msg.assistant")
        await expect(bubble).to_have_text("Our shop opens")  # the first delta, streamed
        cut = set(demo_gw.gateway.streams.live)
        assert cut
        for live in cut:
            live.closed.set()  # as a draining node does: the stream ends, the browser reconnects
        service.release.set()

        await expect(page.locator(".msg.assistant[data-id]")).to_have_text([service.answer])
        await expect(bubble).to_have_count(1)
        # The browser keeps a stream open, so a reconnect shows up as a stream we did not cut.
        await wait_until(lambda: bool(demo_gw.gateway.streams.live - cut))
        assert all(live.closed.is_set() for live in cut)
        assert page.watch.page_errors == []
    finally:
        await service.stop()


async def test_too_many_messages_asks_to_slow_down(make_settings, page):
    async with running_gateway(make_settings, chat={"create_demo": True}, limits={"session_per_minute": 1}) as gw:
        await page.goto(gw.base_url + "/demo")
        await wait_for_session(page, *gw.gateway.demo)
        await ask(page, "hello")
        await expect(page.locator(".msg.user[data-id]")).to_have_count(1)
        await ask(page, "hello again")
        await expect(page.locator(".system.error")).to_contain_text("slow down")
        await expect(page.locator(".msg.user.failed")).to_have_text(["hello again"])
        await expect(page.get_by_label("Your message")).to_have_value("hello again")


async def test_an_interrupted_answer_is_discarded_for_the_fresh_one(demo_gw, page):
    await page.goto(demo_gw.base_url + "/demo")
    sid = await wait_for_session(page, *demo_gw.gateway.demo)
    conversation = await widget_conversation(demo_gw, sid, *demo_gw.gateway.demo)
    stream = conversation_stream(conversation.id)
    publish = demo_gw.gateway.broker.publish
    # What a node that takes over a dead node's message sends (buzzi/processing.py).
    await publish(stream, "delta", {"content": "A half-written ans"})
    await expect(page.locator(".msg.assistant")).to_have_text(["A half-written ans"])
    await publish(stream, "error", {"code": "interrupted", "message": "again", "retryable": True})
    await expect(page.locator(".msg.assistant")).to_have_count(0)
    await publish(stream, "delta", {"content": "The fresh "})
    await publish(stream, "delta", {"content": "answer."})
    await publish(stream, "complete", {"content": "The fresh answer.", "metadata": {"messageId": "m_fresh"}})
    await expect(page.locator(".msg.assistant[data-id='m_fresh']")).to_have_text(["The fresh answer."])
    await expect(page.locator(".msg.assistant")).to_have_count(1)
    await expect(page.locator(".system")).to_have_count(0)


async def test_a_stale_stored_session_is_replaced_by_a_new_one(demo_gw, page):
    company_id, agent_id = demo_gw.gateway.demo
    key = session_key(company_id, agent_id)
    await page.goto(demo_gw.base_url + "/robots-missing")  # same origin, to seed localStorage
    await page.evaluate("k => localStorage.setItem(k, 's_' + 'x'.repeat(43))", key)
    await page.goto(demo_gw.base_url + "/demo")
    await page.wait_for_function("k => localStorage.getItem(k) !== 's_' + 'x'.repeat(43)", arg=key)
    await ask(page, "what are your opening hours?")
    await expect(page.locator(".msg.assistant[data-id]")).to_have_text([OPENING_HOURS])


async def test_events_trimmed_while_offline_are_fetched_from_history(make_settings, page):
    # A log of 3 events per session: a widget that misses more is told to resync (docs/contract.md §3 replay).
    async with running_gateway(make_settings, chat={"create_demo": True, "retry_ms": 200},
                               broker={"event_log_size": 3}) as gw:
        await page.goto(gw.base_url + "/demo")
        sid = await wait_for_session(page, *gw.gateway.demo)
        conversation = await widget_conversation(gw, sid, *gw.gateway.demo)
        stream = conversation_stream(conversation.id)

        await page.route("**/stream*", lambda route: route.abort())  # the network drops
        for live in set(gw.gateway.streams.live):
            live.closed.set()
        await wait_until(lambda: not gw.gateway.streams.live)

        # Two answers while the widget is away; the first one falls out of the event log entirely.
        for mid, words in (("m_gone", ["Gone ", "from the log."]), ("m_kept", ["Still ", "in ", "the log."])):
            await gw.store.add(Message(id=mid, conversation_id=conversation.id, company_id=conversation.company_id,
                                       agent_id=conversation.agent_id, role="assistant", content="".join(words),
                                       state="stored"))
            for word in words:
                await gw.gateway.broker.publish(stream, "delta", {"content": word})
            await gw.gateway.broker.publish(stream, "complete",
                                            {"content": "".join(words), "metadata": {"messageId": mid}})

        await page.unroute("**/stream*")
        await expect(page.locator(".msg.assistant[data-id]")).to_have_text(["Gone from the log.", "Still in the log."])
        await expect(page.locator(".msg.assistant")).to_have_count(2)
        await expect(page.locator(".system.error")).to_have_count(0)
        await wait_until(lambda: bool(gw.gateway.streams.live))  # and it listens again
        assert page.watch.page_errors == []
