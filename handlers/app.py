"""The Tornado application: routes only. Each handler module serves one area."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import tornado.web

from handlers import admin_api, chat, dashboard, openapi, ops, webhooks, widget
from handlers.base import BaseHandler, log_request

if TYPE_CHECKING:
    from buzzi.runtime import Gateway

ROOT = Path(__file__).resolve().parent.parent
CHANNEL_ROUTE = r"/api/webhooks/([^/]+)/([^/]+)/([^/]+)/([^/]+)/?"
SID = r"([A-Za-z0-9_\-]{1,200})"


class NotFoundHandler(BaseHandler):
    def prepare(self) -> None:
        self.set_status(404)
        self.write_json({"error": "Not found"}, 404)


def routes() -> list[tuple]:
    return [
        (r"/healthz", ops.HealthHandler),
        (r"/readyz", ops.ReadyHandler),
        (r"/metrics", ops.MetricsHandler),
        (CHANNEL_ROUTE, webhooks.WebhookHandler),
        (r"/api/chat/sessions", chat.SessionsHandler),
        (rf"/api/chat/{SID}/message", chat.MessageHandler),
        (rf"/api/chat/{SID}/messages", chat.HistoryHandler),
        (rf"/api/chat/{SID}/stream", chat.StreamHandler),
        (r"/widget.js", widget.WidgetHandler),
        (r"/demo", widget.DemoHandler),
        (r"/api/openapi.json", openapi.OpenApiHandler),
        *admin_api.ROUTES,
        *dashboard.ROUTES,
    ]


def make_app(gateway: Gateway, extra_routes: list[tuple] | None = None) -> tornado.web.Application:
    app = tornado.web.Application(
        [*routes(), *(extra_routes or [])],
        gateway=gateway,
        static_path=str(ROOT / "static"),
        default_handler_class=NotFoundHandler,
        log_function=log_request,
        compress_response=False,  # gzip would buffer SSE
        xsrf_cookies=False,
    )
    _webhooks_first(app)
    return app


def _webhooks_first(app: tornado.web.Application) -> None:
    """Try the channel webhook rule first: webhooks are nearly all of a node's requests, and Tornado
    puts its three static-file rules ahead of ours, so each delivery paid six regex matches before
    its own. No other rule matches /api/webhooks/..., so the order changes no answer."""
    rules = app.wildcard_router.rules
    index = next(i for i, rule in enumerate(rules) if rule.target is webhooks.WebhookHandler)
    rules.insert(0, rules.pop(index))
