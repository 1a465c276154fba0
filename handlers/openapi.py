"""GET /api/openapi.json: the API's OpenAPI 3.1 document (buzzi/openapi.py), built once per process."""

from __future__ import annotations

import json

from buzzi.openapi import build_document
from handlers.base import BaseHandler


class OpenApiHandler(BaseHandler):
    def get(self) -> None:
        # The document depends only on settings: rendered once, then served from memory.
        cached = self.application.settings.get("openapi_json")
        if cached is None:
            cached = json.dumps(build_document(self.gateway.settings), separators=(",", ":"))
            self.application.settings["openapi_json"] = cached
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Access-Control-Allow-Origin", "*")  # client generators fetch it from anywhere
        self.finish(cached)
