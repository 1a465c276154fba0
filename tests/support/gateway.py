"""A real gateway on a free port inside the test's event loop, with an HTTP client for it."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import tornado.netutil

from buzzi.config import Settings
from buzzi.runtime import Gateway
from buzzi.store.base import Store
from handlers.app import make_app
from handlers.server import make_server


@dataclass
class RunningGateway:
    gateway: Gateway
    base_url: str
    http: aiohttp.ClientSession

    @property
    def store(self) -> Store:
        return self.gateway.store

    async def request(self, method: str, path: str, *, json_body: Any = None, data: bytes | None = None,
                      headers: dict[str, str] | None = None, token: str | None = None) -> tuple[int, Any, Any]:
        """(status, parsed JSON or text, headers)."""
        hdrs = dict(headers or {})
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        if json_body is not None:
            data = json.dumps(json_body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        async with self.http.request(method, self.base_url + path, data=data, headers=hdrs) as resp:
            text = await resp.text()
            try:
                body: Any = json.loads(text)
            except ValueError:
                body = text
            return resp.status, body, resp.headers

    async def login(self, email: str = "admin@localhost", password: str = "admin-password-123") -> str:
        credentials = {"email": email, "password": password}
        status, body, _ = await self.request("POST", "/api/admin/login", json_body=credentials)
        assert status == 200, body
        return body["token"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def running_gateway(make_settings: Callable[..., Settings], **sections: dict[str, Any]
                          ) -> AsyncIterator[RunningGateway]:
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    port = sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    server_section = {"port": port, "public_url": base, **sections.pop("server", {})}
    settings = make_settings(server=server_section, **sections)
    gateway = Gateway(settings)
    await gateway.start()
    server = make_server(make_app(gateway), settings)
    server.add_sockets(sockets)
    http = aiohttp.ClientSession()
    try:
        yield RunningGateway(gateway, base, http)
    finally:
        await http.close()
        server.stop()
        await gateway.drain()
        with contextlib.suppress(TimeoutError):
            await server.close_all_connections()
        await gateway.webhooks.wait_idle()
        await gateway.stop()
