"""Configuration: defaults file, then --config/BUZZI_CONFIG, then environment; validated at start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from buzzi.config import DEFAULTS_FILE, ConfigError, load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_match_the_spec():
    s = load_settings(env={})
    assert (s.server.host, s.server.port) == ("127.0.0.1", 8888)
    assert s.server.public_url == "http://127.0.0.1:8888"
    assert s.store.url == "sqlite:///var/buzzi.sqlite3"
    assert s.broker.url == "memory://"
    assert s.channels.whatsapp_api_base == "https://graph.facebook.com/v24.0"
    assert s.channels.telegram_api_base == "https://api.telegram.org"
    assert s.channels.slack_api_base == "https://slack.com/api"
    assert s.webhooks.max_body_bytes == 4 * 1024 * 1024 and s.webhooks.replay_window_seconds == 300
    assert (s.limits.company_per_minute, s.limits.session_per_minute, s.limits.ip_per_minute) == (1000, 30, 100)
    assert s.chat.session_ttl_seconds == 1800 and s.chat.heartbeat_seconds == 30
    # docs/contract.md "Public endpoints under hostile load": small bodies, slow bodies and idle connections end.
    assert s.server.max_body_bytes == 64 * 1024
    assert (s.server.body_timeout_seconds, s.server.idle_timeout_seconds) == (15.0, 60.0)
    assert s.node_id.endswith(":8888")


def test_every_default_has_a_comment():
    for line in DEFAULTS_FILE.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            assert "#" in line, f"setting without a comment: {line}"


def test_precedence_file_then_env(tmp_path: Path):
    config = tmp_path / "node.toml"
    config.write_text('[server]\nport = 9001\npublic_url = "https://chat.example.com"\n[chat]\nheartbeat_seconds = 5\n')
    s = load_settings(config, env={"BUZZI_PORT": "9002", "BUZZI_CHAT_HEARTBEAT_SECONDS": "7.5"})
    assert s.server.port == 9002  # env beats the file
    assert s.server.public_url == "https://chat.example.com"  # the file beats the defaults
    assert s.chat.heartbeat_seconds == 7.5
    s = load_settings(env={"BUZZI_CONFIG": str(config)})
    assert s.server.port == 9001


def test_spec_environment_names(tmp_path: Path):
    env = {
        "BUZZI_HOST": "0.0.0.0", "BUZZI_STORE_URL": "mongodb://db:27017/buzzi", "BUZZI_BROKER_URL": "redis://r:6379/0",
        "BUZZI_NODE_ID": "node-7", "BUZZI_SECRET_KEY": "k" * 32, "BUZZI_ADMIN_PASSWORD": "pw",
        "BUZZI_WHATSAPP_API_BASE": "http://127.0.0.1:1/wa", "BUZZI_TEAMS_OPENID_URL": "http://127.0.0.1:1/oid",
        "BUZZI_CHAT_HANDOVER_KEYWORDS": "human, operator", "BUZZI_CHAT_CREATE_DEMO": "false",
    }
    s = load_settings(env=env)
    assert s.server.host == "0.0.0.0" and s.node_id == "node-7"
    assert s.store.url.startswith("mongodb://") and s.broker.url.startswith("redis://")
    assert s.channels.whatsapp_api_base == "http://127.0.0.1:1/wa"
    assert s.chat.handover_keywords == ["human", "operator"] and s.chat.create_demo is False


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BUZZI_PORT": "abc"}, "server.port: expected a whole number"),
        ({"BUZZI_PORT": "70000"}, "server.port: expected a port between 1 and 65535"),
        ({"BUZZI_STORE_URL": "postgres://x"}, "store.url: expected sqlite:///path or mongodb://"),
        ({"BUZZI_BROKER_URL": "kafka://x"}, "broker.url: expected memory:// or redis://"),
        ({"BUZZI_PUBLIC_URL": "chat.example.com"}, "server.public_url: expected an http(s):// URL"),
        ({"BUZZI_CHAT_CREATE_DEMO": "maybe"}, "BUZZI_CHAT_CREATE_DEMO: expected true or false"),
        ({"BUZZI_LIMITS_SESSION_PER_MINUTE": "0"}, "limits.session_per_minute: expected a number greater than 0"),
        ({"BUZZI_SERVER_LOG_FORMAT": "xml"}, "server.log_format: expected text or json"),
        ({"BUZZI_SECRET_KEY": "short"}, "security.secret_key: expected at least 16 characters"),
        ({"BUZZI_INBOX_RETRY_BASE_SECONDS": "0"}, "inbox.retry_base_seconds: expected a number greater than 0"),
        ({"BUZZI_SERVER_SHUTDOWN_GRACE_SECONDS": "-1"}, "server.shutdown_grace_seconds: expected 0 or more"),
        ({"BUZZI_SERVER_MAX_BODY_BYTES": "0"}, "server.max_body_bytes: expected a number greater than 0"),
        ({"BUZZI_SERVER_BODY_TIMEOUT_SECONDS": "0"}, "server.body_timeout_seconds: expected a number greater than 0"),
        ({"BUZZI_SERVER_IDLE_TIMEOUT_SECONDS": "x"}, "server.idle_timeout_seconds: expected a number"),
        ({"BUZZI_SECURITY_ALLOWED_PRIVATE_CIDRS": "10.0.0.0/8, nope"}, "security.allowed_private_cidrs: 'nope'"),
        ({"BUZZI_TEAMS_TOKEN_URL": "ftp://x"}, "channels.teams_token_url: expected an http(s):// URL"),
    ],
)
def test_bad_values_name_the_key(env, message):
    with pytest.raises(ConfigError) as info:
        load_settings(env=env)
    assert message in str(info.value)
    assert "short" not in str(info.value) or "secret_key" not in message  # never echo a secret


def test_every_number_must_be_positive_unless_it_has_its_own_rule():
    """A numeric setting needs no listing to be checked: 0 is refused for each, except the grace period."""
    defaults = load_settings(env={})
    for section in ("store", "broker", "chat", "limits", "webhooks", "inbox", "agents", "channels"):
        for name, value in vars(getattr(defaults, section)).items():
            if f"{section}.{name}" in ("inbox.processes", "inbox.busy_lag_ms"):  # 0 = none / off
                continue
            if isinstance(value, int | float) and not isinstance(value, bool):
                with pytest.raises(ConfigError, match=f"{section}.{name}: expected a number greater than 0"):
                    load_settings(env={f"BUZZI_{section.upper()}_{name.upper()}": "0"})
    assert load_settings(env={"BUZZI_SERVER_SHUTDOWN_GRACE_SECONDS": "0"}).server.shutdown_grace_seconds == 0
    assert load_settings(env={"BUZZI_INBOX_BUSY_LAG_MS": "0"}).inbox.busy_lag_ms == 0
    with pytest.raises(ConfigError, match=r"inbox.busy_lag_ms: expected 0 \(off\) or more"):
        load_settings(env={"BUZZI_INBOX_BUSY_LAG_MS": "-1"})


def test_unknown_keys_in_a_file_are_refused(tmp_path: Path):
    config = tmp_path / "bad.toml"
    config.write_text("[server]\nprot = 1\n")
    with pytest.raises(ConfigError, match=r"unknown key server.prot"):
        load_settings(config, env={})
    config.write_text("[servr]\n")
    with pytest.raises(ConfigError, match=r"unknown section \[servr\]"):
        load_settings(config, env={})
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "missing.toml", env={})


def test_run_py_stops_with_a_clear_message_on_bad_config():
    proc = subprocess.run([sys.executable, "run.py"], cwd=ROOT, env={"BUZZI_PORT": "not-a-port", "PATH": ""},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "configuration error: server.port: expected a whole number" in proc.stderr
