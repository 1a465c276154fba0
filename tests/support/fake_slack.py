"""A local stand-in for the Slack Web API (chat.postMessage) and files.slack.com downloads.

    async with FakeSlack() as slack:
        ... ChannelSettings slack_api_base=slack.url ...
        slack.files["/files-pri/T1-F1/a.png"] = b"..."   # served only with the right Bearer token
"""

from __future__ import annotations

from tests.support.fake_telegram import Answer, FakeApi, Recorded


class FakeSlack(FakeApi):
    def __init__(self, bot_token: str = "xoxb-test-token") -> None:
        super().__init__()
        self.bot_token = bot_token
        self.files: dict[str, bytes] = {}
        self._ts = 1700000000

    def default(self, request: Recorded) -> Answer:
        if request.path in self.files:
            if request.headers.get("authorization") != f"Bearer {self.bot_token}":
                # What Slack does without a valid token: a login page, HTTP 200 (docs/channels.md §10.13).
                return Answer(body=b"<html><body>Sign in</body></html>", content_type="text/html; charset=utf-8")
            return Answer(body=self.files[request.path], content_type="image/png")
        if request.path.endswith("/chat.postMessage"):
            self._ts += 1
            return Answer(json={"ok": True, "channel": request.json.get("channel"), "ts": f"{self._ts}.000100"})
        return Answer(json={"ok": False, "error": "unknown_method"})
