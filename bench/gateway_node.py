"""A gateway node for bench/chat_bench.py only: the app run.py serves, plus one bench-only route.

    python -m bench.gateway_node --port N   (settings from BUZZI_* like run.py)

POST /bench/publish/{conversation_id}?n=K publishes K `delta` events into that conversation's
stream through the gateway's broker, each carrying "t": time.time_ns() taken at publish, so the
bench can time publish -> receive exactly like it does against bench/bare_sse_server.py.
Never mounted by handlers/app.py: it is unauthenticated and exists for measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import signal
import time

from buzzi import logs
from buzzi.chat import conversation_stream
from buzzi.config import load_settings
from buzzi.runtime import Gateway
from handlers.app import make_app
from handlers.base import BaseHandler


class PublishHandler(BaseHandler):
    async def post(self, conversation_id: str) -> None:
        stream = conversation_stream(conversation_id)
        for _ in range(int(self.get_query_argument("n", "1"))):
            await self.gateway.broker.publish(stream, "delta", {"content": "chunk of an answer ", "t": time.time_ns()})
        self.set_status(202)
        self.finish()


async def serve(port: int) -> None:
    settings = load_settings(overrides={"server": {"port": port}})
    logs.configure(settings.server.log_format, settings.server.log_level)
    gateway = Gateway(settings)
    await gateway.start()
    app = make_app(gateway, extra_routes=[(r"/bench/publish/([^/]+)", PublishHandler)])
    # Same listen options as run.py, plus a deep accept backlog (the bare server gets the same).
    server = app.listen(port, settings.server.host, backlog=4096, idle_connection_timeout=120,
                        max_body_size=settings.webhooks.max_body_bytes * 4 + 65536)
    company, agent = gateway.demo or ("", "")
    print(f"bench-ready company={company} agent={agent}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()
    await gateway.drain()
    await gateway.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
