"""docs/contract.md §2's outcomes table, row by row, over real HTTP: each rejection answers the contract's
status and body, and nothing is stored or answered unless the row says so."""

from __future__ import annotations

import json
import time

import pytest

from buzzi import clock
from buzzi.models import Agent, Company, Message, Webhook
from tests.support.fake_meta import WA_STATUS_SAMPLE
from tests.webhooks.kit import CHANNELS, META, ChannelLab, Signed, channel_lab

INVALID = (404, {"error": "Invalid webhook"})
SIGNATURE_HEADERS = {"x-hub-signature-256", "x-telegram-bot-api-secret-token", "x-slack-signature",
                     "authorization", "webhook-signature"}


async def assert_nothing_stored(lab: ChannelLab) -> None:
    assert await lab.gw.store.count(Message) == 0


# ---- 404: unknown or disabled webhook, agent or company; channel mismatch

@pytest.mark.parametrize("where", ["webhook", "agent", "company", "channel", "unknown_channel"])
async def test_unknown_parts_of_the_url_are_invalid(lab: ChannelLab, where: str) -> None:
    signed = lab.message("whatsapp")
    path = {"webhook": {"webhook_id": "wh_nope"}, "agent": {"agent_id": "a_nope"},
            "company": {"company_id": "c_nope"}, "channel": {"url_channel": "messenger"},
            "unknown_channel": {"url_channel": "sms"}}[where]
    status, body, _ = await lab.post("whatsapp", signed, **path)
    assert (status, body) == INVALID
    await assert_nothing_stored(lab)


async def test_webhook_of_another_company_or_agent_is_invalid(lab: ChannelLab) -> None:
    other = await lab.gw.store.add(Company(id="c_other", name="Other"))
    agent = await lab.gw.store.add(Agent(id="a_other", company_id=other.id, name="Other"))
    signed = lab.message("telegram")
    assert (await lab.post("telegram", signed, company_id=other.id))[:2] == INVALID
    assert (await lab.post("telegram", signed, company_id=other.id, agent_id=agent.id))[:2] == INVALID
    await assert_nothing_stored(lab)


@pytest.mark.parametrize("channel", CHANNELS)
async def test_disabled_webhook_is_invalid(lab: ChannelLab, channel: str) -> None:
    await lab.gw.store.update(Webhook, lab.hooks[channel].id, {"status": "disabled"})
    assert (await lab.post(channel, lab.message(channel)))[:2] == INVALID
    if channel in META:
        assert (await lab.get(channel, "hub.mode=subscribe&hub.verify_token=x&hub.challenge=1"))[:2] == INVALID
    await assert_nothing_stored(lab)


async def test_inactive_agent_and_deleted_company_are_invalid(lab: ChannelLab) -> None:
    await lab.gw.store.update(Agent, lab.agent.id, {"status": "inactive"})
    assert (await lab.post("slack", lab.message("slack")))[:2] == INVALID
    await lab.gw.store.update(Agent, lab.agent.id, {"status": "active"})
    await lab.gw.store.delete(Company, lab.company.id)
    assert (await lab.post("slack", lab.message("slack")))[:2] == INVALID
    await assert_nothing_stored(lab)


# ---- 403: the IP allowlist

async def test_ipv4_allowlist(lab: ChannelLab) -> None:
    await lab.gw.store.update(Webhook, lab.hooks["custom"].id, {"ip_allowlist": ["10.0.0.0/8", "192.168.1.7"]})
    assert (await lab.post("custom", lab.message("custom")))[:2] == (403, {"error": "Forbidden"})
    await assert_nothing_stored(lab)
    await lab.gw.store.update(Webhook, lab.hooks["custom"].id, {"ip_allowlist": ["10.0.0.0/8", "127.0.0.0/8"]})
    assert (await lab.post("custom", lab.message("custom")))[:2] == (200, {"status": "ok"})


async def test_ipv6_allowlist_behind_a_trusted_proxy(make_settings) -> None:
    async with channel_lab(make_settings, server={"trusted_proxies": ["127.0.0.1/32"]}) as lab:
        await lab.gw.store.update(Webhook, lab.hooks["telegram"].id, {"ip_allowlist": ["2001:db8::/32"]})
        outside = lab.message("telegram")
        outside.headers["X-Forwarded-For"] = "2001:db9::7"
        assert (await lab.post("telegram", outside))[:2] == (403, {"error": "Forbidden"})
        inside = lab.message("telegram")
        inside.headers["X-Forwarded-For"] = "2001:db8:0:1::7"
        assert (await lab.post("telegram", inside))[:2] == (200, {"status": "ok"})
        assert len(await lab.messages("telegram")) == 1


# ---- 413: body over the limit

async def test_body_over_the_limit(make_settings) -> None:
    async with channel_lab(make_settings, webhooks={"max_body_bytes": 2048}) as lab:
        big = lab.message("whatsapp", "x" * 3000)
        assert (await lab.post("whatsapp", big))[:2] == (413, {"error": "Payload too large"})
        assert (await lab.post("whatsapp", lab.message("whatsapp", "small")))[:2] == (200, {"status": "ok"})
        assert len(await lab.messages("whatsapp", role="user")) == 1


# ---- 401: signatures and timestamps

@pytest.mark.parametrize("channel", CHANNELS)
async def test_missing_or_wrong_signature(lab: ChannelLab, channel: str) -> None:
    signed = lab.message(channel)
    secret_header = {"whatsapp": "X-Hub-Signature-256", "messenger": "X-Hub-Signature-256",
                     "instagram": "X-Hub-Signature-256", "telegram": "X-Telegram-Bot-Api-Secret-Token",
                     "slack": "X-Slack-Signature", "teams": "Authorization", "custom": "webhook-signature"}[channel]
    missing = Signed(signed.body, {k: v for k, v in signed.headers.items() if k != secret_header}, "")
    wrong = Signed(signed.body, {**signed.headers, secret_header: signed.headers[secret_header][:-6] + "AAAAAA"}, "")
    for request in (missing, wrong):
        assert (await lab.post(channel, request))[:2] == (401, {"error": "Invalid signature"})
    await assert_nothing_stored(lab)
    assert (await lab.post(channel, signed))[:2] == (200, {"status": "ok"})


@pytest.mark.parametrize("channel", CHANNELS)
async def test_a_repeated_signature_header_is_refused(lab: ChannelLab, channel: str) -> None:
    # A proxy or attacker adding a second copy must not get to choose which one is checked.
    signed = lab.message(channel)
    name = next(k for k in signed.headers if k.lower() in SIGNATURE_HEADERS)
    good = signed.headers[name]
    for pair in ((good[:-6] + "AAAAAA", good), (good, good[:-6] + "AAAAAA")):
        headers = [(k, v) for k, v in signed.headers.items() if k != name] + [(name, v) for v in pair]
        async with lab.gw.http.post(lab.gw.base_url + lab.path(channel), data=signed.body, headers=headers) as resp:
            assert (resp.status, await resp.json()) == (401, {"error": "Invalid signature"})
    await assert_nothing_stored(lab)
    assert (await lab.post(channel, signed))[:2] == (200, {"status": "ok"})


@pytest.mark.parametrize("channel", ["slack", "custom"])
async def test_timestamp_outside_the_window(lab: ChannelLab, channel: str) -> None:
    for skew in (-301, 301):
        stale = lab.message(channel, timestamp=int(time.time()) + skew)
        assert (await lab.post(channel, stale))[:2] == (401, {"error": "Invalid signature"})
    await assert_nothing_stored(lab)
    inside = lab.message(channel, timestamp=int(time.time()) - 200)
    assert (await lab.post(channel, inside))[:2] == (200, {"status": "ok"})


async def test_reserialised_body_fails_the_signature(lab: ChannelLab) -> None:
    signed = lab.message("whatsapp")
    respaced = json.dumps(json.loads(signed.body), indent=1).encode()
    assert respaced != signed.body
    assert (await lab.post("whatsapp", Signed(respaced, signed.headers, "")))[0] == 401
    await assert_nothing_stored(lab)


# ---- 429: rate limit

async def test_rate_limit(make_settings) -> None:
    async with channel_lab(make_settings, limits={"webhook_per_minute": 2}) as lab:
        for _ in range(2):
            assert (await lab.post("telegram", lab.message("telegram")))[0] == 200
        status, body, headers = await lab.post("telegram", lab.message("telegram"))
        assert status == 429 and body["error"] == "Rate limit exceeded"
        assert isinstance(body["retryAfter"], int) and 0 < body["retryAfter"] <= 60
        assert headers["Retry-After"] == str(body["retryAfter"])
        assert len(await lab.messages("telegram", role="user")) == 2
        # the limit is per webhook: another channel of the same agent still gets through
        assert (await lab.post("custom", lab.message("custom")))[0] == 200
        events = await lab.events("telegram")
        assert [e.status_code for e in events] == [200, 200, 429]


# ---- 400: malformed JSON / not the channel's shape

@pytest.mark.parametrize(("channel", "body"), [
    ("whatsapp", b"{not json"),
    ("whatsapp", b'{"object": "whatsapp_business_account", "entry": {"id": 1}}'),
    ("messenger", b'{"object": "instagram", "entry": []}'),
    ("telegram", b'{"message": {"text": "no update_id"}}'),
    ("telegram", b"[1, 2]"),
    ("slack", b'{"no": "type"}'),
    ("custom", b'{"type": "message.created", "data": {"chat_id": "c"}}'),
    ("teams", b'{"id": "1", "channelId": "msteams", "serviceUrl": "SERVICE"}'),
])
async def test_malformed_payload(lab: ChannelLab, channel: str, body: bytes) -> None:
    body = body.replace(b"SERVICE", lab.teams.service_url.encode())
    status, answer, _ = await lab.post(channel, lab.sign(channel, body))
    assert status == 400 and isinstance(answer["error"], str) and answer["error"]
    await assert_nothing_stored(lab)


# ---- 200 ignored: subscription not active

@pytest.mark.parametrize("subscription", [
    {"subscription_status": "past_due"},
    {"subscription_status": "canceled"},
    {"subscription_status": "active", "subscription_expires_at": 1.0},
])
async def test_inactive_subscription_is_ignored(lab: ChannelLab, subscription: dict) -> None:
    await lab.gw.store.update(Company, lab.company.id, subscription)
    for channel in ("whatsapp", "custom"):
        assert (await lab.post(channel, lab.message(channel)))[:2] == (200, {"status": "ignored"})
        (event,) = await lab.events(channel)
        assert event.outcome == "ignored"
    await assert_nothing_stored(lab)
    assert lab.sends("whatsapp") == [] and lab.sends("custom") == []


async def test_trialing_or_future_expiry_is_active(lab: ChannelLab) -> None:
    await lab.gw.store.update(Company, lab.company.id, {"subscription_status": "trialing",
                                                        "subscription_expires_at": clock.now() + 3600})
    assert (await lab.post("whatsapp", lab.message("whatsapp")))[:2] == (200, {"status": "ok"})


# ---- 200 ok: receipts and other non-message events

@pytest.mark.parametrize(("channel", "body"), [
    ("whatsapp", WA_STATUS_SAMPLE),
    ("messenger", b'{"object":"page","entry":[{"id":"1","time":1,"messaging":[{"sender":{"id":"2"},'
                  b'"recipient":{"id":"1"},"timestamp":1,"delivery":{"mids":["m1"],"watermark":1}}]}]}'),
    ("telegram", b'{"update_id": 5, "my_chat_member": {"chat": {"id": 1}}}'),
    ("slack", b'{"type":"event_callback","event_id":"Ev1","event":{"type":"message","subtype":"bot_message",'
              b'"bot_id":"B1","text":"hi","ts":"1.2","channel":"C1"}}'),
    ("custom", b'{"type": "message.read", "timestamp": 1, "data": {}}'),
])
async def test_non_message_events_are_ok_and_not_stored(lab: ChannelLab, channel: str, body: bytes) -> None:
    assert (await lab.post(channel, lab.sign(channel, body)))[:2] == (200, {"status": "ok"})
    await assert_nothing_stored(lab)
    (event,) = await lab.events(channel)
    assert (event.outcome, event.status_code, event.message_ids) == ("ok", 200, [])


# ---- 503: store unavailable, then the channel's retry is accepted

async def test_store_unavailable_then_the_retry_is_accepted(lab: ChannelLab) -> None:
    signed = lab.message("whatsapp")
    await lab.gw.store.close()
    try:
        status, body, _ = await lab.post("whatsapp", signed)
        assert (status, body) == (503, {"error": "Unavailable"})
    finally:
        await lab.gw.store.open()
    assert await lab.gw.store.count(Message) == 0  # nothing acknowledged that was not stored
    assert (await lab.post("whatsapp", signed))[:2] == (200, {"status": "ok"})
    (reply,) = await lab.replies("whatsapp")
    (sent,) = lab.sends("whatsapp")
    assert sent["text"]["body"] == reply.content


# ---- the delivery log keeps its retention

@pytest.mark.parametrize(("retention", "most"), [(3, 3), (40, 47)])
async def test_delivery_log_is_trimmed_to_its_retention(make_settings, retention: int, most: int) -> None:
    """Trimmed every retention/5 events: never more than 20% over (and exact for small logs)."""
    async with channel_lab(make_settings, webhooks={"event_retention": retention}) as lab:
        for _ in range(retention + 5):
            await lab.post("custom", lab.message("custom"))
        events = await lab.events("custom")
        assert retention <= len(events) <= most
        newest = max(m.created_at for m in await lab.messages("custom", role="user"))
        assert max(e.received_at for e in events) >= newest - 1  # the newest are the ones kept
