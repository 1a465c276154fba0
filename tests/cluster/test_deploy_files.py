"""The shipped cluster configuration: the example node config loads, and the nginx and compose files
keep what SSE behind a proxy and a shared-nothing cluster depend on. (Docker and nginx are not run
here; tests/cluster runs the same topology as processes.)"""

from __future__ import annotations

import re

import pytest

from buzzi.config import PROJECT_ROOT, load_settings

pytestmark = pytest.mark.cluster
CONF = PROJECT_ROOT / "conf"


def test_example_node_config_is_a_valid_cluster_config():
    settings = load_settings(CONF / "cluster" / "node.toml", env={})
    assert settings.store.url.startswith("mongodb://") and settings.broker.url.startswith("redis://")
    assert settings.server.trusted_proxies and not settings.chat.create_demo
    assert settings.security.secret_key == ""  # the shared key comes from the environment, not a file


def _directives(text: str, name: str) -> list[str]:
    return re.findall(rf"^\s*{name}\s+([^;]*);", text, flags=re.MULTILINE)


def test_nginx_config_is_safe_for_sse_and_not_sticky():
    text = (CONF / "nginx.conf").read_text()
    stream = text[text.index("location ~ ^/api/chat/[^/]+/stream$"):]
    stream = stream[: stream.index("}")]
    assert _directives(stream, "proxy_buffering") == ["off"]
    read_timeout = int(_directives(stream, "proxy_read_timeout")[0].rstrip("s"))
    heartbeat = load_settings(env={}).chat.heartbeat_seconds
    assert read_timeout > heartbeat
    # A proxy_set_header inside the location would silently drop the ones set for the whole server.
    assert not _directives(stream, "proxy_set_header")
    assert _directives(text, "proxy_http_version") == ["1.1"]
    assert 'Connection ""' in _directives(text, "proxy_set_header")
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in _directives(text, "proxy_set_header")
    assert _directives(text, "keepalive")
    assert not re.search(r"^\s*(ip_hash|hash|sticky)\b", text, flags=re.MULTILINE)
    # nginx must never repeat a POST (a message) on another node by itself.
    assert "non_idempotent" not in " ".join(_directives(text, "proxy_next_upstream"))


def test_compose_runs_three_nodes_with_one_shared_secret_behind_nginx():
    text = (CONF / "docker-compose.yml").read_text()
    for node in ("node-a", "node-b", "node-c"):
        assert f"BUZZI_NODE_ID: {node}" in text
    assert len(re.findall(r"^\s+BUZZI_SECRET_KEY:", text, flags=re.MULTILINE)) == 1  # in the shared anchor
    assert "BUZZI_STORE_URL: mongodb://" in text and "BUZZI_BROKER_URL: redis://" in text
    assert "./nginx.conf:/etc/nginx/nginx.conf" in text
    assert (CONF / "Dockerfile").is_file()
