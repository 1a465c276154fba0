"""The embeddable widget script and the demo page."""

from __future__ import annotations

from pathlib import Path

from handlers.base import BaseHandler
from handlers.templating import render

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


class WidgetHandler(BaseHandler):
    """/widget.js: served with CORS so any site can load it, cached briefly so updates roll out."""

    def get(self) -> None:
        self.set_header("Content-Type", "application/javascript; charset=UTF-8")
        self.set_header("Cache-Control", "public, max-age=300")
        self.set_header("Access-Control-Allow-Origin", "*")
        self.finish((STATIC_DIR / "widget.js").read_bytes())


class DemoHandler(BaseHandler):
    def get(self) -> None:
        demo = self.gateway.demo
        if demo is None:
            self.set_status(404)
            self.finish("The demo is disabled (chat.create_demo = false).")
            return
        company_id, agent_id = demo
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(render("demo.html", company_id=company_id, agent_id=agent_id))
