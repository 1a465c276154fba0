"""The delivery log keeps an excerpt of every request for the dashboard: credentials in it are masked."""

from __future__ import annotations

import json

import pytest

from buzzi.delivery_log import redact_body, redact_headers


@pytest.mark.parametrize("key", ["token", "access_token", "client_secret", "appPassword", "password", "apiKey",
                                 "api_key", "x-api-key", "refreshToken", "BOT_TOKEN", "signing_secret"])
def test_credential_keys_are_masked_wherever_they_sit(key: str) -> None:
    body = json.dumps({"event": {"user": "U1", "auth": {key: 'p@ss "quoted" \\ value'}}, "text": "keep me"})
    redacted = redact_body(body.encode())
    assert "p@ss" not in redacted and "value" not in redacted
    parsed = json.loads(redacted)  # still JSON: the excerpt stays readable
    assert parsed["event"]["auth"][key] == "[redacted]" and parsed["text"] == "keep me"


def test_ordinary_fields_are_kept() -> None:
    body = json.dumps({"tokens": 3, "message": {"text": "my password is on a sticky note", "secretary": "Ana"}})
    assert redact_body(body.encode()) == body  # only string values of credential keys go


def test_signature_and_auth_headers_are_masked() -> None:
    headers = {"Authorization": "Bearer abc", "X-Hub-Signature-256": "sha256=ff", "Content-Type": "application/json"}
    assert redact_headers(headers) == {"Authorization": "[redacted]", "X-Hub-Signature-256": "[redacted]",
                                       "Content-Type": "application/json"}
