"""An HTML client for the dashboard over plain HTTP: a cookie jar, the CSRF token read from the last
page's <meta name="csrf-token">, and form posts. Part 2's tests may use it too."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.support.gateway import RunningGateway

OWNER_EMAIL = "admin@localhost"
OWNER_PASSWORD = "admin-password-123"
_META_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]*)">')
_FORM_CSRF = re.compile(r'name="_csrf" value="([^"]*)"')


@dataclass
class Page:
    status: int
    text: str
    headers: Any
    url: str = ""


@dataclass
class DashboardClient:
    gw: RunningGateway
    http: aiohttp.ClientSession
    csrf: str = ""
    pages: list[Page] = field(default_factory=list)

    async def request(self, method: str, path: str, *, data: dict[str, Any] | list[tuple[str, str]] | None = None,
                      headers: dict[str, str] | None = None, follow: bool = True) -> Page:
        async with self.http.request(method, self.gw.base_url + path, data=data, headers=headers or {},
                                     allow_redirects=follow) as resp:
            page = Page(resp.status, await resp.text(), resp.headers, str(resp.url))
        found = _META_CSRF.search(page.text) or _FORM_CSRF.search(page.text)
        if found:
            self.csrf = found.group(1)
        self.pages.append(page)
        return page

    async def get(self, path: str, **kw: Any) -> Page:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, data: dict[str, Any] | list[tuple[str, str]] | None = None, *,
                   csrf: bool = True, **kw: Any) -> Page:
        """A form POST carrying the session's CSRF token (unless csrf=False)."""
        if isinstance(data, list):
            form = list(data) + ([("_csrf", self.csrf)] if csrf else [])
        else:
            form = {**(data or {}), **({"_csrf": self.csrf} if csrf else {})}
        return await self.request("POST", path, data=form, **kw)

    async def login(self, email: str = OWNER_EMAIL, password: str = OWNER_PASSWORD, *,
                    expect: int | None = 200) -> Page:
        await self.get("/admin/login")
        page = await self.post("/admin/login", {"email": email, "password": password})
        assert expect is None or page.status == expect, (page.status, page.text[:500])
        return page

    def cookie(self, name: str) -> Any:
        for morsel in self.http.cookie_jar:
            if morsel.key == name:
                return morsel
        return None


def new_http() -> aiohttp.ClientSession:
    # unsafe=True: the gateway runs on 127.0.0.1, and aiohttp's jar ignores cookies of bare IPs otherwise.
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
