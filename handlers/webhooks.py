"""Channel webhooks: GET handshakes and POST deliveries, handed as raw bytes to the pipeline."""

from __future__ import annotations

import json

from buzzi import clock
from buzzi.channels.base import WebhookRequest
from handlers.base import BaseHandler


class WebhookHandler(BaseHandler):
    async def get(self, company_id: str, agent_id: str, channel: str, webhook_id: str) -> None:
        await self._handle(company_id, agent_id, channel, webhook_id)

    async def post(self, company_id: str, agent_id: str, channel: str, webhook_id: str) -> None:
        await self._handle(company_id, agent_id, channel, webhook_id)

    async def _handle(self, company_id: str, agent_id: str, channel: str, webhook_id: str) -> None:
        request = WebhookRequest(
            method=self.request.method or "POST",
            # A repeated header is one comma-joined value (RFC 9110 §5.3), never "the last one wins":
            # a signature header sent twice then matches no signature.
            headers={k.lower(): v for k, v in self.request.headers.items()},
            body=self.request.body,  # raw bytes: signatures are checked on exactly these
            query={k: self.get_query_argument(k) for k in self.request.query_arguments},
            remote_ip=self.client_ip,
            now=clock.now(),
        )
        result = await self.gateway.webhooks.handle(company_id, agent_id, channel, webhook_id, request)
        for name, value in result.headers.items():
            self.set_header(name, value)
        self.set_status(result.status)
        if isinstance(result.body, dict):
            self.set_header("Content-Type", "application/json; charset=UTF-8")
            self.finish(json.dumps(result.body))  # spaced as ever: the dashboard's test event shows it
        else:
            self.set_header("Content-Type", f"{result.content_type}; charset=UTF-8")
            self.finish(result.body)
