"""Dashboard login and logout. The login form has its own CSRF cookie (there is no session yet);
failed logins are throttled by the service, whose errors become the form's message."""

from __future__ import annotations

import urllib.parse

from buzzi.errors import Throttled, Unauthorized
from handlers.dashboard.shell import HOME_URL, LOGIN_CSRF_COOKIE, LOGIN_URL, DashboardHandler, PublicDashboardHandler


def safe_next(value: str | None) -> str:
    """Only a dashboard path of this site: `next` must not become an open redirect."""
    if not value or not value.startswith("/admin") or value.startswith("//") or "\\" in value:
        return HOME_URL
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme or parsed.netloc or parsed.path.rstrip("/") in ("/admin/login", "/admin/logout"):
        return HOME_URL
    return value


class LoginPage(PublicDashboardHandler):
    def get(self) -> None:
        self.render_page("login.html", title="Log in", next=safe_next(self.get_query_argument("next", None)),
                         email="")

    async def post(self) -> None:
        self.check_csrf(self.get_cookie(LOGIN_CSRF_COOKIE) or "")
        email = self.field("email")
        next_url = safe_next(self.get_body_argument("next", None))
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
        await self.end_session(everywhere=self.get_body_argument("everywhere", "") == "1")
        self.redirect(f"{LOGIN_URL}?flash=logged-out", status=303)


ROUTES: list[tuple] = [
    (r"/admin/login", LoginPage),
    (r"/admin/logout", LogoutPage),
]
