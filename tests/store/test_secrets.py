"""Webhook secrets are sealed at rest: the stored document never holds the plaintext."""

from __future__ import annotations

import json
import secrets

import pytest

from buzzi.crypto import SecretBox
from buzzi.models import Webhook
from buzzi.store import Store
from tests.store.conftest import MakeStore
from tests.store.factories import webhook

SECRET, TOKEN, BOT_TOKEN = "plain-secret-4f1c", "plain-verify-9a2e", "plain-bot-token-77d0"


def _assert_sealed(raw: dict, *plaintexts: str) -> None:
    text = json.dumps(raw)
    for plain in plaintexts:
        assert plain not in text
    for key in Webhook.SEALED:  # None stays None: there is nothing to hide
        assert raw[key] is None or raw[key].startswith(SecretBox.PREFIX)


async def test_webhook_secrets_are_sealed_at_rest(store: Store) -> None:
    hook = await store.add(webhook(secret=SECRET, verify_token=TOKEN, credentials={"bot_token": BOT_TOKEN}))
    _assert_sealed(await store._get("webhooks", hook.id), SECRET, TOKEN, BOT_TOKEN)
    loaded = await store.get(Webhook, hook.id)
    assert loaded is not None
    assert (loaded.secret, loaded.verify_token, loaded.credentials) == (SECRET, TOKEN, {"bot_token": BOT_TOKEN})
    assert (await store.find_one(Webhook, agent_id="a_1")).secret == SECRET


async def test_updated_secrets_are_sealed_too(store: Store) -> None:
    hook = await store.add(webhook(secret=SECRET))
    updated = await store.update(Webhook, hook.id, {"secret": "rotated-secret-0b9", "credentials": {"k": BOT_TOKEN}})
    assert updated is not None and updated.secret == "rotated-secret-0b9" and updated.credentials == {"k": BOT_TOKEN}
    raw = await store._get("webhooks", hook.id)
    _assert_sealed(raw, "rotated-secret-0b9", BOT_TOKEN, SECRET)
    assert raw["secret"] is not None and raw["credentials"] is not None


async def test_a_store_with_another_key_cannot_read_secrets(store: Store, make_store: MakeStore) -> None:
    hook = await store.add(webhook(secret=SECRET, verify_token=TOKEN, credentials={"bot_token": BOT_TOKEN}))
    stranger = await make_store(SecretBox(secrets.token_urlsafe(32)))
    with pytest.raises(ValueError, match="another secret key"):
        await stranger.get(Webhook, hook.id)
    _assert_sealed(await stranger._get("webhooks", hook.id), SECRET, TOKEN, BOT_TOKEN)
