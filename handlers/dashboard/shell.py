"""The dashboard's shell: cookie session, CSRF, security headers, page rendering and errors as pages.

A page subclasses `DashboardHandler`, sets `nav` (the highlighted top-bar entry) and calls
`self.render_page("x.html", title=..., **ctx)` with a template that extends "base.html" (blocks: title,
content, scripts). Templates get `principal`, `csrf_token`, `csrf_field()`, `nav`, `flash`, `error`,
`errors`, `short_time()`, `channel_names` and `static_url()`. No inline <script>: the CSP forbids it.

- `self.principal` is set before any get/post runs; without a valid session a GET is redirected to
  the login page and anything else answers 401.
- Every POST/PUT/PATCH/DELETE must carry the session's CSRF token: the hidden form field
  `{{ csrf_field() }}` or an `X-CSRF-Token` header (static/admin.js and live.js add it).
- `self.admin` is the buzzi.admin services; their ServiceErrors become error pages (write_error), or
  JSON for a request that asked for JSON (live.js).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import urllib.parse
from typing import Any

import tornado.web
from markupsafe import Markup, escape

from buzzi import clock
from buzzi.admin import AdminServices
from buzzi.auth import Principal
from buzzi.errors import ServiceError, Throttled, Unauthorized, Unavailable
from handlers.base import BaseHandler, service_error
from handlers.templating import render

SESSION_COOKIE = "buzzi_admin"
LOGIN_CSRF_COOKIE = "buzzi_login_csrf"
CSRF_FIELD = "_csrf"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
LOGIN_URL = "/admin/login"
HOME_URL = "/admin/companies"
ID = r"([A-Za-z0-9_\-]{1,100})"

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

# Flash messages are chosen by code, never taken as text from the URL: a link cannot make the
# dashboard display words of an attacker's choosing.
FLASH = {
    "created": "Created.", "saved": "Saved.", "deleted": "Deleted.", "enabled": "Webhook enabled.",
    "disabled": "Webhook disabled.", "logged-out": "You are logged out.", "taken": "You took over the conversation.",
    "released": "The conversation is back with the agent.", "sent": "Sent.",
}
ERROR_PAGES = {401: "Please log in", 403: "Forbidden", 404: "Page not found", 405: "Method not allowed",
               500: "Something went wrong"}
UNAVAILABLE = "The gateway's storage is unavailable right now. Please try again shortly."


def csrf_for(key: bytes, session: str) -> str:
    """The CSRF token of a session: an HMAC of the session cookie, so nothing is stored and a
    new login gets a new token."""
    return hmac.new(key, session.encode(), hashlib.sha256).hexdigest()


def short_time(iso: str | None) -> str:
    """"2026-11-27 00:02:09 UTC" from the views' ISO-8601 times; live.js formats the same way."""
    return f"{iso.replace('T', ' ')[:19]} UTC" if iso else ""


def error_message(error: ServiceError) -> str:
    """What an error page says for a service's error."""
    if isinstance(error, Unavailable):
        return UNAVAILABLE
    if isinstance(error, Throttled):
        return f"Too many attempts: try again in {error.extra.get('retryAfter', 60)} s."
    return ERROR_PAGES[404] if error.status == 404 else error.message


class DashboardHandler(BaseHandler):
    public = False  # True for the login page only
    nav = ""  # "companies" | "conversations" | "sessions": the highlighted top-bar entry
    principal: Principal
    session: str = ""

    @property
    def admin(self) -> AdminServices:
        return self.gateway.admin

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Referrer-Policy", "same-origin")
        self.set_header("Cache-Control", "no-store")  # pages can show a secret once

    # --- session -------------------------------------------------------------------------------

    @property
    def secure_cookies(self) -> bool:
        return self.request.protocol == "https" or self.gateway.settings.server.public_url.startswith("https:")

    def set_session(self, token: str, expires_at: float) -> None:
        """The cookie is the admin token plus the nonce bound to it (buzzi.admin.auth): a bare JWT or
        one with a made-up nonce is no session. Each login's token has its own id, so each session
        has its own CSRF token and its own logout."""
        value = self.admin.auth.session_cookie(token)
        self.set_cookie(SESSION_COOKIE, value, path="/admin", httponly=True, samesite="Strict",
                        secure=self.secure_cookies, max_age=max(1, int(expires_at - clock.now())))

    def clear_session(self) -> None:
        self.clear_cookie(SESSION_COOKIE, path="/admin", httponly=True, samesite="Strict",
                          secure=self.secure_cookies)

    async def end_session(self, everywhere: bool = False) -> None:
        """Logout: the token behind the cookie is revoked (as a Bearer token too); `everywhere` ends
        every session of the user."""
        if self.session:
            await self.admin.auth.logout(self.principal, everywhere)
        self.clear_session()

    async def _authenticate(self) -> Principal | None:
        session = self.get_cookie(SESSION_COOKIE) or ""
        try:
            principal = await self.admin.auth.authenticate_session(session)
        except Unauthorized:
            return None
        self.session = session
        return principal

    async def prepare(self) -> None:
        if self.public:
            return
        principal = await self._authenticate()
        if principal is None:
            if self.get_cookie(SESSION_COOKIE):
                self.clear_session()
            if self.request.method in ("GET", "HEAD"):
                self.redirect(f"{LOGIN_URL}?{urllib.parse.urlencode({'next': self.request.uri})}")
            else:
                self.send_error(401)
            return
        self.principal = principal
        if self.request.method in UNSAFE_METHODS:
            self.check_csrf(csrf_for(self.gateway.csrf_key, self.session))

    # --- CSRF ----------------------------------------------------------------------------------

    @property
    def csrf_token(self) -> str:
        if self.public:
            return self.login_csrf
        return csrf_for(self.gateway.csrf_key, self.session)

    @property
    def login_csrf(self) -> str:
        """Before login there is no session: a random value in a SameSite cookie, echoed by the form."""
        value = getattr(self, "_login_csrf", None)
        if value is None:
            value = self.get_cookie(LOGIN_CSRF_COOKIE) or ""
            if len(value) != 43:
                value = secrets.token_urlsafe(32)
                self.set_cookie(LOGIN_CSRF_COOKIE, value, path=LOGIN_URL, httponly=True, samesite="Strict",
                                secure=self.secure_cookies)
            self._login_csrf = value
        return value

    def check_csrf(self, expected: str) -> None:
        supplied = self.request.headers.get(CSRF_HEADER) or self.get_body_argument(CSRF_FIELD, "") or ""
        if not expected or not hmac.compare_digest(supplied.encode(), expected.encode()):
            raise tornado.web.HTTPError(403, reason="CSRF token missing or wrong")

    # --- rendering -----------------------------------------------------------------------------

    def page_context(self) -> dict[str, Any]:
        token = self.csrf_token

        def csrf_field() -> Markup:
            return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, escape(token))

        channels = self.gateway.channels
        flash_code = self.get_query_argument("flash", "") or ""
        return {
            "principal": getattr(self, "principal", None),
            "csrf_token": token,
            "csrf_field": csrf_field,
            "nav": self.nav,
            "flash": FLASH.get(flash_code, ""),
            "error": "",
            "errors": {},
            "static_url": self.static_url,
            "title": "",
            "short_time": short_time,
            "channel_names": {ch: channels.adapter(ch).display_name for ch in channels.channels},
        }

    def render_page(self, name: str, status: int = 200, **context: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(render(name, **{**self.page_context(), **context}))

    def redirect_to(self, url: str, flash: str = "") -> None:
        """303 after a successful POST, so reloading the next page does not resend the form."""
        if flash:
            url = f"{url}{'&' if '?' in url else '?'}flash={urllib.parse.quote(flash)}"
        self.redirect(url, status=303)

    def field(self, name: str, default: str = "") -> str:
        return (self.get_body_argument(name, default) or "").strip()

    @property
    def wants_json(self) -> bool:
        """live.js posts with `Accept: application/json` and gets JSON; a plain form gets a page."""
        return self.request.headers.get("Accept", "").startswith("application/json")

    # --- errors ---------------------------------------------------------------------------------

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """The one place the dashboard differs from BaseHandler.write_error: a service's error is
        rendered as a page (or as the same JSON for live.js), everything else as a page too."""
        error = service_error(kwargs)
        if error is not None:
            for name, value in error.headers.items():
                self.set_header(name, value)
            if self.wants_json:
                self.write_json(error.body(), error.status)
            else:
                self.error_page(error.status, error_message(error))
            return
        message = ERROR_PAGES.get(status_code, self._reason)
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, tornado.web.HTTPError) and status_code == 403 and exc.reason:
            message = exc.reason
        self.error_page(status_code, message)

    def error_page(self, status: int, message: str) -> None:
        try:
            self.render_page("base.html", status=status, title=message, error=message)
        except Exception:  # noqa: BLE001 - the error page must never fail itself
            self.set_status(status)
            self.set_header("Content-Type", "text/plain; charset=UTF-8")
            self.finish(message)


class PublicDashboardHandler(DashboardHandler):
    public = True


class RootPage(DashboardHandler):
    async def get(self) -> None:
        self.redirect(HOME_URL)


class NotFoundPage(DashboardHandler):
    """Unknown dashboard paths: after the login check, so they reveal nothing to strangers."""

    async def get(self) -> None:
        raise tornado.web.HTTPError(404)

    post = get
