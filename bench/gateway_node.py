"""A gateway node for bench/chat_bench.py only: the app run.py serves, plus one bench-only route.

    python -m bench.gateway_node --port N   (settings from BUZZI_* like run.py)

POST /bench/publish/{conversation_id}?n=K publishes K `delta` events into that conversation's
stream through the gateway's broker, each carrying "t": time.time_ns() taken at publish, so the
bench can time publish -> receive exactly like it does against bench/bare_sse_server.py.
/bench/tracemalloc (with PYTHONTRACEMALLOC=1) shows what the open streams allocated.
Never mounted by handlers/app.py: it is unauthenticated and exists for measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import signal
import sys
import time
import tracemalloc

from buzzi import logs
from buzzi.chat import conversation_stream
from buzzi.config import load_settings
from buzzi.gctuning import tune_for_serving
from buzzi.runtime import Gateway
from handlers.app import make_app
from handlers.base import BaseHandler
from handlers.server import make_server


class PublishHandler(BaseHandler):
    async def post(self, conversation_id: str) -> None:
        stream = conversation_stream(conversation_id)
        for _ in range(int(self.get_query_argument("n", "1"))):
            await self.gateway.broker.publish(stream, "delta", {"content": "chunk of an answer ", "t": time.time_ns()})
        self.set_status(202)
        self.finish()


class TracemallocHandler(BaseHandler):
    """With PYTHONTRACEMALLOC=1: POST marks a snapshot, GET lists the top allocation sites grown since."""

    mark: tracemalloc.Snapshot | None = None

    def post(self) -> None:
        gc.collect()
        TracemallocHandler.mark = tracemalloc.take_snapshot()
        self.finish()

    def get(self) -> None:
        if TracemallocHandler.mark is None:
            self.send_error(409)
            return
        gc.collect()
        # ?key=traceback groups by whole tracebacks (start the node with PYTHONTRACEMALLOC=<depth>)
        key = "traceback" if self.get_query_argument("key", "") == "traceback" else "lineno"
        stats = tracemalloc.take_snapshot().compare_to(TracemallocHandler.mark, key)
        top = [{"site": " <- ".join(str(f) for f in reversed(s.traceback)), "kib": round(s.size_diff / 1024, 1),
                "count": s.count_diff}
               for s in stats[:int(self.get_query_argument("n", "30"))]]
        self.finish(json.dumps({"total_kib": round(sum(s.size_diff for s in stats) / 1024, 1), "top": top}))


class LoopLag:
    """Event loop stalls, to tell a first-delta outlier's cause: a 10 ms ticker records how late it
    woke (wall) and the CPU this process used meanwhile (low CPU in a long stall = descheduled by
    the OS or waiting for the GIL; high = our own work, e.g. a garbage collection)."""

    stalls: list[tuple[float, float]] = []  # (late ms, process CPU ms) of wake-ups >= 20 ms late
    gc_ms: list[float] = []
    task: asyncio.Task[None] | None = None

    @classmethod
    async def run(cls) -> None:
        started: list[float] = []

        def timed(phase: str, _: dict[str, int]) -> None:
            if phase == "start":
                started.append(time.perf_counter())
            elif started:
                cls.gc_ms.append((time.perf_counter() - started.pop()) * 1000)

        gc.callbacks.append(timed)
        while True:
            wall, cpu = time.perf_counter(), time.process_time()
            await asyncio.sleep(0.01)
            late = (time.perf_counter() - wall - 0.01) * 1000
            if late >= 20:
                cls.stalls.append((round(late, 1), round((time.process_time() - cpu) * 1000, 1)))


class LagHandler(BaseHandler):
    def get(self) -> None:
        worst = sorted(LoopLag.stalls, reverse=True)[:10]
        self.finish(json.dumps({"stalls": len(LoopLag.stalls), "worst": worst,
                                "gc_max_ms": round(max(LoopLag.gc_ms, default=0), 1),
                                "gc_runs": len(LoopLag.gc_ms)}))

    def post(self) -> None:  # start counting afresh
        LoopLag.stalls.clear()
        LoopLag.gc_ms.clear()
        self.finish()


async def serve(port: int) -> None:
    settings = load_settings(overrides={"server": {"port": port}})
    logs.configure(settings.server.log_format, settings.server.log_level)
    gateway = Gateway(settings)
    await gateway.start()
    tune_for_serving()  # as run.py does once started: the GC settings are part of what is measured
    app = make_app(gateway, extra_routes=[(r"/bench/publish/([^/]+)", PublishHandler),
                                          (r"/bench/tracemalloc", TracemallocHandler),
                                          (r"/bench/lag", LagHandler)])
    LoopLag.task = asyncio.create_task(LoopLag.run())  # kept referenced: lives as long as the node
    # The server run.py builds, plus a deep accept backlog (the bare server gets the same).
    server = make_server(app, settings)
    server.listen(port, settings.server.host, backlog=4096)
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
    if os.environ.get("BENCH_SWITCH_INTERVAL"):  # measuring the GIL hand-off between loop and store thread
        sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
