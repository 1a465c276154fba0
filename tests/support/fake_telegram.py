"""Local stand-ins for platform APIs: `FakeApi` (a recording aiohttp server with scripted answers,
shared by fake_slack and fake_teams) and `FakeTelegram` (the Bot API).

    async with FakeTelegram() as tg:
        tg.script("sendMessage", Answer(429, {"ok": False, "error_code": 429, ...}))  # next answer
        ... ChannelSettings telegram_api_base=tg.url ...
        tg.calls("sendMessage")[-1].json                                             # what was sent

Runs on 127.0.0.1, port 0, in the test's own event loop. Scripted answers are used once each, in
order, for requests whose path ends with the given suffix; then the fake's defaults apply.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web


@dataclass
class Recorded:
    method: str
    path: str  # decoded
    raw_path: str  # as sent, percent-encoding intact
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)  # when it arrived (wall clock, as buzzi.clock)

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


@dataclass
class Answer:
    status: int = 200
    json: Any = None
    body: bytes | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> web.Response:
        body = self.body if self.body is not None else json.dumps(self.json).encode()
        return web.Response(status=self.status, body=body, headers={"Content-Type": self.content_type,
                                                                     **self.headers})


class FakeApi:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._scripts: list[tuple[str, Answer]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, suffix: str, *answers: Answer) -> None:
        self._scripts.extend((suffix, answer) for answer in answers)

    def calls(self, suffix: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith(suffix)]

    def default(self, request: Recorded) -> Answer:
        return Answer(404, {"error": "not scripted"})

    async def _handle(self, request: web.Request) -> web.Response:
        recorded = Recorded(request.method, request.path, request.raw_path,
                            {k.lower(): v for k, v in request.headers.items()}, await request.read())
        self.requests.append(recorded)
        for index, (suffix, answer) in enumerate(self._scripts):
            if recorded.path.endswith(suffix):
                del self._scripts[index]
                return answer.response()
        return self.default(recorded).response()

    async def __aenter__(self) -> FakeApi:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class FakeTelegram(FakeApi):
    """Answers like the Bot API: {"ok": true, "result": ...}; files under /file/bot<token>/<path>."""

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, bytes] = {}  # file_path -> content
        # Groups upgraded to supergroups, old chat id -> new: a send to the old id is refused the way
        # the Bot API refuses it (400 with ResponseParameters.migrate_to_chat_id).
        self.migrated: dict[int, int] = {}
        self._next_message_id = 500

    def default(self, request: Recorded) -> Answer:
        method = request.path.rsplit("/", 1)[-1]
        if "/file/bot" in request.path:
            path = request.path.split("/", 3)[-1]
            if path in self.files:
                return Answer(body=self.files[path], content_type="application/octet-stream")
            return Answer(404, {"ok": False, "error_code": 404, "description": "Not Found"})
        chat_id = request.json.get("chat_id") if method in ("sendMessage", "sendChatAction") else None
        if chat_id in self.migrated:
            return Answer(400, {"ok": False, "error_code": 400,
                                "description": "Bad Request: group chat was upgraded to a supergroup chat",
                                "parameters": {"migrate_to_chat_id": self.migrated[chat_id]}})
        if method == "sendMessage":
            self._next_message_id += 1
            return Answer(json={"ok": True, "result": {"message_id": self._next_message_id}})
        if method == "getFile":
            file_id = request.json["file_id"]
            path = f"files/{file_id}.bin"
            return Answer(json={"ok": True, "result": {"file_id": file_id, "file_path": path,
                                                       "file_size": len(self.files.get(path, b""))}})
        if method in ("setWebhook", "sendChatAction", "answerCallbackQuery"):
            return Answer(json={"ok": True, "result": True})
        return Answer(404, {"ok": False, "error_code": 404, "description": "Not Found"})
