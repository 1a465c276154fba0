"""The admin dashboard (docs/contract.md §4): server-rendered pages over the buzzi.admin services, one module
per job (shell: session, CSRF, rendering and errors; auth; companies; agents; webhooks;
conversations; sessions; forms; live: the SSE responses)."""

from __future__ import annotations

from handlers.dashboard import agents, auth, companies, conversations, sessions, webhooks
from handlers.dashboard.shell import NotFoundPage, RootPage

ROUTES: list[tuple] = [
    (r"/admin/?", RootPage),
    *auth.ROUTES,
    *companies.ROUTES,
    *agents.ROUTES,
    *webhooks.ROUTES,
    *conversations.ROUTES,
    *sessions.ROUTES,
    (r"/admin/.*", NotFoundPage),  # last: unknown paths answer 404 after the login check
]
