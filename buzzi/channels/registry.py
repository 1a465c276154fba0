"""One adapter instance per channel, sharing one OutboundHttp (a session per channel)."""

from __future__ import annotations

import importlib
import logging

from buzzi.channels.base import ChannelAdapter
from buzzi.channels.outbound import OutboundHttp
from buzzi.config import ChannelSettings
from buzzi.netguard import NetPolicy

log = logging.getLogger("buzzi.channels")

ADAPTERS: dict[str, tuple[str, str]] = {
    "whatsapp": ("buzzi.channels.whatsapp", "WhatsAppAdapter"),
    "telegram": ("buzzi.channels.telegram", "TelegramAdapter"),
    "slack": ("buzzi.channels.slack", "SlackAdapter"),
    "teams": ("buzzi.channels.teams", "TeamsAdapter"),
    "messenger": ("buzzi.channels.messenger", "MessengerAdapter"),
    "instagram": ("buzzi.channels.instagram", "InstagramAdapter"),
    "custom": ("buzzi.channels.custom", "CustomAdapter"),
}
# Every channel a webhook may use: the registered adapters, so a new channel is added in one place.
CHANNELS: tuple[str, ...] = tuple(ADAPTERS)


def load_adapter_class(channel: str) -> type[ChannelAdapter] | None:
    """The adapter class, or None while its module is not written yet. An import error *inside*
    an existing module is a bug and propagates."""
    module_name, class_name = ADAPTERS[channel]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return None
    return getattr(module, class_name, None)


class ChannelRegistry:
    def __init__(self, settings: ChannelSettings, *, replay_window_seconds: float | None = None,
                 net_policy: NetPolicy | None = None) -> None:
        self.settings = settings
        self.http = OutboundHttp(settings, net_policy)
        self._adapters: dict[str, ChannelAdapter] = {}
        for channel in CHANNELS:
            cls = load_adapter_class(channel)
            if cls is None:
                log.warning("no adapter for channel %s yet", channel)
                continue
            adapter = cls(settings, self.http)
            if replay_window_seconds is not None and hasattr(adapter, "replay_window"):
                adapter.replay_window = replay_window_seconds  # type: ignore[attr-defined]
            self._adapters[channel] = adapter

    @property
    def channels(self) -> list[str]:
        return list(self._adapters)

    def adapter(self, channel: str) -> ChannelAdapter:
        try:
            return self._adapters[channel]
        except KeyError:
            raise KeyError(f"no adapter for channel {channel!r}") from None

    async def close(self) -> None:
        await self.http.close()
