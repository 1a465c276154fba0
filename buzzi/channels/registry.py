"""The channels a webhook may use, one adapter class each; one adapter instance per channel,
sharing one OutboundHttp (a session per channel) and one SendPacing."""

from __future__ import annotations

from buzzi.channels.base import DEFAULT_REPLAY_WINDOW, ChannelAdapter
from buzzi.channels.custom import CustomAdapter
from buzzi.channels.instagram import InstagramAdapter
from buzzi.channels.messenger import MessengerAdapter
from buzzi.channels.outbound import OutboundHttp
from buzzi.channels.pacing import SendPacing
from buzzi.channels.slack import SlackAdapter
from buzzi.channels.teams import TeamsAdapter
from buzzi.channels.telegram import TelegramAdapter
from buzzi.channels.whatsapp import WhatsAppAdapter
from buzzi.config import ChannelSettings
from buzzi.netguard import NetPolicy

ADAPTERS: dict[str, type[ChannelAdapter]] = {
    cls.channel: cls
    for cls in (WhatsAppAdapter, TelegramAdapter, SlackAdapter, TeamsAdapter, MessengerAdapter,
                InstagramAdapter, CustomAdapter)
}
# Every channel a webhook may use: the registered adapters, so a new channel is added in one place.
CHANNELS: tuple[str, ...] = tuple(ADAPTERS)


class ChannelRegistry:
    def __init__(self, settings: ChannelSettings, *, replay_window_seconds: float = DEFAULT_REPLAY_WINDOW,
                 net_policy: NetPolicy | None = None, pacing_share: int = 1) -> None:
        self.settings = settings
        self.http = OutboundHttp(settings, net_policy)
        # pacing_share: the processes of this node that answer (each paces an account at rate / share).
        self.pacing = SendPacing(share=pacing_share)
        self._adapters = {channel: cls(settings, self.http, replay_window=replay_window_seconds)
                          for channel, cls in ADAPTERS.items()}

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
