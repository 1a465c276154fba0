"""The delivery log keeps an excerpt of every request for the dashboard: credentials in it are masked."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlencode

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


@pytest.mark.parametrize("name", ["X-Api-Key", "Proxy-Authorization", "X-Auth-Token", "X-Goog-Api-Key",
                                  "X-Vendor-Whatever", "Cookie", "X-Telegram-Bot-Api-Secret-Token",
                                  "Webhook-Signature", "x-api-key"])
def test_every_header_outside_the_allow_list_is_masked(name: str) -> None:
    shown = redact_headers({name: "s3cr3t-value-0001", "User-Agent": "Slackbot 1.0", "Webhook-Id": "msg_1",
                            "X-Slack-Request-Timestamp": "1531420618"})
    assert shown == {name: "[redacted]", "User-Agent": "Slackbot 1.0", "Webhook-Id": "msg_1",
                     "X-Slack-Request-Timestamp": "1531420618"}


def test_header_names_values_and_count_are_bounded() -> None:
    headers = {f"X-H{i}-" + "n" * 500: "v" for i in range(200)} | {"User-Agent": "u" * 5000}
    shown = redact_headers(headers)
    assert len(shown) <= 60 and all(len(k) <= 100 for k in shown)
    assert all(len(v) <= 300 for v in redact_headers({"User-Agent": "u" * 5000}).values())


@pytest.mark.parametrize("body", [
    rb'{"p\u0061ssword": "hunter2-secret-value"}',
    rb'{"user": {"\u0074\u006f\u006b\u0065\u006e": "hunter2-secret-value"}}',
    rb'{"a": [{"b": [{"c": {"client_secret": "hunter2-secret-value"}}]}]}',
    rb'{"CREDENTIALS": {"user": "ann", "pin": "hunter2-secret-value"}}',
    rb'{"api_key": 1234567890123, "x": "kept"}',
])
def test_escaped_and_nested_credential_keys_are_masked(body: bytes) -> None:
    redacted = redact_body(body)
    assert "hunter2" not in redacted and "1234567890123" not in redacted
    assert "[redacted]" in redacted
    assert "kept" in redacted or "kept" not in body.decode()
    json.loads(redacted)  # still readable JSON


def test_form_bodies_are_masked_after_decoding() -> None:
    payload = json.dumps({"type": "block_actions", "token": "verif-token-123", "user": {"id": "U1"}})
    body = urlencode({"p%61ssword": "x", "payload": payload, "text": "hello there"}).encode()
    body += b"&p%61ssword=hunter2-secret-value&access%5Ftoken=abcdef"
    redacted = redact_body(body)
    assert "hunter2" not in redacted and "abcdef" not in redacted and "verif-token-123" not in redacted
    fields = dict(parse_qsl(redacted))
    assert fields["text"] == "hello there" and json.loads(fields["payload"])["user"] == {"id": "U1"}


def test_unparseable_bodies_still_lose_credentials() -> None:
    # Cut in the middle (a body larger than the excerpt), so it parses as neither JSON nor a form.
    body = (b'{"auth": {"p\\u0061ssword": "hunter2-a", "refresh_token": "hunter2-b"}, '
            b'"note": "Authorization: Bearer abcdefghijklmnop", "jwt": "eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl", '
            b'"slack": "xoxb-1234-5678-abcdefgh", "tg": "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", '
            b'"rest": "' + b"x" * 5000 + b'"}')
    redacted = redact_body(body)
    for secret in ("hunter2", "abcdefghijklmnop", "eyJhbGciOi", "xoxb-1234", "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"):
        assert secret not in redacted, secret
    assert '"note": "Authorization: ' in redacted and len(redacted) <= 4096


def test_deeply_nested_and_invalid_bodies_do_not_break_the_log() -> None:
    deep = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    assert redact_body(deep).startswith('{"a":{"a":')
    assert redact_body(b'{"password": "\\ud800x", "t": "\xff"}') == '{"password": "[redacted]", "t": "\ufffd"}'
    assert redact_body(b"\x00\x01 binary token garbage") == "\x00\x01 binary token garbage"


def test_a_body_without_secrets_is_kept_byte_for_byte() -> None:
    body = b'{"object":"page","entry":[{"id":"1","messaging":[{"message":{"mid":"m_1","text":"a\\/b \\u00e9"}}]}]}'
    assert redact_body(body) == body.decode()
