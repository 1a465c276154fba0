"""Admin dashboard pages (SPEC §4): login, companies, agents, webhooks and their delivery log.

For part 2 (conversations, live sessions, takeover in handlers/dashboard_live.py): subclass
`DashboardHandler` from handlers.dashboard_shell (re-exported here), set `nav`, call
`self.render_page("x.html", title=..., **ctx)` with a template that `{% extends "base.html" %}`, and
export `ROUTES: list[tuple]` from your module; it is mounted here automatically. The full how-to is the
docstring of handlers/dashboard_shell.py.

Pages call the buzzi.admin services (tenancy and validation live there); this module only turns
forms into the services' JSON-shaped input and their answers and errors into pages.
"""

from __future__ import annotations

import importlib
import logging
import urllib.parse
from typing import Any

from buzzi.admin.errors import NotFound, Throttled, Unauthorized
from handlers.dashboard_shell import (
    HOME_URL,
    LOGIN_CSRF_COOKIE,
    LOGIN_URL,
    DashboardHandler,
    PublicDashboardHandler,
)

__all__ = ["ROUTES", "DashboardHandler"]

ROUTES: list[tuple]  # built on demand by the module __getattr__ below

log = logging.getLogger("buzzi.dashboard")


def safe_next(value: str | None) -> str:
    """Only a dashboard path of this site: `next` must not become an open redirect."""
    if not value or not value.startswith("/admin") or value.startswith("//") or "\\" in value:
        return HOME_URL
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme or parsed.netloc or parsed.path.rstrip("/") in ("/admin/login", "/admin/logout"):
        return HOME_URL
    return value


class RootPage(DashboardHandler):
    async def get(self) -> None:
        self.redirect(HOME_URL)


class LoginPage(PublicDashboardHandler):
    def get(self) -> None:
        self.render_page("login.html", title="Log in", next=safe_next(self.get_query_argument("next", None)),
                         email="")

    async def post(self) -> None:
        self.check_csrf(self.get_cookie(LOGIN_CSRF_COOKIE) or "")
        email = self.field("email")
        next_url = safe_next(self.get_body_argument("next", None))
        # The service throttles failures per IP and per account; its errors become the form's message.
        try:
            token, expires = await self.admin.auth.login(email, self.get_body_argument("password", ""),
                                                         self.client_ip)
        except Throttled as exc:
            self.set_header("Retry-After", exc.headers.get("Retry-After", "60"))
            retry = exc.extra.get("retryAfter", 60)
            self.render_page("login.html", status=429, title="Log in", next=next_url, email=email,
                             error=f"Too many attempts. Try again in {retry} seconds.")
            return
        except Unauthorized:
            self.render_page("login.html", status=401, title="Log in", next=next_url, email=email,
                             error="Wrong e-mail or password.")
            return
        self.set_session(token, expires)
        self.clear_cookie(LOGIN_CSRF_COOKIE, path=LOGIN_URL)
        self.redirect(next_url, status=303)


class LogoutPage(DashboardHandler):
    async def post(self) -> None:
        await self.end_session()
        self.redirect(f"{LOGIN_URL}?flash=logged-out", status=303)


class NotFoundPage(DashboardHandler):
    """Unknown dashboard paths: after the login check, so they reveal nothing to strangers."""

    async def get(self) -> None:
        raise NotFound()

    post = get


def _page_routes() -> list[tuple]:
    from handlers import dashboard_pages

    return dashboard_pages.ROUTES


def _live_routes() -> list[tuple]:
    """Part 2's pages, while that module may not exist yet."""
    try:
        module = importlib.import_module("handlers.dashboard_live")
    except ModuleNotFoundError as exc:
        if exc.name != "handlers.dashboard_live":
            raise  # a missing dependency inside it is a real error
        return []
    return list(getattr(module, "ROUTES", []))


SHELL_ROUTES: list[tuple] = [
    (r"/admin/?", RootPage),
    (r"/admin/login", LoginPage),
    (r"/admin/logout", LogoutPage),
]


def all_routes() -> list[tuple]:
    return [*SHELL_ROUTES, *_page_routes(), *_live_routes(), (r"/admin/.*", NotFoundPage)]


def __getattr__(name: str) -> Any:
    # ROUTES is built when the app asks for it, not at import: dashboard_live imports this module's
    # DashboardHandler, so collecting its routes at import time would be a circular import.
    if name == "ROUTES":
        return all_routes()
    raise AttributeError(name)
