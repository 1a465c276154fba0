"""The dashboard's shell: cookie session, CSRF, security headers and page rendering.

Note for page authors (e.g. handlers/dashboard_live.py):

    from handlers.dashboard_shell import DashboardHandler

    class ConversationsPage(DashboardHandler):
        nav = "conversations"                      # highlights the top-bar entry

        async def get(self) -> None:
            found = await self.admin.conversations.list(self.principal, {...})
            self.render_page("conversations.html", title="Conversations", conversations=found)

        async def post(self) -> None:              # CSRF was already checked in prepare()
            ...
            self.redirect_to("/admin/conversations", flash="saved")

- `self.principal` (buzzi.auth.Principal) is set before any get/post runs; without a valid session
  a GET is redirected to /admin/login and anything else answers 401.
- Every POST/PUT/PATCH/DELETE must carry the session's CSRF token: the hidden form field
  `{{ csrf_field() }}` (renders `<input type="hidden" name="_csrf" ...>`) or an `X-CSRF-Token` header
  (static/admin.js `Buzzi.post(url, data)` adds it from `<meta name="csrf-token">`).
- `self.admin` is the buzzi.admin services; raise/let through buzzi.admin errors: NotFound renders
  the 404 page, Forbidden 403, other AdminErrors their status with the message.
- Templates extend "base.html" (blocks: title, content, scripts) and get `principal`, `csrf_token`,
  `csrf_field()`, `nav`, `flash`, `error`, `static_url()` automatically. No inline <script>: the CSP
  forbids it, put JS in static/*.js and include it in the `scripts` block.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import urllib.parse
import weakref
from typing import TYPE_CHECKING, Any

import tornado.web
from markupsafe import Markup, escape

from buzzi import clock
from buzzi.admin import AdminError, AdminServices
from buzzi.admin.errors import Throttled, Unauthorized
from buzzi.auth import Principal
from buzzi.broker.base import BrokerUnavailable
from buzzi.crypto import derive_key, sha256_hex
from buzzi.runtime import resolve_secret_key
from buzzi.store.base import StoreUnavailable
from handlers.admin_api import services
from handlers.base import BaseHandler
from handlers.templating import render

if TYPE_CHECKING:
    from buzzi.runtime import Gateway

log = logging.getLogger("buzzi.dashboard")

SESSION_COOKIE = "buzzi_admin"
LOGIN_CSRF_COOKIE = "buzzi_login_csrf"
NONCE_SEP = "~"  # never in a JWT (base64url and dots)
CSRF_FIELD = "_csrf"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
LOGIN_URL = "/admin/login"
HOME_URL = "/admin/companies"

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

# Flash messages are chosen by code, never taken as text from the URL: a link cannot make the
# dashboard display words of an attacker's choosing.
FLASH = {
    "created": "Created.", "saved": "Saved.", "deleted": "Deleted.", "enabled": "Webhook enabled.",
    "disabled": "Webhook disabled.", "logged-out": "You are logged out.", "taken": "You took over the conversation.",
    "released": "The conversation is back with the agent.", "sent": "Sent.",
}

_csrf_keys: weakref.WeakKeyDictionary[Gateway, bytes] = weakref.WeakKeyDictionary()


def csrf_key(gateway: Gateway) -> bytes:
    """A key of its own for CSRF tokens, derived from the gateway's secret key."""
    found = _csrf_keys.get(gateway)
    if found is None:
        found = _csrf_keys[gateway] = derive_key(resolve_secret_key(gateway.settings), "dashboard-csrf")
    return found


def csrf_for(gateway: Gateway, session: str) -> str:
    """The CSRF token of a session: an HMAC of the session cookie, so nothing is stored and a
    new login gets a new token."""
    return hmac.new(csrf_key(gateway), session.encode(), hashlib.sha256).hexdigest()


def _revoked_key(session: str) -> str:
    return f"dash-logout:{sha256_hex(session)[:40]}"


class DashboardHandler(BaseHandler):
    public = False  # True for the login page only
    nav = ""  # "companies" | "conversations" | "sessions": the highlighted top-bar entry
    principal: Principal
    session: str = ""

    @property
    def admin(self) -> AdminServices:
        return services(self.gateway)

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
        """The cookie is the admin token plus a random nonce: two logins within the same second get
        the same JWT, but never the same session (its CSRF token and its logout are its own)."""
        value = f"{token}{NONCE_SEP}{secrets.token_urlsafe(18)}"
        self.set_cookie(SESSION_COOKIE, value, path="/admin", httponly=True, samesite="Strict",
                        secure=self.secure_cookies, max_age=max(1, int(expires_at - clock.now())))

    def clear_session(self) -> None:
        self.clear_cookie(SESSION_COOKIE, path="/admin", httponly=True, samesite="Strict",
                          secure=self.secure_cookies)

    async def end_session(self) -> None:
        """Logout: the token stays valid until it expires, so it is remembered as revoked until then."""
        if self.session:
            await self.gateway.broker.kv_set(_revoked_key(self.session), "1",
                                             float(self.gateway.tokens.ttl))
        self.clear_session()

    async def _authenticate(self) -> Principal | None:
        session = self.get_cookie(SESSION_COOKIE) or ""
        token, sep, nonce = session.partition(NONCE_SEP)
        if not token or not sep or not nonce:
            return None
        try:
            principal = await self.admin.auth.authenticate(f"Bearer {token}")
        except Unauthorized:
            return None
        if await self.gateway.broker.kv_get(_revoked_key(session)) is not None:
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
            self.check_csrf(csrf_for(self.gateway, self.session))

    # --- CSRF ----------------------------------------------------------------------------------

    @property
    def csrf_token(self) -> str:
        if self.public:
            return self.login_csrf
        return csrf_for(self.gateway, self.session)

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

        flash_code = self.get_query_argument("flash", "") or ""
        return {
            "principal": getattr(self, "principal", None),
            "csrf_token": token,
            "csrf_field": csrf_field,
            "nav": self.nav,
            "flash": FLASH.get(flash_code, ""),
            "error": "",
            "static_url": self.static_url,
            "title": "",
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

    # --- errors as pages -----------------------------------------------------------------------

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, AdminError) and not self._finished:
            for name, value in e.headers.items():
                self.set_header(name, value)
            message = "Page not found" if e.status == 404 else e.message
            if isinstance(e, Throttled):
                message = f"Too many attempts: try again in {e.extra.get('retryAfter', 60)} s."
            self.error_page(e.status, message)
            return
        if isinstance(e, StoreUnavailable | BrokerUnavailable) and not self._finished:
            log.warning("dashboard: dependency unavailable: %s", e.__class__.__name__)
            self.error_page(503, "The gateway's storage is unavailable right now. Please try again shortly.")
            return
        super()._handle_request_exception(e)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        messages = {401: "Please log in", 403: "Forbidden", 404: "Page not found", 405: "Method not allowed",
                    500: "Something went wrong"}
        message = messages.get(status_code, self._reason)
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
