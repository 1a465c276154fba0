"""The OpenAPI 3.1 document of the public HTTP API: web chat (docs/contract.md §3), admin (§4), the
signed channel webhooks (§2, described as taking any body) and this document itself.

Data, not introspection: tests/test_openapi.py walks handlers/app.py routes() and fails when a route
or a method is missing here, or when a path here is served by no route, so the two cannot drift.
Limits that come from settings (content length) are taken from the node's own settings; the rest
mirror the services' checks (buzzi/admin/validation.py, buzzi/chat.py) so that integrators who
generate clients from it, and the fuzzer in tests/test_fuzz_api.py, see what the service enforces.
"""

from __future__ import annotations

from typing import Any

from buzzi.admin.conversations import OWNERS
from buzzi.admin.conversations import STATUSES as CONVERSATION_STATUSES
from buzzi.admin.monitoring import OUTCOMES
from buzzi.admin.render import DELIVERY_STATUSES
from buzzi.admin.validation import MAX_PASSWORD, MIN_PASSWORD
from buzzi.admin.webhooks import MAX_SECRET
from buzzi.channels.base import ChannelAdapter
from buzzi.channels.registry import ADAPTERS, CHANNELS
from buzzi.chat import MAX_ATTACHMENTS
from buzzi.config import Settings
from buzzi.models import AGENT_KINDS, ROLES, SUBSCRIPTION_STATUSES, WEB_CHANNEL
from buzzi.windows import CLOSED, HUMAN_ONLY, NONE, OPEN, TEMPLATE_ONLY

Schema = dict[str, Any]

ADMIN_ID = "^[A-Za-z0-9_-]{1,100}$"  # handlers/admin_api.py ID
SESSION_ID = "^[A-Za-z0-9_-]{1,200}$"  # handlers/app.py SID

STRING: Schema = {"type": "string"}
TIME: Schema = {"type": "string", "format": "date-time"}
NULLABLE_TIME: Schema = {"type": ["string", "null"], "format": "date-time"}
NULLABLE_STRING: Schema = {"type": ["string", "null"]}
OBJECT: Schema = {"type": "object"}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def array(items: Schema, **extra: Any) -> Schema:
    return {"type": "array", "items": items, **extra}


def obj(properties: dict[str, Schema], required: tuple[str, ...] = (), *, closed: bool = False) -> Schema:
    """An object schema; `closed` = unknown keys are refused with 400 (validation.only)."""
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    return schema


def name_field(max_len: int = 200) -> Schema:
    # validation.string: stripped, then 1..max_len characters.
    return {"type": "string", "minLength": 1, "maxLength": max_len, "pattern": r"\S"}


TIMES = {"createdAt": TIME, "updatedAt": TIME}

ERROR: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "what went wrong, for a person"},
        "field": {"type": "string", "description": "the request field at fault (camelCase path, e.g. "
                                                    "subscription.status, ipAllowlist[2])"},
        "retryAfter": {"type": "integer", "minimum": 0, "description": "429: seconds before trying again"},
    },
    "additionalProperties": True,
}

DOCUMENT_SCHEMA = obj({"title": name_field(100_000), "content": name_field(100_000)}, ("title", "content"))

# Settings every kind takes (buzzi/agents/registry.py common_settings).
COMMON_AGENT_SETTINGS: dict[str, Schema] = {
    "answerEdits": {"type": "boolean", "description": "answer a customer's edited message again (default false: "
                                                      "the edit is only recorded on the message)"},
}
AGENT_SETTINGS: Schema = {
    "description": "Checked by the agent kind's validator (docs/contract.md §3 Agents); `apiKey` and "
                   "`secret` are shown in full only in the create answer.",
    "anyOf": [
        obj({"documents": array(DOCUMENT_SCHEMA), "fallback": STRING, **COMMON_AGENT_SETTINGS}, ("documents",)),
        obj({"baseUrl": {"type": "string", "format": "uri"}, "model": name_field(200),
             "apiKey": name_field(1000), "systemPrompt": STRING, "documents": array(DOCUMENT_SCHEMA),
             "temperature": {"type": "number", "minimum": 0, "maximum": 2}, **COMMON_AGENT_SETTINGS},
            ("baseUrl", "model", "apiKey")),
        obj({"url": {"type": "string", "format": "uri"}, "secret": {"type": "string", "pattern": "^whsec_"},
             **COMMON_AGENT_SETTINGS}, ("url", "secret")),
    ],
}


def chat_schemas(settings: Settings) -> dict[str, Schema]:
    attachment = obj({"url": STRING, "mime_type": STRING, "name": STRING})
    return {
        "ChatSessionRequest": obj({
            "companyId": STRING, "agentId": STRING,
            "customer": {"type": ["object", "null"], "properties": {
                k: {"type": ["string", "integer"]} for k in ("id", "name", "email")}},
        }, ("companyId", "agentId")),
        "ChatSession": obj({"sessionId": STRING, "conversationId": STRING, "expiresAt": TIME},
                           ("sessionId", "conversationId", "expiresAt")),
        "ChatMessageRequest": obj({
            "content": {"type": "string", "minLength": 1, "maxLength": settings.chat.max_content_chars,
                        "pattern": r"\S"},
            "attachments": {"type": ["array", "null"], "maxItems": MAX_ATTACHMENTS, "items": attachment},
        }, ("content",)),
        "ChatMessageAccepted": obj({"messageId": STRING, "status": {"const": "processing"}},
                                   ("messageId", "status")),
        "ChatMessage": obj({"id": STRING, "role": STRING, "content": STRING, "attachments": array(OBJECT),
                            "createdAt": TIME, "status": STRING, "metadata": OBJECT},
                           ("id", "role", "content", "attachments", "createdAt", "status")),
        "ChatHistory": obj({"conversationId": STRING, "lastEventId": NULLABLE_STRING,
                            "messages": array(ref("ChatMessage"))}, ("conversationId", "lastEventId", "messages")),
    }


def _subscription_input() -> Schema:
    return obj({"status": {"enum": list(SUBSCRIPTION_STATUSES)}, "expiresAt": NULLABLE_TIME}, closed=True)


def channel_settings(adapter: type[ChannelAdapter]) -> Schema:
    """A channel's webhook settings from its adapter's setting_fields (dotted names nest); a channel
    without any takes only an empty object. The adapter's validate_settings has the finer rules."""
    if not adapter.setting_fields:
        return {"type": ["object", "null"], "maxProperties": 0}
    schema: Schema = obj({}, closed=True)
    for setting in adapter.setting_fields:
        *parents, leaf = setting.name.split(".")
        node = schema
        for key in parents:
            node = node["properties"].setdefault(key, obj({}, closed=True))
        node["properties"][leaf] = ({"type": "integer", "minimum": 1} if setting.kind == "integer"
                                    else {"type": "string", "minLength": 1})
    return {**schema, "type": ["object", "null"]}


SETTINGS_DESCRIPTION = ("Non-secret webhook settings, checked by the channel (docs/contract.md §4): WhatsApp "
                        "{\"reengagementTemplate\": {\"name\", \"language\"}}, the approved template sent "
                        "after the 24-hour window, and {\"throughput\": 1..1000}, the number's messages per "
                        "second (default 80) that replies are paced by; other channels take none. A bad "
                        "value is a 400 naming settings.<field>.")


def _webhook_input(*, create: bool) -> Schema:
    props: dict[str, Schema] = {
        "status": {"enum": ["active", "disabled"]},
        "settings": {"type": ["object", "null"], "description": SETTINGS_DESCRIPTION},
        "verifyToken": name_field(MAX_SECRET),
        "credentials": {"type": "object", "description": "per channel, docs/contract.md §2"},
        "ipAllowlist": {"type": ["array", "null"] if not create else "array", "maxItems": 500,
                        "items": {"type": "string", "maxLength": 500, "description": "IPv4/IPv6 CIDR"}},
    }
    if not create:
        return obj(props, closed=True)
    props = {"channel": {"enum": list(CHANNELS)}, "secret": name_field(MAX_SECRET), **props}
    return {**obj(props, ("channel",), closed=True), "anyOf": [channel_webhook(c) for c in CHANNELS]}


def channel_webhook(channel: str) -> Schema:
    """What one channel needs on create, from its adapter's own declaration (credential_fields,
    secret_source): the table of docs/contract.md §2."""
    adapter = ADAPTERS[channel]
    fields = adapter.credential_fields
    credentials = obj({f.name: {"type": "string", "minLength": 1} for f in fields},
                      tuple(f.name for f in fields if f.required))
    required = ["channel", *(["credentials"] if credentials.get("required") else []),
                *(["secret"] if adapter.secret_source == "given" else [])]
    return obj({"channel": {"const": channel}, "credentials": credentials,
                "settings": channel_settings(adapter)}, tuple(required))


WINDOW: Schema = {**obj({
    "state": {"enum": [OPEN, HUMAN_ONLY, TEMPLATE_ONLY, CLOSED, NONE]},
    "closesAt": {**NULLABLE_TIME, "description": "when the current state ends (null: it does not)"},
}, ("state", "closesAt")), "description": "The platform's messaging window, counted from the customer's last "
                                          "message: open (free-form), human_only (Messenger/Instagram: a "
                                          "person's reply with the HUMAN_AGENT tag), template_only (WhatsApp: "
                                          "a template), closed, none (the channel has no window)"}

DELIVERY: Schema = {
    **obj({
        "status": {"enum": list(DELIVERY_STATUSES)},
        "attempts": {"type": "integer", "minimum": 0},
        "ids": array(STRING, description="the platform's message ids"),
        "error": obj({"code": {"type": ["string", "integer", "null"]}, "title": STRING, "details": STRING},
                     ("code", "title")),
        "notBefore": {**NULLABLE_TIME, "description": "pending: a resend scheduled for then"},
        "via": {"enum": ["template", "human_agent"]},
        "template": obj({"name": STRING, "language": NULLABLE_STRING}, ("name",)),
    }, ("status", "attempts", "ids")),
    "type": ["object", "null"],
    "description": "A reply's delivery on its channel; delivered, read and late failures come from the "
                   "platform's receipts and never go back",
}


def admin_schemas() -> dict[str, Schema]:
    user_fields = {"email": {"type": "string", "format": "email", "maxLength": 254},
                   "password": {"type": "string", "minLength": MIN_PASSWORD, "maxLength": MAX_PASSWORD,
                                "writeOnly": True},
                   "role": {"enum": list(ROLES)}, "companyId": NULLABLE_STRING}
    agent_fields = {"name": name_field(), "status": {"enum": ["active", "inactive"]},
                    "kind": {"enum": list(AGENT_KINDS)}, "settings": {**AGENT_SETTINGS, "type": ["object", "null"]},
                    "allowedOrigins": array({"type": "string", "maxLength": 500}, maxItems=100)}
    return {
        "Error": ERROR,
        "LoginRequest": obj({"email": STRING, "password": STRING}, ("email", "password")),
        "Token": obj({"token": STRING, "expiresAt": TIME}, ("token", "expiresAt")),
        "User": obj({"id": STRING, "email": STRING, "role": {"enum": list(ROLES)}, "companyId": NULLABLE_STRING,
                     "disabled": {"type": "boolean"}, **TIMES},
                    ("id", "email", "role", "companyId", "disabled", "createdAt", "updatedAt")),
        "UserCreate": obj(user_fields, ("email", "password"), closed=True),
        # A password, role or company change or disabling ends the user's older sessions (401).
        "UserUpdate": obj({**user_fields, "disabled": {"type": "boolean"}}, closed=True),
        "Logout": obj({"everywhere": {"type": "boolean"}}, closed=True),
        "Company": obj({"id": STRING, "name": STRING, "subscription": obj({
            "status": {"enum": list(SUBSCRIPTION_STATUSES)}, "expiresAt": NULLABLE_TIME, "active": {"type": "boolean"},
        }, ("status", "expiresAt", "active")), **TIMES}, ("id", "name", "subscription", "createdAt", "updatedAt")),
        "CompanyCreate": obj({"name": name_field(), "subscription": {**_subscription_input(),
                                                                     "type": ["object", "null"]}},
                             ("name",), closed=True),
        "CompanyUpdate": obj({"name": name_field(), "subscription": _subscription_input()}, closed=True),
        "Agent": obj({"id": STRING, "companyId": STRING, "name": STRING, "status": {"enum": ["active", "inactive"]},
                      "kind": {"enum": list(AGENT_KINDS)}, "settings": OBJECT, "allowedOrigins": array(STRING),
                      **TIMES}, ("id", "companyId", "name", "status", "kind", "settings", "allowedOrigins")),
        "AgentCreate": obj(agent_fields, ("name",), closed=True),
        "AgentUpdate": obj(agent_fields, closed=True),
        "Webhook": obj({"id": STRING, "companyId": STRING, "agentId": STRING, "channel": {"enum": list(CHANNELS)},
                        "status": {"enum": ["active", "disabled"]}, "secret": NULLABLE_STRING,
                        "verifyToken": NULLABLE_STRING, "credentials": OBJECT, "ipAllowlist": array(STRING),
                        "url": {"type": "string", "format": "uri"}, "state": OBJECT,
                        "settings": {**OBJECT, "description": SETTINGS_DESCRIPTION},
                        "disabledReason": {"type": "string", "description": "why the gateway disabled it "
                                                                           "(e.g. the receiver answered 410)"},
                        "disabledAt": NULLABLE_TIME, **TIMES},
                       ("id", "companyId", "agentId", "channel", "status", "credentials", "url")),
        "WebhookCreate": _webhook_input(create=True),
        "WebhookUpdate": _webhook_input(create=False),
        "RotateSecret": obj({"secret": name_field(MAX_SECRET)}, closed=True),
        "Conversation": obj({
            "id": STRING, "companyId": STRING, "agentId": STRING, "channel": {"enum": [*CHANNELS, WEB_CHANNEL]},
            "webhookId": NULLABLE_STRING, "externalChatId": NULLABLE_STRING,
            "status": {"enum": list(CONVERSATION_STATUSES)}, "owner": {"enum": list(OWNERS)},
            "messageCount": {"type": "integer", "minimum": 0}, "lastMessageAt": NULLABLE_TIME,
            "lastInboundAt": NULLABLE_TIME, "window": WINDOW, "customer": OBJECT,
            **TIMES}, ("id", "companyId", "agentId", "channel", "status", "owner", "messageCount", "window")),
        "Message": obj({
            "id": STRING, "conversationId": STRING, "role": STRING, "content": STRING, "attachments": array(OBJECT),
            "channel": STRING, "state": STRING, "attempts": {"type": "integer", "minimum": 0},
            "delivery": DELIVERY,
            "replyTo": NULLABLE_STRING, "metadata": OBJECT, "createdAt": TIME,
        }, ("id", "conversationId", "role", "content", "state", "createdAt")),
        "Handover": obj({"action": {"enum": ["take", "release"]}, "message": {
            "type": ["string", "null"], "maxLength": 1000}}, ("action",), closed=True),
        "Reply": obj({"content": name_field(20_000)}, ("content",), closed=True),
        "LiveSession": obj({"nodeId": STRING, "conversationId": STRING, "companyId": STRING, "agentId": STRING,
                            "connectedSince": NULLABLE_TIME, "lastEventId": NULLABLE_STRING,
                            "eventsSent": {"type": "integer"}}, ("nodeId", "conversationId", "companyId")),
        "Node": obj({"nodeId": STRING, "lastSeen": {"type": "number"}}, ("nodeId",)),
        "WebhookEvent": obj({
            "id": STRING, "webhookId": NULLABLE_STRING, "companyId": NULLABLE_STRING, "channel": STRING,
            "receivedAt": TIME, "outcome": {"enum": list(OUTCOMES)}, "statusCode": {"type": "integer"},
            "latencyMs": {"type": "number"}, "detail": STRING, "headers": {
                "type": "object", "additionalProperties": STRING}, "body": STRING, "messageIds": array(STRING),
        }, ("id", "channel", "receivedAt", "outcome", "statusCode")),
    }


# ---- responses

REASONS = {
    400: "Bad JSON, a wrong field (named in `field`), a bad query value or a malformed request",
    401: "No, a bad or an expired credential",
    403: "Not allowed for this role, origin or subscription",
    404: "Unknown id (another tenant's ids answer the same)",
    405: "Not supported",
    409: "Conflict with the current state",
    413: "Body too large",
    429: "Too many requests; `Retry-After` says when to try again",
    502: "The platform refused or could not be reached",
    503: "A dependency (store, broker) did not answer, or the node is draining",
}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error_response(status: int) -> Schema:
    response = _json(ref("Error"), REASONS[status])
    if status == 429:
        response["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"schema": STRING, "description": "Bearer (admin API)"}}
    return response


def responses(ok: int, body: Schema | None, *errors: int, description: str = "OK") -> dict[str, Schema]:
    out: dict[str, Schema] = {str(ok): _json(body, description) if body is not None else {"description": description}}
    # 400 on every operation: Tornado refuses a malformed request (e.g. a multipart Content-Type
    # without a boundary) before any handler runs. 503: the store or broker did not answer.
    out.update({str(status): error_response(status) for status in sorted({*errors, 400, 503})})
    return out


def param(name: str, where: str, schema: Schema, description: str = "", *, required: bool = False) -> Schema:
    return {"name": name, "in": where, "required": required or where == "path", "schema": schema,
            **({"description": description} if description else {})}


def body(schema: Schema, *, required: bool = True) -> Schema:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def op(op_id: str, tag: str, resp: dict[str, Schema], *, summary: str = "", request: Schema | None = None,
       params: list[Schema] | None = None, public: bool = False) -> Schema:
    operation: Schema = {"operationId": op_id, "tags": [tag], "responses": resp}
    if summary:
        operation["summary"] = summary
    if params:
        operation["parameters"] = params
    if request is not None:
        operation["requestBody"] = request
    if public:
        operation["security"] = []
    return operation


# ---- chat

SESSION_PARAM = param("session_id", "path", {"type": "string", "pattern": SESSION_ID},
                      "The session id from POST /api/chat/sessions: a 256-bit bearer secret, the chat "
                      "API's only credential (keep it out of logs and Referer headers).")


def preflight(op_id: str, *params: Schema) -> Schema:
    resp = {"204": {"description": "CORS preflight answer (Access-Control-Allow-*)"},
            "400": error_response(400), "404": error_response(404)}
    return op(op_id, "chat", resp, params=list(params) or None, public=True, summary="CORS preflight")


def chat_paths() -> dict[str, Schema]:
    sse = {"description": "Server-Sent Events (docs/contract.md §3 SSE stream)",
           "content": {"text/event-stream": {"schema": STRING}}}
    stream_params = [SESSION_PARAM,
                     param("lastEventId", "query", STRING, "resume after this event (if Last-Event-ID is absent)"),
                     param("Last-Event-ID", "header", STRING, "resume after this event")]
    return {
        "/api/chat/sessions": {
            "post": op("createChatSession", "chat", responses(
                201, ref("ChatSession"), 400, 403, 404, 413, 429, description="Session created"),
                request=body(ref("ChatSessionRequest")), public=True, summary="Start a web chat session"),
            "options": preflight("preflightChatSessions"),
        },
        "/api/chat/{session_id}/message": {
            "post": op("postChatMessage", "chat", responses(
                202, ref("ChatMessageAccepted"), 400, 401, 404, 413, 429, description="Accepted: the answer streams"),
                request=body(ref("ChatMessageRequest")), params=[SESSION_PARAM], public=True,
                summary="Send a customer message"),
            "options": preflight("preflightChatMessage", SESSION_PARAM),
        },
        "/api/chat/{session_id}/messages": {
            "get": op("getChatHistory", "chat", responses(200, ref("ChatHistory"), 401, 404),
                      params=[SESSION_PARAM], public=True, summary="History for a widget that reloads"),
            "options": preflight("preflightChatHistory", SESSION_PARAM),
        },
        "/api/chat/{session_id}/stream": {
            "get": op("streamChat", "chat", {**responses(200, None, 401, 404, 429), "200": sse},
                      params=stream_params, public=True, summary="The session's event stream"),
            "options": preflight("preflightChatStream", SESSION_PARAM),
        },
    }


# ---- admin

def ids(*names: str) -> list[Schema]:
    return [param(name, "path", {"type": "string", "pattern": ADMIN_ID}) for name in names]


def limit_param(maximum: int) -> Schema:
    return param("limit", "query", {"type": "integer", "minimum": 1, "maximum": maximum})


def crud(item: str, create: str, update: str, path_ids: list[Schema], *, create_errors: tuple[int, ...] = (),
         delete_errors: tuple[int, ...] = (), tag: str) -> tuple[Schema, Schema]:
    """The collection's {get, post} and the item's {get, patch, delete} of one admin resource."""
    parent = path_ids[:-1]
    collection = {
        "get": op(f"list{item}s", tag, responses(200, array(ref(item)), 401, 404), params=parent or None),
        "post": op(f"create{item}", tag, responses(201, ref(item), 400, 401, 403, 404, 413, *create_errors,
                                                   description="Created"),
                   request=body(ref(create)), params=parent or None),
    }
    one = {
        "get": op(f"get{item}", tag, responses(200, ref(item), 401, 404), params=path_ids),
        "patch": op(f"update{item}", tag, responses(200, ref(item), 400, 401, 403, 404, 409, 413),
                    request=body(ref(update)), params=path_ids),
        "delete": op(f"delete{item}", tag, responses(204, None, 401, 403, 404, *delete_errors,
                                                     description="Deleted"), params=path_ids),
    }
    return collection, one


def admin_paths() -> dict[str, Schema]:
    company, agent, webhook = "/api/admin/companies/{cid}", "/api/admin/companies/{cid}/agents/{aid}", \
        "/api/admin/companies/{cid}/agents/{aid}/webhooks/{wid}"
    users, user = crud("User", "UserCreate", "UserUpdate", ids("uid"), create_errors=(409,), delete_errors=(409,),
                       tag="users")
    companies, one_company = crud("Company", "CompanyCreate", "CompanyUpdate", ids("cid"), tag="companies")
    agents, one_agent = crud("Agent", "AgentCreate", "AgentUpdate", ids("cid", "aid"), tag="agents")
    webhooks, one_webhook = crud("Webhook", "WebhookCreate", "WebhookUpdate", ids("cid", "aid", "wid"),
                                 create_errors=(502,), tag="webhooks")
    return {
        "/api/admin/login": {"post": op(
            "login", "auth", responses(200, ref("Token"), 400, 401, 413, 429), request=body(ref("LoginRequest")),
            public=True, summary="A Bearer token (HS256 JWT) for the admin API")},
        "/api/admin/logout": {"post": op(
            "logout", "auth", responses(204, None, 400, 401, 413, description="Logged out"),
            request=body(ref("Logout"), required=False),
            summary="Revoke this token; with everywhere, every token of the user")},
        "/api/admin/me": {"get": op("me", "users", responses(200, ref("User"), 401))},
        "/api/admin/users": users, "/api/admin/users/{uid}": user,
        "/api/admin/companies": companies, company: one_company,
        f"{company}/agents": agents, agent: one_agent,
        f"{agent}/webhooks": webhooks, webhook: one_webhook,
        f"{webhook}/rotate-secret": {"post": op(
            "rotateWebhookSecret", "webhooks", responses(200, ref("Webhook"), 400, 401, 404, 413, 502),
            request=body(ref("RotateSecret"), required=False), params=ids("cid", "aid", "wid"))},
        **conversation_paths(),
        "/api/admin/sessions": {"get": op("listLiveSessions", "monitoring", responses(
            200, array(ref("LiveSession")), 401), params=[param("companyId", "query", STRING)])},
        "/api/admin/nodes": {"get": op("listNodes", "monitoring", responses(200, array(ref("Node")), 401, 403))},
        "/api/admin/webhook-events": {"get": op("listWebhookEvents", "monitoring", responses(
            200, array(ref("WebhookEvent")), 400, 401, 404), params=[
            param("webhookId", "query", STRING), param("companyId", "query", STRING),
            param("outcome", "query", {"enum": list(OUTCOMES)}), limit_param(500)])},
    }


def conversation_paths() -> dict[str, Schema]:
    conv = "/api/admin/conversations/{conv_id}"
    conv_id = ids("conv_id")
    filters = [param("companyId", "query", STRING), param("agentId", "query", STRING),
               param("status", "query", {"enum": list(CONVERSATION_STATUSES)}),
               param("channel", "query", {"enum": [*CHANNELS, WEB_CHANNEL]}),
               param("owner", "query", {"enum": list(OWNERS)}), limit_param(500)]
    return {
        "/api/admin/conversations": {"get": op("listConversations", "conversations", responses(
            200, array(ref("Conversation")), 400, 401), params=filters, summary="Newest first")},
        conv: {"get": op("getConversation", "conversations", responses(200, ref("Conversation"), 401, 404),
                         params=conv_id)},
        f"{conv}/messages": {"get": op("listConversationMessages", "conversations", responses(
            200, array(ref("Message")), 400, 401, 404), params=[*conv_id, limit_param(5000)])},
        f"{conv}/handover": {"post": op("handover", "conversations", responses(
            200, ref("Conversation"), 400, 401, 404, 413), request=body(ref("Handover")), params=conv_id)},
        f"{conv}/reply": {"post": op("reply", "conversations", responses(
            201, ref("Message"), 400, 401, 404, 409, 413, description="Stored and sent"),
            request=body(ref("Reply")), params=conv_id, summary="409 unless taken over")},
        f"{conv}/typing": {"post": op("typing", "conversations", responses(204, None, 401, 404), params=conv_id)},
    }


# ---- channel webhooks and the document itself

def webhook_paths() -> dict[str, Schema]:
    params = [*ids("company_id", "agent_id"), param("channel", "path", {"enum": list(CHANNELS)}),
              *ids("webhook_id")]
    answer = {"description": "Accepted (`{\"status\": \"ok\"|\"duplicate\"|\"ignored\"}`) or a handshake answer",
              "content": {"application/json": {"schema": OBJECT}, "text/plain": {"schema": STRING}}}
    signed = {"description": "Any body: it is verified against the channel's signature scheme "
                             "(docs/channels.md) before it is parsed.",
              "content": {"application/json": {"schema": {}},
                          "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    errors = (400, 401, 403, 404, 413, 429)
    return {"/api/webhooks/{company_id}/{agent_id}/{channel}/{webhook_id}": {
        "get": op("webhookHandshake", "webhooks (signed)", {**responses(200, None, *errors, 405), "200": answer},
                  params=params, public=True, summary="Verification handshake"),
        "post": op("webhookDelivery", "webhooks (signed)", {**responses(200, None, *errors), "200": answer},
                   request={"required": False, **signed}, params=params, public=True,
                   summary="A platform delivery (signed by the platform)"),
    }}


def build_document(settings: Settings) -> dict[str, Any]:
    """The whole document for a node with these settings."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Buzzi realtime gateway API",
            "version": "1",
            "description": "Web chat (a session id in the path is the credential), the admin API (Bearer "
                           "JWT from POST /api/admin/login) and the signed channel webhooks. Errors are "
                           "`{\"error\": str, \"field\"?: str, ...}`. See docs/contract.md.",
        },
        "servers": [{"url": settings.server.public_url.rstrip("/")}],
        "security": [{"bearerAuth": []}],
        "tags": [{"name": name} for name in ("chat", "auth", "users", "companies", "agents", "webhooks",
                                              "conversations", "monitoring", "webhooks (signed)", "meta")],
        "paths": {
            **chat_paths(), **admin_paths(), **webhook_paths(),
            "/api/openapi.json": {"get": op(
                "openapi", "meta", {"200": _json(OBJECT, "This document"), "400": error_response(400)}, public=True)},
        },
        "components": {
            "schemas": {**chat_schemas(settings), **admin_schemas()},
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }
