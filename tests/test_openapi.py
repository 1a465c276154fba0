"""The OpenAPI document (buzzi/openapi.py) against the routes that really exist, and as served.

The route walk is what keeps the document from drifting: a new route or a new handler method under
/api/ without its operation fails here, and so does an operation no route serves."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import tornado.web
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

from buzzi.config import load_settings
from buzzi.openapi import build_document
from handlers.app import routes
from tests.support.gateway import running_gateway

METHODS = ("get", "post", "put", "patch", "delete", "options", "head")
GROUP = re.compile(r"\((?:[^()\\]|\\.)*\)")  # one capture group of a route regex (none is nested)
PLACEHOLDER = re.compile(r"\{[^}]+\}")


def api_routes() -> dict[str, tuple[str, set[str]]]:
    """Every /api/ route: its path with `{}` for each group -> (regex, methods its handler implements).
    A catch-all (`/api/admin/.*`, which implements no method) serves nothing to document."""
    found: dict[str, tuple[str, set[str]]] = {}
    for pattern, handler, *_ in routes():
        if not pattern.startswith("/api/"):
            continue
        methods = {m for m in METHODS if getattr(handler, m) is not getattr(tornado.web.RequestHandler, m)}
        if methods:
            found[GROUP.sub("{}", pattern).removesuffix("/?")] = (pattern, methods)
    return found


def document() -> dict[str, Any]:
    return build_document(load_settings(env={}))


def documented() -> dict[str, set[str]]:
    return {path: {m for m in ops if m in METHODS} for path, ops in document()["paths"].items()}


def test_every_api_route_and_method_is_documented():
    docs = {PLACEHOLDER.sub("{}", path): methods for path, methods in documented().items()}
    missing = [f"{method.upper()} {shape}" for shape, (_, methods) in api_routes().items()
               for method in sorted(methods) if method not in docs.get(shape, set())]
    assert not missing, f"routes missing from buzzi/openapi.py: {missing}"


def test_every_documented_operation_is_served_by_a_route():
    served = api_routes()
    extra = []
    for path, methods in documented().items():
        sample = PLACEHOLDER.sub("x_1", path)  # fits every id pattern of the routes
        handler_methods = next((m for regex, m in served.values() if re.fullmatch(regex, sample)), set())
        extra += [f"{method.upper()} {path}" for method in sorted(methods - handler_methods)]
    assert not extra, f"documented but served by no route: {extra}"


def test_path_parameters_match_the_routes():
    """A path parameter's pattern accepts what the route accepts and nothing longer."""
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            names = PLACEHOLDER.findall(path)
            params = [p for p in operation.get("parameters", []) if p["in"] == "path"]
            assert sorted(f"{{{p['name']}}}" for p in params) == sorted(names), (method, path)
            for p in params:
                pattern = p["schema"].get("pattern")
                if pattern:  # an enum (channel) needs none
                    assert re.fullmatch(pattern.strip("^$"), "x" * 100) and not re.fullmatch(pattern, "a/b")


def test_the_document_is_valid_openapi_31_with_valid_schemas():
    doc = document()
    OPENAPI_31_VALIDATOR.validate(doc)
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(doc)))
    assert refs and refs <= set(doc["components"]["schemas"])


def test_errors_security_and_limits_are_described():
    doc = document()
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert response["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/Error"}, (method, path, status)
            public = operation.get("security") == []
            assert public == (not path.startswith("/api/admin/") or path == "/api/admin/login"), (method, path)
            if not public:
                assert "401" in operation["responses"], (method, path)
            if "requestBody" in operation and path.startswith(("/api/chat/", "/api/admin/")):
                assert "413" in operation["responses"], (method, path)
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    message = doc["components"]["schemas"]["ChatMessageRequest"]["properties"]["content"]
    assert message["maxLength"] == 4000
    small = build_document(load_settings(env={}, overrides={"chat": {"max_content_chars": 50}}))
    assert small["components"]["schemas"]["ChatMessageRequest"]["properties"]["content"]["maxLength"] == 50


async def test_served_document_is_the_built_one(make_settings):
    async with running_gateway(make_settings) as node:
        status, served, headers = await node.request("GET", "/api/openapi.json")
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        assert served == build_document(node.gateway.settings)
        assert served["servers"] == [{"url": node.base_url}]
