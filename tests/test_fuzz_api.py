"""schemathesis over every operation of /api/openapi.json against a real node (run.py in a process).

Each generated case (schemathesis 4: explicit examples, coverage cases and BUZZI_FUZZ_EXAMPLES fuzzed
ones, positive and negative) is sent with the owner's Bearer token and without one (admin API; the
chat and webhook routes are public and sent once). Checks: no 5xx, every status documented, every
JSON body valid against the document. Half of the cases get real ids (a throwaway company, agent,
webhook, user, conversation and chat session) in place of generated ones, so the handlers' checks
past "not found" are fuzzed too; DELETE only ever gets the ids of a second throwaway set, so the run
cannot delete the owner or the objects the other operations need.

Nightly: BUZZI_FUZZ_EXAMPLES=500 .venv/bin/python -m pytest tests/test_fuzz_api.py
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from buzzi.config import load_settings
from buzzi.openapi import build_document
from tests.support.node_process import ADMIN_PASSWORD, node_process

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("BUZZI_FUZZ_EXAMPLES", "25"))
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
TIMEOUT = 10  # seconds per request: a hang is a failure too

schema = schemathesis.openapi.from_dict(build_document(load_settings(env={})))

# Limits that would otherwise answer 429 to most of the run; 429 itself is still documented and checked.
NODE_ENV = {
    "BUZZI_LIMITS_IP_PER_MINUTE": "1000000", "BUZZI_LIMITS_SESSION_PER_MINUTE": "1000000",
    "BUZZI_LIMITS_COMPANY_PER_MINUTE": "1000000", "BUZZI_SECURITY_LOGIN_ATTEMPTS_PER_MINUTE": "1000000",
    # Nothing listens on port 9: registering a Telegram webhook or fetching Teams keys fails fast (502).
    "BUZZI_TELEGRAM_API_BASE": "http://127.0.0.1:9", "BUZZI_TEAMS_OPENID_URL": "http://127.0.0.1:9/openid",
    "BUZZI_TEAMS_TOKEN_URL": "http://127.0.0.1:9/token",
}

# How many cases each operation ran, the statuses they got, and the 5xx answers seen, for the summary.
# schemathesis also probes each path with methods the document does not list (expecting 405): one bucket.
UNSUPPORTED = "methods not in the document"
cases_run: collections.Counter[str] = collections.Counter()
statuses: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
server_errors: list[str] = []


class World:
    """A node, the owner's token and real ids the cases may use."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = requests.Session()
        self.token = self._call("POST", "/api/admin/login", {"email": "admin@localhost",
                                                             "password": ADMIN_PASSWORD})["token"]
        self.ids = self._objects("fuzz")
        self.victims = self._objects("victim")  # for DELETE only
        # Logout revokes the token it is sent with (and, with everywhere, every token of the user):
        # fuzzed with a fresh token of a user of its own, never with the owner's.
        self.leaver = {"email": "leaver@example.com", "password": "password-123"}
        self._call("POST", "/api/admin/users", {**self.leaver, "companyId": self.ids["cid"]}, auth=True)

    def token_for(self, case: schemathesis.Case) -> str:
        if case.path == "/api/admin/logout":
            return self._call("POST", "/api/admin/login", self.leaver)["token"]
        return self.token

    def _call(self, method: str, path: str, body: Any = None, *, auth: bool = False) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        resp = self.http.request(method, self.base_url + path, json=body, headers=headers, timeout=TIMEOUT)
        assert resp.status_code < 300, (method, path, resp.status_code, resp.text)
        return resp.json()

    def _objects(self, name: str) -> dict[str, str]:
        cid = self._call("POST", "/api/admin/companies", {"name": name}, auth=True)["id"]
        agent = {"name": "faq", "settings": {"documents": [{"title": "Hours", "content": "9 to 5"}]}}
        aid = self._call("POST", f"/api/admin/companies/{cid}/agents", agent, auth=True)["id"]
        hook = {"channel": "custom", "credentials": {"callbackUrl": "http://127.0.0.1:9/callback"}}
        wid = self._call("POST", f"/api/admin/companies/{cid}/agents/{aid}/webhooks", hook, auth=True)["id"]
        user = {"email": f"{name}@example.com", "password": "password-123", "companyId": cid}
        uid = self._call("POST", "/api/admin/users", user, auth=True)["id"]
        session = self._call("POST", "/api/chat/sessions", {"companyId": cid, "agentId": aid})
        self._call("POST", f"/api/chat/{session['sessionId']}/message", {"content": "opening hours?"})
        return {"cid": cid, "company_id": cid, "aid": aid, "agent_id": aid, "wid": wid, "webhook_id": wid,
                "uid": uid, "conv_id": session["conversationId"], "session_id": session["sessionId"]}

    def realize(self, case: schemathesis.Case, real: bool) -> None:
        """Put real ids into the path (and the chat session body) of every other case."""
        if not real:
            return
        ids = self.victims if case.method == "DELETE" else self.ids
        path = case.path_parameters or {}
        for name in path:
            # A stream with a real session stays open by design: fuzzed with made-up ids only.
            if name in ids and not case.path.endswith("/stream"):
                path[name] = ids[name]
        if path.get("channel") is not None and "webhook_id" in path:
            path["channel"] = "custom"
        if case.path == "/api/chat/sessions" and isinstance(case.body, dict):
            case.body.update(companyId=self.ids["cid"], agentId=self.ids["aid"])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[World]:
    with node_process(tmp_path_factory.mktemp("fuzz"), **NODE_ENV) as node:
        yield World(node.base_url)
        stderr = node.stderr()
    report = {"casesPerOperation": dict(sorted(cases_run.items())), "serverErrors": server_errors,
              "statuses": {label: dict(sorted(seen.items())) for label, seen in sorted(statuses.items())},
              "tracebacks": stderr.count("Traceback")}
    if path := os.environ.get("BUZZI_FUZZ_REPORT"):
        Path(path).write_text(json.dumps(report, indent=1))
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            operations = {key.rsplit(" (", 1)[0] for key in cases_run if key != UNSUPPORTED}
            reporter.write_line(f"\nfuzz: {sum(cases_run.values())} requests over {len(operations)} "
                                f"operations (examples={EXAMPLES}), {len(server_errors)} 5xx, "
                                f"{report['tracebacks']} tracebacks in the node's log")


def send(world: World, case: schemathesis.Case, *, auth: bool) -> None:
    label = f"{case.method} {case.path}" if case.method == case.operation.method.upper() else UNSUPPORTED
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    if auth:
        headers["Authorization"] = f"Bearer {world.token_for(case)}"
    case.headers = headers
    response = case.call(base_url=world.base_url, session=world.http, timeout=TIMEOUT)
    cases_run[f"{label} ({'owner' if auth else 'anonymous'})" if label != UNSUPPORTED else label] += 1
    statuses[label][response.status_code] += 1
    if response.status_code >= 500:
        server_errors.append(f"{label} -> {response.status_code}")
    case.validate_response(response, checks=CHECKS)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_api(case: schemathesis.Case, world: World) -> None:
    admin = case.path.startswith("/api/admin/") and case.path != "/api/admin/login"
    real = cases_run[f"{case.method} {case.path} (anonymous)"] % 2 == 1
    world.realize(case, real)
    if admin:
        send(world, case, auth=True)
    send(world, case, auth=False)
