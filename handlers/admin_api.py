"""Admin JSON API (docs/contract.md §4). Thin: authenticate, parse, call a buzzi.admin service, render.
Tenancy and validation live in buzzi.admin, not here."""

from __future__ import annotations

from typing import Any

from buzzi import clock
from buzzi.admin import AdminServices
from buzzi.admin.auth import logout_everywhere
from buzzi.admin.render import (
    render_agent,
    render_company,
    render_conversation,
    render_event,
    render_message,
    render_user,
    render_webhook,
)
from buzzi.auth import Principal
from buzzi.errors import NotFound, Unauthorized
from handlers.base import BaseHandler, service_error

ID = r"([A-Za-z0-9_\-]{1,100})"


class AdminHandler(BaseHandler):
    public = False  # True only for login
    principal: Principal

    @property
    def admin(self) -> AdminServices:
        return self.gateway.admin

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Cache-Control", "no-store")  # answers carry tokens and, once, secrets

    async def prepare(self) -> None:
        if not self.public:
            self.principal = await self.admin.auth.authenticate(self.request.headers.get("Authorization"))

    def query(self, *names: str) -> dict[str, str | None]:
        return {name: self.get_query_argument(name, None) for name in names}

    def body(self) -> dict[str, Any]:
        return self.json_body() if self.request.body.strip() else {}

    @property
    def public_url(self) -> str:
        return self.gateway.settings.server.public_url

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # A missing or bad token (not a failed login) tells the client which scheme to use (RFC 6750).
        error = service_error(kwargs)
        if isinstance(error, Unauthorized) and error.message == "Unauthorized":
            self.set_header("WWW-Authenticate", "Bearer")
        super().write_error(status_code, **kwargs)


class LoginHandler(AdminHandler):
    public = True

    async def post(self) -> None:
        data = self.json_body()
        token, expires = await self.admin.auth.login(data.get("email"), data.get("password"), self.client_ip)
        self.write_json({"token": token, "expiresAt": clock.iso(expires)})


class LogoutHandler(AdminHandler):
    async def post(self) -> None:
        await self.admin.auth.logout(self.principal, logout_everywhere(self.body()))
        self.set_status(204)
        self.finish()


class MeHandler(AdminHandler):
    async def get(self) -> None:
        self.write_json(render_user(await self.admin.users.get(self.principal, self.principal.user_id)))


class UsersHandler(AdminHandler):
    async def get(self) -> None:
        self.write_json([render_user(u) for u in await self.admin.users.list(self.principal)])

    async def post(self) -> None:
        self.write_json(render_user(await self.admin.users.create(self.principal, self.json_body())), 201)


class UserHandler(AdminHandler):
    async def get(self, uid: str) -> None:
        self.write_json(render_user(await self.admin.users.get(self.principal, uid)))

    async def patch(self, uid: str) -> None:
        self.write_json(render_user(await self.admin.users.update(self.principal, uid, self.json_body())))

    async def delete(self, uid: str) -> None:
        await self.admin.users.delete(self.principal, uid)
        self.set_status(204)
        self.finish()


class CompaniesHandler(AdminHandler):
    async def get(self) -> None:
        self.write_json([render_company(c) for c in await self.admin.companies.list(self.principal)])

    async def post(self) -> None:
        company = await self.admin.companies.create(self.principal, self.json_body())
        self.write_json(render_company(company), 201)


class CompanyHandler(AdminHandler):
    async def get(self, cid: str) -> None:
        self.write_json(render_company(await self.admin.companies.get(self.principal, cid)))

    async def patch(self, cid: str) -> None:
        self.write_json(render_company(await self.admin.companies.update(self.principal, cid, self.json_body())))

    async def delete(self, cid: str) -> None:
        await self.admin.companies.delete(self.principal, cid)
        self.set_status(204)
        self.finish()


class AgentsHandler(AdminHandler):
    async def get(self, cid: str) -> None:
        self.write_json([render_agent(a) for a in await self.admin.agents.list(self.principal, cid)])

    async def post(self, cid: str) -> None:
        agent = await self.admin.agents.create(self.principal, cid, self.json_body())
        self.write_json(render_agent(agent, reveal=True), 201)


class AgentHandler(AdminHandler):
    async def get(self, cid: str, aid: str) -> None:
        self.write_json(render_agent(await self.admin.agents.get(self.principal, cid, aid)))

    async def patch(self, cid: str, aid: str) -> None:
        agent = await self.admin.agents.update(self.principal, cid, aid, self.json_body())
        self.write_json(render_agent(agent))

    async def delete(self, cid: str, aid: str) -> None:
        await self.admin.agents.delete(self.principal, cid, aid)
        self.set_status(204)
        self.finish()


class WebhooksHandler(AdminHandler):
    async def get(self, cid: str, aid: str) -> None:
        hooks = await self.admin.webhooks.list(self.principal, cid, aid)
        self.write_json([render_webhook(w, self.public_url) for w in hooks])

    async def post(self, cid: str, aid: str) -> None:
        webhook = await self.admin.webhooks.create(self.principal, cid, aid, self.json_body())
        self.write_json(render_webhook(webhook, self.public_url, reveal=True), 201)


class WebhookHandler(AdminHandler):
    async def get(self, cid: str, aid: str, wid: str) -> None:
        webhook = await self.admin.webhooks.get(self.principal, cid, aid, wid)
        self.write_json(render_webhook(webhook, self.public_url))

    async def patch(self, cid: str, aid: str, wid: str) -> None:
        webhook = await self.admin.webhooks.update(self.principal, cid, aid, wid, self.json_body())
        self.write_json(render_webhook(webhook, self.public_url))

    async def delete(self, cid: str, aid: str, wid: str) -> None:
        await self.admin.webhooks.delete(self.principal, cid, aid, wid)
        self.set_status(204)
        self.finish()


class RotateSecretHandler(AdminHandler):
    async def post(self, cid: str, aid: str, wid: str) -> None:
        webhook = await self.admin.webhooks.rotate_secret(self.principal, cid, aid, wid, self.body())
        self.write_json(render_webhook(webhook, self.public_url, reveal=True))


class ConversationsHandler(AdminHandler):
    async def get(self) -> None:
        query = self.query("companyId", "agentId", "status", "channel", "owner", "limit")
        found = await self.admin.conversations.list(self.principal, query)
        self.write_json([render_conversation(c) for c in found])


class ConversationHandler(AdminHandler):
    async def get(self, conv_id: str) -> None:
        self.write_json(render_conversation(await self.admin.conversations.get(self.principal, conv_id)))


class ConversationMessagesHandler(AdminHandler):
    async def get(self, conv_id: str) -> None:
        found = await self.admin.conversations.messages(self.principal, conv_id, self.query("limit"))
        self.write_json([render_message(m) for m in found])


class HandoverHandler(AdminHandler):
    async def post(self, conv_id: str) -> None:
        conversation = await self.admin.conversations.handover(self.principal, conv_id, self.json_body())
        self.write_json(render_conversation(conversation))


class ReplyHandler(AdminHandler):
    async def post(self, conv_id: str) -> None:
        message = await self.admin.conversations.reply(self.principal, conv_id, self.json_body())
        self.write_json(render_message(message), 201)


class TypingHandler(AdminHandler):
    async def post(self, conv_id: str) -> None:
        await self.admin.conversations.typing(self.principal, conv_id)
        self.set_status(204)
        self.finish()


class SessionsHandler(AdminHandler):
    async def get(self) -> None:
        self.write_json(await self.admin.monitoring.sessions(self.principal, self.query("companyId")))


class NodesHandler(AdminHandler):
    async def get(self) -> None:
        self.write_json(await self.admin.monitoring.nodes(self.principal))


class WebhookEventsHandler(AdminHandler):
    async def get(self) -> None:
        query = self.query("webhookId", "companyId", "outcome", "limit")
        events = await self.admin.monitoring.webhook_events(self.principal, query)
        self.write_json([render_event(e) for e in events])


class AdminNotFoundHandler(AdminHandler):
    """Unknown /api/admin paths: authenticated first, so they reveal nothing to strangers."""

    async def prepare(self) -> None:
        await super().prepare()
        raise NotFound()


COMPANY = rf"/api/admin/companies/{ID}"
AGENT = rf"{COMPANY}/agents/{ID}"
WEBHOOK = rf"{AGENT}/webhooks/{ID}"
CONVERSATION = rf"/api/admin/conversations/{ID}"

ROUTES: list[tuple] = [
    (r"/api/admin/login", LoginHandler),
    (r"/api/admin/logout", LogoutHandler),
    (r"/api/admin/me", MeHandler),
    (r"/api/admin/users", UsersHandler),
    (rf"/api/admin/users/{ID}", UserHandler),
    (r"/api/admin/companies", CompaniesHandler),
    (COMPANY, CompanyHandler),
    (rf"{COMPANY}/agents", AgentsHandler),
    (AGENT, AgentHandler),
    (rf"{AGENT}/webhooks", WebhooksHandler),
    (WEBHOOK, WebhookHandler),
    (rf"{WEBHOOK}/rotate-secret", RotateSecretHandler),
    (r"/api/admin/conversations", ConversationsHandler),
    (CONVERSATION, ConversationHandler),
    (rf"{CONVERSATION}/messages", ConversationMessagesHandler),
    (rf"{CONVERSATION}/handover", HandoverHandler),
    (rf"{CONVERSATION}/reply", ReplyHandler),
    (rf"{CONVERSATION}/typing", TypingHandler),
    (r"/api/admin/sessions", SessionsHandler),
    (r"/api/admin/nodes", NodesHandler),
    (r"/api/admin/webhook-events", WebhookEventsHandler),
    (r"/api/admin/.*", AdminNotFoundHandler),
]
