"""Helpers for the widget tests: reading the widget's shadow DOM, and a pausing agent service."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from typing import Any

from aiohttp import web
from playwright.async_api import Page

from buzzi.models import Conversation
from tests.support.gateway import RunningGateway
from tests.support.web_sessions import store_conversation

# Records, on every DOM change in the widget, the last assistant bubble's text and the status line,
# so a test can tell that partial text or thinking/tool activity was shown at some point.
RECORDER = """() => {
  const root = document.getElementById('buzzi-chat-widget').shadowRoot;
  window.__seen = [];
  const take = () => {
    const bodies = root.querySelectorAll('.msg.assistant .body');
    window.__seen.push({assistant: bodies.length ? bodies[bodies.length - 1].textContent : '',
                        status: root.querySelector('.status').textContent});
  };
  new MutationObserver(take).observe(root, {subtree: true, childList: true, characterData: true});
}"""


def session_key(company_id: str, agent_id: str) -> str:
    return f"buzzi:{company_id}:{agent_id}:session"


async def wait_for_session(page: Page, company_id: str, agent_id: str) -> str:
    key = session_key(company_id, agent_id)
    handle = await page.wait_for_function("k => localStorage.getItem(k)", arg=key)
    return await handle.json_value()


async def widget_conversation(gw: RunningGateway, sid: str, company_id: str, agent_id: str) -> Conversation:
    """The conversation of the widget's session, stored as its first message would store it: a new
    session stores nothing until then (buzzi/chat.py), and these tests act on it before."""
    status, history, _ = await gw.request("GET", f"/api/chat/{sid}/messages")
    assert status == 200, history
    session = {"sessionId": sid, "conversationId": history["conversationId"]}
    return await store_conversation(gw, session, company_id, agent_id)


async def ask(page: Page, text: str) -> None:
    box = page.get_by_label("Your message")
    await box.fill(text)
    await box.press("Enter")


async def seen(page: Page) -> list[dict[str, str]]:
    return await page.evaluate("() => window.__seen")


class PausingAgentService:
    """A company's own agent service (the `http` agent kind) that streams SSE and pauses after
    its first delta until the test releases it; it also serves a host page on its own origin,
    so the widget is embedded cross-origin like on a customer's site."""

    def __init__(self, first: str, rest: list[str]) -> None:
        self.first = first
        self.rest = rest
        self.first_sent = asyncio.Event()
        self.release = asyncio.Event()
        self.secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        self.base_url = ""
        self.page_html = ""
        self._runner: web.AppRunner | None = None

    @property
    def answer(self) -> str:
        return self.first + "".join(self.rest)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/agent", self._agent)
        app.router.add_get("/", self._page)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self.release.set()
        if self._runner:
            await self._runner.cleanup()

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=self.page_html, content_type="text/html")

    async def _agent(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)

        async def send(event: str, data: dict[str, Any]) -> None:
            await resp.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())

        await send("thinking", {"step": "Looking it up", "progress": 0.3})
        await send("delta", {"content": self.first})
        self.first_sent.set()
        await self.release.wait()
        for chunk in self.rest:
            await send("delta", {"content": chunk})
        await send("complete", {"content": self.answer})
        return resp
