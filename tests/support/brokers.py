"""What the broker tests share: settings with small limits, and the barrier after which a node's
subscriptions receive every later publish."""

from __future__ import annotations

from typing import Any

from buzzi.broker.base import StreamLog
from buzzi.config import BrokerSettings


def broker_settings(**changes: Any) -> BrokerSettings:
    values: dict[str, Any] = {
        "url": "memory://",
        "event_log_size": 50,
        "event_log_ttl_seconds": 60,
        "max_connections": 10,
        "node_ttl_seconds": 5.0,
    }
    values.update(changes)
    return BrokerSettings(**values)


async def live(stream_log: StreamLog, stream: str) -> None:
    """Barrier: after it, the node's subscriptions to `stream` receive every later publish from any
    node. (A replay waits for the node's channel subscription; memory is live at once.)"""
    await stream_log.replay(stream, None)
