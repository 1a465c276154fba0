"""The custom channel as Standard Webhooks asks (issue 11): a receiver's 410 Gone disables the
webhook with a visible reason (spec/standard-webhooks.md, "Delivery success and failure"), and
event types other than message.created are dropped with a reason."""

from __future__ import annotations

import json

import pytest

from buzzi.channels.custom import CustomAdapter
from buzzi.config import load_settings
from buzzi.signing import new_standard_secret
from tests.support.fake_custom import CALLBACK_PATH, Reply, custom_request, custom_webhook, message_created
from tests.support.waiting import wait_until
from tests.webhooks.kit import channel_lab


@pytest.fixture
def adapter() -> CustomAdapter:
    return CustomAdapter(load_settings(env={}).channels, http=None)


@pytest.mark.parametrize(("event_type", "reason"), [
    ("webhook.test", "test_event"),
    ("message.read", "unsupported_event"),
    ("message.updated", "unsupported_event"),
    ("anything <with> spaces and a very long name that must never become a metrics label", "unsupported_event"),
])
def test_other_event_types_are_dropped_with_a_bounded_reason(adapter: CustomAdapter, event_type: str,
                                                             reason: str) -> None:
    secret = new_standard_secret()
    body = json.dumps({"type": event_type, "timestamp": "2026-01-05T10:00:00Z", "data": {}}).encode()
    result = adapter.parse(custom_webhook(secret), custom_request(body, secret))
    assert result.messages == []
    assert (result.drops, result.ignored) == ({reason: 1}, 1)


def test_the_test_event_button_sends_what_is_dropped_as_test_event(adapter: CustomAdapter) -> None:
    secret = new_standard_secret()
    hook = custom_webhook(secret)
    sample = adapter.sample_event(hook, 1_750_000_000)
    request = custom_request(sample.body, secret, msg_id=sample.headers["webhook-id"],
                             timestamp=int(sample.headers["webhook-timestamp"]), now=1_750_000_000)
    assert adapter.parse(hook, request).drops == {"test_event": 1}


def test_message_created_is_still_a_message(adapter: CustomAdapter) -> None:
    secret = new_standard_secret()
    result = adapter.parse(custom_webhook(secret), custom_request(message_created(), secret))
    assert [m.message_id for m in result.messages] == ["ext-1"] and result.drops == {}


async def test_a_receiver_answering_410_disables_the_webhook_visibly(make_settings) -> None:
    async with channel_lab(make_settings) as lab:
        # What a receiver that was switched off answers (any body; the status is what counts).
        lab.callback.script("POST", CALLBACK_PATH, Reply(410, {"error": "gone"}))
        status, _, _ = await lab.post("custom", lab.message("custom"))
        assert status == 200
        (reply,) = await lab.replies("custom", state="failed")
        assert reply.delivery["error"]["code"] == "gone"

        token = await lab.gw.login()
        hook = lab.hooks["custom"]
        path = f"/api/admin/companies/{hook.company_id}/agents/{hook.agent_id}/webhooks/{hook.id}"

        async def disabled() -> dict | None:
            status, body, _ = await lab.gw.request("GET", path, token=token)
            assert status == 200, body
            return body if body["status"] == "disabled" else None

        body = await wait_until(disabled)
        assert "410" in body["disabledReason"] and body["disabledAt"]
        assert len(lab.callback.to(CALLBACK_PATH)) == 1  # not retried: 410 is permanent

        # The disabled webhook takes no more messages, and nothing more goes to the receiver.
        status, _, _ = await lab.post("custom", lab.message("custom", "anyone there?"))
        assert status == 404
        assert len(lab.callback.to(CALLBACK_PATH)) == 1

