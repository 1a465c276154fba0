"""The baseline for bench/webhook_bench.py: a bare Tornado handler that checks X-Hub-Signature-256
over the raw body and answers 200 (no store, no dedupe, no pipeline).

    python -m bench.bare_hmac_server --port 9000 --secret S
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac

import tornado.web


class HookHandler(tornado.web.RequestHandler):
    def initialize(self, secret: bytes) -> None:
        self.secret = secret

    def post(self, *_: str) -> None:
        given = self.request.headers.get("X-Hub-Signature-256", "")
        expected = "sha256=" + hmac.new(self.secret, self.request.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            self.set_status(401)
            self.finish({"error": "Invalid signature"})
            return
        self.finish({"status": "ok"})


class ReadyHandler(tornado.web.RequestHandler):
    def get(self) -> None:  # the bench waits for it, as for the gateway's /readyz
        self.finish({"status": "ready"})


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    args = parser.parse_args()
    app = tornado.web.Application([(r"/api/webhooks/(.*)", HookHandler, {"secret": args.secret.encode()}),
                                   (r"/readyz", ReadyHandler)])
    app.listen(args.port, "127.0.0.1")
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
