"""Fixtures shared by every test package. Area fixtures live in tests/<area>/conftest.py;
the real servers the tests start (Redis/Valkey, the MongoDB-wire server, fake platform and LLM
APIs) live in tests/support/."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from buzzi.config import Settings, load_settings
from buzzi.crypto import SecretBox
from buzzi.store.sqlite import SQLiteStore

# Real servers started once per test session: Redis/Valkey and the MongoDB-wire server.
pytest_plugins = ["tests.support.redis_server", "tests.support.mongo_server", "tests.support.agent_fixtures"]


@pytest.fixture
def secret_key() -> str:
    return secrets.token_urlsafe(32)


@pytest.fixture
def box(secret_key: str) -> SecretBox:
    return SecretBox(secret_key)


@pytest.fixture
def make_settings(tmp_path: Path, secret_key: str):
    """Settings for a test: defaults, a private data dir and SQLite file, plus overrides. Every
    fake platform, agent and LLM runs on 127.0.0.1, so private networks are allowed; the SSRF
    tests (tests/test_netguard.py) turn that off."""

    def make(**sections: dict[str, Any]) -> Settings:
        overrides: dict[str, dict[str, Any]] = {
            "server": {"data_dir": str(tmp_path / "var"), "node_id": "test-node"},
            "store": {"url": f"sqlite:///{tmp_path / 'var' / 'buzzi.sqlite3'}"},
            "security": {"secret_key": secret_key, "admin_password": "admin-password-123",
                         "allow_private_networks": True},
            "chat": {"create_demo": False},
        }
        for section, values in sections.items():
            overrides.setdefault(section, {}).update(values)
        return load_settings(env={}, overrides=overrides)

    return make


@pytest.fixture
async def sqlite_store(tmp_path: Path, box: SecretBox) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "store.sqlite3", box)
    await store.open()
    yield store
    await store.close()
