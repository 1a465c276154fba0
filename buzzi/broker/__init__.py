"""Pick the broker implementation from its URL."""

from __future__ import annotations

from urllib.parse import urlsplit

from buzzi.broker.base import Broker
from buzzi.config import BrokerSettings


def open_broker(url: str, settings: BrokerSettings, node_id: str) -> Broker:
    """The broker for `url`, not yet opened: memory:// (one node) or redis:// / rediss:// (a cluster)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        from buzzi.broker.memory import MemoryBroker

        return MemoryBroker(settings)
    if scheme in ("redis", "rediss"):
        from buzzi.broker.redis import RedisBroker

        return RedisBroker(url, settings, node_id)
    raise ValueError(f"unsupported broker URL scheme {scheme!r}: use memory://, redis:// or rediss://")
