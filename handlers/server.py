"""The one HTTPServer a node serves its application with: run.py, tests/support/gateway.py and
bench/gateway_node.py all build it here, so every node has the same transport limits."""

from __future__ import annotations

import tornado.httpserver
import tornado.netutil
import tornado.web

from buzzi.config import Settings
from buzzi.metrics import Metrics, method_label
from handlers.base import log_access
from handlers.limits import WEBHOOK_HEADROOM, BodyLimits, OnRefused, RequestGuard

# Refused requests never reach a handler; this is their route name in metrics and the access log.
REFUSED_ROUTE = "BodyTooLarge"


def body_limits(settings: Settings) -> BodyLimits:
    return BodyLimits(
        default=settings.server.max_body_bytes,
        webhooks=settings.webhooks.max_body_bytes + WEBHOOK_HEADROOM,
        timeout_seconds=settings.server.body_timeout_seconds,
    )


def make_server(app: tornado.web.Application, settings: Settings) -> tornado.httpserver.HTTPServer:
    """An HTTPServer for `app` (not yet listening: call .listen or .add_sockets).

    - every request body passes RequestGuard (handlers/limits.py): its route's limit, 413 before
      reading, `server.body_timeout_seconds` for the whole body;
    - max_body_size is only the backstop for what the guard lets through (chunked bodies are
      counted by the guard itself): the largest route limit plus headroom;
    - idle_connection_timeout (`server.idle_timeout_seconds`) is how long Tornado waits for the
      headers of a connection's next request; a response being written, such as an SSE stream,
      is not waiting for headers, so it is never cut by it;
    - xheaders stays off: the client address is read through `server.trusted_proxies` only
      (handlers/base.py BaseHandler.client_ip)."""
    limits = body_limits(settings)
    metrics: Metrics = app.settings["gateway"].metrics
    return tornado.httpserver.HTTPServer(
        RequestGuard(app, limits, _record_refusal(metrics)),
        xheaders=False,
        max_body_size=limits.largest + 64 * 1024,
        body_timeout=limits.timeout_seconds,
        idle_connection_timeout=settings.server.idle_timeout_seconds,
    )


def listen(server: tornado.httpserver.HTTPServer, settings: Settings, *, shared_port: bool = False) -> None:
    """Start accepting on server.host:server.port. `shared_port`: one of several web processes of a
    node, each binding its own listening socket with SO_REUSEPORT so the kernel spreads new
    connections across them (Tornado docs, tornado.netutil.bind_sockets: reuse_port sets SO_REUSEPORT
    on every socket it returns; socket(7), SO_REUSEPORT: Linux >= 3.9 spreads accept() load over the
    group and only sockets of the same effective UID may join it, so another user cannot take
    the port over). A single process binds as it always did."""
    if shared_port:
        server.add_sockets(tornado.netutil.bind_sockets(settings.server.port, settings.server.host, reuse_port=True))
    else:
        server.listen(settings.server.port, settings.server.host)


def _record_refusal(metrics: Metrics) -> OnRefused:
    def record(method: str, path: str, seconds: float, remote_ip: str) -> None:
        metrics.http_requests.labels(REFUSED_ROUTE, method_label(method), "413").inc()
        metrics.http_latency.labels(REFUSED_ROUTE).observe(seconds)
        log_access(method, path, 413, seconds, REFUSED_ROUTE, remote_ip)

    return record
