"""The baseline for bench/chat_bench.py: a bare Tornado SSE server (no sessions, store, broker or log).

    python -m bench.bare_sse_server --port 9000

GET /stream/{id} holds an SSE stream in a dict; POST /publish/{id}?n=K writes K `delta` events to
that one stream, framed like the gateway's (id/event/data, flushed one by one), each carrying
"t": time.time_ns() taken when it is published. POST /broadcast writes one to every open stream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time

import tornado.web

streams: dict[str, StreamHandler] = {}


class StreamHandler(tornado.web.RequestHandler):
    async def get(self, stream_id: str) -> None:
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        self.seq = 0
        self.gone = asyncio.get_running_loop().create_future()
        streams[stream_id] = self
        self.write("retry: 2000\n\n")
        self.flush()
        try:
            await self.gone
        finally:
            streams.pop(stream_id, None)

    def on_connection_close(self) -> None:
        if not self.gone.done():
            self.gone.set_result(None)


def push_delta(target: StreamHandler) -> None:
    """One timestamped `delta` event written and flushed to one stream."""
    target.seq += 1
    data = json.dumps({"content": "chunk of an answer ", "t": time.time_ns()}, separators=(",", ":"))
    target.write(f"id: {target.seq}\nevent: delta\ndata: {data}\n\n")
    target.flush()


class PublishHandler(tornado.web.RequestHandler):
    def post(self, stream_id: str) -> None:
        target = streams.get(stream_id)
        if target is None:
            self.send_error(404)
            return
        for _ in range(int(self.get_query_argument("n", "1"))):
            push_delta(target)
        self.set_status(202)
        self.finish()


class BroadcastHandler(tornado.web.RequestHandler):
    """POST /broadcast: one `delta` event to every open stream (bench/cluster_bench.py's baseline)."""

    def post(self) -> None:
        for target in list(streams.values()):
            push_delta(target)
        self.set_status(202)
        self.finish()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    app = tornado.web.Application([(r"/stream/([^/]+)", StreamHandler), (r"/publish/([^/]+)", PublishHandler),
                                   (r"/broadcast", BroadcastHandler)])
    app.listen(args.port, "127.0.0.1", backlog=4096)
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
