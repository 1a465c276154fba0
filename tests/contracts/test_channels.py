"""The ChannelAdapter contract, checked over every registered channel: an eighth channel is tested
by adding it to the registry (and its ChannelCase to tests/support/channel_factories.py).

What every adapter promises: metadata the admin forms are derived from, coherent with what the
adapter does (secrets, verify token, GET handshake, test event); credentials refused with a
CredentialsError naming the field; inbound requests authenticated before anything is read; a signed
sample event that is acknowledged but answers nobody; and whatever bytes arrive, a PayloadError or a
ParseResult, never another exception (a 500). Channel-specific behaviour stays in tests/channels/.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from buzzi.channels.base import (
    CannotSimulate,
    ChannelAdapter,
    CredentialField,
    CredentialsError,
    InboundMessage,
    ParseResult,
    PayloadError,
    VerificationError,
    WebhookRequest,
)
from buzzi.channels.pacing import SendLimits
from buzzi.channels.registry import CHANNELS, ChannelRegistry
from buzzi.config import load_settings
from buzzi.models import Webhook
from tests.support.channel_factories import CASES, ChannelCase, channel_webhook, inbound_request

NOW = 1_750_000_000.0
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(params=CHANNELS)
def channel(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def adapter(channel: str) -> AsyncIterator[ChannelAdapter]:
    registry = ChannelRegistry(load_settings(env={}).channels)
    yield registry.adapter(channel)
    await registry.close()


@pytest.fixture
def case(channel: str) -> ChannelCase:
    return CASES[channel]


@pytest.fixture
def webhook(adapter: ChannelAdapter, case: ChannelCase) -> Webhook:
    """A webhook as the admin service stores it: validated credentials, secrets per secret_source."""
    secret, verify_token = adapter.generate_secrets(case.given_secret, None)
    return channel_webhook(adapter.channel, secret=secret, verify_token=verify_token,
                           credentials=adapter.validate_credentials(case.credentials))


def signed(case: ChannelCase, webhook: Webhook, body: bytes, content_type: str = "application/json") -> WebhookRequest:
    headers = {"Content-Type": content_type, **(case.sign(webhook, body, NOW) if case.sign else {})}
    return inbound_request(body, headers, now=NOW)


def test_every_registered_channel_has_a_case() -> None:
    assert set(CASES) == set(CHANNELS)


# ---------------------------------------------------------------------------- metadata

def test_metadata_is_present_and_coherent(adapter: ChannelAdapter, channel: str) -> None:
    assert adapter.channel == channel
    assert isinstance(adapter.display_name, str) and adapter.display_name.strip()
    fields = adapter.credential_fields
    assert fields and all(isinstance(f, CredentialField) and f.name and f.label for f in fields)
    assert len({f.name for f in fields}) == len(fields)
    assert any(f.required for f in fields)
    assert adapter.secret_source in ("given", "generated", "none")
    assert isinstance(adapter.secret_hint, str) and adapter.secret_hint.strip()
    assert isinstance(adapter.text_limit, int) and adapter.text_limit > 0
    assert isinstance(adapter.send_limits, SendLimits)


def test_verify_token_only_with_a_get_handshake(adapter: ChannelAdapter, webhook: Webhook) -> None:
    get = inbound_request(b"", method="GET", now=NOW, query={
        "hub.mode": "subscribe", "hub.verify_token": webhook.verify_token or "", "hub.challenge": "1158201444"})
    answer = adapter.handshake(webhook, get)
    assert (answer is not None) == adapter.has_verify_token
    if answer is not None:
        assert (answer.status, answer.body) == (200, "1158201444")
        assert webhook.verify_token
        wrong = inbound_request(b"", method="GET", now=NOW, query={**get.query, "hub.verify_token": "wrong"})
        assert adapter.handshake(webhook, wrong).status == 403


# ---------------------------------------------------------------------------- credentials and secrets

@pytest.mark.parametrize("garbage", [None, [], "botToken", 12, {}])
def test_credentials_refuse_garbage(adapter: ChannelAdapter, garbage: Any) -> None:
    names = {f.name for f in adapter.credential_fields}
    with pytest.raises(CredentialsError) as exc:
        adapter.validate_credentials(garbage)
    assert exc.value.field in names | {"credentials"}


def test_credentials_accept_a_valid_set(adapter: ChannelAdapter, case: ChannelCase) -> None:
    accepted = adapter.validate_credentials(case.credentials)
    names = {f.name for f in adapter.credential_fields}
    assert set(accepted) <= names
    assert {f.name for f in adapter.credential_fields if f.required} <= set(accepted)


def test_each_field_is_checked(adapter: ChannelAdapter, case: ChannelCase) -> None:
    for field in adapter.credential_fields:
        bad_values: list[Any] = [12.5, ["x"], "with spaces\nand a newline"]
        if field.required:
            bad_values += [None, "", "" if field.secret else "   "]
        for bad in bad_values:
            credentials = {k: v for k, v in case.credentials.items() if k != field.name}
            if bad is not None:
                credentials[field.name] = bad
            try:
                adapter.validate_credentials(credentials)
            except CredentialsError as exc:
                assert exc.field == field.name, (field.name, bad)
            else:  # a free-text secret (an app password) may contain anything but must be typed
                assert field.secret and isinstance(bad, str) and bad, (field.name, bad)


def test_secrets_follow_secret_source(adapter: ChannelAdapter, case: ChannelCase) -> None:
    if adapter.secret_source == "given":
        with pytest.raises(CredentialsError) as exc:
            adapter.generate_secrets(None, None)
        assert exc.value.field == "secret"
        assert adapter.generate_secrets(f"  {case.given_secret} ", None)[0] == case.given_secret
    elif adapter.secret_source == "generated":
        first, second = adapter.generate_secrets(None, None)[0], adapter.generate_secrets(None, None)[0]
        assert first and second and first != second
        assert adapter.generate_secrets(case.given_secret, None)[0] == case.given_secret
        with pytest.raises(CredentialsError) as exc:
            adapter.generate_secrets("not a usable secret!", None)
        assert exc.value.field == "secret"
    else:
        assert adapter.generate_secrets(None, None) == (None, None)
        assert adapter.generate_secrets("ignored", "ignored") == (None, None)
    given_token = adapter.generate_secrets(case.given_secret, "my-verify-token")[1]
    made_token = adapter.generate_secrets(case.given_secret, None)[1]
    if adapter.has_verify_token:
        assert given_token == "my-verify-token" and made_token
    else:
        assert given_token is None and made_token is None


# ---------------------------------------------------------------------------- authentication

async def test_unsigned_or_wrongly_signed_requests_fail(adapter: ChannelAdapter, case: ChannelCase,
                                                        webhook: Webhook) -> None:
    body = case.message(NOW)
    with pytest.raises(VerificationError):
        await adapter.verify(webhook, inbound_request(body, {"Content-Type": "application/json"}, now=NOW))
    if case.sign is None:
        forged = {"Authorization": "Bearer not-a-token"}
    else:
        other = "another-app-secret" if adapter.secret_source == "given" else adapter.generate_secrets(None, None)[0]
        impostor = channel_webhook(adapter.channel, secret=other)
        forged = case.sign(impostor, body, NOW)
    with pytest.raises(VerificationError):
        await adapter.verify(webhook, inbound_request(body, forged, now=NOW))


async def test_a_signed_message_passes_and_parses(adapter: ChannelAdapter, case: ChannelCase,
                                                  webhook: Webhook) -> None:
    request = signed(case, webhook, case.message(NOW))
    if case.sign is not None:
        await adapter.verify(webhook, request)
        if case.sign(webhook, request.body + b" ", NOW) != case.sign(webhook, request.body, NOW):
            tampered = inbound_request(request.body + b" ", request.headers, now=NOW)  # the body is signed
            with pytest.raises(VerificationError):
                await adapter.verify(webhook, tampered)
    (message,) = adapter.parse(webhook, request).messages
    assert message.channel == adapter.channel
    assert_storable(message)


async def test_sample_event_is_signed_and_answers_nobody(adapter: ChannelAdapter, webhook: Webhook) -> None:
    if adapter.secret_source == "none":
        with pytest.raises(CannotSimulate):  # only the platform holds the keys that sign its requests
            adapter.sample_event(webhook, NOW)
        return
    sample = adapter.sample_event(webhook, NOW)
    assert sample.description and sample.body
    request = inbound_request(sample.body, sample.headers, now=NOW)
    await adapter.verify(webhook, request)
    result = adapter.parse(webhook, request)
    assert result.messages == [] and result.response is None


# ---------------------------------------------------------------------------- garbage in

def deep(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


GARBAGE: list[bytes] = [
    b"", b" ", b"\x00", b"\xff\xfe\xfa", b"not json", b"{", b"[]", b"null", b"1", b'"text"', b"{}", b"[{}]",
    b'{"a": NaN}', b'{"\\ud800": "\\udfff"}', b"payload=%7B%7D", b"payload=%5B1%5D", b"payload=not-json",
    b"[" * 100_000 + b"]" * 100_000, deep(100_000), deep(500), b'{"a": ' + b"[" * 5000,
    *(random.Random(seed).randbytes(random.Random(seed).randint(1, 512)) for seed in range(20)),
]


@pytest.mark.parametrize("content_type", ["application/json", FORM])
async def test_garbage_gives_a_payload_error_or_nothing(adapter: ChannelAdapter, case: ChannelCase,
                                                        webhook: Webhook, content_type: str) -> None:
    for body in GARBAGE:
        request = signed(case, webhook, body, content_type)
        if case.sign is not None:
            await adapter.verify(webhook, request)  # correctly signed: parse must cope on its own
        result = parse_or_payload_error(adapter, webhook, request)
        assert result is None or result.messages == [], body[:80]


def mutations(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every (path, replacement) that swaps one value of `value` for one of the wrong shape."""
    nested: Any = "\x00DEEP\x00"
    for replacement in (None, True, 0, -1.5, "", "x" * 300, [], {}, [None], {"id": {}}, nested):
        if path:
            yield path, replacement
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield from mutations(child, (*path, key))


def replaced(value: Any, path: tuple[Any, ...], replacement: Any) -> Any:
    if not path:
        return replacement
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = replaced(value[path[0]], path[1:], replacement)
    return copy


async def test_a_message_of_the_wrong_shape_gives_a_payload_error_or_storable_messages(
        adapter: ChannelAdapter, case: ChannelCase, webhook: Webhook) -> None:
    original = json.loads(case.message(NOW))
    for nesting in (deep(900), deep(100_000)):
        for path, replacement in mutations(original):
            body = json.dumps(replaced(original, path, replacement)).encode()
            body = body.replace(b'"\\u0000DEEP\\u0000"', nesting)
            result = parse_or_payload_error(adapter, webhook, signed(case, webhook, body))
            for message in result.messages if result else []:
                assert_storable(message, where=path)


def parse_or_payload_error(adapter: ChannelAdapter, webhook: Webhook, request: WebhookRequest) -> ParseResult | None:
    try:
        result = adapter.parse(webhook, request)
    except PayloadError as exc:
        assert str(exc), "a PayloadError is the 400 answer's message: it must say something"
        return None
    assert isinstance(result, ParseResult)
    return result


def assert_storable(message: InboundMessage, where: tuple[Any, ...] = ()) -> None:
    """The fields the gateway stores and routes on are strings, whatever shape the payload had."""
    for name in ("message_id", "chat_id", "sender_id", "text", "kind"):
        assert isinstance(getattr(message, name), str), (name, where)
    assert message.message_id and message.chat_id, where
    for name in ("sender_name", "reply_to_id", "thread_id"):
        assert getattr(message, name) is None or isinstance(getattr(message, name), str), (name, where)
    assert message.timestamp is None or isinstance(message.timestamp, float), where
    json.dumps(message.meta)  # stored as JSON
